"""requests: an ``HTTPAdapter`` with a breaker per authority.

::

    session = requests.Session()
    session.mount("https://", BreakerAdapter())
    session.mount("http://", BreakerAdapter(max_retries=Retry(total=3)))

It takes the usual adapter arguments (``pool_connections``, ``pool_maxsize``,
``max_retries``, ``pool_block``) besides the integrations' shared keywords
(docs/integrations.md). urllib3's retries (``max_retries=``) run inside the
adapter's ``send``, so the breaker sees one outcome per request after them:
the last attempt's response, or ``RetryError`` / ``ConnectionError`` once
they are exhausted, never each attempt.

Failures: ``requests.ConnectionError`` (refused, reset, connect timeouts,
proxy and TLS errors), ``requests.Timeout``, ``requests.exceptions.RetryError``
and the ``failure_statuses``; every other exception (``InvalidURL``,
``InvalidSchema``, ``InvalidHeader``...) is neutral. A rejection raises
``CircuitOpen``, a ``qbreaker.CircuitOpenError`` and a
``requests.RequestException`` but not a ``requests.ConnectionError``.

The adapter returns at the response's headers (requests reads the body
afterwards, outside it) and classifies on the status. With
``count_body_errors=True`` it reads the body of a response whose status is a
success, even with ``stream=True``, so that an error reading it
(``ChunkedEncodingError``, ``ContentDecodingError``,
``ConnectionError``) is a failure too.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import urlsplit

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
    import requests
    from requests.adapters import HTTPAdapter as _Base

    from .. import BreakerGroup

    class CircuitOpen(CircuitOpenError, requests.RequestException):
        """A request rejected by its open breaker, without being sent."""

        def __init__(
            self,
            name: str,
            state: State,
            retry_after: float,
            request: requests.PreparedRequest | None = None,
        ) -> None: ...

else:
    _Base = library_class("requests.adapters", "HTTPAdapter", extra="requests")

__all__ = ("BreakerAdapter", "CircuitOpen", "by_authority")

_DOC = """A request rejected by its open breaker, without being sent.

Both a ``qbreaker.CircuitOpenError`` (``retry_after``, ``name``, ``state``)
and a ``requests.RequestException`` (``request``), never a
``requests.ConnectionError``, so retry helpers do not retry it.
"""

_CIRCUIT_OPEN = LazyRejection(
    __name__, "requests.RequestException", extra="requests", doc=_DOC
)
__getattr__ = _CIRCUIT_OPEN.attribute


@functools.cache
def _failures() -> tuple[type[BaseException], ...]:
    requests = require("requests", extra="requests")

    return (requests.ConnectionError, requests.Timeout, requests.exceptions.RetryError)


@functools.cache
def _body_failures() -> tuple[type[BaseException], ...]:
    requests = require("requests", extra="requests")

    return (
        *_failures(),
        requests.exceptions.ChunkedEncodingError,
        requests.exceptions.ContentDecodingError,
    )


def by_authority(request: requests.PreparedRequest) -> str:
    """The default key: ``scheme://host:port`` of the request's URL."""
    url = urlsplit(request.url or "")
    return authority(url.scheme, url.hostname or "", url.port)


class BreakerAdapter(_Base):
    """A ``requests.adapters.HTTPAdapter`` that protects each authority
    (``scheme://host:port``) with a breaker.

    ``group``: the ``BreakerGroup`` to take breakers from (default: one of
    this adapter's own, see docs/integrations.md). ``key``: the
    ``PreparedRequest`` to its breaker's name (default ``by_authority``).
    ``failure_statuses``: the statuses that count as failures (default 5xx,
    408, 429). ``open_on_retry_after``: False, True (capped at 60 s) or a
    cap in seconds; a 429 or 503 with ``Retry-After`` then opens the breaker
    for that long. ``count_body_errors``: read a success's body here so that
    a failure to read it counts. Any other keyword goes to ``HTTPAdapter``.
    """

    def __init__(
        self,
        *,
        group: BreakerGroup | None = None,
        key: Callable[[requests.PreparedRequest], str] | None = None,
        failure_statuses: Iterable[int] = DEFAULT_FAILURE_STATUSES,
        open_on_retry_after: RetryAfterSetting = False,
        count_body_errors: bool = False,
        **adapter_arguments: Any,
    ) -> None:
        self._failures = _failures()  # first: without requests, says what to install
        self._rules: Rules[requests.PreparedRequest] = Rules(
            group=group,
            key=by_authority if key is None else key,
            failure_statuses=failure_statuses,
            open_on_retry_after=open_on_retry_after,
            count_body_errors=count_body_errors,
            rejection=_CIRCUIT_OPEN,
        )
        super().__init__(**adapter_arguments)

    @property
    def group(self) -> BreakerGroup:
        """The group this adapter takes its breakers from."""
        return self._rules.group

    def __getstate__(self) -> dict[str, Any]:
        # HTTPAdapter pickles only its own settings; a copy without its rules
        # would fail later, far from here.
        raise TypeError(
            f"a {type(self).__name__} cannot be pickled or copied: its "
            f"breakers belong to this process"
        )

    # send()'s other arguments pass through untouched: requests' own
    # annotations and types-requests' stubs type them differently, and only
    # this signature overrides both.
    def send(
        self, request: requests.PreparedRequest, *args: Any, **kwargs: Any
    ) -> requests.Response:
        admission = self._rules.admit(request)
        try:
            response = super().send(request, *args, **kwargs)
        except BaseException as exc:
            admission.settle_exception(exc, self._failures)
            raise
        if self._rules.reads_body(response.status_code):
            try:
                response.content  # noqa: B018 - reads and keeps the body
            except BaseException as exc:
                admission.settle_exception(exc, _body_failures())
                response.close()  # the caller never sees it to close it
                raise
        admission.settle_status(response.status_code, response.headers)
        return response
