"""A build meant to compile fails loudly when it cannot; opting out is explicit."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def source_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "src-tree"
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


def _wheel(tree: Path, out: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("QBREAKER_")}
    full_env.update(env)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-cache-dir",
            "-w",
            str(out),
            str(tree),
        ],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.skipif(
    sys.platform == "win32", reason="CC is how a Unix build picks its compiler"
)
def test_a_failed_compile_fails_the_build(source_copy: Path, tmp_path: Path) -> None:
    result = _wheel(source_copy, tmp_path / "dist", CC="false", LDSHARED="false")
    assert result.returncode != 0, "a build without a working compiler must fail"
    assert "error" in (result.stdout + result.stderr).lower()
    assert not list((tmp_path / "dist").glob("*.whl"))


@pytest.mark.skipif(
    sys.platform == "win32", reason="CC is how a Unix build picks its compiler"
)
def test_opting_out_builds_a_pure_wheel(source_copy: Path, tmp_path: Path) -> None:
    result = _wheel(
        source_copy,
        tmp_path / "dist",
        CC="false",
        LDSHARED="false",
        QBREAKER_NO_EXTENSIONS="1",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    assert wheel.name.endswith("-py3-none-any.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "qbreaker/_impl/twin.py" in names
    assert not [n for n in names if n.endswith((".so", ".pyd", ".c"))]
    # The core's .pxi files are build input only (cimport reads the .pxd).
    assert not [n for n in names if n.endswith(".pxi")]
    assert "qbreaker/_core_c.pxd" in names
    # The fleet's Lua scripts are package data.
    lua = {n.rsplit("/", 1)[1] for n in names if n.startswith("qbreaker/fleet/lua/")}
    assert lua == _fleet_scripts()
    # Installed, it imports the twin with no variable set (a CPython without
    # a compiled wheel installs it); asked to require the compiled core, it
    # says that it is missing.
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    plain = {k: v for k, v in os.environ.items() if not k.startswith("QBREAKER_")}
    code = (
        f"import sys; sys.path.insert(0, {str(site)!r}); "
        "import qbreaker; print(qbreaker.IMPLEMENTATION)"
    )
    run = [sys.executable, "-I", "-c", code]
    found = subprocess.run(run, env=plain, capture_output=True, text=True, timeout=60)
    assert (found.returncode, found.stdout.strip()) == (0, "python"), found.stderr
    required = subprocess.run(
        run,
        env={**plain, "QBREAKER_REQUIRE_EXTENSIONS": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert required.returncode != 0
    assert "QBREAKER_REQUIRE_EXTENSIONS" in required.stderr, required.stderr


def _included_pxi() -> set[str]:
    """The .pxi files that _core_c.pyx includes, relative to the package."""
    source = (ROOT / "src" / "qbreaker" / "_core_c.pyx").read_text()
    return set(re.findall(r'^include "([^"]+\.pxi)"$', source, flags=re.M))


def _fleet_scripts() -> set[str]:
    scripts = {p.name for p in (ROOT / "src/qbreaker/fleet/lua").glob("*.lua")}
    assert "sync.lua" in scripts, scripts
    return scripts


def test_the_sdist_carries_every_file_the_core_includes(
    source_copy: Path, tmp_path: Path
) -> None:
    # cibuildwheel compiles the wheels from the sdist alone.
    env = {k: v for k, v in os.environ.items() if not k.startswith("QBREAKER_")}
    env["QBREAKER_NO_EXTENSIONS"] = "1"  # how the sdist is built (MANIFEST.in)
    out = tmp_path / "sdist"
    result = subprocess.run(
        [sys.executable, "setup.py", "-q", "sdist", "-d", str(out)],
        cwd=source_copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (archive,) = out.glob("*.tar.gz")
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    shipped = {n.split("/src/qbreaker/", 1)[1] for n in names if n.endswith(".pxi")}
    included = _included_pxi()
    assert len(included) >= 8, included
    assert shipped == included
    lua = {n.rsplit("/", 1)[1] for n in names if "/src/qbreaker/fleet/lua/" in n}
    assert lua == _fleet_scripts()
