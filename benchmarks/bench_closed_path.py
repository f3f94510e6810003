"""Closed state, success path: the protected call every request pays.

Later forms (``with``, decorator, ``call()``) join the same group as new
subjects, so one table compares them all with the baselines and the peers.
"""

from __future__ import annotations

from typing import Any

from pytest_benchmark.fixture import BenchmarkFixture

from _common import CLOSED, LOOPS, Impl, bare_loop, measure, pair_loop, ticket_loop
from qbreaker import State


def test_bare(benchmark: BenchmarkFixture) -> None:
    measure(benchmark, CLOSED, "bare f()", bare_loop)


def test_floor_pair(benchmark: BenchmarkFixture, floor: Any) -> None:
    measure(benchmark, CLOSED, "floor allow+record", pair_loop(floor))


def test_floor_ticket(benchmark: BenchmarkFixture, floor: Any) -> None:
    measure(benchmark, CLOSED, "floor acquire+release", ticket_loop(floor))


def test_pair(benchmark: BenchmarkFixture, impl: Impl) -> None:
    b = impl.Breaker()
    measure(benchmark, CLOSED, f"{impl} allow+record", pair_loop(b))
    assert b.state is State.CLOSED and b.totals().successes >= LOOPS


def test_ticket(benchmark: BenchmarkFixture, impl: Impl) -> None:
    b = impl.Breaker()
    measure(benchmark, CLOSED, f"{impl} acquire+release", ticket_loop(b))
    assert b.state is State.CLOSED and b.totals().successes >= LOOPS


def test_core_pair(benchmark: BenchmarkFixture) -> None:
    # Diagnostic: the compiled class itself, not the public Python subclass.
    # CPython's specialised call of a C method wants the exact type, so the
    # gap between this row and qbreaker-c's is what subclassing costs.
    from qbreaker._core_c import CircuitBreaker as CoreBreaker

    b = CoreBreaker()
    measure(benchmark, CLOSED, "qbreaker-c-core allow+record", pair_loop(b))
    assert b.totals().successes >= LOOPS
