"""Checked by ``mypy --strict`` in tests/api/test_typing.py, never executed.

Every form keeps the protected function's parameter and return types. A
``# type: ignore[...]`` line marks a call that must NOT type-check: under
--strict an ignore that is not needed is itself an error, so each one proves
that mypy rejects that call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import assert_type

import qbreaker

breaker = qbreaker.CircuitBreaker(5, 60.0, 3, name="typing")
group = qbreaker.BreakerGroup(max_failures=3)


@breaker
def fetch(url: str, timeout: float = 1.0) -> bytes:
    return url.encode()


@breaker
async def fetch_async(url: str) -> dict[str, int]:
    return {url: 1}


@breaker
def lines(path: str) -> Iterator[str]:
    yield path


@breaker
async def events(topic: str) -> AsyncIterator[int]:
    yield len(topic)


def sync_forms() -> None:
    assert_type(fetch("x"), bytes)
    assert_type(fetch("x", timeout=2.0), bytes)
    fetch(1)  # type: ignore[arg-type]
    assert_type(list(lines("p")), list[str])
    assert_type(breaker.call(fetch, "x"), bytes)
    breaker.call(fetch, b"x")  # type: ignore[arg-type]
    with breaker:
        pass
    ticket = breaker.acquire()
    assert_type(ticket, int)
    breaker.release(ticket, True)
    breaker.release(ticket, None)
    assert_type(breaker.allow(), bool)
    assert_type(breaker.state, qbreaker.State)
    assert_type(breaker.metrics(), qbreaker.BreakerSnapshot)
    assert_type(breaker.observe(qbreaker.Metrics(error_rate=0.5)), bool)
    assert_type(group["payments"], qbreaker.CircuitBreaker)
    assert_type(group.allow("payments"), bool)


async def async_forms() -> None:
    assert_type(await fetch_async("x"), dict[str, int])
    await fetch_async(3)  # type: ignore[arg-type]
    assert_type(await breaker.call_async(fetch_async, "x"), dict[str, int])
    async with breaker:
        pass
    async for n in events("t"):
        assert_type(n, int)


def errors() -> None:
    try:
        fetch("x")
    except qbreaker.CircuitOpenError as exc:
        assert_type(exc.retry_after, float)
        assert_type(exc.state, qbreaker.State)
        assert_type(exc.name, str)
