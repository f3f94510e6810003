"""One suite, run on both cores: every test taking ``impl`` runs as [c] and [py].

``--no-c-extensions`` deselects the compiled runs (for a pure-Python build).
Without it a missing compiled core is an error, never a skip.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from qbreaker._impl import twin as _core_py


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--c-extensions",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the tests of the compiled core (default: yes)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[Any]) -> None:
    if config.getoption("--c-extensions"):
        return
    keep, drop = [], []
    for item in items:
        (drop if item.get_closest_marker("c_extension") else keep).append(item)
    config.hook.pytest_deselected(items=drop)
    items[:] = keep


@pytest.fixture(scope="session", autouse=True)
def private_segment_directory() -> Iterator[None]:
    """Every shared segment the suite makes lives in a private directory,
    removed at the end: the suite neither sees the user's own segments in
    /dev/shm nor leaves its own there. Subprocesses inherit it; tests of
    the default directory set QBREAKER_SHM_DIR themselves."""
    if os.environ.get("QBREAKER_SHM_DIR") or not os.path.isdir("/dev/shm"):
        yield
        return
    where = tempfile.mkdtemp(prefix="qbreaker-tests-", dir="/dev/shm")
    os.environ["QBREAKER_SHM_DIR"] = where
    try:
        yield
    finally:
        del os.environ["QBREAKER_SHM_DIR"]
        shutil.rmtree(where, ignore_errors=True)


@dataclass(frozen=True)
class Impl:
    """One core, and the public breaker class built on it."""

    name: str
    core: Any
    Breaker: type

    def __str__(self) -> str:
        return self.name


def _compiled() -> Impl:
    core_c = importlib.import_module("qbreaker._core_c")

    return Impl("c", core_c, core_c.CircuitBreaker)


_PY = Impl("py", _core_py, _core_py.CircuitBreaker)


@pytest.fixture(
    scope="session",
    params=[pytest.param("c", marks=pytest.mark.c_extension), "py"],
)
def impl(request: pytest.FixtureRequest) -> Impl:
    return _compiled() if request.param == "c" else _PY


class FakeClock:
    """A clock that only moves when told to; nothing in the suite sleeps."""

    def __init__(self, start: float = 1000.0) -> None:
        # Whole milliseconds, so repeated advances never drift.
        self.ms = round(start * 1000)

    def __call__(self) -> float:
        return self.ms / 1000

    def advance(self, seconds: float) -> None:
        self.ms += round(seconds * 1000)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
