"""qbreaker.integrations.fastapi.require: a route whose critical dependency's
breaker is open fails fast, before doing any work, as a 503 (through
qbreaker.integrations.starlette.install). The check only reads. Both cores."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("fastapi", reason="fastapi is in the fastapi extra")

from fastapi import Depends, FastAPI  # noqa: E402

from qbreaker import BreakerGroup, CircuitOpenError, State  # noqa: E402
from qbreaker.integrations import starlette  # noqa: E402
from qbreaker.integrations.fastapi import check, require  # noqa: E402

from ..helpers import FakeClock, Impl  # noqa: E402
from .asgi import TestClient  # noqa: E402


def app_requiring(dependency: Any) -> tuple[FastAPI, list[str]]:
    """An app whose route needs ``dependency``; the list records the work
    the route did (the name of the breaker it was given)."""
    work: list[str] = []
    app = FastAPI()
    starlette.install(app)

    @app.get("/checkout")
    # A default, not Annotated[...]: with postponed annotations FastAPI would
    # have to resolve ``dependency``, a local, from the module's globals.
    async def checkout(breaker: Any = Depends(dependency)) -> dict[str, str]:  # noqa: B008
        work.append(breaker.name)
        return {"paid": breaker.name}

    return app, work


def test_closed_runs_the_route_with_the_breaker(impl: Impl, clock: FakeClock) -> None:
    breaker = impl.Breaker(1, 30.0, 1, name="payments", clock=clock)
    app, work = app_requiring(require(breaker))
    with TestClient(app) as client:
        response = client.get("/checkout")
    assert (response.status_code, response.json()) == (200, {"paid": "payments"})
    assert work == ["payments"]


def test_open_fails_fast_with_503_and_does_no_work(
    impl: Impl, clock: FakeClock
) -> None:
    breaker = impl.Breaker(1, 30.0, 1, name="payments", clock=clock)
    breaker.record_failure()
    clock.advance(10.0)
    before = breaker.totals()
    app, work = app_requiring(require(breaker))
    with TestClient(app) as client:
        response = client.get("/checkout")
    assert (response.status_code, response.headers["retry-after"]) == (503, "20")
    assert work == []
    assert breaker.totals() == before  # read only: nothing counted


def test_forced_open_fails_fast_without_retry_after(
    impl: Impl, clock: FakeClock
) -> None:
    breaker = impl.Breaker(1, 30.0, 1, name="payments", clock=clock)
    breaker.force_open()
    app, work = app_requiring(require(breaker))
    with TestClient(app) as client:
        response = client.get("/checkout")
    assert response.status_code == 503
    assert "retry-after" not in response.headers
    assert work == []


def test_open_past_its_timeout_lets_the_route_make_the_probe(
    impl: Impl, clock: FakeClock
) -> None:
    breaker = impl.Breaker(1, 30.0, 1, name="payments", clock=clock)
    breaker.record_failure()
    clock.advance(30.0)
    app, work = app_requiring(require(breaker))
    with TestClient(app) as client:
        assert client.get("/checkout").status_code == 200
    # The check never moved it: the route's own protected call would.
    assert breaker.state is State.OPEN
    assert work == ["payments"]


def test_half_open_lets_the_route_through(impl: Impl, clock: FakeClock) -> None:
    breaker = impl.Breaker(1, 30.0, 1, name="payments", clock=clock)
    breaker.record_failure()
    clock.advance(30.0)
    breaker.renormalize()
    assert breaker.state is State.HALF_OPEN
    check(breaker)  # does not raise


def test_a_name_is_looked_up_in_its_group_on_every_request(
    impl: Impl, clock: FakeClock
) -> None:
    group = BreakerGroup(
        max_failures=1, reset_timeout=30.0, clock=clock, _breaker_class=impl.Breaker
    )
    app, work = app_requiring(require("payments", group=group))
    with TestClient(app) as client:
        assert client.get("/checkout").status_code == 200
        group["payments"].record_failure()
        assert client.get("/checkout").status_code == 503
    assert work == ["payments"]


def test_check_raises_the_rejection(impl: Impl, clock: FakeClock) -> None:
    breaker = impl.Breaker(1, 8.0, 1, name="payments", clock=clock)
    breaker.record_failure()
    with pytest.raises(CircuitOpenError) as caught:
        check(breaker)
    assert (caught.value.name, caught.value.retry_after) == ("payments", 8.0)


def test_bad_arguments_are_refused(impl: Impl) -> None:
    breaker = impl.Breaker(1, 8.0, 1)
    with pytest.raises(TypeError, match=r"require\('payments'\) needs group="):
        require("payments")
    with pytest.raises(TypeError, match="group must be a BreakerGroup"):
        require("payments", group=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="group= is for a breaker given by name"):
        require(breaker, group=BreakerGroup())
    with pytest.raises(TypeError, match="must be a CircuitBreaker or a breaker's"):
        require(42)  # type: ignore[arg-type]
