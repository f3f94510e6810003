"""qbreaker.integrations.httpx against real servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import email.utils
import pickle
import time
from typing import Any

import pytest

from qbreaker import BreakerGroup, CircuitOpenError, State

from ..helpers import Impl
from .servers import Backend, closed_port

httpx = pytest.importorskip("httpx", reason="the httpx extra is not installed")

from qbreaker.integrations.httpx import (  # noqa: E402
    AsyncBreakerTransport,
    BreakerTransport,
    CircuitOpen,
)

MAX_FAILURES = 3


def _group(impl: Impl, **settings: Any) -> BreakerGroup:
    settings.setdefault("max_failures", MAX_FAILURES)
    settings.setdefault("reset_timeout", 30)
    return BreakerGroup(_breaker_class=impl.Breaker, **settings)


def _client(impl: Impl, **kwargs: Any) -> httpx.Client:
    group = kwargs.pop("group", None)
    group = _group(impl) if group is None else group
    transport = BreakerTransport(httpx.HTTPTransport(), group=group, **kwargs)
    return httpx.Client(transport=transport, timeout=5)


def _breaker(client: httpx.Client, backend: Backend) -> Any:
    transport = client._transport
    assert isinstance(transport, BreakerTransport)
    return transport.group[f"http://127.0.0.1:{backend.port}"]


def test_a_failing_backend_is_reached_max_failures_times_then_rejected(
    impl: Impl, server: Backend
) -> None:
    server.status = 503
    with _client(impl) as client:
        for _ in range(MAX_FAILURES):
            response = client.get(server.url + "/price")
            assert response.status_code == 503  # still returned to the caller
        with pytest.raises(CircuitOpen) as info:
            client.get(server.url + "/price")
        assert server.hits == MAX_FAILURES
        error = info.value
        assert isinstance(error, CircuitOpenError)
        assert isinstance(error, httpx.RequestError)
        assert isinstance(error, httpx.HTTPError)
        assert not isinstance(error, httpx.TransportError)
        assert error.request.url == server.url + "/price"
        assert error.state is State.OPEN
        assert 29 < error.retry_after <= 30
        assert error.name == f"http://127.0.0.1:{server.port}"


def test_except_request_error_catches_the_rejection(
    impl: Impl, server: Backend
) -> None:
    server.status = 500
    caught = []
    with _client(impl) as client:
        for _ in range(MAX_FAILURES + 2):
            try:
                client.get(server.url).raise_for_status()
            except httpx.TransportError:  # what retry helpers retry
                raise AssertionError("a rejection is not a TransportError") from None
            except httpx.RequestError as exc:
                caught.append(exc)
            except httpx.HTTPStatusError:
                pass
    assert len(caught) == 2 and all(isinstance(e, CircuitOpen) for e in caught)


def test_the_rejection_pickles_without_its_request(impl: Impl, server: Backend) -> None:
    server.status = 502
    with _client(impl) as client:
        for _ in range(MAX_FAILURES):
            client.get(server.url)
        with pytest.raises(CircuitOpen) as info:
            client.get(server.url)
    copy = pickle.loads(pickle.dumps(info.value))
    assert type(copy) is CircuitOpen
    assert (copy.name, copy.state) == (info.value.name, State.OPEN)
    assert copy.retry_after == info.value.retry_after
    with pytest.raises(RuntimeError):  # httpx's word for "no request set"
        copy.request  # noqa: B018


def test_a_healthy_backend_on_another_port_keeps_working(
    impl: Impl, server: Backend, other_server: Backend
) -> None:
    server.status = 503
    with _client(impl) as client:
        for _ in range(MAX_FAILURES):
            client.get(server.url)
        with pytest.raises(CircuitOpen):
            client.get(server.url)
        for _ in range(5):
            assert client.get(other_server.url).status_code == 200
        assert _breaker(client, other_server).state is State.CLOSED
    assert other_server.hits == 5


@pytest.mark.parametrize("status", [404, 400, 401, 403, 409, 422, 301])
def test_other_4xx_and_3xx_never_trip(impl: Impl, server: Backend, status: int) -> None:
    server.status = status
    server.headers = {"Location": "/elsewhere"} if status == 301 else {}
    with _client(impl) as client:
        for _ in range(3 * MAX_FAILURES):
            assert client.get(server.url).status_code == status
        breaker = _breaker(client, server)
    assert breaker.state is State.CLOSED
    assert breaker.totals().successes == 3 * MAX_FAILURES


@pytest.mark.parametrize("status", [408, 429, 500, 504])
def test_408_429_and_5xx_are_failures(impl: Impl, server: Backend, status: int) -> None:
    server.status = status
    with _client(impl) as client:
        for _ in range(MAX_FAILURES):
            client.get(server.url)
        with pytest.raises(CircuitOpen):
            client.get(server.url)


def test_failure_statuses_replace_the_default(impl: Impl, server: Backend) -> None:
    server.status = 503
    with _client(impl, failure_statuses={500}) as client:
        for _ in range(2 * MAX_FAILURES):
            client.get(server.url)
        assert _breaker(client, server).state is State.CLOSED


def test_a_refused_connection_is_a_failure(impl: Impl) -> None:
    url = f"http://127.0.0.1:{closed_port()}/"
    with _client(impl) as client:
        for _ in range(MAX_FAILURES):
            with pytest.raises(httpx.ConnectError):
                client.get(url)
        with pytest.raises(CircuitOpen):
            client.get(url)


def test_a_timeout_is_a_failure(impl: Impl, server: Backend) -> None:
    server.hang = 5
    transport = BreakerTransport(httpx.HTTPTransport(), group=_group(impl))
    with httpx.Client(transport=transport, timeout=0.2) as client:
        for _ in range(MAX_FAILURES):
            with pytest.raises(httpx.ReadTimeout):
                client.get(server.url)
        with pytest.raises(CircuitOpen):
            client.get(server.url)
    assert server.hits == MAX_FAILURES


def test_local_usage_errors_are_neutral(impl: Impl) -> None:
    with _client(impl) as client:
        for _ in range(2 * MAX_FAILURES):
            with pytest.raises(httpx.UnsupportedProtocol):
                client.get("ftp://127.0.0.1/file")
        breaker = client._transport.group["ftp://127.0.0.1"]  # type: ignore[attr-defined]
        assert breaker.state is State.CLOSED
        assert breaker.totals().neutral == 2 * MAX_FAILURES


def test_a_half_open_probe_that_succeeds_closes(impl: Impl, server: Backend) -> None:
    group = _group(impl, reset_timeout=0.05, half_open_max=1)
    server.status = 503
    with _client(impl, group=group) as client:
        for _ in range(MAX_FAILURES):
            client.get(server.url)
        breaker = _breaker(client, server)
        assert breaker.state is State.OPEN
        server.status = 200
        for _ in range(200):  # bounded: the open lasts 50 ms
            if breaker.retry_after == 0:
                break
            time.sleep(0.01)
        assert client.get(server.url).status_code == 200
        assert breaker.state is State.CLOSED


def test_key_can_be_the_method_and_a_route_template(
    impl: Impl, server: Backend
) -> None:
    def route(request: httpx.Request) -> str:
        template = "/users/{id}" if request.url.path.startswith("/users/") else "/"
        return f"{request.method} {request.url.host}:{request.url.port}{template}"

    server.status = 503
    with _client(impl, key=route) as client:
        for user in range(MAX_FAILURES):
            client.get(f"{server.url}/users/{user}")
        with pytest.raises(CircuitOpen) as info:
            client.get(f"{server.url}/users/99")
        assert info.value.name == f"GET 127.0.0.1:{server.port}/users/{{id}}"
        server.status = 200
        assert client.post(f"{server.url}/users/1").status_code == 200
        assert sorted(client._transport.group) == [  # type: ignore[attr-defined]
            f"GET 127.0.0.1:{server.port}/users/{{id}}",
            f"POST 127.0.0.1:{server.port}/users/{{id}}",
        ]


def test_each_transport_has_its_own_default_group() -> None:
    first = BreakerTransport(httpx.HTTPTransport())
    second = BreakerTransport(httpx.HTTPTransport())
    assert first.group is not second.group
    assert first.group.max_breakers == 1000


def test_the_default_group_trips_at_half_failing_after_20_calls(
    server: Backend,
) -> None:
    transport = BreakerTransport(httpx.HTTPTransport())
    with httpx.Client(transport=transport) as client:
        for _ in range(10):  # half of the first 20 succeed...
            server.status = 200
            client.get(server.url)
            server.status = 503
            client.get(server.url)
        with pytest.raises(CircuitOpen) as info:  # ...so 50 % failed: open
            client.get(server.url)
    assert server.hits == 20
    assert 9 < info.value.retry_after <= 10  # the default reset_timeout


def test_mounts_protect_one_host_only(impl: Impl, server: Backend) -> None:
    server.status = 503
    transport = BreakerTransport(httpx.HTTPTransport(), group=_group(impl))
    mounts = {f"all://127.0.0.1:{server.port}": transport}
    with httpx.Client(mounts=mounts) as client:
        for _ in range(MAX_FAILURES):
            client.get(server.url)
        with pytest.raises(CircuitOpen):
            client.get(server.url)


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"failure_statuses": [1000]}, ValueError, "failure_statuses"),
        ({"open_on_retry_after": "yes"}, TypeError, "open_on_retry_after"),
        (
            {"count_body_errors": 1},
            TypeError,
            "count_body_errors must be True or False",
        ),
        ({"group": "g"}, TypeError, "group must be a qbreaker.BreakerGroup"),
        ({"key": 3}, TypeError, "key must be a callable"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], error: type, words: str) -> None:
    with pytest.raises(error, match=words):
        BreakerTransport(httpx.HTTPTransport(), **kwargs)


def test_inner_must_be_a_transport() -> None:
    with pytest.raises(TypeError, match="inner must be an httpx.BaseTransport"):
        BreakerTransport(httpx.AsyncHTTPTransport())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="inner must be an httpx.AsyncBaseTransport"):
        AsyncBreakerTransport(httpx.HTTPTransport())  # type: ignore[arg-type]


def test_the_transports_are_httpx_transports() -> None:
    assert isinstance(BreakerTransport(httpx.HTTPTransport()), httpx.BaseTransport)
    assert isinstance(
        AsyncBreakerTransport(httpx.AsyncHTTPTransport()), httpx.AsyncBaseTransport
    )


# -- streaming bodies ----------------------------------------------------------


def test_a_stream_is_classified_on_its_status(impl: Impl, server: Backend) -> None:
    server.truncate = True
    with _client(impl) as client:
        for _ in range(MAX_FAILURES + 1):
            with client.stream("GET", server.url) as response:
                assert response.status_code == 200
                with pytest.raises(httpx.RemoteProtocolError):
                    response.read()
        breaker = _breaker(client, server)
    assert breaker.state is State.CLOSED
    assert breaker.totals().successes == MAX_FAILURES + 1


def test_body_errors_count_with_count_body_errors(impl: Impl, server: Backend) -> None:
    server.truncate = True
    with _client(impl, count_body_errors=True) as client:
        for _ in range(MAX_FAILURES):
            with pytest.raises(httpx.RemoteProtocolError):
                client.get(server.url)
        with pytest.raises(CircuitOpen):
            client.get(server.url)
    server.truncate = False
    with _client(impl, count_body_errors=True) as client:
        with client.stream("GET", server.url) as response:
            assert response.read() == b"ok"  # read already, still readable


# -- Retry-After -------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_opens_for_the_given_time_when_enabled(
    impl: Impl, server: Backend, status: int
) -> None:
    server.status = status
    server.headers = {"Retry-After": "120"}
    with _client(impl, open_on_retry_after=True) as client:
        assert client.get(server.url).status_code == status
        with pytest.raises(CircuitOpen) as info:
            client.get(server.url)
    assert server.hits == 1
    assert 59 < info.value.retry_after <= 60  # capped at 60 s by default
    with _client(impl, open_on_retry_after=300) as client:
        client.get(server.url)
        with pytest.raises(CircuitOpen) as info:
            client.get(server.url)
    assert 119 < info.value.retry_after <= 120


def test_retry_after_as_an_http_date(impl: Impl, server: Backend) -> None:
    server.status = 503
    server.headers = {
        "Retry-After": email.utils.formatdate(time.time() + 40, usegmt=True)
    }
    with _client(impl, open_on_retry_after=True) as client:
        client.get(server.url)
        with pytest.raises(CircuitOpen) as info:
            client.get(server.url)
    assert 37 < info.value.retry_after <= 40


def test_retry_after_is_ignored_when_off(impl: Impl, server: Backend) -> None:
    server.status = 429
    server.headers = {"Retry-After": "120"}
    with _client(impl) as client:
        for _ in range(MAX_FAILURES - 1):
            assert client.get(server.url).status_code == 429
        assert _breaker(client, server).state is State.CLOSED


# -- the async transport -------------------------------------------------------


def _async_client(impl: Impl, **kwargs: Any) -> httpx.AsyncClient:
    group = kwargs.pop("group", None)
    group = _group(impl) if group is None else group
    transport = AsyncBreakerTransport(httpx.AsyncHTTPTransport(), group=group, **kwargs)
    return httpx.AsyncClient(transport=transport, timeout=kwargs.pop("timeout", 5))


def test_async_failing_backend_then_rejection(
    impl: Impl, server: Backend, other_server: Backend
) -> None:
    server.status = 503

    async def main() -> None:
        async with _async_client(impl) as client:
            for _ in range(MAX_FAILURES):
                assert (await client.get(server.url)).status_code == 503
            with pytest.raises(CircuitOpen) as info:
                await client.get(server.url)
            assert isinstance(info.value, httpx.RequestError)
            assert (await client.get(other_server.url)).status_code == 200

    asyncio.run(main())
    assert server.hits == MAX_FAILURES


def test_async_refused_and_timeout_are_failures(impl: Impl, server: Backend) -> None:
    server.hang = 5
    refused = f"http://127.0.0.1:{closed_port()}/"

    async def main() -> None:
        transport = AsyncBreakerTransport(
            httpx.AsyncHTTPTransport(), group=_group(impl)
        )
        async with httpx.AsyncClient(transport=transport, timeout=0.2) as client:
            for _ in range(MAX_FAILURES):
                with pytest.raises(httpx.ConnectError):
                    await client.get(refused)
                with pytest.raises(httpx.ReadTimeout):
                    await client.get(server.url)
            for url in (refused, server.url):
                with pytest.raises(CircuitOpen):
                    await client.get(url)

    asyncio.run(main())


def test_async_cancellation_is_neutral(impl: Impl, server: Backend) -> None:
    server.hang = 5
    group = _group(impl, max_failures=1)

    async def main() -> None:
        async with _async_client(impl, group=group) as client:
            for sent in range(1, 4):
                task = asyncio.ensure_future(client.get(server.url))
                await server.until_hits(sent)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task

    asyncio.run(main())
    breaker = group[f"http://127.0.0.1:{server.port}"]
    assert breaker.state is State.CLOSED
    assert breaker.totals().failures == 0
    assert breaker.totals().neutral == 3


def test_async_body_errors_and_retry_after(impl: Impl, server: Backend) -> None:
    server.truncate = True

    async def main() -> None:
        async with _async_client(impl, count_body_errors=True) as client:
            for _ in range(MAX_FAILURES):
                with pytest.raises(httpx.RemoteProtocolError):
                    await client.get(server.url)
            with pytest.raises(CircuitOpen):
                await client.get(server.url)

    asyncio.run(main())
