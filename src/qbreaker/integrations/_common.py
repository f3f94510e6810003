"""The rules every client integration shares, written once.

An integration instance (a transport, an adapter, a middleware, an
interceptor) builds one ``Rules`` from its keyword arguments and, per call::

    admission = rules.admit(request)        # raises the rejection if open
    try:
        response = send(request)
    except BaseException as exc:
        admission.settle_exception(exc, FAILURES)   # a failure, else neutral
        raise
    admission.settle_status(response.status, response.headers)

The rules:

- **Key.** One breaker per authority, ``scheme://host:port`` with the default
  port filled in (``authority()``), from a ``BreakerGroup``. ``key=`` takes a
  callable of the library's request that returns another key (a str), such
  as the method plus a route *template*; never the raw path or query, whose
  values are unbounded.
- **Group.** ``group=`` shares a group between instances. Without it each
  instance gets a group of its own (``default_group()``, the settings in
  ``DEFAULT_GROUP_SETTINGS``), never a process-wide one.
- **Tickets.** ``acquire()``/``release()``, never ``record_*``: a response
  that arrives after a transition is counted in totals and changes no state.
- **Statuses.** ``failure_statuses`` (default 5xx, 408, 429) are failures;
  every other status is a success, since the server answered. The response
  is still returned to the caller.
- **Exceptions.** Only the library's transient errors (given by each
  integration) are failures; anything else, cancellation and local usage
  errors included, is neutral.
- **Rejection.** ``rejection_class()`` makes the library's rejection type,
  both a ``CircuitOpenError`` and the library's base request error. It
  carries ``retry_after`` and the request, and pickles (without the request).
- **Bodies.** A call is classified at the response's headers, on its
  status. With ``count_body_errors`` the integration reads a success's body
  before settling, so that an error reading it is a failure (the response
  is then no longer streamed).
- **Retry-After.** With ``open_on_retry_after`` (off by default), a 429 or
  503 whose ``Retry-After`` gives seconds or an HTTP-date opens the breaker
  for that long (``breaker.open_for``), at most the cap.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Iterable, Mapping
from types import MappingProxyType, ModuleType
from typing import Any, Callable, Generic, Protocol, TypeVar, Union

from .. import CircuitOpenError, State
from .._impl.group import BreakerGroup
from .._impl.select import CircuitBreaker

__all__ = (
    "DEFAULT_FAILURE_STATUSES",
    "DEFAULT_GROUP_SETTINGS",
    "DEFAULT_MAX_BREAKERS",
    "DEFAULT_RETRY_AFTER_CAP",
    "Admission",
    "Headers",
    "LazyRejection",
    "Rules",
    "authority",
    "default_group",
    "library_class",
    "parse_retry_after",
    "rejection_class",
    "require",
)

RequestT = TypeVar("RequestT")

#: The breaker settings of a group made when ``group=`` is omitted: trip on a
#: failure rate of 50 % over the last 10 s once 20 calls were seen there (no
#: consecutive-failure trip, which a busy, slightly flaky host would hit by
#: chance), stay open 10 s, then probe with up to 3 calls.
DEFAULT_GROUP_SETTINGS: Mapping[str, Any] = MappingProxyType(
    {
        "max_failures": None,
        "failure_rate_threshold": 0.5,
        "window_seconds": 10.0,
        "minimum_calls": 20,
        "reset_timeout": 10.0,
        "half_open_max": 3,
    }
)

#: The bound of a default group: at most this many idle, closed breakers
#: are kept (see ``BreakerGroup(max_breakers=)``).
DEFAULT_MAX_BREAKERS = 1000

#: Statuses that count as failures unless ``failure_statuses=`` says
#: otherwise: every 5xx, 408 Request Timeout and 429 Too Many Requests.
DEFAULT_FAILURE_STATUSES: frozenset[int] = frozenset((*range(500, 600), 408, 429))

#: ``open_on_retry_after=True`` opens for at most this many seconds.
DEFAULT_RETRY_AFTER_CAP = 60.0

# The statuses whose Retry-After may open the breaker (RFC 9110, 10.2.3).
_RETRY_AFTER_STATUSES = frozenset((429, 503))

# The longest open a breaker takes (its reset_timeout's upper bound).
_MAX_OPEN = 134217.727

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}

KeyFunction = Callable[[RequestT], str]


class Headers(Protocol):
    """A response's headers, as every client library's mapping reads them
    (case-insensitively)."""

    def get(self, name: str, /) -> str | None: ...


RetryAfterSetting = Union[bool, float]


def default_group() -> BreakerGroup:
    """A new group with ``DEFAULT_GROUP_SETTINGS`` and ``DEFAULT_MAX_BREAKERS``."""
    return BreakerGroup(max_breakers=DEFAULT_MAX_BREAKERS, **DEFAULT_GROUP_SETTINGS)


def authority(scheme: str, host: str, port: int | None) -> str:
    """``scheme://host:port``, lowercase, with the scheme's default port when
    ``port`` is None, and an IPv6 host in brackets."""
    scheme = scheme.lower()
    host = host.lower()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    if port is None:
        port = _DEFAULT_PORTS.get(scheme)
    return f"{scheme}://{host}" if port is None else f"{scheme}://{host}:{port}"


def parse_retry_after(value: str, now: float | None = None) -> float | None:
    """The seconds a ``Retry-After`` value asks for: delta-seconds or an
    HTTP-date (against ``now``, the wall clock by default). None when the
    value is neither, or is not in the future."""
    text = value.strip()
    if text.isdigit() and text.isascii():
        # Digits only; more than ten of them is longer than any cap anyway.
        seconds = float(text) if len(text) <= 10 else float(10**10)
    else:
        from email.utils import parsedate_to_datetime  # rare: loaded only here

        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:  # a date without a zone is taken as GMT
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return seconds if seconds > 0 else None


def _failure_statuses(value: Iterable[int]) -> frozenset[int]:
    try:
        statuses = frozenset(value)
    except TypeError:
        raise TypeError(
            f"failure_statuses must be an iterable of HTTP statuses (ints in "
            f"[100, 599]), got {value!r}"
        ) from None
    bad = [
        s
        for s in statuses
        if isinstance(s, bool) or not isinstance(s, int) or not 100 <= s <= 599
    ]
    if bad:
        raise ValueError(
            f"failure_statuses must hold HTTP statuses (ints in [100, 599]), "
            f"got {sorted(bad, key=repr)!r} in {value!r}"
        )
    return statuses


def _retry_after_cap(value: RetryAfterSetting) -> float | None:
    """The cap of ``open_on_retry_after``, or None when it is off."""
    if value is False:
        return None
    if value is True:
        return DEFAULT_RETRY_AFTER_CAP
    if (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and 0.001 <= value <= _MAX_OPEN
    ):
        return float(value)
    raise (ValueError if isinstance(value, (int, float)) else TypeError)(
        f"open_on_retry_after must be False, True (a cap of "
        f"{DEFAULT_RETRY_AFTER_CAP:g} s) or a cap in seconds in "
        f"[0.001, {_MAX_OPEN}], got {value!r}"
    )


class Rules(Generic[RequestT]):
    """The shared rules of one integration instance.

    ``key`` maps the library's request to its breaker's name (an
    integration passes its authority function as the default); the other
    arguments are the integration's keywords, validated here.
    """

    __slots__ = (
        "group",
        "_key",
        "_failure_statuses",
        "_retry_after_cap",
        "_count_body_errors",
        "_reject",
        "_timed",
    )

    group: BreakerGroup

    def __init__(
        self,
        *,
        group: BreakerGroup | None,
        key: KeyFunction[RequestT],
        failure_statuses: Iterable[int],
        open_on_retry_after: RetryAfterSetting,
        rejection: Callable[[str, State, float, Any], CircuitOpenError],
        count_body_errors: bool = False,
    ) -> None:
        if group is None:
            group = default_group()
        elif not isinstance(group, BreakerGroup):
            raise TypeError(
                f"group must be a qbreaker.BreakerGroup or None, got {group!r}"
            )
        if not callable(key):
            raise TypeError(
                f"key must be a callable taking the request and returning the "
                f"breaker's name (a str), got {key!r}"
            )
        self.group = group
        # Durations only for a slow-call policy: release() with a duration
        # costs several times a bare one. The group's defaults say whether
        # its breakers have one.
        self._timed = group._defaults.get("slow_call_duration") is not None
        self._key = key
        self._failure_statuses = _failure_statuses(failure_statuses)
        self._retry_after_cap = _retry_after_cap(open_on_retry_after)
        if not isinstance(count_body_errors, bool):
            raise TypeError(
                f"count_body_errors must be True or False, got {count_body_errors!r}"
            )
        self._count_body_errors = count_body_errors
        self._reject = rejection

    def breaker(self, request: RequestT) -> CircuitBreaker:
        """The breaker of ``request``'s key."""
        name = self._key(request)
        if type(name) is not str:
            raise TypeError(
                f"key= must return the breaker's name as a str, got {name!r} "
                f"from {self._key!r}"
            )
        return self.group[name]

    def admit(self, request: RequestT) -> Admission:
        """A ticket for ``request``'s breaker, or raise its rejection."""
        breaker = self.breaker(request)
        ticket = breaker.acquire()
        if not ticket:
            raise self._reject(
                breaker.name, breaker.state, breaker.retry_after, request
            )
        return Admission(self, breaker, ticket)

    def is_failure_status(self, status: int) -> bool:
        return status in self._failure_statuses

    def reads_body(self, status: int) -> bool:
        """Whether to read a response's body before settling: only with
        ``count_body_errors``, and only when its status is a success (a
        failure is settled already, whatever the body holds)."""
        return self._count_body_errors and status not in self._failure_statuses


class Admission:
    """One admitted call: its breaker and ticket, reported exactly once
    through one of the ``settle_*`` methods or ``release``."""

    __slots__ = ("breaker", "ticket", "_rules", "_started")

    def __init__(self, rules: Rules[Any], breaker: CircuitBreaker, ticket: int) -> None:
        self._rules = rules
        self.breaker = breaker
        self.ticket = ticket
        self._started = time.monotonic() if rules._timed else None

    def release(self, ok: bool | None) -> None:
        """Report success (True), failure (False) or neutral (None), with the
        call's duration when the group's defaults set a slow-call policy."""
        if self._started is None:
            self.breaker.release(self.ticket, ok)
        else:
            self.breaker.release(self.ticket, ok, time.monotonic() - self._started)

    def settle_status(self, status: int, headers: Headers | None = None) -> None:
        """Report a response by its status; with ``open_on_retry_after``, a
        429 or 503 whose ``headers`` carry ``Retry-After`` then opens the
        breaker for that long (the headers are read only then)."""
        self.release(not self._rules.is_failure_status(status))
        if (
            headers is not None
            and status in _RETRY_AFTER_STATUSES
            and self._rules._retry_after_cap is not None
        ):
            value = headers.get("Retry-After")
            if value is not None:
                self.open_for(parse_retry_after(value))

    def settle_exception(
        self, exc: BaseException, failures: tuple[type[BaseException], ...]
    ) -> None:
        """Report an exception: a failure if it is one of ``failures`` (the
        library's transient errors), else neutral."""
        self.release(False if isinstance(exc, failures) else None)

    def open_for(self, seconds: float | None) -> None:
        """Open the breaker for ``seconds`` (at most the cap) if
        ``open_on_retry_after`` is on; a server's own pushback, such as
        Retry-After or gRPC's ``grpc-retry-pushback-ms``."""
        cap = self._rules._retry_after_cap
        if cap is not None and seconds is not None and seconds >= 0.001:
            self.breaker.open_for(min(seconds, cap))


# -- the dual-type rejection ------------------------------------------------

_classes: dict[tuple[str, str], type[CircuitOpenError]] = {}
_classes_lock = threading.Lock()


def _init_rejection(
    self: CircuitOpenError,
    name: str,
    state: State,
    retry_after: float,
    request: object = None,
) -> None:
    CircuitOpenError.__init__(self, name, state, retry_after)
    # httpx's base error takes it through a property (whose getter raises
    # RuntimeError while it is None), the others as an attribute.
    self.request = request  # type: ignore[attr-defined]


def rejection_class(
    base: type[Exception], *, module: str, name: str, doc: str
) -> type[CircuitOpenError]:
    """The class ``module.name``: a ``CircuitOpenError`` and a ``base``.

    Made once per process (the same class on every call), so that pickle
    finds it: the module must return it from its ``__getattr__`` under
    ``name``. Its constructor is ``(name, state, retry_after, request=None)``;
    ``base`` must accept the message as its one positional argument. It
    pickles as a ``CircuitOpenError`` does, without the request.
    """
    with _classes_lock:
        made = _classes.get((module, name))
        if made is None:
            made = type(
                name,
                (CircuitOpenError, base),
                {
                    "__module__": module,
                    "__qualname__": name,
                    "__doc__": doc,
                    "__init__": _init_rejection,
                },
            )
            _classes[module, name] = made
        return made


class LazyRejection:
    """An HTTP integration's ``CircuitOpen``: ``rejection_class()`` of its
    library's base request error (``base``, dotted, such as
    ``"httpx.RequestError"``), made when first needed so that the module
    imports without its library.

    Called, it makes a rejection (``Rules``' ``rejection``); ``attribute``
    is the module's ``__getattr__``, which pickle and importers use to find
    the class.
    """

    __slots__ = ("_module", "_base", "_extra", "_doc", "_made")

    def __init__(self, module: str, base: str, *, extra: str, doc: str) -> None:
        self._module = module
        self._base = base
        self._extra = extra
        self._doc = doc
        self._made: type[CircuitOpenError] | None = None

    def type(self) -> type[CircuitOpenError]:
        made = self._made
        if made is None:  # a race makes the same class twice: rejection_class
            library, _, name = self._base.rpartition(".")
            base = getattr(require(library, extra=self._extra), name)
            made = self._made = rejection_class(
                base, module=self._module, name="CircuitOpen", doc=self._doc
            )
        return made

    def __call__(
        self, name: str, state: State, retry_after: float, request: Any
    ) -> CircuitOpenError:
        return self.type()(name, state, retry_after, request)  # type: ignore[call-arg]

    def attribute(self, name: str) -> Any:
        if name == "CircuitOpen":
            return self.type()
        raise AttributeError(f"module {self._module!r} has no attribute {name!r}")


# -- the integrated library ---------------------------------------------------


def _needs(module: str, extra: str) -> str:
    return (
        f"this needs {module.partition('.')[0]}, which is not installed: "
        f'pip install "qbreaker[{extra}]"'
    )


def require(module: str, *, extra: str) -> ModuleType:
    """The integrated library's ``module``, imported now; if it is missing,
    an ImportError that names the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(_needs(module, extra)) from exc


def library_class(module: str, name: str, *, extra: str) -> type[Any]:
    """The class ``module.name`` of the integrated library, to subclass.

    An integration module imports alone even without its library (the
    package's import checks import every module), so a missing library gives
    a stand-in whose construction raises the ImportError of ``require()``,
    instead of failing the import.
    """
    try:
        found: type[Any] = getattr(importlib.import_module(module), name)
        return found
    except ImportError as exc:
        missing = exc

    class Missing:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise ImportError(_needs(module, extra)) from missing

    Missing.__qualname__ = Missing.__name__ = f"Missing{name}"
    return Missing
