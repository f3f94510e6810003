"""Closed state, success path, around an ``await``.

qbreaker's async forms will join this group; today the pair is the form an
async caller uses. The round runs on one event loop, whose per-round cost is
in every subject and cancels out against ``bare await``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, Callable

from pytest_benchmark.fixture import BenchmarkFixture

from _common import (
    CLOSED_ASYNC,
    LOOPS,
    Impl,
    awork,
    bare_await,
    fresh,
    in_loop,
    measure,
)


def pair_await(b: Any) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        for _ in range(LOOPS):
            if b.allow():
                await awork()
                b.record_success()

    return fresh(run)


def test_bare(benchmark: BenchmarkFixture, loop: asyncio.AbstractEventLoop) -> None:
    measure(benchmark, CLOSED_ASYNC, "bare await f()", in_loop(loop, bare_await))


def test_floor(
    benchmark: BenchmarkFixture, loop: asyncio.AbstractEventLoop, floor: Any
) -> None:
    run = in_loop(loop, pair_await(floor))
    measure(benchmark, CLOSED_ASYNC, "floor allow+record", run)


def test_pair(
    benchmark: BenchmarkFixture, loop: asyncio.AbstractEventLoop, impl: Impl
) -> None:
    b = impl.Breaker()
    measure(
        benchmark, CLOSED_ASYNC, f"{impl} allow+record", in_loop(loop, pair_await(b))
    )
    assert b.totals().successes >= LOOPS
