"""The forms of protection that need Python: coroutines and generators.

``@breaker`` lands in :func:`decorate`, which picks a wrapper by the kind of
function. Plain functions go to the core's own wrapper (``breaker._guard``),
so the synchronous hot path never runs a frame of this module. Every wrapper
here speaks the breaker's internal protocol (:class:`Protected`): it takes a
ticket with ``acquire()`` and releases it exactly once, through
``_exit_ok`` / ``_exit_result`` / ``_exit_exc``, on every exit path; a
rejection goes through ``_rejected``, which runs ``on_reject`` and returns the
fallback's result or raises ``CircuitOpenError``.

Generators
----------
A generator wrapper is itself a generator function: calling it runs nothing
and takes no ticket. The ticket is taken on the first ``next()`` (or
``send(None)``), which is also where a rejection raises, or where the
fallback's result starts being iterated instead. From then on:

- exhaustion is a success (``_exit_ok``); the return value is not judged by
  ``is_failure_result``, which applies to functions and coroutines only;
- an exception out of the inner generator is classified by the outcome rules
  (``_exit_exc``), so a GeneratorExit the inner generator raises on its own
  is neutral like any BaseException that is not an Exception;
- ``close()`` by the consumer, which arrives as GeneratorExit at the wrapper's
  own ``yield``, closes the inner generator and counts as a success: the
  wrapper yields only items the inner generator produced, so the backend has
  worked (docs/semantics.md, outcome rules). If the inner generator fails while
  closing (raises, or ignores GeneratorExit), that exception is classified
  instead. A generator garbage-collected unclosed is closed by the
  interpreter, so it is the same path; one closed before its first
  ``next()`` never took a ticket;
- ``send()`` and ``throw()`` pass through to the inner generator.

The delegation is written out (the PEP 380 expansion) rather than
``yield from``, because ``yield from`` turns the consumer's ``close()`` and a
GeneratorExit raised inside the inner generator into the same exception at
the same place; only the expansion can tell the success from the neutral
outcome. A fallback has no ticket to release, so its result is delegated to
with a plain ``yield from``.

Async generators get the same semantics with ``asend``/``athrow``/``aclose``.
A task cancelled while the inner generator awaits sees CancelledError come out
of it: neutral. An async generator abandoned mid-iteration is closed by the
event loop's async-generator finalizer (``aclose()``): a success.
"""

from __future__ import annotations

import functools
import sys
import types
from typing import TYPE_CHECKING, Any, Callable, TypeVar, cast

from .._outcomes import callable_kind as _kind

# Loaded at first use (decorating, awaiting, refusing to pickle), not by
# ``import qbreaker``: both pull in re and more.
if TYPE_CHECKING:
    import inspect
    import pickle
else:
    from .._lazy import LazyModule

    inspect = LazyModule("inspect")
    pickle = LazyModule("pickle")

if TYPE_CHECKING:
    from collections.abc import (
        AsyncGenerator,
        AsyncIterator,
        Awaitable,
        Coroutine,
        Generator,
        Iterator,
    )
    from typing import Protocol

    from .._outcomes import Options

    if sys.version_info >= (3, 10):
        from typing import ParamSpec
    else:  # pragma: no cover - type checkers only; never imported at run time
        from typing_extensions import ParamSpec

    P = ParamSpec("P")

    class Protected(Protocol):
        """What the forms need from a breaker (both cores provide it)."""

        @property
        def _options(self) -> Options: ...

        def acquire(self) -> int: ...

        def release(self, ticket: int, ok: bool | None) -> None: ...

        def _rejected(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any: ...

        def _started(self) -> int | None: ...

        def _exit_ok(self, ticket: int, started: int | None = None) -> None: ...

        def _exit_result(
            self, ticket: int, result: object, started: int | None = None
        ) -> None: ...

        def _exit_exc(
            self, ticket: int, exc: BaseException, started: int | None = None
        ) -> None: ...

        def _guard(self, fn: Any) -> Any: ...

        def _guard_async(self, fn: Any) -> Any: ...

        def _adopt_name(self, name: str) -> None: ...


__all__ = (
    "call_async",
    "decorate",
    "guard_async",
    "guard_async_generator",
    "guard_generator",
)

R = TypeVar("R")
Y = TypeVar("Y")
S = TypeVar("S")
F = TypeVar("F", bound=Callable[..., Any])


# -- dispatch ------------------------------------------------------------------


def decorate(breaker: Protected, fn: F) -> F:
    """``fn`` protected by ``breaker``: what ``@breaker`` returns.

    Coroutine functions, async generator functions and generator functions get
    the wrappers of this module; any other callable gets the core's wrapper.
    Raises TypeError for a non-callable, and for a synchronous function or
    generator function whose breaker has an async fallback (nothing could
    await it).
    """
    if not callable(fn):
        raise TypeError(
            f"fn must be callable (a function, coroutine function, generator "
            f"function or async generator function) to be protected by a "
            f"breaker, got {fn!r}"
        )
    kind = _kind(fn)
    fallback = breaker._options.fallback
    if fallback is not None and kind in ("function", "generator function"):
        fallback_kind = _kind(fallback)
        refused: tuple[str, ...] = ("coroutine function",)
        if kind == "generator function":
            refused += ("async generator function",)
        if fallback_kind in refused:
            fallback_kind = fallback_kind.replace("async ", "")
            raise TypeError(
                f"fallback {fallback!r} is an async {fallback_kind}, but "
                f"{_describe(fn)} is a synchronous {kind}, which cannot use its "
                f"result; give the breaker a synchronous fallback, or make "
                f"{_describe(fn)} async"
            )
    name = getattr(fn, "__qualname__", None)
    if isinstance(name, str):
        breaker._adopt_name(name)
    if kind == "coroutine function":
        return cast("F", breaker._guard_async(fn))
    if kind == "async generator function":
        return cast("F", guard_async_generator(breaker, fn))
    if kind == "generator function":
        return cast("F", guard_generator(breaker, fn))
    return cast("F", breaker._guard(fn))


def _describe(fn: object) -> str:
    name = getattr(fn, "__qualname__", None)
    return repr(name) if isinstance(name, str) else repr(fn)


# -- plain functions -----------------------------------------------------------


def awaitable_refused(fn: object, result: object) -> TypeError:
    """The error of ``call(fn)`` when ``fn`` returned an awaitable.

    Its outcome is known only once it is awaited, which ``call`` cannot do;
    counting the call now would count a success that never happened. A
    coroutine is closed, so no "never awaited" warning follows the error.
    """
    if inspect.iscoroutine(result):
        result.close()
    return TypeError(
        f"call() cannot protect {_describe(fn)}: it returned {result!r}, an "
        f"awaitable whose outcome is known only when it is awaited; use "
        f"'await breaker.call_async(fn, ...)' or decorate the coroutine function"
    )


def pickled_name(guarded: object) -> str:
    """What a protected function's ``__reduce__`` returns: its qualified name.

    pickle then stores a reference (module and qualified name) and unpickles
    it by import, as it does for the function that the decorator replaced in
    its module. PicklingError when that reference does not lead back to
    ``guarded`` (a local function, or one kept under another name).
    """
    module_name = getattr(guarded, "__module__", None)
    qualname = getattr(guarded, "__qualname__", None)
    found: object = None
    if isinstance(module_name, str) and isinstance(qualname, str):
        found = sys.modules.get(module_name)
        for part in qualname.split("."):
            found = getattr(found, part, None)
    if found is not guarded:
        raise pickle.PicklingError(
            f"cannot pickle {guarded!r}: a protected function is pickled by "
            f"reference, as functions are, and {module_name}.{qualname} does "
            f"not lead back to it; protect a function defined at module level "
            f"(or a method of a module-level class) under its own name"
        )
    return qualname  # type: ignore[return-value]  # a str when found


# -- coroutines ----------------------------------------------------------------


def function_like(fn: object) -> bool:
    """True if ``fn`` has a function's code attributes, which a compiled
    wrapper can copy to stay a coroutine function to ``inspect``. Never on
    3.9, whose ``inspect.iscoroutinefunction`` accepts real functions only:
    there the twin's Python wrapper keeps decorated coroutine functions
    coroutine functions."""
    return sys.version_info >= (3, 10) and isinstance(
        getattr(fn, "__code__", None), types.CodeType
    )


def mark_coroutine_function(guarded: object, fn: object) -> None:
    """Make ``guarded`` (a compiled wrapper of ``fn``) a coroutine function to
    ``inspect.iscoroutinefunction``.

    Before Python 3.12 ``inspect`` recognises a function-like object by its
    ``__code__``, ``__defaults__`` and ``__kwdefaults__``; 3.12 adds a marker.
    ``fn`` must be :func:`function_like`.
    """
    for attribute in ("__code__", "__defaults__", "__kwdefaults__"):
        setattr(guarded, attribute, getattr(fn, attribute, None))
    mark = getattr(inspect, "markcoroutinefunction", None)
    if mark is not None:
        mark(guarded)


def not_awaitable(fn: object, result: object) -> TypeError:
    """The error of ``call_async(fn)`` when ``fn`` returned no awaitable."""
    return TypeError(
        f"call_async() needs a function that returns an awaitable; "
        f"{_describe(fn)} returned {result!r}; use call() for "
        f"synchronous functions"
    )


def guard_async(
    breaker: Protected, fn: Callable[P, Awaitable[R]]
) -> Callable[P, Coroutine[Any, Any, R]]:
    """A coroutine function that awaits ``fn`` under ``breaker``.

    The ticket is taken when the coroutine starts running, not when it is
    created. A rejection returns the fallback's result (awaited if it is
    awaitable) or raises CircuitOpenError.
    """
    acquire = breaker.acquire

    @functools.wraps(fn)
    async def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        ticket = acquire()
        if not ticket:
            result = breaker._rejected(args, kwargs)
            if inspect.isawaitable(result):
                result = await result
            return cast("R", result)
        started = breaker._started()  # None unless a slow-call policy times it
        try:
            value = await fn(*args, **kwargs)
        except BaseException as exc:
            breaker._exit_exc(ticket, exc, started)
            raise
        breaker._exit_result(ticket, value, started)
        return value

    return guarded


async def call_async(
    breaker: Protected,
    fn: Callable[P, Awaitable[R]],
    /,
    *args: P.args,
    **kwargs: P.kwargs,
) -> R:
    """Await ``fn(*args, **kwargs)`` under ``breaker``.

    A rejection returns the fallback's result (awaited if it is awaitable) or
    raises CircuitOpenError. ``fn`` must return an awaitable: anything else
    is a TypeError, and the call counts as neutral.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {fn!r}")
    ticket = breaker.acquire()
    if not ticket:
        result = breaker._rejected(args, kwargs)
        if inspect.isawaitable(result):
            result = await result
        return cast("R", result)
    started = breaker._started()
    try:
        awaitable = fn(*args, **kwargs)
        if not inspect.isawaitable(awaitable):
            breaker.release(ticket, None)
            ticket = 0
            raise not_awaitable(fn, awaitable)
        value = await awaitable
    except BaseException as exc:
        if ticket:
            breaker._exit_exc(ticket, exc, started)
        raise
    breaker._exit_result(ticket, value, started)
    return value


# -- generators ----------------------------------------------------------------


def guard_generator(
    breaker: Protected, fn: Callable[P, Generator[Y, S, R]]
) -> Callable[P, Generator[Y, S, R]]:
    """A generator function that iterates ``fn`` under ``breaker``."""
    acquire = breaker.acquire

    @functools.wraps(fn)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> Generator[Y, S, R]:
        # Nothing above the first yield runs before the first next().
        ticket = acquire()
        if not ticket:
            fallback = _iterable_fallback(breaker._rejected(args, kwargs))
            return cast("R", (yield from fallback))
        try:
            inner = fn(*args, **kwargs)
            value = inner.send(None)  # type: ignore[arg-type]
        except StopIteration as stop:
            breaker._exit_ok(ticket)
            return cast("R", stop.value)
        except BaseException as exc:
            breaker._exit_exc(ticket, exc)
            raise
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                # The consumer's close() (or the interpreter's, for a
                # generator collected unclosed), after at least one item: a
                # success unless closing the inner generator fails.
                close: Callable[[], object] = inner.close
                try:
                    returned = close()
                except BaseException as exc:
                    breaker._exit_exc(ticket, exc)
                    raise
                breaker._exit_ok(ticket)
                if returned is None:
                    raise
                return cast("R", returned)  # close() returns it, Python >= 3.13
            except BaseException as thrown:
                try:
                    value = inner.throw(thrown)
                except StopIteration as stop:
                    breaker._exit_ok(ticket)
                    return cast("R", stop.value)
                except BaseException as exc:
                    breaker._exit_exc(ticket, exc)
                    raise
            else:
                try:
                    value = inner.send(sent)
                except StopIteration as stop:
                    breaker._exit_ok(ticket)
                    return cast("R", stop.value)
                except BaseException as exc:
                    breaker._exit_exc(ticket, exc)
                    raise

    return guarded


def _iterable_fallback(result: object) -> Iterator[Any]:
    try:
        return iter(result)  # type: ignore[call-overload, no-any-return]
    except TypeError:
        if inspect.iscoroutine(result):
            result.close()  # no "never awaited" warning on top of the error
        raise TypeError(
            f"the fallback of a generator function must return an iterable, "
            f"got {result!r}"
        ) from None


def guard_async_generator(
    breaker: Protected, fn: Callable[P, AsyncGenerator[Y, S]]
) -> Callable[P, AsyncGenerator[Y, S]]:
    """An async generator function that iterates ``fn`` under ``breaker``.

    On rejection the fallback's result is iterated instead: an async
    iterable, an iterable, or an awaitable of either. There is no ``yield
    from`` for async generators, so the delegation loop below forwards
    ``asend`` values, ``athrow`` exceptions and ``aclose``; with a ticket of 0
    (a fallback) it releases nothing.
    """
    acquire = breaker.acquire

    @functools.wraps(fn)
    async def guarded(*args: P.args, **kwargs: P.kwargs) -> AsyncGenerator[Y, S]:
        ticket = acquire()
        inner: AsyncGenerator[Any, Any]
        if ticket:
            try:
                inner = fn(*args, **kwargs)
            except BaseException as exc:
                breaker._exit_exc(ticket, exc)
                raise
        else:
            inner = _async_fallback(breaker._rejected(args, kwargs))
        # Each step (the first asend, then asend or athrow by what the
        # consumer did) ends the call the same way when it finishes.
        step: Awaitable[Any] = inner.asend(None)  # type: ignore[arg-type]
        while True:
            try:
                value = await step
            except StopAsyncIteration:
                if ticket:
                    breaker._exit_ok(ticket)
                return
            except BaseException as exc:
                if ticket:
                    breaker._exit_exc(ticket, exc)
                raise
            try:
                sent = yield value
            except GeneratorExit:
                # aclose() by the consumer, or by the event loop's finalizer
                # for an async generator abandoned mid-iteration, after at
                # least one item: a success, as for generators.
                try:
                    await inner.aclose()
                except BaseException as exc:
                    if ticket:
                        breaker._exit_exc(ticket, exc)
                    raise
                if ticket:
                    breaker._exit_ok(ticket)
                raise
            except BaseException as thrown:
                step = inner.athrow(thrown)
            else:
                step = inner.asend(sent)

    return guarded


def _async_fallback(result: object) -> AsyncGenerator[Any, Any]:
    """The fallback's result as an async generator to delegate to."""
    if inspect.isasyncgen(result):
        return result
    return _iterate_fallback(result)


async def _iterate_fallback(result: object) -> AsyncGenerator[Any, None]:
    if inspect.isawaitable(result) and not hasattr(result, "__aiter__"):
        result = await result
    if hasattr(result, "__aiter__"):
        async for item in cast("AsyncIterator[Any]", result):
            yield item
        return
    try:
        items = iter(result)  # type: ignore[call-overload]
    except TypeError:
        raise TypeError(
            f"the fallback of an async generator function must return an "
            f"iterable, an async iterable or an awaitable of one, got {result!r}"
        ) from None
    for item in items:
        yield item
