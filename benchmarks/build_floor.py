"""Compile ``_floor.pyx`` into a per-user cache outside the repository.

The floor is a benchmark baseline, not part of qbreaker: it never lands in
``src/`` or in a wheel. It needs only Cython and a C compiler. The cache key
covers the source, the interpreter ABI and the Cython version, so a changed
``_floor.pyx`` or a new Python rebuilds it.

``python benchmarks/build_floor.py`` prebuilds it and prints the path;
``QBREAKER_BENCH_CACHE`` overrides the cache directory.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import sysconfig
import tempfile
from importlib.metadata import version
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
PYX = HERE / "_floor.pyx"
# The flags src/qbreaker is built with (setup.py), so the floor is no faster
# or slower for reasons of optimisation level.
CFLAGS = ["-Wall", "-Wno-unused-function", "-std=c11", "-O2"]


def cache_dir() -> Path:
    env = os.environ.get("QBREAKER_BENCH_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "qbreaker-bench"


def _key() -> str:
    h = hashlib.sha256(PYX.read_bytes())
    h.update(Path(__file__).read_bytes())
    h.update(f"{sys.implementation.cache_tag} {version('Cython')}".encode())
    return h.hexdigest()[:16]


def build(force: bool = False) -> Path:
    """Return the path of the compiled floor, compiling it if needed."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    target = cache_dir() / _key() / f"_floor{suffix}"
    if target.exists() and not force:
        return target
    from Cython.Build import cythonize
    from setuptools import Distribution, Extension

    target.parent.mkdir(parents=True, exist_ok=True)
    # Build in a private temp dir and rename into place: concurrent runs
    # (xdist, two shells) never see a half-written module.
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        args = CFLAGS if sys.platform != "win32" else []
        ext = Extension("_floor", [str(PYX)], extra_compile_args=args)
        # build_dir keeps the generated .c out of the repository.
        exts = cythonize([ext], build_dir=tmp, quiet=True, force=True)
        cmd = Distribution({"ext_modules": exts}).get_command_obj("build_ext")
        cmd.build_lib = cmd.build_temp = tmp
        cmd.ensure_finalized()
        cmd.run()
        os.replace(Path(tmp) / f"_floor{suffix}", target)
    return target


def load() -> ModuleType:
    """Import the compiled floor (building it first if needed)."""
    path = build()
    spec = importlib.util.spec_from_file_location("_floor", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the floor from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


if __name__ == "__main__":
    print(build(force="--force" in sys.argv))
