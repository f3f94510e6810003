"""The protected functions, the loop size and the one way a scenario is timed."""

from __future__ import annotations

import asyncio
import types
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from pytest_benchmark.fixture import BenchmarkFixture

# Calls per timed round (aio-libs style): one call is too short to time, and
# the report divides by this to give ns per protected call.
LOOPS = 100
# Rounds for scenarios that must restore state before every round (pedantic
# mode, where pytest-benchmark does no calibration of its own).
SETUP_ROUNDS = 1000

# One group per scenario; every group holds its own baselines. New forms of a
# scenario (with, decorator, call(), threads) join its group as new subjects.
CLOSED = "closed"
CLOSED_ASYNC = "closed-async"
OPEN_REJECT = "open-reject"
HALF_OPEN = "half-open"
FAILURE_TRIP = "failure-trip"


@dataclass(frozen=True)
class Impl:
    """One qbreaker core, through its public class."""

    name: str
    Breaker: Callable[..., Any]

    def __str__(self) -> str:
        return self.name


def work() -> None:
    """The protected function: a plain Python call that does nothing."""


async def awork() -> None:
    """The protected coroutine function."""


F = TypeVar("F", bound=Callable[..., Any])


def fresh(fn: F) -> F:
    """``fn`` with a code object of its own.

    CPython 3.11+ specialises bytecode per code object: subjects sharing one
    loop would share its inline caches, and each would start by undoing the
    previous subject's specialisation. A real call site sees one type.
    """
    code = fn.__code__.replace()
    copy = types.FunctionType(
        code, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__
    )
    return copy  # type: ignore[return-value]


def pair_loop(b: Any) -> Callable[[], None]:
    """``allow()`` + ``record_success()`` around ``work()``, LOOPS times."""

    def run() -> None:
        for _ in range(LOOPS):
            if b.allow():
                work()
                b.record_success()

    return fresh(run)


def ticket_loop(b: Any) -> Callable[[], None]:
    """``acquire()`` + ``release(t, True)`` around ``work()``, LOOPS times."""

    def run() -> None:
        for _ in range(LOOPS):
            t = b.acquire()
            if t:
                work()
                b.release(t, True)

    return fresh(run)


def empty_loop() -> None:
    """The loop alone: the reference where no call is made (rejections)."""
    for _ in range(LOOPS):
        pass


def bare_loop() -> None:
    for _ in range(LOOPS):
        work()


async def bare_await() -> None:
    for _ in range(LOOPS):
        await awork()


def measure(
    benchmark: BenchmarkFixture,
    group: str,
    subject: str,
    fn: Callable[[], Any],
    setup: Callable[[], Any] | None = None,
) -> None:
    """Time ``fn`` (one round of LOOPS calls) under ``group``.

    With ``setup``, every round starts from the state ``setup`` restores, so
    every subject of that group (baselines too) goes through the same pedantic
    path and pays the same timer overhead.
    """
    benchmark.group = group
    benchmark.extra_info["subject"] = subject
    benchmark.extra_info["loops"] = LOOPS
    if setup is None:
        benchmark(fn)
    else:
        # Honour a larger --benchmark-min-rounds (pytest-benchmark keeps it
        # on the fixture; pedantic mode ignores it otherwise).
        rounds = max(SETUP_ROUNDS, getattr(benchmark, "_min_rounds", 0))
        benchmark.pedantic(fn, setup=setup, rounds=rounds, warmup_rounds=10)


def in_loop(
    loop: asyncio.AbstractEventLoop, coro_fn: Callable[[], Any]
) -> Callable[[], Any]:
    """A sync callable running one round of ``coro_fn`` on ``loop``.

    The event loop's per-round cost is in every subject, bare await included,
    so it cancels out of the overheads.
    """
    return fresh(lambda: loop.run_until_complete(coro_fn()))
