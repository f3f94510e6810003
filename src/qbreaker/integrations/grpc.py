"""gRPC: client interceptors that put a breaker in front of a channel.

``BreakerInterceptor(target=...)`` is a sync client interceptor, installed
with ``grpc.intercept_channel(channel, interceptor)``;
``AioBreakerInterceptor(target=...)`` is its ``grpc.aio`` counterpart, given
as ``grpc.aio.insecure_channel(target, interceptors=it.interceptors)`` (its
unary-unary interceptor and its stream-unary twin: grpc.aio files an
interceptor under one kind of call only).

- **Key.** An interceptor cannot see its channel's target, so it is given:
  ``target=`` is the breaker's name (``key="method"``: the target plus the
  full method name, one breaker per method; or a callable of ``(target,
  method)`` returning the name). One ``group=`` can serve the interceptors of
  many channels; without it each interceptor has a group of its own, with
  the integrations' default settings (``_common.DEFAULT_GROUP_SETTINGS``).
- **Outcomes.** The status codes in ``failure_codes`` are failures
  (``DEFAULT_FAILURE_CODES``: UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL,
  UNKNOWN, DATA_LOSS and RESOURCE_EXHAUSTED, gRPC's 429); CANCELLED is
  neutral; every other code is a success, since the server answered. An
  error raised on the client side before the RPC is made (a closed channel)
  is neutral. Tickets, never ``record_*``.
- **Rejection.** The call fails without reaching the channel, as an ordinary
  failed RPC: code UNAVAILABLE, details the breaker's message. The sync
  interceptor returns a completed call (``CircuitOpenRpcError``: a
  ``grpc.RpcError``, ``grpc.Call`` and ``grpc.Future``), so a blocking stub
  raises it, ``.with_call()`` too, and ``.future()`` returns it done;
  raising from an interceptor would reach a ``.future()`` caller as an
  INTERNAL error. The aio interceptor raises ``AioCircuitOpenRpcError``, a
  ``grpc.aio.AioRpcError``. Both are ``qbreaker.CircuitOpenError``\\ s, with
  ``retry_after``, and ``request``: the RPC's full method name (not pickled).
- **Pushback.** With ``open_on_retry_after`` (off by default; True caps it at
  ``_common.DEFAULT_RETRY_AFTER_CAP`` seconds, a number is the cap), a failed
  call whose trailers carry ``grpc-retry-pushback-ms`` (gRFC A6) opens the
  breaker for that long.
- **Streams.** The sync interceptor records a unary-stream or stream-stream
  call when it ends: when grpc runs the call's done callbacks, just after
  the caller's iterator stops (as for ``.future()``, an instant later than
  the caller sees the end). The aio interceptor does not wrap streaming
  responses: grpc.aio gives a call's status only to a coroutine, so seeing
  the end of a stream would mean returning an iterator of its own in place
  of the call, and grpc.aio then refuses the call's ``read()`` (and
  ``write()`` and ``done_writing()`` on stream-stream calls), breaking
  callers that use them; a done callback could count the outcome only from
  a task of its own, after the caller has moved on. Protect those calls with
  ``async with breaker:`` around the read loop.

``import qbreaker`` does not import this module, and this module imports
without grpc (``pip install "qbreaker[grpc]"``): an interceptor made without
it raises an ImportError that names the extra.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, Union

from .._errors import CircuitOpenError
from ._common import (
    Admission,
    RetryAfterSetting,
    Rules,
    library_class,
    rejection_class,
    require,
)

# The module imports without grpc (the package's import checks import every
# module): grpc's classes to subclass come from library_class, stand-ins whose
# construction names the extra when grpc is missing, and the rest is read
# from grpc when first used.
if TYPE_CHECKING:
    import grpc
    import grpc.aio

    from .._impl.group import BreakerGroup

    _RpcError = grpc.RpcError
    _Call = grpc.Call
    _Future = grpc.Future[Any]  # generic in the stubs only
    _AioRpcError = grpc.aio.AioRpcError
    _UnaryUnary = grpc.UnaryUnaryClientInterceptor
    _StreamUnary = grpc.StreamUnaryClientInterceptor
    _UnaryStream = grpc.UnaryStreamClientInterceptor
    _StreamStream = grpc.StreamStreamClientInterceptor
    _AioUnaryUnary = grpc.aio.UnaryUnaryClientInterceptor
    _AioStreamUnary = grpc.aio.StreamUnaryClientInterceptor
else:
    from .._lazy import LazyModule

    grpc = LazyModule("grpc")  # grpc imports grpc.aio itself

    def _grpc_class(module: str, name: str) -> type:
        return library_class(module, name, extra="grpc")

    _RpcError = _grpc_class("grpc", "RpcError")
    _Call = _grpc_class("grpc", "Call")
    _Future = _grpc_class("grpc", "Future")
    _AioRpcError = _grpc_class("grpc.aio", "AioRpcError")
    _UnaryUnary = _grpc_class("grpc", "UnaryUnaryClientInterceptor")
    _StreamUnary = _grpc_class("grpc", "StreamUnaryClientInterceptor")
    _UnaryStream = _grpc_class("grpc", "UnaryStreamClientInterceptor")
    _StreamStream = _grpc_class("grpc", "StreamStreamClientInterceptor")
    _AioUnaryUnary = _grpc_class("grpc.aio", "UnaryUnaryClientInterceptor")
    _AioStreamUnary = _grpc_class("grpc.aio", "StreamUnaryClientInterceptor")

__all__ = (
    "DEFAULT_FAILURE_CODES",
    "AioBreakerInterceptor",
    "AioCircuitOpenRpcError",
    "AioStreamUnaryBreakerInterceptor",
    "BreakerInterceptor",
    "CircuitOpenRpcError",
)

#: ``DEFAULT_FAILURE_CODES`` (read from the module, made on first use): the
#: codes that count as failures unless ``failure_codes=`` says otherwise, when
#: the server or the path to it is unwell, or asks for less traffic.
_DEFAULT_FAILURE_NAMES = (
    "UNAVAILABLE",
    "DEADLINE_EXCEEDED",
    "INTERNAL",
    "UNKNOWN",
    "DATA_LOSS",
    "RESOURCE_EXHAUSTED",
)

if TYPE_CHECKING:
    DEFAULT_FAILURE_CODES: frozenset[grpc.StatusCode]

#: The trailer of a server's pushback (gRFC A6): milliseconds, as digits.
PUSHBACK_TRAILER = "grpc-retry-pushback-ms"

#: ``key=``: the target alone, the target plus the method, or a function of
#: ``(target, method)`` returning the breaker's name.
Key = Union[str, Callable[[str, str], str]]


# -- the rejections ---------------------------------------------------------


class _RejectedCall(_RpcError, _Call, _Future):
    """A call that failed with UNAVAILABLE before it started: the sync
    rejection is its own completed call, as grpc's own failed calls are."""

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return str(self)

    def initial_metadata(self) -> tuple[()]:
        return ()

    def trailing_metadata(self) -> tuple[()]:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> None:  # type: ignore[override]
        # None, as for grpc's own finished calls (the stubs say float).
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return False

    def cancelled(self) -> bool:
        return False

    def running(self) -> bool:
        return False

    def done(self) -> bool:
        return True

    def result(self, timeout: float | None = None) -> NoReturn:
        raise self

    def exception(self, timeout: float | None = None) -> _RejectedCall:
        return self

    def traceback(self, timeout: float | None = None) -> TracebackType | None:
        return self.__traceback__

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        fn(self)

    # A rejected unary-stream or stream-stream call: reading it raises.
    def __iter__(self) -> Iterator[NoReturn]:
        return self

    def __next__(self) -> NoReturn:
        raise self


class _AioRejection(_AioRpcError):
    """An ``AioRpcError`` made from a message alone, as ``CircuitOpenError``
    passes it: UNAVAILABLE, no metadata, the message as its details."""

    def __init__(self, message: str) -> None:
        metadata = grpc.aio.Metadata
        super().__init__(grpc.StatusCode.UNAVAILABLE, metadata(), metadata(), message)
        # AioRpcError passes no args to Exception; str() and pickling read them.
        self.args = (message,)


if TYPE_CHECKING:

    class CircuitOpenRpcError(CircuitOpenError, _RejectedCall):
        """See the module's docstring."""

    class AioCircuitOpenRpcError(CircuitOpenError, _AioRejection):
        """See the module's docstring."""


_LAZY = ("AioCircuitOpenRpcError", "CircuitOpenRpcError", "DEFAULT_FAILURE_CODES")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(_made(), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Made:
    """What this module makes from grpc, once, when first needed."""

    def __init__(self) -> None:
        codes = require("grpc", extra="grpc").StatusCode
        self.DEFAULT_FAILURE_CODES = frozenset(
            codes[name] for name in _DEFAULT_FAILURE_NAMES
        )
        self.CircuitOpenRpcError: type[CircuitOpenRpcError] = rejection_class(
            _RejectedCall,
            module=__name__,
            name="CircuitOpenRpcError",
            doc="A rejected gRPC call: a CircuitOpenError, and a grpc.RpcError "
            "with code() UNAVAILABLE that is its own completed grpc.Call and "
            "grpc.Future.",
        )  # type: ignore[assignment]
        self.AioCircuitOpenRpcError: type[AioCircuitOpenRpcError] = rejection_class(
            _AioRejection,
            module=__name__,
            name="AioCircuitOpenRpcError",
            doc="A rejected grpc.aio call: a CircuitOpenError and a "
            "grpc.aio.AioRpcError with code() UNAVAILABLE.",
        )  # type: ignore[assignment]


@functools.cache
def _made() -> _Made:
    return _Made()


# -- what both interceptors share --------------------------------------------


def _failure_codes(
    value: Iterable[grpc.StatusCode] | None,
) -> frozenset[grpc.StatusCode]:
    if value is None:
        return _made().DEFAULT_FAILURE_CODES
    accepted = "an iterable of grpc.StatusCode other than OK and CANCELLED"
    try:
        codes = frozenset(value)
    except TypeError:
        raise TypeError(f"failure_codes must be {accepted}, got {value!r}") from None
    if not all(isinstance(code, grpc.StatusCode) for code in codes):
        raise TypeError(f"failure_codes must be {accepted}, got {value!r}")
    if grpc.StatusCode.OK in codes or grpc.StatusCode.CANCELLED in codes:
        # CANCELLED is the caller's doing, never the server's.
        raise ValueError(f"failure_codes must be {accepted}, got {value!r}")
    return codes


def _key_function(target: str, key: Key) -> Callable[[str], str]:
    """The breaker's name as a function of the full method name."""
    if key == "target":
        return lambda method: target
    if key == "method":
        return lambda method: target + method
    if callable(key):
        return lambda method: key(target, method)
    raise TypeError(
        f'key must be "target", "method" or a callable of (target, method) '
        f"returning the breaker's name, got {key!r}"
    )


def _pushback_seconds(
    trailers: Iterable[tuple[str, str | bytes]] | None,
) -> float | None:
    """The seconds a ``grpc-retry-pushback-ms`` trailer asks for, if any.
    Anything but digits (gRFC A6 gives a negative value for "do not retry")
    names no time."""
    for name, value in trailers or ():
        if name == PUSHBACK_TRAILER and isinstance(value, str):
            text = value.strip()
            if text.isdigit() and text.isascii():
                return int(text) / 1000
    return None


class _Policy:
    """The rules of one interceptor, sync or aio."""

    __slots__ = ("rules", "target", "_failure_codes")

    def __init__(
        self,
        target: str,
        group: BreakerGroup | None,
        key: Key,
        failure_codes: Iterable[grpc.StatusCode] | None,
        open_on_retry_after: RetryAfterSetting,
        rejection: Callable[[], type[CircuitOpenError]],
    ) -> None:
        require("grpc", extra="grpc")  # names the extra when grpc is missing
        if not isinstance(target, str) or not target:
            raise TypeError(
                f"target must be the channel's target, a non-empty str such "
                f"as 'localhost:50051', got {target!r}"
            )
        self.target = target
        self._failure_codes = _failure_codes(failure_codes)
        self.rules: Rules[str] = Rules(
            group=group,
            key=_key_function(target, key),
            failure_statuses=(),  # HTTP's: a gRPC call has codes instead
            open_on_retry_after=open_on_retry_after,
            rejection=rejection(),
        )

    def admit(self, method: str | bytes) -> Admission:
        """A ticket for the method's breaker, or raise the rejection."""
        if isinstance(method, bytes):  # grpc.aio passes the method encoded
            method = method.decode("ascii", "replace")
        return self.rules.admit(method)

    def settle(
        self,
        admission: Admission,
        code: grpc.StatusCode | None,
        trailers: Iterable[tuple[str, str | bytes]] | None,
    ) -> None:
        """Report a finished call by its status code."""
        if code is grpc.StatusCode.CANCELLED or code is None:
            admission.release(None)
            return
        admission.release(code not in self._failure_codes)
        if code is not grpc.StatusCode.OK:
            admission.open_for(_pushback_seconds(trailers))


def _settle_exception(
    policy: _Policy, admission: Admission, exc: BaseException
) -> None:
    """A continuation raised: an RPC error counts by its code, anything
    else (a closed channel, cancellation) is neutral."""
    if isinstance(exc, grpc.RpcError) and isinstance(exc, grpc.Call):
        policy.settle(admission, exc.code(), exc.trailing_metadata())
    elif isinstance(exc, grpc.aio.AioRpcError):
        policy.settle(admission, exc.code(), exc.trailing_metadata())
    else:
        admission.release(None)


# -- sync ---------------------------------------------------------------------


class BreakerInterceptor(_UnaryUnary, _StreamUnary, _UnaryStream, _StreamStream):
    """A breaker for a sync channel: ``grpc.intercept_channel(channel, it)``.

    ``target`` names the channel's breaker; the other keywords are in the
    module's docstring. ``group`` is the ``BreakerGroup`` it draws from.
    """

    def __init__(
        self,
        *,
        target: str,
        group: BreakerGroup | None = None,
        key: Key = "target",
        failure_codes: Iterable[grpc.StatusCode] | None = None,
        open_on_retry_after: RetryAfterSetting = False,
    ) -> None:
        self._policy = _Policy(
            target,
            group,
            key,
            failure_codes,
            open_on_retry_after,
            lambda: _made().CircuitOpenRpcError,
        )

    @property
    def group(self) -> BreakerGroup:
        return self._policy.rules.group

    @property
    def target(self) -> str:
        return self._policy.target

    def _intercept(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Any], Any],
        details: grpc.ClientCallDetails,
        request: Any,
    ) -> Any:
        policy = self._policy
        try:
            admission = policy.admit(details.method)
        except CircuitOpenError as rejection:  # this module's CircuitOpenRpcError
            return rejection
        try:
            call = continuation(details, request)
        except BaseException as exc:
            _settle_exception(policy, admission, exc)
            raise

        def settle(done: Any) -> None:
            code = done.code()
            if code is grpc.StatusCode.INTERNAL and not isinstance(
                done.exception(), grpc.RpcError
            ):
                # grpc's stand-in for a Python error raised on this side (a
                # closed channel) before any RPC: neutral, as when raised.
                admission.release(None)
                return
            policy.settle(admission, code, done.trailing_metadata())

        # Done already for a blocking call (settled before it returns); for
        # .future() and streams, when grpc finishes the call.
        call.add_done_callback(settle)
        return call

    def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Any], Any],
        client_call_details: grpc.ClientCallDetails,
        request: Any,
    ) -> Any:
        return self._intercept(continuation, client_call_details, request)

    def intercept_stream_unary(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Any], Any],
        client_call_details: grpc.ClientCallDetails,
        request_iterator: Iterator[Any],
    ) -> Any:
        return self._intercept(continuation, client_call_details, request_iterator)

    def intercept_unary_stream(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Any], Any],
        client_call_details: grpc.ClientCallDetails,
        request: Any,
    ) -> Any:
        return self._intercept(continuation, client_call_details, request)

    def intercept_stream_stream(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Any], Any],
        client_call_details: grpc.ClientCallDetails,
        request_iterator: Iterator[Any],
    ) -> Any:
        return self._intercept(continuation, client_call_details, request_iterator)


# -- grpc.aio -------------------------------------------------------------------


class AioBreakerInterceptor(_AioUnaryUnary):
    """A breaker for a ``grpc.aio`` channel's unary-unary calls; its
    ``stream_unary`` is the same breaker for stream-unary calls.

    grpc.aio files each interceptor under one kind of call only (the first of
    its interceptor classes it is an instance of), so one object cannot
    serve both: give the channel ``interceptors=it.interceptors`` (both) or
    either one. Streaming responses are left alone (see the module's
    docstring). The same keywords as ``BreakerInterceptor``; an aio and a
    sync interceptor with the same ``group`` and target share one breaker.
    """

    def __init__(
        self,
        *,
        target: str,
        group: BreakerGroup | None = None,
        key: Key = "target",
        failure_codes: Iterable[grpc.StatusCode] | None = None,
        open_on_retry_after: RetryAfterSetting = False,
    ) -> None:
        self._policy = _Policy(
            target,
            group,
            key,
            failure_codes,
            open_on_retry_after,
            lambda: _made().AioCircuitOpenRpcError,
        )
        self.stream_unary = AioStreamUnaryBreakerInterceptor(self._policy)

    @property
    def interceptors(self) -> list[grpc.aio.ClientInterceptor]:
        """This interceptor and its stream-unary twin, for ``interceptors=``."""
        return [self, self.stream_unary]

    @property
    def group(self) -> BreakerGroup:
        return self._policy.rules.group

    @property
    def target(self) -> str:
        return self._policy.target

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[Any]],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        return await _intercept_aio(
            self._policy, continuation, client_call_details, request
        )


class AioStreamUnaryBreakerInterceptor(_AioStreamUnary):
    """The stream-unary side of an ``AioBreakerInterceptor``: its
    ``stream_unary`` attribute, sharing its breakers and rules."""

    def __init__(self, policy: _Policy) -> None:
        self._policy = policy

    async def intercept_stream_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[Any]],
        client_call_details: grpc.aio.ClientCallDetails,
        request_iterator: AsyncIterable[Any] | Iterable[Any],
    ) -> Any:
        return await _intercept_aio(
            self._policy, continuation, client_call_details, request_iterator
        )


async def _intercept_aio(
    policy: _Policy,
    continuation: Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[Any]],
    details: grpc.aio.ClientCallDetails,
    request: Any,
) -> Any:
    """One aio call with a unary response: admitted (or rejected by raising),
    then counted by its status before the caller's await returns."""
    admission = policy.admit(details.method)  # raises the rejection
    call = None
    try:
        call = await continuation(details, request)
        # Awaited here so that the outcome is counted before the caller's
        # await returns (a done callback could count it only later, from a
        # task of its own).
        code = await call.code()
        trailers = await call.trailing_metadata()
    except asyncio.CancelledError:
        # The caller cancelled (or timed out) the intercepted call while this
        # waited: cancel the RPC too, and count nothing.
        if call is not None:
            call.cancel()
        admission.release(None)
        raise
    except BaseException as exc:
        _settle_exception(policy, admission, exc)
        raise
    policy.settle(admission, code, trailers)
    return call
