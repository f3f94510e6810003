"""qbreaker.integrations.grpc.BreakerInterceptor against a real grpc.server
on 127.0.0.1 (tests/integrations/grpc_backend.py): blocking stubs,
.with_call(), .future() and streams. Both cores."""

from __future__ import annotations

import pickle
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip(
    "grpc", reason="grpcio is in the grpc extra (no wheel for free-threaded 3.13t)"
)

import grpc  # noqa: E402

from qbreaker import CircuitOpenError, State  # noqa: E402
from qbreaker.integrations.grpc import (  # noqa: E402
    DEFAULT_FAILURE_CODES,
    BreakerInterceptor,
    CircuitOpenRpcError,
)

from ..helpers import FakeClock, Impl  # noqa: E402
from .grpc_backend import (  # noqa: E402
    CHANNEL_OPTIONS,
    HANG,
    STREAM_STREAM,
    STREAM_UNARY,
    UNARY_STREAM,
    UNARY_UNARY,
    Backend,
    closed_port,
    make_group,
    serving,
)

Code = grpc.StatusCode
SUCCESS_CODES = sorted(
    set(Code) - DEFAULT_FAILURE_CODES - {Code.OK, Code.CANCELLED}, key=str
)


@pytest.fixture
def backend() -> Iterator[Backend]:
    with serving() as started:
        yield started


@pytest.fixture
def channels() -> Iterator[Callable[..., grpc.Channel]]:
    """Intercepted channels to a target, all closed at the end."""
    opened: list[grpc.Channel] = []

    def open_channel(target: str, interceptor: BreakerInterceptor) -> grpc.Channel:
        raw = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
        opened.append(raw)
        return grpc.intercept_channel(raw, interceptor)

    yield open_channel
    for channel in opened:
        channel.close()


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """A .future() call's outcome is counted by grpc's done callback, an
    instant after the future resolves: wait for it (at most 5 s)."""
    deadline = time.monotonic() + 5.0
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.001)


def settled(breaker: Any) -> int:
    t = breaker.totals()
    return int(t.successes + t.failures + t.neutral)


@pytest.mark.parametrize("code", sorted(DEFAULT_FAILURE_CODES, key=str), ids=str)
def test_a_failing_backend_is_reached_max_failures_times_then_rejected(
    impl: Impl, clock: FakeClock, backend: Backend, channels: Any, code: Code
) -> None:
    interceptor = BreakerInterceptor(
        target=backend.target, group=make_group(impl, clock)
    )
    echo = channels(backend.target, interceptor).unary_unary(UNARY_UNARY)
    backend.script = code
    for _ in range(3):
        with pytest.raises(grpc.RpcError) as failed:
            echo(b"x", timeout=5)
        assert failed.value.code() is code
        assert not isinstance(failed.value, CircuitOpenError)
    with pytest.raises(CircuitOpenError) as rejected:
        echo(b"x", timeout=5)
    rejection = rejected.value
    assert isinstance(rejection, grpc.RpcError)
    assert isinstance(rejection, CircuitOpenRpcError)
    assert rejection.code() is Code.UNAVAILABLE
    assert rejection.details() == str(rejection)
    assert rejection.retry_after == 30.0
    assert backend.reached == 3
    breaker = interceptor.group[backend.target]
    assert breaker.state is State.OPEN
    assert breaker.totals().rejected == 1


def test_with_call_and_a_healthy_backend(
    impl: Impl, clock: FakeClock, backend: Backend, channels: Any
) -> None:
    interceptor = BreakerInterceptor(
        target=backend.target, group=make_group(impl, clock)
    )
    echo = channels(backend.target, interceptor).unary_unary(UNARY_UNARY)
    assert echo(b"a", timeout=5) == b"echo:a"
    response, call = echo.with_call(b"b", timeout=5)
    assert (response, call.code()) == (b"echo:b", Code.OK)
    assert interceptor.group[backend.target].totals().successes == 2
    interceptor.group[backend.target].force_open()
    with pytest.raises(CircuitOpenRpcError):
        echo.with_call(b"c", timeout=5)
    assert backend.reached == 2


def test_future_calls_see_the_rejection_as_a_failed_rpc(
    impl: Impl, clock: FakeClock, backend: Backend, channels: Any
) -> None:
    interceptor = BreakerInterceptor(
        target=backend.target, group=make_group(impl, clock)
    )
    echo = channels(backend.target, interceptor).unary_unary(UNARY_UNARY)
    breaker = interceptor.group[backend.target]
    backend.script = Code.UNAVAILABLE
    for attempt in range(1, 4):
        future = echo.future(b"x", timeout=5)
        assert future.exception(timeout=5).code() is Code.UNAVAILABLE
        wait_until(lambda n=attempt: settled(breaker) == n, "the failure")
    future = echo.future(b"x", timeout=5)
    assert future.done()  # completed at once, without reaching the backend
    rejection = future.exception()
    assert isinstance(rejection, CircuitOpenError)
    assert rejection.code() is Code.UNAVAILABLE
    # The future is the failed call: grpc would make a raising interceptor's
    # error an INTERNAL one.
    assert future.code() is Code.UNAVAILABLE
    assert future.details() == str(rejection)
    with pytest.raises(CircuitOpenRpcError):
        future.result()
    seen: list[Any] = []
    future.add_done_callback(seen.append)
    assert seen == [future]
    assert backend.reached == 3


@pytest.mark.parametrize("code", SUCCESS_CODES, ids=str)
def test_codes_the_server_answers_with_never_trip(
    impl: Impl, clock: FakeClock, backend: Backend, channels: Any, code: Code
) -> None:
    interceptor = BreakerInterceptor(
        target=backend.target, group=make_group(impl, clock)
    )
    echo = channels(backend.target, interceptor).unary_unary(UNARY_UNARY)
    backend.script = code
    for _ in range(6):
        with pytest.raises(grpc.RpcError) as failed:
            echo(b"x", timeout=5)
        assert failed.value.code() is code
    breaker = interceptor.group[backend.target]
    assert breaker.state is State.CLOSED
    assert breaker.totals().successes == 6
    assert backend.reached == 6


def test_a_healthy_backend_on_another_port_keeps_working(
    impl: Impl, clock: FakeClock, backend: Backend, channels: Any
) -> None:
    group = make_group(impl, clock)
    failing = channels(
        backend.target, BreakerInterceptor(target=backend.target, group=group)
    ).unary_unary(UNARY_UNARY)
    backend.script = Code.UNAVAILABLE
    with serving() as healthy:
        working = channels(
            healthy.target, BreakerInterceptor(target=healthy.target, group=group)
        ).unary_unary(UNARY_UNARY)
        for _ in range(3):
            with pytest.raises(grpc.RpcError):
                failing(b"x", timeout=5)
        with pytest.raises(CircuitOpenRpcError):
            failing(b"x", timeout=5)
        assert [working(b"y", timeout=5) for _ in range(3)] == [b"echo:y"] * 3
        assert healthy.reached == 3
    assert group[backend.target].state is State.OPEN
    assert group[healthy.target].state is State.CLOSED


def test_an_exceeded_deadline_counts_as_a_failure(
    impl: Impl, clock: FakeClock, backend: Backend, channels: Any
) -> None:
    interceptor = BreakerInterceptor(
        target=backend.target, group=make_group(impl, clock, max_failures=2)
    )
    echo = channels(backend.target, interceptor).unary_unary(UNARY_UNARY)
    backend.script = HANG
    for _ in range(2):
        with pytest.raises(grpc.RpcError) as failed:
            echo(b"x", timeout=0.2)
        assert failed.value.code() is Code.DEADLINE_EXCEEDED
    with pytest.raises(CircuitOpenRpcError):
        echo(b"x", timeout=0.2)
    assert backend.reached == 2


def test_a_refused_connection_counts_as_a_failure(
    impl: Impl, clock: FakeClock, channels: Any
) -> None:
    target = f"127.0.0.1:{closed_port()}"
    interceptor = BreakerInterceptor(target=target, group=make_group(impl, clock))
    echo = channels(target, interceptor).unary_unary(UNARY_UNARY)
    for _ in range(3):
        with pytest.raises(grpc.RpcError) as failed:
            echo(b"x", timeout=5)
        assert failed.value.code() is Code.UNAVAILABLE
        assert not isinstance(failed.value, CircuitOpenError)
    with pytest.raises(CircuitOpenRpcError):
        echo(b"x", timeout=5)
    assert interceptor.group[target].totals().failures == 3


def test_a_cancelled_call_is_neutral(
    impl: Impl, clock: FakeClock, backend: Backend, channels: Any
) -> None:
    interceptor = BreakerInterceptor(
        target=backend.target, group=make_group(impl, clock, max_failures=1)
    )
    echo = channels(backend.target, interceptor).unary_unary(UNARY_UNARY)
    breaker = interceptor.group[backend.target]
    backend.script = HANG
    future = echo.future(b"x", timeout=10)
    wait_until(lambda: backend.reached == 1, "the call to arrive")
    assert future.cancel()
    wait_until(lambda: settled(breaker) == 1, "the cancelled call")
    assert breaker.totals().neutral == 1
    assert breaker.state is State.CLOSED


def test_an_error_before_the_call_is_neutral(
    impl: Impl, clock: FakeClock, backend: Backend
) -> None:
    interceptor = BreakerInterceptor(
        target=backend.target, group=make_group(impl, clock, max_failures=1)
    )
    raw = grpc.insecure_channel(backend.target, options=CHANNEL_OPTIONS)
    echo = grpc.intercept_channel(raw, interceptor).unary_unary(UNARY_UNARY)
    raw.close()
    with pytest.raises(ValueError, match="(?i)channel closed|closed channel"):
        echo(b"x", timeout=5)
    with pytest.raises(ValueError, match="(?i)channel closed|closed channel"):
        echo.future(b"x", timeout=5).result()
    breaker = interceptor.group[backend.target]
    assert breaker.totals().neutral == 2
    assert breaker.state is State.CLOSED


def test_failure_codes_are_configurable(
    impl: Impl, clock: FakeClock, backend: Backend, channels: Any
) -> None:
    interceptor = BreakerInterceptor(
        target=backend.target,
        group=make_group(impl, clock, max_failures=1),
        failure_codes=DEFAULT_FAILURE_CODES - {Code.RESOURCE_EXHAUSTED},
    )
    echo = channels(backend.target, interceptor).unary_unary(UNARY_UNARY)
    backend.script = Code.RESOURCE_EXHAUSTED
    for _ in range(3):
        with pytest.raises(grpc.RpcError):
            echo(b"x", timeout=5)
    assert interceptor.group[backend.target].state is State.CLOSED
    backend.script = Code.NOT_FOUND
    strict = BreakerInterceptor(
        target=backend.target,
        group=make_group(impl, clock, max_failures=1),
        failure_codes={Code.NOT_FOUND},
    )
    echo = channels(backend.target, strict).unary_unary(UNARY_UNARY)
    with pytest.raises(grpc.RpcError):
        echo(b"x", timeout=5)
    assert strict.group[backend.target].state is State.OPEN


def test_key_method_gives_each_method_its_breaker(
    impl: Impl, clock: FakeClock, backend: Backend, channels: Any
) -> None:
    interceptor = BreakerInterceptor(
        target=backend.target, group=make_group(impl, clock, 1), key="method"
    )
    channel = channels(backend.target, interceptor)
    backend.script = Code.UNAVAILABLE
    with pytest.raises(grpc.RpcError):
        channel.unary_unary(UNARY_UNARY)(b"x", timeout=5)
    with pytest.raises(CircuitOpenRpcError):
        channel.unary_unary(UNARY_UNARY)(b"x", timeout=5)
    backend.script = Code.OK
    assert channel.stream_unary(STREAM_UNARY)(iter([b"a", b"b"]), timeout=5) == (
        b"got:ab"
    )
    assert sorted(interceptor.group) == sorted(
        [backend.target + UNARY_UNARY, backend.target + STREAM_UNARY]
    )


def test_key_callable_names_the_breaker(
    impl: Impl, clock: FakeClock, backend: Backend, channels: Any
) -> None:
    seen: list[tuple[str, str]] = []

    def by_service(target: str, method: str) -> str:
        seen.append((target, method))
        return "backend-service"

    interceptor = BreakerInterceptor(
        target=backend.target, group=make_group(impl, clock), key=by_service
    )
    channels(backend.target, interceptor).unary_unary(UNARY_UNARY)(b"x", timeout=5)
    assert seen == [(backend.target, UNARY_UNARY)]
    assert list(interceptor.group) == ["backend-service"]


def test_stream_unary_trips_and_rejects(
    impl: Impl, clock: FakeClock, backend: Backend, channels: Any
) -> None:
    interceptor = BreakerInterceptor(
        target=backend.target, group=make_group(impl, clock, max_failures=2)
    )
    upload = channels(backend.target, interceptor).stream_unary(STREAM_UNARY)
    assert upload(iter([b"a"]), timeout=5) == b"got:a"
    backend.script = Code.INTERNAL
    for _ in range(2):
        with pytest.raises(grpc.RpcError):
            upload(iter([b"a"]), timeout=5)
    with pytest.raises(CircuitOpenRpcError):
        upload(iter([b"a"]), timeout=5)
    assert upload.future(iter([b"a"]), timeout=5).exception().code() is (
        Code.UNAVAILABLE
    )
    assert backend.reached == 3


@pytest.mark.parametrize("kind", ["unary_stream", "stream_stream"])
def test_streams_are_counted_when_they_end(
    impl: Impl, clock: FakeClock, backend: Backend, channels: Any, kind: str
) -> None:
    interceptor = BreakerInterceptor(
        target=backend.target, group=make_group(impl, clock, max_failures=2)
    )
    channel = channels(backend.target, interceptor)
    breaker = interceptor.group[backend.target]

    def read() -> list[bytes]:
        if kind == "unary_stream":
            return list(channel.unary_stream(UNARY_STREAM)(b"x", timeout=5))
        return list(channel.stream_stream(STREAM_STREAM)(iter([b"a"]), timeout=5))

    assert read() in ([b"first", b"last"], [b"re:a"])
    wait_until(lambda: settled(breaker) == 1, "the stream's end")
    assert breaker.totals().successes == 1
    backend.script = Code.UNAVAILABLE
    for attempt in (2, 3):
        with pytest.raises(grpc.RpcError) as failed:
            read()
        assert failed.value.code() is Code.UNAVAILABLE
        wait_until(lambda n=attempt: settled(breaker) == n, "the stream's end")
    assert breaker.state is State.OPEN
    with pytest.raises(CircuitOpenRpcError):
        read()
    assert backend.reached == 3


def test_the_rejection_pickles(impl: Impl, clock: FakeClock) -> None:
    group = make_group(impl, clock, max_failures=1)
    group["somewhere:1"].record_failure()
    interceptor = BreakerInterceptor(target="somewhere:1", group=group)
    channel = grpc.intercept_channel(grpc.insecure_channel("somewhere:1"), interceptor)
    rejection = channel.unary_unary(UNARY_UNARY).future(b"x").exception()
    copy = pickle.loads(pickle.dumps(rejection))
    assert type(copy) is CircuitOpenRpcError
    assert (copy.name, copy.state, copy.retry_after) == (
        "somewhere:1",
        State.OPEN,
        30.0,
    )
    assert copy.code() is Code.UNAVAILABLE


def test_without_a_group_each_interceptor_has_its_own() -> None:
    first = BreakerInterceptor(target="a:1")
    second = BreakerInterceptor(target="a:1")
    assert first.group is not second.group
    assert first.group.max_breakers == 1000
    assert first.target == "a:1"
    # failure_codes=None: the defaults.
    assert BreakerInterceptor(target="a:1", failure_codes=None).target == "a:1"


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(TypeError, match="target must be the channel's target"):
        BreakerInterceptor(target="")
    with pytest.raises(TypeError, match='key must be "target", "method" or'):
        BreakerInterceptor(target="a:1", key="path")
    with pytest.raises(ValueError, match="other than OK and CANCELLED"):
        BreakerInterceptor(target="a:1", failure_codes={Code.CANCELLED})
    with pytest.raises(TypeError, match="iterable of grpc.StatusCode"):
        BreakerInterceptor(target="a:1", failure_codes={14})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="iterable of grpc.StatusCode"):
        BreakerInterceptor(target="a:1", failure_codes=14)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="group must be a qbreaker.BreakerGroup"):
        BreakerInterceptor(target="a:1", group={})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="open_on_retry_after must be"):
        BreakerInterceptor(target="a:1", open_on_retry_after="1")  # type: ignore[arg-type]


def test_concurrent_blocking_calls_count_every_outcome(
    impl: Impl, clock: FakeClock, backend: Backend, channels: Any
) -> None:
    interceptor = BreakerInterceptor(
        target=backend.target, group=make_group(impl, clock, max_failures=1000)
    )
    echo = channels(backend.target, interceptor).unary_unary(UNARY_UNARY)

    def worker() -> None:
        for _ in range(20):
            echo(b"x", timeout=5)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    totals = interceptor.group[backend.target].totals()
    assert (totals.allowed, totals.successes) == (80, 80)


@pytest.mark.parametrize(
    ("setting", "trailer", "retry_after"),
    [
        (True, "1500", 1.5),
        (1.0, "1500", 1.0),
        (True, "-1", None),
        (False, "1500", None),
    ],
    ids=["opens", "capped", "no-time", "off"],
)
def test_pushback_opens_for_the_time_asked_when_enabled(
    impl: Impl,
    clock: FakeClock,
    backend: Backend,
    channels: Any,
    setting: Any,
    trailer: str,
    retry_after: float | None,
) -> None:
    interceptor = BreakerInterceptor(
        target=backend.target,
        group=make_group(impl, clock, max_failures=100, half_open_max=1),
        open_on_retry_after=setting,
    )
    echo = channels(backend.target, interceptor).unary_unary(UNARY_UNARY)
    backend.script = Code.RESOURCE_EXHAUSTED
    backend.trailers = (("grpc-retry-pushback-ms", trailer),)
    with pytest.raises(grpc.RpcError) as failed:
        echo(b"x", timeout=5)
    assert failed.value.code() is Code.RESOURCE_EXHAUSTED
    breaker = interceptor.group[backend.target]
    if retry_after is None:
        assert breaker.state is State.CLOSED
        return
    assert (breaker.state, breaker.retry_after) == (State.OPEN, retry_after)
    with pytest.raises(CircuitOpenRpcError) as rejected:
        echo(b"x", timeout=5)
    assert rejected.value.retry_after == retry_after
    clock.advance(retry_after)
    backend.script = Code.OK
    assert echo(b"x", timeout=5) == b"echo:x"  # the probe
    assert breaker.state is State.CLOSED
    assert backend.reached == 2


def test_the_rejection_carries_the_method(impl: Impl, clock: FakeClock) -> None:
    group = make_group(impl, clock, max_failures=1)
    group["somewhere:1"].force_open()
    interceptor = BreakerInterceptor(target="somewhere:1", group=group)
    channel = grpc.intercept_channel(grpc.insecure_channel("somewhere:1"), interceptor)
    rejection = channel.unary_unary(UNARY_UNARY).future(b"x").exception()
    assert rejection.request == UNARY_UNARY
    assert rejection.retry_after == float("inf")
    channel.close()
