"""qbreaker.integrations.starlette: a rejection escaping a route is a 503
with Retry-After (none when forced open). Starlette's TestClient, and one
real uvicorn server on 127.0.0.1. Both cores."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("starlette", reason="starlette is in the starlette extra")

from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import PlainTextResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

from qbreaker import BreakerGroup, CircuitOpenError, State  # noqa: E402
from qbreaker.integrations.starlette import (  # noqa: E402
    install,
    retry_after_header,
    status_endpoint,
)

from ..helpers import FakeClock, Impl  # noqa: E402
from .asgi import TestClient  # noqa: E402


def app_calling(breaker: Any, **install_options: Any) -> Starlette:
    """An app whose one route calls a stand-in backend through ``breaker``."""

    def backend() -> str:
        return "price: 41"

    async def price(request: Request) -> PlainTextResponse:
        return PlainTextResponse(breaker.call(backend))

    async def crash(request: Request) -> PlainTextResponse:
        raise LookupError("not a rejection")

    app = Starlette(routes=[Route("/price", price), Route("/crash", crash)])
    install(app, **install_options)
    return app


def opened(impl: Impl, clock: FakeClock, reset_timeout: float = 30.0) -> Any:
    breaker = impl.Breaker(1, reset_timeout, 1, name="prices", clock=clock)
    breaker.record_failure()
    assert breaker.state is State.OPEN
    return breaker


def test_a_closed_breaker_lets_the_route_answer(impl: Impl, clock: FakeClock) -> None:
    breaker = impl.Breaker(1, 30.0, 1, name="prices", clock=clock)
    with TestClient(app_calling(breaker)) as client:
        response = client.get("/price")
    assert (response.status_code, response.text) == (200, "price: 41")
    assert "retry-after" not in response.headers


def test_an_open_breaker_answers_503_with_retry_after_rounded_up(
    impl: Impl, clock: FakeClock
) -> None:
    breaker = opened(impl, clock)
    clock.advance(17.5)  # 12.5 s left
    with TestClient(app_calling(breaker)) as client:
        response = client.get("/price")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "13"
    assert response.json() == {"detail": "Service Unavailable"}
    assert breaker.totals().rejected == 1


def test_forced_open_answers_503_without_retry_after(
    impl: Impl, clock: FakeClock
) -> None:
    breaker = impl.Breaker(1, 30.0, 1, name="prices", clock=clock)
    breaker.force_open()
    with TestClient(app_calling(breaker)) as client:
        response = client.get("/price")
    assert response.status_code == 503
    assert "retry-after" not in response.headers


def test_half_open_with_every_probe_slot_busy_says_retry_now(
    impl: Impl, clock: FakeClock
) -> None:
    breaker = opened(impl, clock)
    clock.advance(30.0)
    assert breaker.acquire()  # the one probe slot, held
    assert breaker.state is State.HALF_OPEN
    with TestClient(app_calling(breaker)) as client:
        response = client.get("/price")
    assert (response.status_code, response.headers["retry-after"]) == (503, "0")


def test_show_breaker_names_it_in_the_body(impl: Impl, clock: FakeClock) -> None:
    breaker = opened(impl, clock, reset_timeout=5.0)
    with TestClient(app_calling(breaker, show_breaker=True)) as client:
        response = client.get("/price")
    assert response.json() == {
        "detail": "Service Unavailable",
        "breaker": "prices",
        "retry_after": 5.0,
    }


def test_a_subclass_of_the_rejection_is_handled_too() -> None:
    # Every integration's rejection is a CircuitOpenError and a library error.
    class LibraryError(Exception):
        pass

    class ClientRejection(CircuitOpenError, LibraryError):
        pass

    async def route(request: Request) -> PlainTextResponse:
        raise ClientRejection("partner", State.OPEN, 2.2)

    app = Starlette(routes=[Route("/", route)])
    install(app)
    with TestClient(app) as client:
        response = client.get("/")
    assert (response.status_code, response.headers["retry-after"]) == (503, "3")


def test_other_errors_are_left_alone(impl: Impl, clock: FakeClock) -> None:
    breaker = impl.Breaker(1, 30.0, 1, name="prices", clock=clock)
    with TestClient(app_calling(breaker), raise_server_exceptions=False) as client:
        assert client.get("/crash").status_code == 500


@pytest.mark.parametrize(
    ("retry_after", "header"),
    [(0.0, "0"), (0.001, "1"), (1.0, "1"), (1.5, "2"), (float("inf"), None)],
)
def test_retry_after_header(retry_after: float, header: str | None) -> None:
    assert retry_after_header(retry_after) == header


def test_install_refuses_what_is_not_an_app() -> None:
    with pytest.raises(TypeError, match="Starlette or FastAPI application"):
        install(object())
    with pytest.raises(TypeError, match="show_breaker must be True or False"):
        install(Starlette(), show_breaker="yes")  # type: ignore[arg-type]


@contextlib.contextmanager
def served(app: Any) -> Iterator[int]:
    """``app`` under a real uvicorn server on 127.0.0.1; yields its port."""
    uvicorn = pytest.importorskip("uvicorn", reason="uvicorn is in the test extra")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="off"))
    thread = threading.Thread(
        target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True
    )
    thread.start()
    try:
        for _ in range(500):  # bounded: 5 s
            if server.started:
                break
            threading.Event().wait(0.01)
        assert server.started, "uvicorn did not start in 5 s"
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_a_real_uvicorn_server_answers_503_with_retry_after(
    impl: Impl, clock: FakeClock
) -> None:
    breaker = opened(impl, clock, reset_timeout=4.2)
    with served(app_calling(breaker)) as port:
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/price", timeout=5)
        error = caught.value
        assert (error.code, error.headers["Retry-After"]) == (503, "5")
        error.close()
        breaker.reset()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/price", timeout=5) as ok:
            assert ok.read() == b"price: 41"


def test_the_status_endpoint_shows_breakers_and_groups_read_only(
    impl: Impl, clock: FakeClock
) -> None:
    prices = opened(impl, clock, reset_timeout=5.0)
    group = BreakerGroup(max_failures=2, clock=clock, _breaker_class=impl.Breaker)
    group["search"].record_failure()
    group["stock"].force_open()
    app = Starlette(routes=[Route("/breakers", status_endpoint(prices, group))])
    with TestClient(app) as client:
        response = client.get("/breakers")
    assert response.status_code == 200  # always: information, not health
    breakers = response.json()["breakers"]
    assert sorted(breakers) == ["prices", "search", "stock"]
    assert breakers["prices"]["state"] == "open"
    assert breakers["prices"]["retry_after"] == 5.0
    assert breakers["prices"]["failures"] == 1
    assert breakers["search"]["consecutive_failures"] == 1
    assert (breakers["stock"]["forced"], breakers["stock"]["retry_after"]) == (
        "open",
        None,
    )
    assert prices.totals().allowed == 0  # the read admitted nothing


def test_status_endpoint_refuses_what_is_not_a_breaker() -> None:
    with pytest.raises(TypeError, match="at least one breaker or group"):
        status_endpoint()
    with pytest.raises(TypeError, match="takes CircuitBreakers and BreakerGroups"):
        status_endpoint(object())  # type: ignore[arg-type]
