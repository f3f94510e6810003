"""Outcome rules, fallback and hooks: validated once, immutable, shareable.

A breaker holds one ``Options``; the breakers of a group share theirs. Both
cores and every form of protection classify outcomes through the functions
here, so the rules exist in one place.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

from ._errors import CircuitOpenError
from ._validate import check_callable, check_fraction, check_seconds

# Loaded when a callable is first classified, not by ``import qbreaker``: it
# pulls in re, ast and dis.
if TYPE_CHECKING:
    import inspect
else:
    from ._lazy import LazyModule

    inspect = LazyModule("inspect")

Hook = Callable[..., Any]


class Options(NamedTuple):
    exclude: tuple[type[BaseException], ...]
    is_failure: Callable[[BaseException], object] | None
    is_failure_result: Callable[[Any], object] | None
    fallback: Callable[..., Any] | None
    on_success: Hook | None
    on_failure: Hook | None
    on_reject: Hook | None
    error_rate_threshold: float | None
    latency_threshold: float | None
    fallback_is_async: bool


def make_options(
    exclude: Iterable[type[BaseException]] = (),
    is_failure: Callable[[BaseException], object] | None = None,
    is_failure_result: Callable[[Any], object] | None = None,
    fallback: Callable[..., Any] | None = None,
    on_success: Hook | None = None,
    on_failure: Hook | None = None,
    on_reject: Hook | None = None,
    error_rate_threshold: float | None = None,
    latency_threshold: object | None = None,
) -> Options:
    if isinstance(exclude, (str, bytes)) or not isinstance(exclude, Iterable):
        raise TypeError(
            f"exclude must be an iterable of exception classes, got {exclude!r}"
        )
    excluded = tuple(exclude)
    for entry in excluded:
        if not (isinstance(entry, type) and issubclass(entry, BaseException)):
            raise TypeError(f"exclude entries must be exception classes, got {entry!r}")
    for name, value in (
        ("is_failure", is_failure),
        ("is_failure_result", is_failure_result),
        ("fallback", fallback),
        ("on_success", on_success),
        ("on_failure", on_failure),
        ("on_reject", on_reject),
    ):
        check_callable(name, value)
    return _shared(
        Options(
            excluded,
            is_failure,
            is_failure_result,
            fallback,
            on_success,
            on_failure,
            on_reject,
            check_fraction("error_rate_threshold", error_rate_threshold, open_low=True),
            None
            if latency_threshold is None
            else check_seconds("latency_threshold", latency_threshold, zero_ok=False),
            fallback is not None and callable_kind(fallback) in _ASYNC_KINDS,
        )
    )


@functools.lru_cache(maxsize=256)
def _intern(options: Options) -> Options:
    return options


def _shared(options: Options) -> Options:
    """An equal Options made earlier, if any: breakers built with the same
    settings (a group's, or the defaults) then hold one object between them,
    which keeps a breaker within its memory budget."""
    try:
        return _intern(options)
    except TypeError:  # an unhashable hook: keep this one
        return options


def callable_kind(fn: object) -> str:
    """'coroutine function', 'async generator function', 'generator
    function' or 'function' (any other callable).

    Functions, methods and ``functools.partial`` objects are recognised by
    ``inspect``; another callable object by its class's ``__call__``.
    """
    target = fn
    if not (
        inspect.isroutine(fn)
        or inspect.isclass(fn)
        or isinstance(fn, functools.partial)
    ):
        target = type(fn).__call__
    if inspect.iscoroutinefunction(target):
        return "coroutine function"
    if inspect.isasyncgenfunction(target):
        return "async generator function"
    if inspect.isgeneratorfunction(target):
        return "generator function"
    return "function"


_ASYNC_KINDS = ("coroutine function", "async generator function")


def raise_async_fallback(options: Options) -> None:
    raise TypeError(
        f"fallback {options.fallback!r} is an async (coroutine or async "
        f"generator) function, whose result a synchronous call cannot use; "
        f"use call_async() or protect an async function"
    )


DEFAULT_OPTIONS = make_options()


def exception_outcome(
    options: Options, exc: BaseException, breaker: object
) -> bool | None:
    """True (success), False (failure) or None (neutral) for ``exc``, raised
    by a call that ``breaker`` protects.

    Order: a CircuitOpenError of ``breaker`` itself (a nested call that it
    rejected: no evidence against the backend), then ``exclude``, then the
    BaseException rule (KeyboardInterrupt, SystemExit, GeneratorExit,
    CancelledError... are neutral), then ``is_failure`` or the default
    (every Exception is a failure).
    """
    # getattr: a subclass whose __init__ skips CircuitOpenError's leaves
    # the slot unset.
    if isinstance(exc, CircuitOpenError) and getattr(exc, "_breaker", None) is breaker:
        return None
    if options.exclude and isinstance(exc, options.exclude):
        return None
    if not isinstance(exc, Exception):
        return None
    if options.is_failure is None:
        return False
    try:
        return not options.is_failure(exc)
    except Exception:
        from ._log import logger

        logger.exception("qbreaker: is_failure raised; counting a failure")
        return False


def result_outcome(options: Options, result: object) -> bool:
    """True (success) unless ``is_failure_result`` says the result failed."""
    if options.is_failure_result is None:
        return True
    try:
        return not options.is_failure_result(result)
    except Exception:
        from ._log import logger

        logger.exception("qbreaker: is_failure_result raised; counting a failure")
        return False


def run_hook(hook: Hook, *args: object) -> None:
    """Call a user hook; its exceptions are logged, never propagated."""
    try:
        hook(*args)
    except Exception:
        from ._log import logger

        logger.exception("qbreaker: hook %r raised", hook)
