"""The loops the benchmark times, written once.

Each builder returns a fresh function (see ``subjects.fresh``) that performs
``loops`` operations. The breaker is reached the way a caller reaches it,
attribute lookup included: ``b.allow()``, not a pre-bound ``allow()``.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Callable

from .subjects import awork, drive, fresh, work

__all__ = (
    "async_with_loop",
    "bare_await",
    "bare_loop",
    "call_async_loop",
    "call_loop",
    "empty_loop",
    "failure_loop",
    "pair_await",
    "pair_loop",
    "raise_call_loop",
    "raise_with_loop",
    "ticket_loop",
    "with_loop",
    "wrapped_await",
    "wrapped_loop",
)


def bare_loop(loops: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(loops):
            work()

    return fresh(run)


def empty_loop(loops: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(loops):
            pass

    return fresh(run)


def pair_loop(b: Any, loops: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(loops):
            if b.allow():
                work()
                b.record_success()

    return fresh(run)


def failure_loop(b: Any, loops: int) -> Callable[[], None]:
    # The protected function does not raise: a raise-and-catch would swamp
    # the breaker's own cost (raising belongs to the open-raise scenario).
    def run() -> None:
        for _ in range(loops):
            if b.allow():
                work()
                b.record_failure()

    return fresh(run)


def ticket_loop(b: Any, loops: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(loops):
            t = b.acquire()
            if t:
                work()
                b.release(t, True)

    return fresh(run)


def with_loop(cm: Any, loops: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(loops):
            with cm:
                work()

    return fresh(run)


def call_loop(b: Any, loops: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(loops):
            b.call(work)

    return fresh(run)


def wrapped_loop(g: Callable[[], Any], loops: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(loops):
            g()

    return fresh(run)


def raise_with_loop(
    cm: Any, error: type[BaseException], loops: int
) -> Callable[[], None]:
    def run() -> None:
        for _ in range(loops):
            try:
                with cm:
                    work()
            except error:
                pass

    return fresh(run)


def raise_call_loop(
    call: Callable[[], Any], error: type[BaseException], loops: int
) -> Callable[[], None]:
    def run() -> None:
        for _ in range(loops):
            try:
                call()
            except error:
                pass

    return fresh(run)


def bare_await(loops: int) -> Callable[[], None]:
    async def run() -> None:
        for _ in range(loops):
            await awork()

    return drive(fresh(run))


def pair_await(b: Any, loops: int) -> Callable[[], None]:
    async def run() -> None:
        for _ in range(loops):
            if b.allow():
                await awork()
                b.record_success()

    return drive(fresh(run))


def wrapped_await(g: Callable[[], Awaitable[Any]], loops: int) -> Callable[[], None]:
    async def run() -> None:
        for _ in range(loops):
            await g()

    return drive(fresh(run))


def call_async_loop(b: Any, loops: int) -> Callable[[], None]:
    async def run() -> None:
        for _ in range(loops):
            await b.call_async(awork)

    return drive(fresh(run))


def async_with_loop(cm: Any, loops: int) -> Callable[[], None]:
    async def run() -> None:
        for _ in range(loops):
            async with cm:
                await awork()

    return drive(fresh(run))
