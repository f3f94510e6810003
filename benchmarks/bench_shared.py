"""Shared mode: the allow()+record_success() pair on a host-wide breaker.

Subjects: ``qbreaker-c allow+record``, the compiled breaker with its cell in
the process, and ``qbreaker-c shared allow+record``, the same class with
``shared=<name>``, its cell in a ``/dev/shm`` segment (the target is at
most 1.2x the in-process pair). Both run the closed scenario's loop around
the same protected function, so the two figures compare directly; ``bare
f()`` is the reference. The segment gets a fresh name per run and is
unlinked afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any, Callable

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from _common import measure
from qbreaker import State
from qbreaker import shared as shared_mod
from qbreaker._cli.bench.scenarios import LOOPS
from qbreaker._cli.bench.subjects import Unavailable, compiled_class, fresh, work
from qbreaker._impl import segment_format as _fmt

GROUP = "shared"

pytestmark = pytest.mark.skipif(
    not _fmt.supported(), reason="shared breakers need POSIX shared memory (Linux)"
)


def _pair_loop(b: Any, loops: int) -> Callable[[], None]:
    # The closed scenario's pair loop (qbreaker._cli.bench.loops), as a caller
    # writes it: attribute lookups included.
    def run() -> None:
        for _ in range(loops):
            if b.allow():
                work()
                b.record_success()

    return fresh(run)


def _bare_loop(loops: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(loops):
            work()

    return fresh(run)


@pytest.fixture
def segment_name() -> Iterator[str]:
    name = f"bench-{uuid.uuid4().hex[:12]}"
    yield name
    shared_mod.unlink(name)


def _breaker(shared: str | None) -> Any:
    try:
        cls = compiled_class()
    except Unavailable as exc:
        pytest.skip(str(exc))
    return cls(shared=shared)


def test_bare(benchmark: BenchmarkFixture) -> None:
    measure(benchmark, GROUP, "bare f()", _bare_loop(LOOPS))


@pytest.mark.parametrize("mode", ["in-process", "shared"])
def test_pair(benchmark: BenchmarkFixture, segment_name: str, mode: str) -> None:
    b = _breaker(segment_name if mode == "shared" else None)
    subject = "qbreaker-c allow+record"
    if mode == "shared":
        subject = "qbreaker-c shared allow+record"
    measure(benchmark, GROUP, subject, _pair_loop(b, LOOPS))
    assert b.state is State.CLOSED and b.totals().successes >= LOOPS, (
        "the breaker left the closed state or counted no success"
    )
