"""The compat ``CircuitBreaker``: pybreaker 1.4.1's class on qbreaker's core.

Paths a call can take:

- compiled: with the default memory storage, no listener, and ``call`` not
  overridden by a subclass, ``breaker.call`` *is* the core's compiled
  ``call`` (an instance attribute) and a decorated function calls the core's
  compiled wrapper. pybreaker's rules that need Python (exclusions, the error
  on trip, the error on rejection) run in the core's hooks, which it calls
  only when the protected function raises or the call is rejected
  (``core``).
- Python: everything else (listeners, other storages, generators, coroutines,
  ``calling()``) goes through the methods below, which take a ticket from
  the engine, call listeners in a section of ``Delivery``, and report the
  outcome with the ticket.

Whenever what decides the path changes (listeners added or removed, a core
replaced by a manual transition or a new policy), ``_rebind`` switches both.
"""

from __future__ import annotations

import threading
import types
import weakref
from collections.abc import Coroutine, Iterable, Sequence
from typing import Any, Callable, TypeVar, Union, overload

from ..._impl.wrappers import awaitable_refused
from . import checks
from .base import (
    STATE_CLOSED,
    STATE_HALF_OPEN,
    STATE_OPEN,
    CircuitBreakerError,
    CircuitBreakerState,
    CircuitBreakerStorage,
    Delivery,
    check_state,
    make_state,
)
from .engine import StorageEngine
from .forms import Calling, call_async, decorate, wrap_generator
from .memory import CircuitMemoryStorage, MemoryEngine
from .protocol import Bindable

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
Exclusion = Union[type[BaseException], Callable[[Any], Any]]
Engine = Union[MemoryEngine, StorageEngine]


class CircuitBreakerListener:
    """Subclass it and override what you need; add it with ``add_listener``.

    Callbacks of one breaker never run concurrently with each other, and
    never while a lock of the breaker is held across a protected call (none
    is). A listener may call back into the breaker.
    """

    def before_call(
        self, cb: CircuitBreaker, func: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> None:
        """Called before the circuit breaker ``cb`` calls ``func``."""

    def failure(self, cb: CircuitBreaker, exc: BaseException) -> None:
        """Called when a function called by ``cb`` fails (a system error)."""

    def success(self, cb: CircuitBreaker) -> None:
        """Called when a function called by ``cb`` succeeds (or raises an
        excluded exception)."""

    def state_change(
        self,
        cb: CircuitBreaker,
        old_state: CircuitBreakerState | None,
        new_state: CircuitBreakerState,
    ) -> None:
        """Called when the state of ``cb`` changes (or is set again: ``open()``
        on an open breaker reports open -> open, as pybreaker does)."""


class CircuitBreaker:
    """A circuit breaker with pybreaker's API; see ``qbreaker.compat.pybreaker``.

    Opens after ``fail_max`` consecutive failures, rejects calls with
    ``CircuitBreakerError`` for ``reset_timeout`` seconds, then lets one
    trial call through at a time until ``success_threshold`` of them
    succeed (closed) or one fails (open again).
    """

    def __init__(
        self,
        fail_max: int = 5,
        reset_timeout: float = 60,
        success_threshold: int = 1,
        exclude: Iterable[Exclusion] | None = None,
        listeners: Sequence[CircuitBreakerListener] | None = None,
        state_storage: CircuitBreakerStorage | None = None,
        name: str | None = None,
        throw_new_error_on_trip: bool = True,
    ) -> None:
        checks.settings(
            fail_max,
            reset_timeout,
            success_threshold,
            state_storage,
            name,
        )
        self._lock = threading.RLock()  # the lists below; never held on a call
        self._fail_max = fail_max
        self._reset_timeout = reset_timeout
        self._success_threshold = success_threshold
        self._excluded_exceptions: list[Exclusion] = checks.entries(
            "exclude", exclude, callables=True
        )
        self._listeners: list[CircuitBreakerListener] = checks.entries(
            "listeners", listeners, callables=False
        )
        self._name = name
        self._throw_new_error_on_trip = throw_new_error_on_trip
        self._delivery = Delivery()
        self._decorated: weakref.WeakSet[Bindable] = weakref.WeakSet()
        self._state_storage = state_storage or CircuitMemoryStorage(STATE_CLOSED)
        engine: Engine
        if isinstance(self._state_storage, CircuitMemoryStorage):
            engine = self._state_storage._engine
        else:
            engine = StorageEngine(self._state_storage, self)
        self._engine = engine
        self._state = make_state(self, engine.current_state)
        engine.attach(self)

    # -- settings ------------------------------------------------------------------

    @property
    def fail_max(self) -> int:
        """Consecutive failures that open the breaker."""
        return self._fail_max

    @fail_max.setter
    def fail_max(self, number: int) -> None:
        # Read at every failure: nothing to rebuild.
        self._fail_max = checks.count("fail_max", number, infinite=True)

    @property
    def reset_timeout(self) -> float:
        """Seconds the breaker stays open before it lets a trial call through."""
        return self._reset_timeout

    @reset_timeout.setter
    def reset_timeout(self, timeout: float) -> None:
        self._reset_timeout = checks.count("reset_timeout", timeout)
        self._engine.reconfigure(self)

    @property
    def success_threshold(self) -> int:
        """Successful trial calls that close a half-open breaker."""
        return self._success_threshold

    @success_threshold.setter
    def success_threshold(self, threshold: int) -> None:
        self._success_threshold = checks.count("success_threshold", threshold)
        self._engine.reconfigure(self)

    @property
    def name(self) -> str | None:
        return self._name

    @name.setter
    def name(self, name: str) -> None:
        self._name = name
        engine = self._engine
        if isinstance(engine, MemoryEngine) and engine.owner() is self:
            engine.core._name = name  # the name in the qbreaker logger's records

    # -- reading -------------------------------------------------------------------

    @property
    def fail_counter(self) -> int:
        """Consecutive failures (in open and half-open: as counted when it
        opened, plus failed trial calls)."""
        return self._engine.fail_counter

    @property
    def success_counter(self) -> int:
        """Successful trial calls in the current half-open period."""
        return self._engine.success_counter

    @property
    def current_state(self) -> str:
        """'closed', 'open' or 'half-open', as the storage has it."""
        return self._engine.current_state

    @property
    def state(self) -> CircuitBreakerState:
        """The current state as an object with a ``name``."""
        if isinstance(self._engine, StorageEngine):
            self._engine.sync()
        self._delivery.pump()
        state = self._state
        current = self.current_state
        return state if state.name == current else make_state(self, current)

    @state.setter
    def state(self, state_str: str) -> None:
        # pybreaker only replaces its cached state object here (the storage
        # keeps the old state, and the next read notices and switches back);
        # here it is the matching manual transition.
        {
            STATE_OPEN: self.open,
            STATE_HALF_OPEN: self.half_open,
            STATE_CLOSED: self.close,
        }[check_state(state_str)]()

    # -- exclusions ----------------------------------------------------------------

    @property
    def excluded_exceptions(self) -> tuple[Exclusion, ...]:
        return tuple(self._excluded_exceptions)

    def add_excluded_exception(self, exception: Exclusion) -> None:
        """Exclude an exception type (and its subclasses), or every exception
        for which a callable returns true: such a call counts as a success."""
        with self._lock:
            self._excluded_exceptions.append(exception)

    def add_excluded_exceptions(self, *exceptions: Exclusion) -> None:
        for exception in exceptions:
            self.add_excluded_exception(exception)

    def remove_excluded_exception(self, exception: Exclusion) -> None:
        with self._lock:
            self._excluded_exceptions.remove(exception)

    def is_system_error(self, exception: BaseException) -> bool:
        """Whether ``exception`` counts as a failure (not excluded)."""
        exception_type = type(exception)
        for exclusion in tuple(self._excluded_exceptions):
            if isinstance(exclusion, type):
                if issubclass(exception_type, exclusion):
                    return False
            elif callable(exclusion) and exclusion(exception):
                return False
        return True

    # -- listeners -----------------------------------------------------------------

    @property
    def listeners(self) -> tuple[CircuitBreakerListener, ...]:
        return tuple(self._listeners)

    def add_listener(self, listener: CircuitBreakerListener) -> None:
        with self._lock:
            self._listeners.append(listener)
        self._rebind()

    def add_listeners(self, *listeners: CircuitBreakerListener) -> None:
        for listener in listeners:
            self.add_listener(listener)

    def remove_listener(self, listener: CircuitBreakerListener) -> None:
        with self._lock:
            self._listeners.remove(listener)
        self._rebind()

    def _state_event(self, old: str, new: str) -> None:
        # From the engine, under its lock, once per transition and in order.
        previous = self._state
        if previous.name != old:
            previous = make_state(self, old)
        self._state = current = make_state(self, new)
        if self._listeners:
            self._delivery.post(self._notify_state_change, previous, current)

    def _notify_state_change(
        self, old: CircuitBreakerState, new: CircuitBreakerState
    ) -> None:
        for listener in tuple(self._listeners):
            listener.state_change(self, old, new)

    # -- manual control ------------------------------------------------------------

    def open(self) -> bool:
        """Open the breaker now: calls are rejected until ``reset_timeout``
        has elapsed. Returns ``throw_new_error_on_trip``."""
        self._engine.set_state(STATE_OPEN)
        self._delivery.pump()
        return self._throw_new_error_on_trip

    def half_open(self) -> None:
        """Half-open the breaker now: the next call is a trial call."""
        self._engine.set_state(STATE_HALF_OPEN)
        self._delivery.pump()

    def close(self) -> None:
        """Close the breaker now, with both counters at zero."""
        self._engine.set_state(STATE_CLOSED)
        self._delivery.pump()

    # -- the compiled path -----------------------------------------------------------

    def _rebind(self) -> None:
        """Point ``call`` and decorated functions at the compiled path, or at
        the Python one. Computed and applied under the lock, so the last
        caller applies the latest view."""
        with self._lock:
            core = None
            if not self._listeners and type(self).call is CircuitBreaker.call:
                core = self._engine.fast_core(self)
            if core is not None:
                self.__dict__["call"] = core.call
            else:
                self.__dict__.pop("call", None)
            for protected in list(self._decorated):
                protected.bind(core)

    # -- the Python path ---------------------------------------------------------------

    def _admit(self) -> Any:
        try:
            return self._engine.admit()
        except CircuitBreakerError:
            self._delivery.pump()  # what the rejection found: open -> ...
            raise

    def _before_call(self, func: Callable[..., Any], args: Any, kwargs: Any) -> None:
        delivery = self._delivery
        if not self._listeners:
            delivery.pump()
            return
        entered = delivery.enter()
        try:
            delivery.drain()  # state changes first (open -> half-open)
            for listener in tuple(self._listeners):
                listener.before_call(self, func, *args, **kwargs)
        finally:
            delivery.leave(entered)

    def _start(self, func: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        """Admit a call and run ``before_call``: its ticket, or raise."""
        ticket = self._admit()
        try:
            self._before_call(func, args, kwargs)
        except BaseException:
            self._engine.neutral(ticket)
            raise
        return ticket

    def _succeeded(self, ticket: Any) -> None:
        delivery = self._delivery
        if not self._listeners:
            self._engine.succeed(ticket)
            delivery.pump()
            return
        entered = delivery.enter()
        try:
            self._engine.succeed(ticket)
            delivery.drain()  # pybreaker: closed before success() is called
            for listener in tuple(self._listeners):
                listener.success(self)
        finally:
            delivery.leave(entered)

    def _failed(self, ticket: Any, exc: BaseException) -> CircuitBreakerError | None:
        """Report ``exc``; the error to raise instead of it, if any."""
        engine = self._engine
        if not isinstance(exc, Exception):
            engine.neutral(ticket)  # KeyboardInterrupt, CancelledError...
            self._delivery.pump()
            return None
        try:
            system_error = self.is_system_error(exc)
        except BaseException:
            engine.neutral(ticket)
            raise
        if not system_error:
            self._succeeded(ticket)
            return None
        delivery = self._delivery
        entered = delivery.enter()
        try:
            message = engine.fail_ticket(ticket, self._fail_max)
            for listener in tuple(self._listeners):
                listener.failure(self, exc)
        finally:
            delivery.leave(entered)  # then the state change, as in pybreaker
        if message is None or not self._throw_new_error_on_trip:
            return None
        return CircuitBreakerError(message, retry_after=float(self._reset_timeout))

    def call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call ``func(*args, **kwargs)`` under the breaker.

        Raises CircuitBreakerError without calling it when the breaker is
        open (or half-open with a trial call in progress). A generator that
        ``func`` returns is counted when it finishes, as pybreaker does: a
        success when exhausted, a failure (by the rules) when it raises. An
        awaitable that it returns is a TypeError (use ``call_async``), the
        call neutral, on both paths (the core's ``call`` refuses it too).
        """
        ticket = self._start(func, args, kwargs)
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            error = self._failed(ticket, exc)
            if error is not None:
                raise error.with_traceback(exc.__traceback__) from exc
            raise
        if type(result) is types.GeneratorType:
            return wrap_generator(self, ticket, result)  # type: ignore[arg-type,return-value]
        if hasattr(type(result), "__await__"):
            self._engine.neutral(ticket)
            raise awaitable_refused(func, result)
        self._succeeded(ticket)
        return result

    def calling(self) -> Calling:
        """A context manager: the block runs under the breaker like a call."""
        return Calling(self)

    def call_async(
        self, func: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Coroutine[Any, Any, Any]:
        """Await ``func(*args, **kwargs)`` under the breaker, counted when it
        completes: an ``async def`` function, or anything that returns an
        awaitable (a Tornado ``gen.coroutine``, a future). Await the result."""
        return call_async(self, func, args, kwargs)

    # -- decorator -------------------------------------------------------------------

    @overload
    def __call__(self, func: F, /) -> F: ...

    @overload
    def __call__(self, **call_kwargs: bool) -> Callable[[F], F]: ...

    def __call__(self, *call_args: Any, **call_kwargs: bool) -> Any:
        """Decorate a function: ``@breaker``, ``@breaker()``, or
        ``@breaker(__pybreaker_call_async=True)`` (call through
        ``call_async``). Coroutine functions and generator functions are
        counted when they complete."""
        call_async = call_kwargs.pop("__pybreaker_call_async", False)

        def outer(func: Callable[..., Any]) -> Callable[..., Any]:
            return decorate(self, func, call_async)

        if call_args:
            return outer(*call_args)
        return outer

    def _register(self, protected: Bindable) -> None:
        """A decorated plain function, pointed at the current path."""
        with self._lock:
            self._decorated.add(protected)
        self._rebind()
