"""httpx: transports that put a breaker per authority in front of another.

::

    client = httpx.Client(transport=BreakerTransport(httpx.HTTPTransport()))
    client = httpx.AsyncClient(
        transport=AsyncBreakerTransport(httpx.AsyncHTTPTransport())
    )

or per host through ``mounts=``. The rules are the integrations' shared ones
(docs/integrations.md). Failures: ``httpx.TimeoutException`` (connect, read,
write and pool timeouts), ``httpx.NetworkError``, ``httpx.RemoteProtocolError``,
``httpx.ProxyError`` and the ``failure_statuses``; every other exception
(``InvalidURL``, ``UnsupportedProtocol``, ``LocalProtocolError``,
cancellation) is neutral. A rejection raises ``CircuitOpen``, a
``qbreaker.CircuitOpenError`` and an ``httpx.RequestError`` but not an
``httpx.TransportError``, which retry helpers retry.

The transport returns at the response's headers and classifies on its
status. With ``count_body_errors=True`` it reads the body of a response
whose status is a success before returning it, so that an error reading it
is a failure too; the response is then no longer streamed.
"""

from __future__ import annotations

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
    library_class,
    require,
)

if TYPE_CHECKING:
    import httpx
    from httpx import AsyncBaseTransport as _AsyncBase
    from httpx import BaseTransport as _Base

    from .. import BreakerGroup

    class CircuitOpen(CircuitOpenError, httpx.RequestError):
        """A request rejected by its open breaker, without being sent."""

        def __init__(
            self,
            name: str,
            state: State,
            retry_after: float,
            request: httpx.Request | None = None,
        ) -> None: ...

else:
    _Base = library_class("httpx", "BaseTransport", extra="httpx")
    _AsyncBase = library_class("httpx", "AsyncBaseTransport", extra="httpx")

__all__ = ("AsyncBreakerTransport", "BreakerTransport", "CircuitOpen", "by_authority")

_DOC = """A request rejected by its open breaker, without being sent.

Both a ``qbreaker.CircuitOpenError`` (``retry_after``, ``name``, ``state``)
and an ``httpx.RequestError`` (``request``), never an
``httpx.TransportError``, so retry helpers do not retry it.
"""


_CIRCUIT_OPEN = LazyRejection(__name__, "httpx.RequestError", extra="httpx", doc=_DOC)
__getattr__ = _CIRCUIT_OPEN.attribute


@functools.cache
def _failures() -> tuple[type[BaseException], ...]:
    httpx = require("httpx", extra="httpx")

    return (
        httpx.TimeoutException,
        httpx.NetworkError,
        httpx.RemoteProtocolError,
        httpx.ProxyError,
    )


def by_authority(request: httpx.Request) -> str:
    """The default key: ``scheme://host:port`` of the request's URL."""
    url = request.url
    return authority(url.scheme, url.host, url.port)


def _rules(
    group: BreakerGroup | None,
    key: Callable[[httpx.Request], str] | None,
    failure_statuses: Iterable[int],
    open_on_retry_after: RetryAfterSetting,
    count_body_errors: bool,
) -> Rules[httpx.Request]:
    return Rules(
        group=group,
        key=by_authority if key is None else key,
        failure_statuses=failure_statuses,
        open_on_retry_after=open_on_retry_after,
        count_body_errors=count_body_errors,
        rejection=_CIRCUIT_OPEN,
    )


def _check_inner(inner: object, expected: str, method: str) -> None:
    if not callable(getattr(inner, method, None)):
        raise TypeError(f"inner must be an {expected} (with {method}()), got {inner!r}")


class BreakerTransport(_Base):
    """An ``httpx.BaseTransport`` that protects ``inner`` with a breaker per
    authority.

    ``group``: the ``BreakerGroup`` to take breakers from (default: one of
    this transport's own, see docs/integrations.md). ``key``: the request to
    its breaker's name (default ``by_authority``). ``failure_statuses``:
    the statuses that count as failures (default 5xx, 408, 429).
    ``open_on_retry_after``: False, True (capped at 60 s) or a cap in
    seconds; a 429 or 503 with ``Retry-After`` then opens the breaker for
    that long. ``count_body_errors``: read a success's body here so that a
    failure to read it counts.
    """

    def __init__(
        self,
        inner: httpx.BaseTransport,
        *,
        group: BreakerGroup | None = None,
        key: Callable[[httpx.Request], str] | None = None,
        failure_statuses: Iterable[int] = DEFAULT_FAILURE_STATUSES,
        open_on_retry_after: RetryAfterSetting = False,
        count_body_errors: bool = False,
    ) -> None:
        self._failures = _failures()  # first: without httpx, says what to install
        _check_inner(inner, "httpx.BaseTransport", "handle_request")
        self._inner = inner
        self._rules = _rules(
            group, key, failure_statuses, open_on_retry_after, count_body_errors
        )

    @property
    def group(self) -> BreakerGroup:
        """The group this transport takes its breakers from."""
        return self._rules.group

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        admission = self._rules.admit(request)
        try:
            response = self._inner.handle_request(request)
            if self._rules.reads_body(response.status_code):
                try:
                    response.read()
                except BaseException:
                    response.close()  # the caller never sees it to close it
                    raise
        except BaseException as exc:
            admission.settle_exception(exc, self._failures)
            raise
        admission.settle_status(response.status_code, response.headers)
        return response

    def close(self) -> None:
        self._inner.close()


class AsyncBreakerTransport(_AsyncBase):
    """``BreakerTransport`` for ``httpx.AsyncClient``: it protects an
    ``httpx.AsyncBaseTransport`` and takes the same keywords. A request
    cancelled by its caller is neutral."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        *,
        group: BreakerGroup | None = None,
        key: Callable[[httpx.Request], str] | None = None,
        failure_statuses: Iterable[int] = DEFAULT_FAILURE_STATUSES,
        open_on_retry_after: RetryAfterSetting = False,
        count_body_errors: bool = False,
    ) -> None:
        self._failures = _failures()  # first: without httpx, says what to install
        _check_inner(inner, "httpx.AsyncBaseTransport", "handle_async_request")
        self._inner = inner
        self._rules = _rules(
            group, key, failure_statuses, open_on_retry_after, count_body_errors
        )

    @property
    def group(self) -> BreakerGroup:
        """The group this transport takes its breakers from."""
        return self._rules.group

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        admission = self._rules.admit(request)
        try:
            response = await self._inner.handle_async_request(request)
            if self._rules.reads_body(response.status_code):
                try:
                    await response.aread()
                except BaseException:
                    await response.aclose()  # the caller never sees it
                    raise
        except BaseException as exc:
            admission.settle_exception(exc, self._failures)
            raise
        admission.settle_status(response.status_code, response.headers)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()
