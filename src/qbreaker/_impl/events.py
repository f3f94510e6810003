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
                    old = self._describe(item[0])[0]
                    new, generation = self._describe(item[1])
                    _deliver(breaker, old, new, generation, reason)
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


def _log_transition(
    name: str, old: State, new: State, generation: int, reason: str | None
) -> None:
    if "logging" not in sys.modules:
        # Nothing imported logging, so no handler is configured: a process
        # that never logs pays neither the import nor a record.
        return
    import logging

    from .._log import logger

    level = logging.WARNING if new is State.OPEN else logging.INFO
    if _log_wanted(logger, level):
        logger.log(
            level,
            # The generation stays the last argument (handlers read it).
            "circuit breaker %r: %s -> %s (%sgeneration %d)",
            name,
            old,
            new,
            "" if reason is None else f"{reason}, ",
            generation,
        )


def _deliver(
    breaker: Any, old: State, new: State, generation: int, reason: str | None
) -> None:
    _log_transition(breaker.name, old, new, generation, reason)
    for listener in breaker._listeners:
        run_hook(listener, breaker, old, new)
