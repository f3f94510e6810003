"""One suite, run on both cores: every test taking ``impl`` runs as [c] and [py].

``--no-c-extensions`` deselects the compiled runs (for a pure-Python build):
every test marked ``c_extension``, and every test using ``core_c``, whose one
parameter carries that mark. Without it a missing compiled core is an error,
never a skip. Fixtures only: the plain helpers are in helpers.py.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from .helpers import TWIN, FakeClock, Impl, compiled, compiled_core
from .redis_server import Backend, redis_server


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


@pytest.fixture(
    scope="session",
    params=[pytest.param("c", marks=pytest.mark.c_extension), "py"],
)
def impl(request: pytest.FixtureRequest) -> Impl:
    return compiled() if request.param == "c" else TWIN


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(
    scope="session",
    params=[pytest.param("c", marks=pytest.mark.c_extension)],
)
def core_c() -> ModuleType:
    """The compiled core module. The one parameter carries the compiled-only
    mark, so every test that uses it is deselected by --no-c-extensions."""
    return compiled_core()


@pytest.fixture(scope="session")
def redis_backend() -> Iterator[Backend]:
    """One real redis-server on 127.0.0.1 for the session (fakeredis, with the
    reason, only if it cannot start): see tests/redis_server.py."""
    yield from redis_server()
