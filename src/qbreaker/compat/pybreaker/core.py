"""The qbreaker core as the compat layer uses it.

- ``core_class(base)``: the core class (compiled or twin) with the compat
  hooks. The core calls ``_exit_exc`` when a protected function raises and
  ``_rejected``/``_raise_open`` when it rejects a call, on its compiled
  paths too (``call``, its decorator wrapper, ``with``): that is where
  pybreaker's exclusions, its error on trip and its error on rejection run,
  so a successful call never leaves compiled code. ``call`` hands a
  returned generator to ``_generator_result``.
- ``Clock``: the cores' clock (see the class).
- The word's layout, for reading a core's state, counts and generation.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from ... import _word as L
from ..._log import logger as _package_logger
from .base import STATE_CLOSED, STATE_HALF_OPEN, STATE_OPEN, CircuitBreakerError
from .forms import wrap_generator

if TYPE_CHECKING:
    from .memory import MemoryEngine

SF = L.STATE_FIELD
HEAD = L.HEAD_FIELD
FAIL_SHIFT, FAIL_MAX = L.FAIL_SHIFT, L.FAIL_MAX
HSUCC_SHIFT, HSUCC_MAX = L.HSUCC_SHIFT, L.HSUCC_MAX
OPENED_SHIFT, OPENED_FIELD, OPENED_BITS = L.OPENED_SHIFT, L.OPENED_FIELD, L.OPENED_BITS
S_CLOSED, S_OPEN, S_HALF_OPEN = L.S_CLOSED, L.S_OPEN, L.S_HALF_OPEN
NAMES = {S_CLOSED: STATE_CLOSED, S_OPEN: STATE_OPEN, S_HALF_OPEN: STATE_HALF_OPEN}

# The core's shortest reset timeout. pybreaker's reset_timeout=0 (trial call
# at once) gets it with an eager clock (see Clock).
MIN_SECONDS = 0.001

# The furthest in the future an open core's opened time may be set (an
# opened_at after now): half the range the word tells from the past, about
# 139 years.
FUTURE_SECONDS = (1 << (OPENED_BITS - 2)) / 1000

# Cores being brought to a state before they are published (_rebuild) carry
# this name: their transitions are not the breaker's, so the qbreaker
# logger's records of them are dropped.
PREPARING = "qbreaker.compat.pybreaker (preparing)"

# The clock of every core here (a module attribute, so tests can move it).
_monotonic = time.monotonic


class _DropPreparing(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        return not (isinstance(args, tuple) and args and args[0] == PREPARING)


_package_logger.addFilter(_DropPreparing())


def successes(w: int) -> int:
    return (w >> HSUCC_SHIFT) & HSUCC_MAX


class Clock:
    """The cores' clock: ``time.monotonic`` in seconds.

    ``pinned`` holds it at one reading while a new core is brought to its
    state, before any other thread can see that core. ``eager`` (pybreaker's
    reset_timeout=0) makes every reading at least 1 ms after the previous
    one, so the core's 1 ms minimum timeout has always elapsed by the next
    call. ``last`` is carried over to the next core's clock, so that time
    never goes backwards across a rebuild.
    """

    __slots__ = ("pinned", "eager", "last")

    def __init__(self, eager: bool, last: float) -> None:
        self.pinned: float | None = None
        self.eager = eager
        self.last = last

    def __call__(self) -> float:
        if self.pinned is not None:
            return self.pinned
        now = _monotonic()
        if self.eager and now < self.last + MIN_SECONDS:
            now = self.last + MIN_SECONDS
        if now > self.last:
            self.last = now  # a racing reader may lose its update: harmless
        return now


def _exit_exc(core: Any, ticket: int, exc: BaseException, started: Any = None) -> None:
    """The core's exception hook on the compiled paths (``call``, ``@``, ``with``).

    The core calls it with the admitted call's ticket, inside its own
    ``except`` block; returning re-raises ``exc``, raising replaces it.
    """
    engine: MemoryEngine = core._qb_engine
    breaker = engine.owner()
    if breaker is None or not isinstance(exc, Exception):
        # KeyboardInterrupt, SystemExit, GeneratorExit, CancelledError:
        # neutral (pybreaker counts them as failures).
        engine.release(core, ticket, None)
        return
    try:
        excluded = not breaker.is_system_error(exc)
    except BaseException:
        engine.release(core, ticket, None)
        raise
    if excluded:
        engine.release(core, ticket, True)
        return
    message = engine.fail(core, ticket, breaker.fail_max)
    if message is not None and breaker._throw_new_error_on_trip:
        error = CircuitBreakerError(message, retry_after=core.retry_after)
        raise error.with_traceback(exc.__traceback__) from exc


def _generator_result(core: Any, ticket: int, generator: Any) -> Any:
    """The core's hook for a generator that ``call(f)`` got from ``f``
    (see FLAG_GENERATOR_HOOK): counted when it finishes, as pybreaker's
    generator call does, instead of now."""
    engine: MemoryEngine = core._qb_engine
    breaker = engine.owner()
    if breaker is None:
        engine.release(core, ticket, True)
        return generator
    return wrap_generator(breaker, (core, ticket), generator)


def _rejected(core: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    raise core._qb_engine.rejection(core)


def _raise_open(core: Any) -> None:
    raise core._qb_engine.rejection(core)


_classes: dict[type, type] = {}
_classes_lock = threading.Lock()


def core_class(base: type) -> type:
    """``base`` with the compat hooks: what the compiled paths call on an
    exception and on a rejection (the breaker's internal protocol, see
    ``qbreaker._impl.wrappers``)."""
    with _classes_lock:
        cls = _classes.get(base)
        if cls is None:
            cls = type(
                "PybreakerCore",
                (base,),
                {
                    "__slots__": ("_qb_engine",),
                    "__module__": __name__,
                    "_exit_exc": _exit_exc,
                    "_generator_result": _generator_result,
                    "_rejected": _rejected,
                    "_raise_open": _raise_open,
                },
            )
            _classes[base] = cls
        return cls
