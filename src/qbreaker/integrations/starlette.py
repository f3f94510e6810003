"""Starlette (and FastAPI): a rejection that escapes a route becomes a 503;
a read-only JSON view of breakers.

``install(app)`` registers an exception handler for ``CircuitOpenError``. A
route whose dependency's breaker is open answers ``503 Service Unavailable``
with ``Retry-After`` set to the whole seconds until the breaker admits a
probe (rounded up), and without the header when the breaker is forced open,
since then no time is known. Every integration's rejection (the httpx,
requests, aiohttp and gRPC ones) is a ``CircuitOpenError``, so one handler
serves them all.

``status_endpoint(*sources)`` is an endpoint answering, always with 200, the
state and totals of the given breakers and groups' breakers, read when
asked. It is information for people and dashboards, never a health check:
an open breaker is the service protecting itself, not the service failing.

Starlette is imported when the handler or the endpoint first runs, never by
``import qbreaker`` (``pip install "qbreaker[starlette]"``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, cast

from .._errors import CircuitOpenError
from .._impl.group import BreakerGroup
from ._common import require

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from .._impl.select import CircuitBreaker
    from .._metrics import BreakerSnapshot

__all__ = (
    "circuit_open_response",
    "install",
    "retry_after_header",
    "status_document",
    "status_endpoint",
)


def retry_after_header(retry_after: float) -> str | None:
    """The ``Retry-After`` value for a rejection: whole seconds, rounded up;
    None when the breaker is forced open (no time is known)."""
    if math.isinf(retry_after) or math.isnan(retry_after):
        return None
    return str(max(math.ceil(retry_after), 0))


def circuit_open_response(exc: CircuitOpenError, *, show_breaker: bool) -> Response:
    """The 503 response for ``exc``. The breaker's name is in the body only
    with ``show_breaker``: it names an internal dependency."""
    responses = require("starlette.responses", extra="starlette")
    body: dict[str, Any] = {"detail": "Service Unavailable"}
    if show_breaker:
        body["breaker"] = exc.name
        if not math.isinf(exc.retry_after):
            body["retry_after"] = exc.retry_after
    header = retry_after_header(exc.retry_after)
    headers = None if header is None else {"Retry-After": header}
    response: Response = responses.JSONResponse(body, status_code=503, headers=headers)
    return response


def install(app: Any, *, show_breaker: bool = False) -> None:
    """Answer a ``CircuitOpenError`` escaping any route of ``app`` with a 503.

    ``app`` is a ``starlette.applications.Starlette`` or a
    ``fastapi.FastAPI``. ``show_breaker=True`` adds the breaker's name and
    ``retry_after`` to the JSON body (off by default: it names an internal
    dependency to every client).
    """
    if not isinstance(show_breaker, bool):
        raise TypeError(f"show_breaker must be True or False, got {show_breaker!r}")
    add = getattr(app, "add_exception_handler", None)
    if not callable(add):
        raise TypeError(
            f"app must be a Starlette or FastAPI application (with "
            f"add_exception_handler), got {app!r}"
        )

    async def on_circuit_open(request: Request, exc: Exception) -> Response:
        # Registered for CircuitOpenError: Starlette passes only those here.
        rejection = cast(CircuitOpenError, exc)
        return circuit_open_response(rejection, show_breaker=show_breaker)

    add(CircuitOpenError, on_circuit_open)


def _snapshot_json(snapshot: BreakerSnapshot) -> dict[str, Any]:
    fields = dataclasses.asdict(snapshot)
    fields["state"] = str(snapshot.state)
    # JSON has no infinity: a forced-open breaker's retry_after is null.
    if math.isinf(snapshot.retry_after):
        fields["retry_after"] = None
    return fields


def status_document(
    sources: tuple[CircuitBreaker | BreakerGroup, ...],
) -> dict[str, Any]:
    """``{"breakers": {name: {state, forced, retry_after, totals...}}}`` for
    the breakers given and every breaker of the groups given, read now."""
    breakers: dict[str, Any] = {}
    for source in sources:
        if isinstance(source, BreakerGroup):
            snapshots = list(source.metrics().values())
        else:
            snapshots = [source.metrics()]
        for snapshot in snapshots:
            breakers[snapshot.name] = _snapshot_json(snapshot)
    return {"breakers": breakers}


def status_endpoint(
    *sources: CircuitBreaker | BreakerGroup,
) -> Callable[[Request], Coroutine[Any, Any, Response]]:
    """A Starlette endpoint (``Route("/breakers", status_endpoint(group))``,
    or FastAPI's ``app.add_api_route``) answering ``status_document`` as JSON,
    always 200. It shows internal dependency names: mount it where only
    operators reach it."""
    if not sources:
        raise TypeError("status_endpoint needs at least one breaker or group")
    for source in sources:
        if not isinstance(source, BreakerGroup) and not callable(
            getattr(source, "metrics", None)
        ):
            raise TypeError(
                f"status_endpoint takes CircuitBreakers and BreakerGroups, "
                f"got {source!r}"
            )

    async def breaker_status(request: Request) -> Response:
        responses = require("starlette.responses", extra="starlette")
        response: Response = responses.JSONResponse(status_document(sources))
        return response

    return breaker_status
