"""The command line is the top floor: its own package, never imported by the
library; the sdist carries the benchmark floor's source.
"""

from __future__ import annotations

import ast
import importlib
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from qbreaker._cli import COMMANDS

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "qbreaker"
CLI = "qbreaker._cli"
FLOOR_SOURCE = "qbreaker/_cli/bench/_floor.pyx"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(path: Path) -> set[str]:
    """Every module ``path`` names in an import, anywhere in it, made absolute;
    and every string naming a qbreaker module (``importlib.import_module``)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value.startswith("qbreaker.") or node.value.startswith("."):
                found.add(node.value)
    return found


def _library_files() -> list[Path]:
    return [
        p
        for p in sorted(PACKAGE.rglob("*.py"))
        if p.relative_to(PACKAGE).parts[0] not in ("_cli", "__main__.py")
    ]


def test_the_library_never_imports_the_command_line() -> None:
    files = _library_files()
    assert len(files) > 10 and PACKAGE / "__init__.py" in files
    offenders = {
        str(p.relative_to(PACKAGE)): sorted(
            name
            for name in _imported(p)
            if name == CLI or name.startswith(f"{CLI}.") or name.endswith("._cli")
        )
        for p in files
    }
    assert not {k: v for k, v in offenders.items() if v}


def test_importing_the_library_leaves_the_command_line_out() -> None:
    code = (
        "import sys, qbreaker, qbreaker.shared, qbreaker.compat.pybreaker\n"
        "qbreaker.CircuitBreaker(3, 1.0).allow()\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('qbreaker._cli'))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_module_imports(command: str) -> None:
    """main() skips a command module that does not import when it builds
    ``--help``; here a broken import fails instead."""
    module = importlib.import_module(f"{CLI}.{COMMANDS[command][0]}")
    assert callable(module.run)


def test_a_light_command_leaves_the_heavy_modules_out() -> None:
    """main() imports every command module for ``--help``: their module level
    stays light, and ``tour`` loads nothing of the benchmark or the demo."""
    code = (
        "import contextlib, io, sys\n"
        "from qbreaker._cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['tour']) == 0\n"
        "heavy = {'qbreaker._cli.bench.scenarios', 'qbreaker._cli.bench.sections',\n"
        "         'qbreaker._cli.bench.measure', 'qbreaker._cli.demo.backend',\n"
        "         'http.server', 'urllib.request', 'tracemalloc'}\n"
        "assert not heavy & set(sys.modules), heavy & set(sys.modules)\n"
        "assert 'qbreaker._cli.bench' in sys.modules  # it was imported\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_python_m_qbreaker_is_the_command_line() -> None:
    import qbreaker.__main__ as shim
    from qbreaker._cli import main

    assert shim.main is main


def _source_tree(dst: Path) -> Path:
    dst.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md", "MANIFEST.in"):
        shutil.copy(ROOT / name, dst / name)
    shutil.copytree(
        ROOT / "src",
        dst / "src",
        ignore=shutil.ignore_patterns(
            "*.so", "*.pyd", "*.c", "*.html", "__pycache__", "*.egg-info"
        ),
    )
    return dst


def test_the_sdist_carries_the_floor_source_and_the_wheel_does_not(
    tmp_path: Path,
) -> None:
    """The sdist builds the floor where it is compiled (the wheels are built
    from the sdist alone); a wheel carries the compiled floor, not its
    source (tests/packaging/test_wheel_contents.py lists a wheel's files)."""
    tree = _source_tree(tmp_path / "tree")
    env = {k: v for k, v in os.environ.items() if not k.startswith("QBREAKER_")}
    env["QBREAKER_NO_EXTENSIONS"] = "1"  # as the release's sdist build
    dist = tmp_path / "dist"
    # The PEP 517 hooks, as ``python -m build`` calls them (build_meta
    # rewrites sys.argv: the directory is read first).
    build = (
        "import sys\n"
        "from setuptools import build_meta as b\n"
        "out = sys.argv[1]\n"
        "b.build_sdist(out)\n"
        "b.build_wheel(out)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", build, str(dist)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as tar:
        in_sdist = [n.partition("/")[2] for n in tar.getnames()]
    assert f"src/{FLOOR_SOURCE}" in in_sdist
    assert not [n for n in in_sdist if n.startswith("src/") and n.endswith(".c")]
    (wheel,) = dist.glob("*.whl")
    in_wheel = zipfile.ZipFile(wheel).namelist()
    assert FLOOR_SOURCE not in in_wheel
    assert "qbreaker/_cli/__init__.py" in in_wheel
    assert "qbreaker/_cli/bench/scenarios.py" in in_wheel
    entry_points = next(n for n in in_wheel if n.endswith("entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "qbreaker = qbreaker._cli:main" in scripts
