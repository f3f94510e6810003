"""The sdist carries everything the suite reads, since the wheels are tested
with the sdist's own tests/ (scripts/test_wheels.sh, cibuildwheel).

In a checkout this builds the sdist from a copy of the tree and compares; in
an unpacked sdist it checks that the sdist rebuilds itself whole.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: What the suite reads besides the package: its own files, the examples and
#: pages it runs, the benchmark suite it runs once, the installed-wheel check.
READ_BY_THE_SUITE = ("tests", "docs", "benchmarks", "scripts/check_installed.py")
LEFTOVERS = ("__pycache__", ".pytest_cache", ".hypothesis", ".benchmarks")


def _files(root: Path, under: str) -> set[str]:
    start = root / under
    paths = [start] if start.is_file() else start.rglob("*")
    return {
        p.relative_to(root).as_posix()
        for p in paths
        if p.is_file()
        and not set(p.relative_to(root).parts) & set(LEFTOVERS)
        and p.suffix not in (".pyc", ".so", ".pyd", ".c", ".html")
    }


def test_the_sdist_carries_what_the_suite_reads(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md", "MANIFEST.in"):
        shutil.copy(ROOT / name, tree / name)
    for name in ("src", *READ_BY_THE_SUITE):
        source = ROOT / name
        if source.is_dir():
            skip = shutil.ignore_patterns(
                *LEFTOVERS, "*.so", "*.pyd", "*.c", "*.html", "*.egg-info"
            )
            shutil.copytree(source, tree / name, ignore=skip)
        else:
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, tree / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("QBREAKER_")}
    env["QBREAKER_NO_EXTENSIONS"] = "1"  # how the release's sdist is built
    result = subprocess.run(
        [sys.executable, "setup.py", "-q", "sdist", "-d", str(tmp_path / "out")],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (archive,) = (tmp_path / "out").glob("*.tar.gz")
    with tarfile.open(archive) as tar:
        shipped = {n.partition("/")[2] for n in tar.getnames()}
    wanted = set().union(*(_files(ROOT, name) for name in READ_BY_THE_SUITE))
    assert {"benchmarks/conftest.py", "tests/conftest.py"} <= wanted
    missing = sorted(wanted - shipped)
    assert not missing, "not in the sdist: " + ", ".join(missing)
