"""Open state: the non-raising rejection, ``allow()`` returning False.

Raising forms (``call()``, decorator, the peers' errors) will join this group;
DESIGN.md measured a raise-and-catch at about 14x a False return.
"""

from __future__ import annotations

from typing import Any

from pytest_benchmark.fixture import BenchmarkFixture

from _common import LOOPS, OPEN_REJECT, Impl, bare_loop, empty_loop, measure, pair_loop
from qbreaker import State


def test_bare(benchmark: BenchmarkFixture) -> None:
    measure(benchmark, OPEN_REJECT, "bare f()", bare_loop)


def test_empty(benchmark: BenchmarkFixture) -> None:
    # A rejection calls nothing: its overhead is measured from the loop alone.
    measure(benchmark, OPEN_REJECT, "empty loop", empty_loop)


def test_floor(benchmark: BenchmarkFixture, floor_reject: Any) -> None:
    measure(benchmark, OPEN_REJECT, "floor allow()->False", pair_loop(floor_reject))


def test_open(benchmark: BenchmarkFixture, impl: Impl) -> None:
    # The closed scenario's loop: only the answer of allow() differs. An
    # hour's reset timeout keeps it open for the whole run.
    b = impl.Breaker(max_failures=1, reset_timeout=3600)
    b.record_failure()
    assert b.state is State.OPEN
    measure(benchmark, OPEN_REJECT, f"{impl} allow()->False", pair_loop(b))
    assert b.state is State.OPEN and b.totals().rejected >= LOOPS
