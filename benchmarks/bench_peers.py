"""The peers' closest equivalents, in the same groups as qbreaker's forms.

Each peer keeps its defaults except thresholds, and is skipped if missing.
Settings never trip during a run: every call succeeds.
"""

from __future__ import annotations

import asyncio
from types import ModuleType
from typing import Any, Callable

from pytest_benchmark.fixture import BenchmarkFixture

from _common import CLOSED, CLOSED_ASYNC, LOOPS, awork, fresh, in_loop, measure, work


def call_loop(call: Callable[[Callable[[], None]], Any]) -> Callable[[], None]:
    def run() -> None:
        for _ in range(LOOPS):
            call(work)

    return fresh(run)


def wrapped_loop(g: Callable[[], Any]) -> Callable[[], None]:
    def run() -> None:
        for _ in range(LOOPS):
            g()

    return fresh(run)


def with_loop(cm: Any) -> Callable[[], None]:
    def run() -> None:
        for _ in range(LOOPS):
            with cm:
                work()

    return fresh(run)


def test_pybreaker_call(benchmark: BenchmarkFixture, pybreaker: ModuleType) -> None:
    cb = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60)
    measure(benchmark, CLOSED, "pybreaker call(f)", call_loop(cb.call))


def test_pybreaker_decorator(
    benchmark: BenchmarkFixture, pybreaker: ModuleType
) -> None:
    cb = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60)
    measure(benchmark, CLOSED, "pybreaker @breaker", wrapped_loop(cb(work)))


def test_circuitbreaker_decorator(
    benchmark: BenchmarkFixture, circuitbreaker: ModuleType
) -> None:
    g = circuitbreaker.circuit(failure_threshold=5, recovery_timeout=60)(work)
    measure(benchmark, CLOSED, "circuitbreaker @circuit", wrapped_loop(g))


def test_purgatory_with(benchmark: BenchmarkFixture, purgatory: ModuleType) -> None:
    factory = purgatory.SyncCircuitBreakerFactory(default_threshold=5)
    brk = factory.get_breaker("bench-with")
    measure(benchmark, CLOSED, "purgatory with", with_loop(brk))


def test_purgatory_decorator(
    benchmark: BenchmarkFixture, purgatory: ModuleType
) -> None:
    factory = purgatory.SyncCircuitBreakerFactory(default_threshold=5)
    g = factory("bench-decorator")(work)
    measure(benchmark, CLOSED, "purgatory @factory", wrapped_loop(g))


def test_aiobreaker_call_async(
    benchmark: BenchmarkFixture,
    loop: asyncio.AbstractEventLoop,
    aiobreaker: ModuleType,
) -> None:
    cb = aiobreaker.CircuitBreaker(fail_max=5)

    async def run() -> None:
        for _ in range(LOOPS):
            await cb.call_async(awork)

    # run is defined here, once: its code object is already its own.
    measure(benchmark, CLOSED_ASYNC, "aiobreaker call_async(f)", in_loop(loop, run))
