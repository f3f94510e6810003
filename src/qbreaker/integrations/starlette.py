"""Starlette (and FastAPI): a rejection that escapes a route becomes a 503.

``install(app)`` registers an exception handler for ``CircuitOpenError``. A
route whose dependency's breaker is open answers ``503 Service Unavailable``
with ``Retry-After`` set to the whole seconds until the breaker admits a
probe (rounded up), and without the header when the breaker is forced open,
since then no time is known. Every integration's rejection (the httpx,
requests, aiohttp and gRPC ones) is a ``CircuitOpenError``, so one handler
serves them all.

Starlette is imported when ``install`` or the handler first runs, never by
``import qbreaker``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, cast

from .._errors import CircuitOpenError

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = ("circuit_open_response", "install", "retry_after_header")


def retry_after_header(retry_after: float) -> str | None:
    """The ``Retry-After`` value for a rejection: whole seconds, rounded up;
    None when the breaker is forced open (no time is known)."""
    if math.isinf(retry_after) or math.isnan(retry_after):
        return None
    return str(max(math.ceil(retry_after), 0))


def circuit_open_response(exc: CircuitOpenError, *, show_breaker: bool) -> Response:
    """The 503 response for ``exc``. The breaker's name is in the body only
    with ``show_breaker``: it names an internal dependency."""
    from starlette.responses import JSONResponse

    body: dict[str, Any] = {"detail": "Service Unavailable"}
    if show_breaker:
        body["breaker"] = exc.name
        if not math.isinf(exc.retry_after):
            body["retry_after"] = exc.retry_after
    header = retry_after_header(exc.retry_after)
    headers = None if header is None else {"Retry-After": header}
    return JSONResponse(body, status_code=503, headers=headers)


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
