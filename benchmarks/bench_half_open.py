"""Half-open: probes admitted and released as successes.

The breaker allows 255 probes at once and needs 255 successes to close, so a
round of 100 probes never closes it; before every round ``setup`` restores a
fresh half-open generation (outside the timing).
"""

from __future__ import annotations

import time
from typing import Any, Callable

from pytest_benchmark.fixture import BenchmarkFixture

from _common import HALF_OPEN, Impl, bare_loop, measure, ticket_loop
from qbreaker import State

PROBES = 255  # the widest the packed word allows (INFLIGHT_MAX, HSUCC_MAX)


def half_open(b: Any) -> Callable[[], None]:
    def setup() -> None:
        b.reset()
        b.record_failure()
        # reset_timeout is the 1 ms minimum: wait it out, then move on.
        while b.state is not State.HALF_OPEN:
            time.sleep(0.001)
            b.renormalize()

    return setup


def test_bare(benchmark: BenchmarkFixture) -> None:
    measure(benchmark, HALF_OPEN, "bare f()", bare_loop, setup=lambda: None)


def test_floor(benchmark: BenchmarkFixture, floor: Any) -> None:
    run = ticket_loop(floor)
    measure(benchmark, HALF_OPEN, "floor acquire+release", run, setup=lambda: None)


def test_probes(benchmark: BenchmarkFixture, impl: Impl) -> None:
    b = impl.Breaker(
        max_failures=1,
        reset_timeout=0.001,
        half_open_max=PROBES,
        success_threshold=PROBES,
        half_open_timeout=3600,
    )
    run = ticket_loop(b)
    measure(benchmark, HALF_OPEN, f"{impl} acquire+release", run, setup=half_open(b))
    assert b.state is State.HALF_OPEN
