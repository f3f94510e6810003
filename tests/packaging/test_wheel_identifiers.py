"""The wheels the release builds are exactly the ones the README promises.

``cibuildwheel --print-build-identifiers`` reads pyproject.toml's
``[tool.cibuildwheel]`` as the release workflow's cibuildwheel does, for
each platform; the README's Install table lists each wheel platform tag with
its CPython versions. cibuildwheel needs Python 3.11 or later and is in the
``wheels`` dependency group (``make lint-workflows`` installs it and runs
these tests); without it they skip.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: cibuildwheel's --platform for each wheel platform tag's family.
FAMILIES = {
    "manylinux": "linux",
    "musllinux": "linux",
    "macosx": "macos",
    "win": "windows",
}


def promised(readme: str) -> dict[str, set[str]]:
    """platform -> build identifiers, from the README's Install table: rows
    of backquoted platform tags, then CPython versions (3.13, 3.14t)."""
    section = readme.split("\n## Install\n", 1)[1].split("\n## ", 1)[0]
    found: dict[str, set[str]] = {p: set() for p in set(FAMILIES.values())}
    for row in re.findall(r"^\|(.+)\|(.+)\|$", section, flags=re.M):
        tags = re.findall(r"`([a-z0-9_]+)`", row[0])
        versions = re.findall(r"\b3\.\d+t?\b", row[1])
        for tag in tags:
            platform = FAMILIES[tag.split("_", 1)[0]]
            found[platform] |= {f"cp{v.replace('.', '')}-{tag}" for v in versions}
    return found


def test_the_readme_table_is_read() -> None:
    table = (
        "\n## Install\n\n| wheel | CPython |\n|---|---|\n"
        "| `manylinux_x86_64`, `win_amd64` | 3.9, 3.14t |\n"
        "\n## Next\n| `macosx_arm64` | 3.9 |\n"
    )
    assert promised(table) == {
        "linux": {"cp39-manylinux_x86_64", "cp314t-manylinux_x86_64"},
        "windows": {"cp39-win_amd64", "cp314t-win_amd64"},
        "macos": set(),
    }


def _cibuildwheel_version() -> str:
    cibuildwheel = pytest.importorskip(
        "cibuildwheel", reason="not installed (pip install --group wheels)"
    )
    return str(cibuildwheel.__version__)


@pytest.mark.parametrize("platform", ["linux", "macos", "windows"])
def test_cibuildwheel_builds_exactly_the_promised_wheels(platform: str) -> None:
    _cibuildwheel_version()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cibuildwheel",
            "--print-build-identifiers",
            "--platform",
            platform,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    built = set(result.stdout.split())
    wanted = promised((ROOT / "README.md").read_text())[platform]
    assert wanted, f"the README promises no {platform} wheel"
    assert built == wanted, (
        f"built, not promised: {sorted(built - wanted)}; "
        f"promised, not built: {sorted(wanted - built)}"
    )


def test_the_workflow_runs_the_cibuildwheel_tested_here() -> None:
    """Minor releases of cibuildwheel add and drop Python versions: the
    action is pinned to a release tag (vX.Y.Z: the project tags releases
    only) of the minor release whose identifiers are checked above."""
    version = _cibuildwheel_version()
    workflow = (ROOT / ".github" / "workflows" / "wheels.yml").read_text()
    tags = set(re.findall(r"uses: pypa/cibuildwheel@v(\d+\.\d+)\.\d+\b", workflow))
    assert tags == {".".join(version.split(".")[:2])}, (tags, version)
