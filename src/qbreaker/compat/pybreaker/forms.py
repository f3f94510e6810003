"""The forms of protection of the compat breaker other than ``call()``.

Each speaks the breaker's Python-path protocol: ``_start`` (admit, then
``before_call``) gives a ticket or raises; exactly one of ``_succeeded``,
``_failed`` (which may return the CircuitBreakerError to raise instead) or
the engine's ``neutral`` reports it.

- ``Calling``: ``breaker.calling()``, the ticket held by the object.
- ``call_async``: asyncio, and Tornado (whose futures are awaitable).
- ``call_generator`` / ``wrap_generator``: pybreaker's generator call:
  admitted when the generator function is called, counted when the
  generator finishes (or is closed early: see ``wrap_generator``).
- ``decorate``: picks the wrapper by the kind of function; a plain
  function becomes a ``Protected``, switchable between the core's compiled
  wrapper and the Python path.
"""

from __future__ import annotations

import functools
import inspect
import types
import weakref
from collections.abc import Generator
from typing import Any, Callable

from ..._impl.wrappers import pickled_name
from .protocol import Breaker


def calling_block() -> None:
    """What ``before_call`` listeners get as ``func`` for a ``calling()`` block."""


class Calling:
    """``breaker.calling()``: the ticket lives in this object, one per block."""

    __slots__ = ("_breaker", "_ticket")

    def __init__(self, breaker: Breaker) -> None:
        self._breaker = breaker
        self._ticket: Any = None

    def __enter__(self) -> None:
        self._ticket = self._breaker._start(calling_block, (), {})

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        ticket, self._ticket = self._ticket, None
        if exc is None:
            self._breaker._succeeded(ticket)
            return
        error = self._breaker._failed(ticket, exc)
        if error is not None:
            raise error.with_traceback(tb) from exc


async def call_async(
    breaker: Breaker, func: Callable[..., Any], args: Any, kwargs: Any
) -> Any:
    ticket = breaker._start(func, args, kwargs)
    try:
        result = func(*args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
    except BaseException as exc:  # CancelledError is neutral (_failed)
        error = breaker._failed(ticket, exc)
        if error is not None:
            raise error.with_traceback(exc.__traceback__) from exc
        raise
    breaker._succeeded(ticket)
    return result


# -- generators --------------------------------------------------------------------


def call_generator(
    breaker: Breaker, func: Callable[..., Any], args: Any, kwargs: Any
) -> Any:
    """pybreaker's generator call: admitted now (rejected now), counted when
    the generator finishes. The Python path's ``call`` does exactly that for
    a function that returns a generator."""
    return type(breaker).call(breaker, func, *args, **kwargs)


def wrap_generator(
    breaker: Breaker, ticket: Any, inner: Generator[Any, Any, Any]
) -> Generator[Any, Any, Any]:
    """``inner``, admitted with ``ticket``, counted when it finishes:
    exhausted, a success; raising, by the rules; closed early (or collected
    unfinished) after it yielded an item, a success; closed or collected
    before its first item, neutral (see docs/semantics.md, outcome rules)."""
    held = [ticket]
    outer = _iterate(breaker, inner, held)
    # An unstarted generator runs no finally block: give the ticket back when
    # it is collected, or a trial call's slot would stay taken.
    weakref.finalize(outer, _abandon, breaker, held, inner)
    return outer


def _abandon(breaker: Breaker, held: list[Any], inner: Any) -> None:
    # Runs before the collected generator's own close(): one that got past
    # its first item is counted by that close (see _iterate), not here.
    if held and inspect.getgeneratorstate(inner) == inspect.GEN_CREATED:
        breaker._engine.neutral(held.pop())


def _finish(breaker: Breaker, held: list[Any], exc: BaseException | None) -> None:
    if not held:
        return
    ticket = held.pop()
    if exc is None:
        breaker._succeeded(ticket)
        return
    error = breaker._failed(ticket, exc)
    if error is not None:
        raise error.with_traceback(exc.__traceback__) from exc


def _iterate(breaker: Breaker, inner: Any, held: list[Any]) -> Generator[Any, Any, Any]:
    # The PEP 380 expansion, not ``yield from``: the consumer's close()
    # (a success: it comes after an item) must be told apart from a
    # GeneratorExit of the inner generator's own, and send() and throw()
    # pass through.
    try:
        value = next(inner)
    except StopIteration as stop:
        _finish(breaker, held, None)
        return stop.value
    except BaseException as exc:
        _finish(breaker, held, exc)
        raise
    while True:
        try:
            sent = yield value
        except GeneratorExit:
            try:
                inner.close()
            except BaseException as exc:
                _finish(breaker, held, exc)
                raise
            _finish(breaker, held, None)
            raise
        except BaseException as thrown:
            try:
                value = inner.throw(thrown)
            except StopIteration as stop:
                _finish(breaker, held, None)
                return stop.value
            except BaseException as exc:
                _finish(breaker, held, exc)
                raise
        else:
            try:
                value = inner.send(sent)
            except StopIteration as stop:
                _finish(breaker, held, None)
                return stop.value
            except BaseException as exc:
                _finish(breaker, held, exc)
                raise


# -- the decorator -------------------------------------------------------------------


def decorate(
    breaker: Breaker, func: Callable[..., Any], tornado: bool
) -> Callable[..., Any]:
    """``func`` protected by ``breaker`` (``tornado``: pybreaker's
    ``__pybreaker_call_async=True``)."""
    if tornado:
        # pybreaker's wrapper is a plain function returning an awaitable.
        @functools.wraps(func)
        def started(*args: Any, **kwargs: Any) -> Any:
            return call_async(breaker, func, args, kwargs)

        return started
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def awaited(*args: Any, **kwargs: Any) -> Any:
            return await call_async(breaker, func, args, kwargs)

        return awaited
    if inspect.isgeneratorfunction(func):

        @functools.wraps(func)
        def generator(*args: Any, **kwargs: Any) -> Any:
            return call_generator(breaker, func, args, kwargs)

        return generator
    return Protected.make(breaker, func)


class Protected:
    """A decorated plain function.

    Each has a class of its own, whose ``__call__`` is the core's compiled
    wrapper (a staticmethod, so a call runs no Python code of this package)
    or the Python path through ``breaker.call``. ``bind`` swaps it; a call
    that started before keeps what it started with.
    """

    __slots__ = ("__dict__", "__weakref__", "_qb_breaker", "_qb_func")

    _qb_breaker: Breaker
    _qb_func: Callable[..., Any]

    @classmethod
    def make(cls, breaker: Breaker, func: Callable[..., Any]) -> Protected:
        own = type("protected", (cls,), {"__slots__": (), "__module__": __name__})
        protected: Protected = object.__new__(own)
        protected._qb_breaker = breaker
        protected._qb_func = func
        functools.update_wrapper(protected, func)
        breaker._register(protected)
        return protected

    def bind(self, core: Any) -> None:
        """Use ``core``'s compiled wrapper, or the Python path (None)."""
        if core is not None:
            call = core._guard(self._qb_func)
        else:
            call = functools.partial(_call_through, self._qb_breaker, self._qb_func)
        own: Any = type(self)  # this function's own class (see make)
        own.__call__ = staticmethod(call)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:  # replaced by bind
        return self._qb_breaker.call(self._qb_func, *args, **kwargs)

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        # Decorated methods bind like functions.
        return self if obj is None else types.MethodType(self, obj)

    def __reduce__(self) -> str:
        # Pickled by name, as the function it replaces in its module is.
        return pickled_name(self)

    def __copy__(self) -> Protected:
        return self  # as a function is: copying shares it

    def __deepcopy__(self, memo: object) -> Protected:
        return self

    def __repr__(self) -> str:
        name = getattr(self, "__qualname__", repr(self._qb_func))
        return f"<function {name} protected by {self._qb_breaker.name!r}>"


def _call_through(
    breaker: Breaker, func: Callable[..., Any], *args: Any, **kwargs: Any
) -> Any:
    # breaker.call looked up at each call: a subclass's override is honoured.
    return breaker.call(func, *args, **kwargs)
