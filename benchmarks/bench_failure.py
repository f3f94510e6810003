"""Closed state, failure path: consecutive failures up to the trip.

``max_failures`` equals the loop, so every round is 99 counted failures and
one trip (one clock read, one transition); ``setup`` closes it again.
"""

from __future__ import annotations

from typing import Any, Callable

from pytest_benchmark.fixture import BenchmarkFixture

from _common import FAILURE_TRIP, LOOPS, Impl, bare_loop, fresh, measure, work
from qbreaker import State


def failure_loop(b: Any) -> Callable[[], None]:
    # The protected function does not raise: a raise-and-catch would swamp
    # the breaker's own cost (that scenario belongs with the call() forms).
    def run() -> None:
        for _ in range(LOOPS):
            if b.allow():
                work()
                b.record_failure()

    return fresh(run)


def test_bare(benchmark: BenchmarkFixture) -> None:
    measure(benchmark, FAILURE_TRIP, "bare f()", bare_loop, setup=lambda: None)


def test_floor(benchmark: BenchmarkFixture, floor: Any) -> None:
    run = failure_loop(floor)
    measure(
        benchmark, FAILURE_TRIP, "floor allow+record_failure", run, setup=lambda: None
    )


def test_trip(benchmark: BenchmarkFixture, impl: Impl) -> None:
    b = impl.Breaker(max_failures=LOOPS, reset_timeout=3600)
    run = failure_loop(b)
    measure(benchmark, FAILURE_TRIP, f"{impl} allow+record_failure", run, setup=b.reset)
    assert b.state is State.OPEN and b.totals().transitions >= 2
