"""Delivery of state transitions to listeners and to the ``qbreaker`` logger.

Each breaker has one Dispatcher. A core appends every transition it wins to
``pending`` in transition order (the twin under the lock of its swap, the
compiled core under the GIL, with no Python code in between), then calls
``drain``. Whichever thread gets the dispatcher's lock delivers everything
pending, one event at a time and in order; the others return at once. So:

- every listener call happens outside the core, with no lock of the core
  held, and a listener may call back into the breaker: the transitions it
  causes are queued and delivered after it returns, by the same loop;
- delivery is serialized per breaker and exactly once per transition;
- a listener's exception is logged and never reaches the protected call.

A transition that an explicit operation made (``open_for``, the fleet's
close) is queued with its reason after the two words; the log line says it.

After a fork, the child's dispatchers work: a delivery another thread was
making at that instant dies with that thread (its event is not delivered
again in the child), and events still queued are delivered at the child's
next transition.
"""

from __future__ import annotations

import collections
import os
import sys
import threading
from typing import TYPE_CHECKING, Any, Callable

from .._outcomes import run_hook
from .._state import State
from .._word import (
    FORCED_KIND_SHIFT,
    HSUCC_MAX,
    HSUCC_SHIFT,
    INFLIGHT_MAX,
    INFLIGHT_SHIFT,
    S_FORCED,
    S_HALF_OPEN,
    S_OPEN,
    STATE_FIELD,
)

if TYPE_CHECKING:
    import logging

#: Maps a raw state word to (state, generation).
Describe = Callable[[int], "tuple[State, int]"]


# Bumped in a forked child. A dispatcher made before the fork sees the
# difference at its next drain and replaces its lock, which a thread that does
# not exist in the child may hold: O(1) at fork time, and no registry of the
# dispatchers (one per breaker) to keep.
_forks = 0
_fork_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _forks, _fork_lock
    _forks += 1
    _fork_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Dispatcher:
    __slots__ = ("pending", "_lock", "_describe", "_forks")

    def __init__(self, describe: Describe) -> None:
        # (old word, new word), or (old word, new word, reason).
        self.pending: collections.deque[tuple[Any, ...]] = collections.deque()
        self._lock = threading.Lock()
        self._describe = describe
        self._forks = _forks

    def drain(self, breaker: Any) -> None:
        if self._forks != _forks:
            self.after_fork_in_child()
        while self.pending:
            if not self._lock.acquire(blocking=False):
                return  # the holder delivers what we queued
            try:
                while True:
                    try:
                        item = self.pending.popleft()
                    except IndexError:
                        break
                    # (old word, new word), or with a reason after them.
                    reason = item[2] if len(item) > 2 else None
                    _deliver(breaker, self._describe, item[0], item[1], reason)
            finally:
                self._lock.release()
            # Re-check: an event queued between our last pop and the release
            # found the lock taken and left it to us.

    def after_fork_in_child(self) -> None:
        """A fork while another thread delivered must not leave us locked."""
        with _fork_lock:  # two threads of the child must not both replace it
            if self._forks != _forks:
                self._lock = threading.Lock()
                self._forks = _forks


#: Names of qbreaker's own breakers start with this; their transitions log
#: at DEBUG.
INTERNAL_PREFIX = "qbreaker."


def _log_wanted(logger: logging.Logger, level: int) -> bool:
    """Whether a record at ``level`` would reach a handler that does something.

    Building a record costs microseconds; with only the package's
    NullHandler in the way (an application that configured no logging), a
    trip would pay that for nothing.
    """
    import logging

    if not logger.isEnabledFor(level):
        return False
    current: logging.Logger | None = logger
    while current is not None:
        if any(not isinstance(h, logging.NullHandler) for h in current.handlers):
            return True
        if not current.propagate:
            return False
        current = current.parent
    return False


def transition_reason(old: int, new: int, success_threshold: int) -> str:
    """Why the breaker went from word ``old`` to word ``new``, in one word.

    ``tripped``: closed to open. ``reopened``: half-open to open (a probe
    failed, or the probes did not report within half_open_timeout).
    ``reset_timeout``: open to half-open. ``recovered``: half-open to
    closed on the last successful probe. ``forced_open``, ``forced_closed``:
    forced. ``reset``: any other change to closed (``reset()``, or leaving a
    forced state). A reason queued with the event (``open_for``, ``fleet``)
    is used instead.
    """
    was, now = old & STATE_FIELD, new & STATE_FIELD
    if now == S_FORCED:
        return "forced_closed" if new >> FORCED_KIND_SHIFT else "forced_open"
    if now == S_OPEN:
        return "reopened" if was == S_HALF_OPEN else "tripped"
    if now == S_HALF_OPEN:
        return "reset_timeout"
    # A probe's success closes the breaker from a word holding that probe in
    # flight and one success fewer than the threshold; reset() can close it
    # from any word (so a reset at that very moment reads as a recovery).
    probes_done = (old >> HSUCC_SHIFT) & HSUCC_MAX
    in_flight = (old >> INFLIGHT_SHIFT) & INFLIGHT_MAX
    if was == S_HALF_OPEN and in_flight and probes_done + 1 >= success_threshold:
        return "recovered"
    return "reset"


def _log_transition(
    breaker: Any, describe: Describe, old: int, new: int, reason: str | None
) -> None:
    if "logging" not in sys.modules:
        # Nothing imported logging, so no handler is configured: a process
        # that never logs pays neither the import nor a record.
        return
    import logging

    from .._log import logger

    was = describe(old)[0]
    state, generation = describe(new)
    if str(breaker.name).startswith(INTERNAL_PREFIX):
        # qbreaker's own breakers (the fleet agent's guard around its Redis
        # calls): their owner logs what matters once per change, and a
        # warning each time the guard re-opened would flood an outage.
        level = logging.DEBUG
    elif state is State.OPEN:
        level = logging.WARNING
    else:
        level = logging.INFO
    if not _log_wanted(logger, level):
        return
    logger.log(
        level,
        # The generation stays the last argument (handlers read it).
        "circuit breaker %r: %s -> %s (%sgeneration %d)",
        breaker.name,
        was,
        state,
        "" if reason is None else f"{reason}, ",
        generation,
        extra={
            "qbreaker_breaker": breaker.name,
            "qbreaker_from": _label(was, old),
            "qbreaker_to": _label(state, new),
            "qbreaker_generation": generation,
            "qbreaker_reason": reason
            or transition_reason(old, new, breaker.policy.success_threshold),
        },
    )


def _label(state: State, word: int) -> str:
    """The exporters' state names: ``half_open``, ``forced_open``..."""
    if word & STATE_FIELD == S_FORCED:
        return f"forced_{state}"
    return str(state).replace("-", "_")


def _deliver(
    breaker: Any, describe: Describe, old: int, new: int, reason: str | None
) -> None:
    _log_transition(breaker, describe, old, new, reason)
    was, state = describe(old)[0], describe(new)[0]
    for listener in breaker._listeners:
        run_hook(listener, breaker, was, state)
