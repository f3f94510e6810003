"""aiohttp (3.12 and later): a client middleware with a breaker per authority.

::

    async with aiohttp.ClientSession(middlewares=(BreakerMiddleware(),)) as session:
        async with session.get(url) as response:
            ...

The rules are the integrations' shared ones (docs/integrations.md). The
middleware runs once per request sent, so each redirect hop is judged by its
own authority's breaker; the first middleware listed wraps the others, so
list a retrying middleware before this one for each attempt to be counted.

Failures: ``aiohttp.ClientConnectionError`` (refused, reset, disconnected,
connect and read timeouts), ``TimeoutError``, the session's total timeout
(which aiohttp applies by cancelling the request) and the
``failure_statuses``; every other exception (``InvalidURL``, a cancellation
by the caller) is neutral. A rejection raises ``CircuitOpen``, a
``qbreaker.CircuitOpenError`` and an ``aiohttp.ClientError`` but not an
``aiohttp.ClientConnectionError``.

The middleware returns at the response's headers and classifies on its
status. With ``count_body_errors=True`` it reads the body of a response
whose status is a success before returning it, so that an error reading it
(``ClientPayloadError``) is a failure too; the body is then buffered.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable
from typing import TYPE_CHECKING, Callable

from .. import CircuitOpenError, State
from ._common import (
    DEFAULT_FAILURE_STATUSES,
    LazyRejection,
    RetryAfterSetting,
    Rules,
    authority,
    require,
)

if TYPE_CHECKING:
    import aiohttp
    from aiohttp import ClientHandlerType, ClientRequest, ClientResponse

    from .. import BreakerGroup

    class CircuitOpen(CircuitOpenError, aiohttp.ClientError):
        """A request rejected by its open breaker, without being sent."""

        request: ClientRequest | None

        def __init__(
            self,
            name: str,
            state: State,
            retry_after: float,
            request: ClientRequest | None = None,
        ) -> None: ...


__all__ = ("BreakerMiddleware", "CircuitOpen", "by_authority")

_DOC = """A request rejected by its open breaker, without being sent.

Both a ``qbreaker.CircuitOpenError`` (``retry_after``, ``name``, ``state``)
and an ``aiohttp.ClientError`` (with the ``ClientRequest`` as ``request``),
never an ``aiohttp.ClientConnectionError``, so retry helpers do not retry it.
"""


_CIRCUIT_OPEN = LazyRejection(
    __name__, "aiohttp.ClientError", extra="aiohttp", doc=_DOC
)
__getattr__ = _CIRCUIT_OPEN.attribute


@functools.cache
def _failures() -> tuple[type[BaseException], ...]:
    aiohttp = require("aiohttp", extra="aiohttp")

    return (aiohttp.ClientConnectionError, asyncio.TimeoutError)


@functools.cache
def _body_failures() -> tuple[type[BaseException], ...]:
    aiohttp = require("aiohttp", extra="aiohttp")

    return (*_failures(), aiohttp.ClientPayloadError)


def by_authority(request: ClientRequest) -> str:
    """The default key: ``scheme://host:port`` of the request's URL."""
    url = request.url
    return authority(url.scheme, url.host or "", url.port)


def _timed_out(request: ClientRequest) -> bool:
    """Whether the session's total timeout cancelled ``request``.

    aiohttp enforces ``ClientTimeout(total=)`` by cancelling the task and
    turns the cancellation into a TimeoutError only outside the middlewares,
    so inside it that timeout looks like the caller's cancellation; the
    request's timer (private to aiohttp, hence read defensively) tells them
    apart."""
    return bool(getattr(getattr(request, "_timer", None), "_cancelled", False))


class BreakerMiddleware:
    """An aiohttp client middleware that protects each authority
    (``scheme://host:port``) with a breaker.

    ``group``: the ``BreakerGroup`` to take breakers from (default: one of
    this middleware's own, see docs/integrations.md). ``key``: the
    ``ClientRequest`` to its breaker's name (default ``by_authority``).
    ``failure_statuses``: the statuses that count as failures (default 5xx,
    408, 429). ``open_on_retry_after``: False, True (capped at 60 s) or a
    cap in seconds; a 429 or 503 with ``Retry-After`` then opens the breaker
    for that long. ``count_body_errors``: read a success's body here so that
    a failure to read it counts.
    """

    __slots__ = ("_rules", "_failures")

    def __init__(
        self,
        *,
        group: BreakerGroup | None = None,
        key: Callable[[ClientRequest], str] | None = None,
        failure_statuses: Iterable[int] = DEFAULT_FAILURE_STATUSES,
        open_on_retry_after: RetryAfterSetting = False,
        count_body_errors: bool = False,
    ) -> None:
        self._failures = _failures()  # first: without aiohttp, says what to install
        self._rules: Rules[ClientRequest] = Rules(
            group=group,
            key=by_authority if key is None else key,
            failure_statuses=failure_statuses,
            open_on_retry_after=open_on_retry_after,
            count_body_errors=count_body_errors,
            rejection=_CIRCUIT_OPEN,
        )

    @property
    def group(self) -> BreakerGroup:
        """The group this middleware takes its breakers from."""
        return self._rules.group

    async def __call__(
        self, request: ClientRequest, handler: ClientHandlerType
    ) -> ClientResponse:
        admission = self._rules.admit(request)
        failures = self._failures
        try:
            response = await handler(request)
            if self._rules.reads_body(response.status):
                failures = _body_failures()
                try:
                    await response.read()
                except BaseException:
                    response.close()  # the caller never sees it to close it
                    raise
        except asyncio.CancelledError:
            admission.release(False if _timed_out(request) else None)
            raise
        except BaseException as exc:
            admission.settle_exception(exc, failures)
            raise
        admission.settle_status(response.status, response.headers)
        return response
