"""qbreaker.integrations.grpc.AioBreakerInterceptor against a real
grpc.server on 127.0.0.1 (tests/integrations/grpc_backend.py), through
grpc.aio channels. Both cores."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

pytest.importorskip(
    "grpc", reason="grpcio is in the grpc extra (no wheel for free-threaded 3.13t)"
)

import grpc  # noqa: E402
import grpc.aio  # noqa: E402

from qbreaker import CircuitOpenError, State  # noqa: E402
from qbreaker.integrations.grpc import (  # noqa: E402
    DEFAULT_FAILURE_CODES,
    AioBreakerInterceptor,
    AioCircuitOpenRpcError,
    BreakerInterceptor,
)

from ..helpers import FakeClock, Impl  # noqa: E402
from .grpc_backend import (  # noqa: E402
    CHANNEL_OPTIONS,
    HANG,
    STREAM_UNARY,
    UNARY_STREAM,
    UNARY_UNARY,
    Backend,
    closed_port,
    make_group,
    serving,
)

Code = grpc.StatusCode
T = TypeVar("T")


@pytest.fixture
def backend() -> Iterator[Backend]:
    with serving() as started:
        yield started


def run(
    target: str,
    interceptor: AioBreakerInterceptor,
    body: Callable[[grpc.aio.Channel], Awaitable[T]],
) -> T:
    """``body(channel)`` on a fresh event loop, with an aio channel to
    ``target`` through ``interceptor``; bounded to 20 s."""

    async def main() -> T:
        async with grpc.aio.insecure_channel(
            target, options=CHANNEL_OPTIONS, interceptors=interceptor.interceptors
        ) as channel:
            return await asyncio.wait_for(body(channel), 20)

    return asyncio.run(main())


@pytest.mark.parametrize("code", sorted(DEFAULT_FAILURE_CODES, key=str), ids=str)
def test_a_failing_backend_is_reached_max_failures_times_then_rejected(
    impl: Impl, clock: FakeClock, backend: Backend, code: Code
) -> None:
    interceptor = AioBreakerInterceptor(
        target=backend.target, group=make_group(impl, clock)
    )
    backend.script = code

    async def body(channel: grpc.aio.Channel) -> Any:
        echo = channel.unary_unary(UNARY_UNARY)
        for _ in range(3):
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await echo(b"x", timeout=5)
            assert failed.value.code() is code
            assert not isinstance(failed.value, CircuitOpenError)
        call = echo(b"x", timeout=5)
        with pytest.raises(CircuitOpenError) as rejected:
            await call
        # The intercepted call reports it as an ordinary failed RPC.
        assert await call.code() is Code.UNAVAILABLE
        assert await call.details() == str(rejected.value)
        return rejected.value

    rejection = run(backend.target, interceptor, body)
    assert isinstance(rejection, grpc.aio.AioRpcError)
    assert isinstance(rejection, AioCircuitOpenRpcError)
    assert rejection.code() is Code.UNAVAILABLE
    assert rejection.retry_after == 30.0
    assert backend.reached == 3
    assert interceptor.group[backend.target].state is State.OPEN


def test_not_found_never_trips(impl: Impl, clock: FakeClock, backend: Backend) -> None:
    interceptor = AioBreakerInterceptor(
        target=backend.target, group=make_group(impl, clock, max_failures=1)
    )
    backend.script = Code.NOT_FOUND

    async def body(channel: grpc.aio.Channel) -> None:
        for _ in range(5):
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await channel.unary_unary(UNARY_UNARY)(b"x", timeout=5)
            assert failed.value.code() is Code.NOT_FOUND

    run(backend.target, interceptor, body)
    breaker = interceptor.group[backend.target]
    assert (breaker.state, breaker.totals().successes) == (State.CLOSED, 5)
    assert backend.reached == 5


def test_a_healthy_backend_answers_and_counts_before_the_await_returns(
    impl: Impl, clock: FakeClock, backend: Backend
) -> None:
    interceptor = AioBreakerInterceptor(
        target=backend.target, group=make_group(impl, clock)
    )
    breaker = interceptor.group[backend.target]

    async def body(channel: grpc.aio.Channel) -> list[tuple[bytes, int]]:
        seen = []
        for _ in range(3):
            response = await channel.unary_unary(UNARY_UNARY)(b"y", timeout=5)
            seen.append((response, breaker.totals().successes))
        return seen

    assert run(backend.target, interceptor, body) == [
        (b"echo:y", 1),
        (b"echo:y", 2),
        (b"echo:y", 3),
    ]


def test_a_healthy_backend_on_another_port_keeps_working(
    impl: Impl, clock: FakeClock, backend: Backend
) -> None:
    group = make_group(impl, clock, max_failures=1)
    backend.script = Code.UNAVAILABLE
    failing = AioBreakerInterceptor(target=backend.target, group=group)

    async def fail(channel: grpc.aio.Channel) -> None:
        with pytest.raises(grpc.aio.AioRpcError):
            await channel.unary_unary(UNARY_UNARY)(b"x", timeout=5)
        with pytest.raises(AioCircuitOpenRpcError):
            await channel.unary_unary(UNARY_UNARY)(b"x", timeout=5)

    run(backend.target, failing, fail)
    with serving() as healthy:
        working = AioBreakerInterceptor(target=healthy.target, group=group)

        async def work(channel: grpc.aio.Channel) -> bytes:
            return bytes(await channel.unary_unary(UNARY_UNARY)(b"y", timeout=5))

        assert run(healthy.target, working, work) == b"echo:y"
        assert healthy.reached == 1
    assert group[backend.target].state is State.OPEN


def test_an_exceeded_deadline_and_a_refused_connection_count_as_failures(
    impl: Impl, clock: FakeClock, backend: Backend
) -> None:
    backend.script = HANG
    interceptor = AioBreakerInterceptor(
        target=backend.target, group=make_group(impl, clock, max_failures=2)
    )

    async def body(channel: grpc.aio.Channel) -> None:
        for _ in range(2):
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await channel.unary_unary(UNARY_UNARY)(b"x", timeout=0.2)
            assert failed.value.code() is Code.DEADLINE_EXCEEDED
        with pytest.raises(AioCircuitOpenRpcError):
            await channel.unary_unary(UNARY_UNARY)(b"x", timeout=0.2)

    run(backend.target, interceptor, body)
    assert backend.reached == 2

    refused = f"127.0.0.1:{closed_port()}"
    interceptor = AioBreakerInterceptor(
        target=refused, group=make_group(impl, clock, max_failures=1)
    )

    async def refuse(channel: grpc.aio.Channel) -> None:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await channel.unary_unary(UNARY_UNARY)(b"x", timeout=5)
        assert failed.value.code() is Code.UNAVAILABLE
        with pytest.raises(AioCircuitOpenRpcError):
            await channel.unary_unary(UNARY_UNARY)(b"x", timeout=5)

    run(refused, interceptor, refuse)


def test_a_cancelled_call_is_neutral(
    impl: Impl, clock: FakeClock, backend: Backend
) -> None:
    backend.script = HANG
    interceptor = AioBreakerInterceptor(
        target=backend.target, group=make_group(impl, clock, max_failures=1)
    )

    async def body(channel: grpc.aio.Channel) -> None:
        task = asyncio.ensure_future(channel.unary_unary(UNARY_UNARY)(b"x", timeout=10))
        for _ in range(2000):  # bounded: the call reaches the backend
            if backend.reached:
                break
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(backend.target, interceptor, body)
    breaker = interceptor.group[backend.target]
    assert backend.reached == 1
    assert breaker.totals().neutral == 1
    assert breaker.state is State.CLOSED


def test_stream_unary_trips_and_rejects(
    impl: Impl, clock: FakeClock, backend: Backend
) -> None:
    interceptor = AioBreakerInterceptor(
        target=backend.target, group=make_group(impl, clock, max_failures=1)
    )

    async def body(channel: grpc.aio.Channel) -> None:
        upload = channel.stream_unary(STREAM_UNARY)
        assert await upload(iter([b"a", b"b"]), timeout=5) == b"got:ab"
        backend.script = Code.UNAVAILABLE
        with pytest.raises(grpc.aio.AioRpcError):
            await upload(iter([b"a"]), timeout=5)
        with pytest.raises(AioCircuitOpenRpcError):
            await upload(iter([b"a"]), timeout=5)

    run(backend.target, interceptor, body)
    assert backend.reached == 2


def test_streaming_responses_are_not_wrapped(
    impl: Impl, clock: FakeClock, backend: Backend
) -> None:
    # Documented: grpc.aio gives a stream's status only to a coroutine.
    interceptor = AioBreakerInterceptor(
        target=backend.target, group=make_group(impl, clock, max_failures=1)
    )
    interceptor.group[backend.target].force_open()

    async def body(channel: grpc.aio.Channel) -> list[bytes]:
        return [m async for m in channel.unary_stream(UNARY_STREAM)(b"x", timeout=5)]

    assert run(backend.target, interceptor, body) == [b"first", b"last"]


def test_pushback_opens_when_enabled(
    impl: Impl, clock: FakeClock, backend: Backend
) -> None:
    interceptor = AioBreakerInterceptor(
        target=backend.target,
        group=make_group(impl, clock, max_failures=100),
        open_on_retry_after=True,
    )
    backend.script = Code.UNAVAILABLE
    backend.trailers = (("grpc-retry-pushback-ms", "2500"),)

    async def body(channel: grpc.aio.Channel) -> float:
        with pytest.raises(grpc.aio.AioRpcError):
            await channel.unary_unary(UNARY_UNARY)(b"x", timeout=5)
        with pytest.raises(AioCircuitOpenRpcError) as rejected:
            await channel.unary_unary(UNARY_UNARY)(b"x", timeout=5)
        return rejected.value.retry_after

    assert run(backend.target, interceptor, body) == 2.5
    assert backend.reached == 1


def test_an_aio_and_a_sync_interceptor_share_a_breaker(
    impl: Impl, clock: FakeClock, backend: Backend
) -> None:
    group = make_group(impl, clock, max_failures=1)
    backend.script = Code.UNAVAILABLE
    channel = grpc.intercept_channel(
        grpc.insecure_channel(backend.target, options=CHANNEL_OPTIONS),
        BreakerInterceptor(target=backend.target, group=group),
    )
    with pytest.raises(grpc.RpcError):
        channel.unary_unary(UNARY_UNARY)(b"x", timeout=5)
    channel.close()

    async def body(channel: grpc.aio.Channel) -> None:
        with pytest.raises(AioCircuitOpenRpcError):
            await channel.unary_unary(UNARY_UNARY)(b"x", timeout=5)

    run(backend.target, AioBreakerInterceptor(target=backend.target, group=group), body)
    assert backend.reached == 1


def test_the_rejection_pickles() -> None:
    import pickle

    rejection = AioCircuitOpenRpcError("a:1", State.OPEN, 2.0)
    copy = pickle.loads(pickle.dumps(rejection))
    assert type(copy) is AioCircuitOpenRpcError
    assert (copy.name, copy.retry_after, copy.code()) == ("a:1", 2.0, Code.UNAVAILABLE)
    assert copy.details() == str(copy) == str(rejection)


def test_key_method_names_a_breaker_per_method(
    impl: Impl, clock: FakeClock, backend: Backend
) -> None:
    interceptor = AioBreakerInterceptor(
        target=backend.target, group=make_group(impl, clock, 1), key="method"
    )

    async def body(channel: grpc.aio.Channel) -> None:
        await channel.unary_unary(UNARY_UNARY)(b"x", timeout=5)
        await channel.stream_unary(STREAM_UNARY)(iter([b"a"]), timeout=5)

    run(backend.target, interceptor, body)
    # grpc.aio passes the method as bytes: the name is text all the same.
    assert sorted(interceptor.group) == sorted(
        [backend.target + UNARY_UNARY, backend.target + STREAM_UNARY]
    )
