"""Every module of the installed package imports alone, in a fresh interpreter.

A module imported first of all, with nothing of qbreaker loaded before it,
fails on an import cycle that a whole-suite run hides (there the modules of
the cycle are already loaded in a working order), and ``-W error`` fails it on
any warning at import. The imports run in parallel, one interpreter each.
"""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import pytest

import qbreaker

MODULES = sorted(
    ["qbreaker"]
    + [m.name for m in pkgutil.walk_packages(qbreaker.__path__, "qbreaker.")]
)


def _fresh(code: str, env: Mapping[str, str] | None = None) -> str:
    """What goes wrong running ``code`` in a fresh interpreter ('' if nothing).
    -I: neither the working directory nor PYTHON* variables on the path, so
    the installed package is the one imported."""
    try:
        result = subprocess.run(
            [sys.executable, "-I", "-W", "error", "-c", code],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return f"{code!r} hung for 120 s"
    return "" if result.returncode == 0 else result.stderr


@pytest.fixture(scope="module")
def failures() -> dict[str, str]:
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1)) as pool:
        return dict(zip(MODULES, pool.map(_fresh, [f"import {m}" for m in MODULES])))


def test_the_walk_finds_the_package() -> None:
    assert {"qbreaker", "qbreaker.shared", "qbreaker.compat.pybreaker"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_imports_alone(module: str, failures: dict[str, str]) -> None:
    assert not failures[module], failures[module]


@pytest.mark.c_extension
def test_a_plain_import_gives_the_compiled_core() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QBREAKER_")}
    probe = "import qbreaker; assert qbreaker.IMPLEMENTATION == 'cython'"
    failure = _fresh(probe, env)
    assert not failure, failure
