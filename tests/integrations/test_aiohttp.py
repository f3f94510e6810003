"""qbreaker.integrations.aiohttp against real servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Awaitable
from typing import Any, Callable

import pytest

from qbreaker import BreakerGroup, CircuitOpenError, State

from ..helpers import Impl
from .servers import Backend, closed_port

aiohttp = pytest.importorskip(
    "aiohttp", minversion="3.12", reason="the aiohttp extra (3.12+) is not installed"
)

from qbreaker.integrations.aiohttp import BreakerMiddleware, CircuitOpen  # noqa: E402

MAX_FAILURES = 3


def _group(impl: Impl, **settings: Any) -> BreakerGroup:
    settings.setdefault("max_failures", MAX_FAILURES)
    settings.setdefault("reset_timeout", 30)
    return BreakerGroup(_breaker_class=impl.Breaker, **settings)


def _run(
    impl: Impl,
    body: Callable[[aiohttp.ClientSession], Awaitable[None]],
    group: BreakerGroup | None = None,
    timeout: float = 5,
    **kwargs: Any,
) -> BreakerMiddleware:
    middleware = BreakerMiddleware(
        group=_group(impl) if group is None else group, **kwargs
    )

    async def main() -> None:
        async with aiohttp.ClientSession(
            middlewares=(middleware,), timeout=aiohttp.ClientTimeout(total=timeout)
        ) as session:
            await body(session)

    asyncio.run(main())
    return middleware


async def _get(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> int:
    async with session.get(url, **kwargs) as response:
        await response.read()
        return int(response.status)


def _breaker(middleware: BreakerMiddleware, backend: Backend) -> Any:
    return middleware.group[f"http://127.0.0.1:{backend.port}"]


def test_a_failing_backend_is_reached_max_failures_times_then_rejected(
    impl: Impl, server: Backend, other_server: Backend
) -> None:
    server.status = 503
    caught: list[BaseException] = []

    async def body(session: aiohttp.ClientSession) -> None:
        for _ in range(MAX_FAILURES):
            assert await _get(session, server.url + "/x") == 503
        try:
            await _get(session, server.url + "/x")
        except aiohttp.ClientError as exc:
            caught.append(exc)
        assert await _get(session, other_server.url) == 200

    middleware = _run(impl, body)
    assert server.hits == MAX_FAILURES
    [error] = caught
    assert isinstance(error, CircuitOpen) and isinstance(error, CircuitOpenError)
    assert not isinstance(error, aiohttp.ClientConnectionError)
    assert str(error.request.url) == server.url + "/x"
    assert error.state is State.OPEN and 29 < error.retry_after <= 30
    copied = pickle.loads(pickle.dumps(error))
    assert type(copied) is CircuitOpen and copied.retry_after == error.retry_after
    assert copied.request is None
    assert _breaker(middleware, other_server).state is State.CLOSED


def test_404_never_trips(impl: Impl, server: Backend) -> None:
    server.status = 404

    async def body(session: aiohttp.ClientSession) -> None:
        for _ in range(3 * MAX_FAILURES):
            assert await _get(session, server.url) == 404

    assert _breaker(_run(impl, body), server).state is State.CLOSED


def test_refused_and_read_timeout_are_failures(impl: Impl, server: Backend) -> None:
    server.hang = 5
    refused = f"http://127.0.0.1:{closed_port()}/"
    read_timeout = aiohttp.ClientTimeout(sock_read=0.2)

    async def body(session: aiohttp.ClientSession) -> None:
        for _ in range(MAX_FAILURES):
            with pytest.raises(aiohttp.ClientConnectorError):
                await _get(session, refused)
            with pytest.raises(aiohttp.ServerTimeoutError):
                await _get(session, server.url, timeout=read_timeout)
        for url in (refused, server.url):
            with pytest.raises(CircuitOpen):
                await _get(session, url)

    _run(impl, body)
    assert server.hits == MAX_FAILURES


def test_the_total_timeout_is_a_failure(impl: Impl, server: Backend) -> None:
    # aiohttp enforces it by cancelling the request inside the middleware.
    server.hang = 5

    async def body(session: aiohttp.ClientSession) -> None:
        for _ in range(MAX_FAILURES):
            with pytest.raises(asyncio.TimeoutError):
                await _get(session, server.url)
        with pytest.raises(CircuitOpen):
            await _get(session, server.url)

    _run(impl, body, timeout=0.2)


def test_the_total_timeout_is_a_failure_when_it_cancels(impl: Impl) -> None:
    # Where the total timeout fires while a lower layer awaits (a connect, a
    # DNS lookup, another middleware), aiohttp cancels the task: the
    # middleware sees a CancelledError, which it must still count.
    async def slow(
        request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        await asyncio.sleep(5)
        raise AssertionError("the total timeout did not fire")

    middleware = BreakerMiddleware(group=_group(impl))
    url = f"http://127.0.0.1:{closed_port()}/"

    async def main() -> None:
        async with aiohttp.ClientSession(
            middlewares=(middleware, slow), timeout=aiohttp.ClientTimeout(total=0.1)
        ) as session:
            for _ in range(MAX_FAILURES):
                with pytest.raises(asyncio.TimeoutError):
                    await _get(session, url)
            with pytest.raises(CircuitOpen):
                await _get(session, url)

    asyncio.run(main())


def test_cancellation_by_the_caller_is_neutral(impl: Impl, server: Backend) -> None:
    server.hang = 5
    group = _group(impl, max_failures=1)

    async def body(session: aiohttp.ClientSession) -> None:
        for sent in range(1, 4):
            task = asyncio.ensure_future(_get(session, server.url))
            await server.until_hits(sent)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    middleware = _run(impl, body, group=group)
    breaker = _breaker(middleware, server)
    assert breaker.state is State.CLOSED
    assert breaker.totals().failures == 0 and breaker.totals().neutral == 3


def test_other_errors_are_neutral(impl: Impl, server: Backend) -> None:
    # aiohttp checks URLs before the middlewares run; an error raised below
    # this middleware that is not a transient one stands in for the rest.
    async def refuse(
        request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        raise aiohttp.InvalidURL(request.url)

    middleware = BreakerMiddleware(group=_group(impl))

    async def main() -> None:
        async with aiohttp.ClientSession(middlewares=(middleware, refuse)) as session:
            for _ in range(2 * MAX_FAILURES):
                with pytest.raises(aiohttp.InvalidURL):
                    await _get(session, server.url)

    asyncio.run(main())
    breaker = _breaker(middleware, server)
    assert breaker.state is State.CLOSED
    assert breaker.totals().neutral == 2 * MAX_FAILURES


def test_a_stream_is_classified_on_its_status(impl: Impl, server: Backend) -> None:
    server.truncate = True

    async def body(session: aiohttp.ClientSession) -> None:
        for _ in range(MAX_FAILURES + 1):
            with pytest.raises(aiohttp.ClientPayloadError):
                await _get(session, server.url)

    middleware = _run(impl, body)
    assert _breaker(middleware, server).totals().successes == MAX_FAILURES + 1


def test_body_errors_count_with_count_body_errors(impl: Impl, server: Backend) -> None:
    server.truncate = True

    async def body(session: aiohttp.ClientSession) -> None:
        for _ in range(MAX_FAILURES):
            with pytest.raises(aiohttp.ClientPayloadError):
                await _get(session, server.url)
        with pytest.raises(CircuitOpen):
            await _get(session, server.url)

    _run(impl, body, count_body_errors=True)


def test_retry_after_opens_when_enabled(impl: Impl, server: Backend) -> None:
    server.status = 429
    server.headers = {"Retry-After": "20"}
    caught: list[CircuitOpen] = []

    async def body(session: aiohttp.ClientSession) -> None:
        assert await _get(session, server.url) == 429
        with pytest.raises(CircuitOpen) as info:
            await _get(session, server.url)
        caught.append(info.value)

    _run(impl, body, open_on_retry_after=True)
    assert 19 < caught[0].retry_after <= 20
    assert server.hits == 1


def test_each_middleware_has_its_own_default_group() -> None:
    assert BreakerMiddleware().group is not BreakerMiddleware().group
    with pytest.raises(TypeError, match="count_body_errors"):
        BreakerMiddleware(count_body_errors="yes")  # type: ignore[arg-type]
