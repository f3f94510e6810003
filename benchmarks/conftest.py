"""Fixtures shared by every benchmark: the implementations and the baselines.

Every scenario runs the same loop of ``_common.LOOPS`` calls over:

- ``bare``: the protected function alone, what a call costs unprotected
  (``empty loop`` where the scenario calls nothing);
- ``floor``: the same loop around ``_floor.Floor``, two Python-to-C calls
  that do nothing: the least any compiled breaker can cost;
- ``qbreaker-c`` / ``qbreaker-py``: the public class on the compiled core and
  the pure-Python twin (``PyCircuitBreaker``);
- the peers, each skipped if not installed (``pip install -e .[bench]``;
  the floor also needs Cython and a C compiler).

Files are named ``bench_*.py`` so the default test run never collects them;
the hook below collects them when ``benchmarks/`` is named on the command line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import build_floor
import qbreaker
from _common import Impl


def pytest_collect_file(
    file_path: Path, parent: pytest.Collector
) -> pytest.Module | None:
    # A file named on the command line is collected by pytest itself already.
    if (
        file_path.suffix == ".py"
        and file_path.name.startswith("bench_")
        and not parent.session.isinitpath(file_path)
    ):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def _compiled_class() -> type:
    # A benchmark of "the compiled core" that silently measured the twin
    # would be worse than none: refuse to run instead.
    try:
        from qbreaker import _core_c
    except ImportError as exc:
        raise pytest.UsageError(
            f"qbreaker._core_c is not importable ({exc}); build it with "
            "`pip install -e .` (Cython and a C compiler needed)"
        ) from exc
    if qbreaker.CircuitBreaker is not _core_c.CircuitBreaker:
        raise pytest.UsageError(
            "qbreaker.CircuitBreaker is not on the compiled core "
            f"(IMPLEMENTATION={qbreaker.IMPLEMENTATION!r}); "
            "unset QBREAKER_NO_EXTENSIONS"
        )
    return qbreaker.CircuitBreaker


IMPLS = (
    Impl("qbreaker-c", _compiled_class()),
    Impl("qbreaker-py", qbreaker.PyCircuitBreaker),
)


@pytest.fixture(params=IMPLS, ids=str)
def impl(request: pytest.FixtureRequest) -> Impl:
    """Each qbreaker core in turn."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def floor_module() -> ModuleType:
    return build_floor.load()


@pytest.fixture
def floor(floor_module: ModuleType) -> Any:
    """A compiled do-nothing breaker that admits every call."""
    return floor_module.Floor()


@pytest.fixture
def floor_reject(floor_module: ModuleType) -> Any:
    """A compiled do-nothing breaker that rejects every call."""
    return floor_module.Floor(admit=False)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A private event loop for the async scenarios."""
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


@pytest.fixture
def pybreaker() -> ModuleType:
    module: ModuleType = pytest.importorskip("pybreaker")
    return module


@pytest.fixture
def circuitbreaker() -> ModuleType:
    module: ModuleType = pytest.importorskip("circuitbreaker")
    return module


@pytest.fixture
def purgatory() -> ModuleType:
    module: ModuleType = pytest.importorskip("purgatory")
    return module


@pytest.fixture
def aiobreaker() -> ModuleType:
    module: ModuleType = pytest.importorskip("aiobreaker")
    return module
