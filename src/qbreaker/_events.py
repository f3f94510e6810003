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
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import Any, Callable

from ._options import run_hook
from ._state import State

logger = logging.getLogger("qbreaker")

#: Maps a raw state word to (state, generation).
Describe = Callable[[int], "tuple[State, int]"]


class Dispatcher:
    __slots__ = ("pending", "_lock", "_describe")

    def __init__(self, describe: Describe) -> None:
        self.pending: collections.deque[tuple[int, int]] = collections.deque()
        self._lock = threading.Lock()
        self._describe = describe

    def drain(self, breaker: Any) -> None:
        while self.pending:
            if not self._lock.acquire(blocking=False):
                return  # the holder delivers what we queued
            try:
                while True:
                    try:
                        old, new = self.pending.popleft()
                    except IndexError:
                        break
                    _deliver(breaker, self._describe(old)[0], *self._describe(new))
            finally:
                self._lock.release()
            # Re-check: an event queued between our last pop and the release
            # found the lock taken and left it to us.

    def after_fork_in_child(self) -> None:
        """A fork while another thread delivered must not leave us locked."""
        self._lock = threading.Lock()


def _log_wanted(level: int) -> bool:
    """Whether a record at ``level`` would reach a handler that does something.

    Building a record costs microseconds; with only the package's
    NullHandler in the way (an application that configured no logging), a
    trip would pay that for nothing.
    """
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


def _deliver(breaker: Any, old: State, new: State, generation: int) -> None:
    name = breaker.name
    level = logging.WARNING if new is State.OPEN else logging.INFO
    if _log_wanted(level):
        logger.log(
            level,
            "circuit breaker %r: %s -> %s (generation %d)",
            name,
            old,
            new,
            generation,
        )
    for listener in breaker._listeners:
        run_hook(listener, breaker, old, new)
