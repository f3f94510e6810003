"""pybreaker's algorithm over any ``CircuitBreakerStorage`` but the memory one.

Used for ``CircuitRedisStorage`` and for storages that applications write
themselves. pybreaker runs each call under the breaker's lock; here the
engine's lock covers only the reads and writes of the storage that decide
admission and record an outcome, never the protected call. What pybreaker's
lock gave for free is kept with two pieces of local state:

- a generation, bumped on every state change this breaker makes or notices:
  the outcome of a call admitted in an earlier generation changes nothing
  (in pybreaker no call can finish after a state change);
- a trial flag: one trial call at a time in half-open; another caller is
  rejected with CircuitBreakerError (retry_after 0.0) instead of waiting for
  the lock as in pybreaker.

A storage may offer atomic read-modify-write operations (``_qb_failure``,
``_qb_success``, ``_qb_try_half_open``; ``CircuitRedisStorage`` does, with
WATCH/MULTI transactions): they make the outcome exact across processes,
where the plain storage API (the fallback, pybreaker's own sequence of
calls) is exact only among the threads of one process.
"""

from __future__ import annotations

import datetime
import threading
from typing import Any

from .base import (
    MSG_STILL_OPEN,
    MSG_THRESHOLD,
    MSG_TRIAL_BUSY,
    MSG_TRIAL_FAILED,
    STATE_CLOSED,
    STATE_HALF_OPEN,
    STATE_OPEN,
    CircuitBreakerError,
    CircuitBreakerStorage,
    aware,
    check_state,
    utcnow,
)
from .protocol import Breaker

#: A call admitted here: the generation and the state that admitted it.
Ticket = tuple[int, str]

# Results of the storage's atomic operations.
STALE, COUNTED, CHANGED = "stale", "counted", "changed"


class StorageEngine:
    """One breaker's view of a storage (one engine per breaker, like
    pybreaker's lock)."""

    def __init__(self, storage: CircuitBreakerStorage, breaker: Breaker) -> None:
        self.storage = storage
        self._breaker = breaker
        self._lock = threading.RLock()
        self._generation = 0
        self._trial = False
        self._atomic = bool(getattr(storage, "_qb_atomic", False))
        # pybreaker builds its first state object from the storage without
        # notifying anyone; an unknown state is a ValueError there too.
        self._seen = check_state(storage.state)

    # -- what MemoryEngine also offers ------------------------------------------

    def attach(self, breaker: Breaker) -> None:
        breaker._rebind()

    def fast_core(self, breaker: Breaker) -> Any:
        return None  # no compiled path: every call goes through the storage

    def reconfigure(self, breaker: Breaker) -> None:
        pass  # the policy is read from the breaker at every decision

    def breakers(self) -> list[Breaker]:
        return [self._breaker]

    @property
    def current_state(self) -> str:
        return self.storage.state

    @property
    def fail_counter(self) -> int:
        return self.storage.counter

    @property
    def success_counter(self) -> int:
        return self.storage.success_counter

    @property
    def opened_at(self) -> datetime.datetime | None:
        return self.storage.opened_at

    def sync(self) -> None:
        """Notice a change made elsewhere (another process), as pybreaker's
        ``state`` property does."""
        with self._lock:
            self._observe()

    # -- state changes -------------------------------------------------------------

    def _observe(self) -> str:
        state = check_state(self.storage.state)
        if state != self._seen:
            if not self._atomic:
                # What pybreaker's state objects do when they notice a
                # change. An atomic storage made these writes with the change
                # itself, and repeating them could undo another process's.
                if state == STATE_CLOSED:
                    self.storage.reset_counter()
                else:
                    self.storage.reset_success_counter()
            self._note(state)
        return state

    def _note(self, state: str) -> None:
        old, self._seen = self._seen, state
        self._generation += 1
        self._trial = False  # a trial call of an earlier generation is stale
        self._breaker._state_event(old, state)

    def _move(self, state: str) -> None:
        """pybreaker's ``open()``, ``half_open()`` and ``close()``, in its order
        of writes."""
        storage = self.storage
        if state == STATE_OPEN:
            storage.opened_at = utcnow()
            storage.state = STATE_OPEN
            storage.reset_success_counter()
        elif state == STATE_HALF_OPEN:
            storage.state = STATE_HALF_OPEN
            storage.reset_success_counter()
        else:
            storage.reset_success_counter()
            storage.state = STATE_CLOSED
            storage.reset_counter()
        self._note(state)

    def set_state(self, state: str) -> None:
        check_state(state)
        with self._lock:
            self._observe()
            self._move(state)

    # -- admission and outcomes -------------------------------------------------

    def admit(self) -> Ticket:
        breaker = self._breaker
        error: CircuitBreakerError | None = None
        with self._lock:
            state = self._observe()
            if state == STATE_OPEN:
                now = utcnow()
                opened_at = self.storage.opened_at
                # Seconds, not opened_at + timedelta: that overflows for an
                # opened_at near datetime.max.
                left = (
                    (aware(opened_at) - now).total_seconds() + breaker.reset_timeout
                    if opened_at
                    else 0.0
                )
                if left > 0:
                    error = CircuitBreakerError(MSG_STILL_OPEN, retry_after=left)
                elif self._atomic:
                    # Another process may have reopened it meanwhile.
                    state = self.storage._qb_try_half_open(  # type: ignore[attr-defined]
                        now, breaker.reset_timeout
                    )
                    if state != self._seen:
                        self._note(state)
                    if state == STATE_OPEN:
                        error = CircuitBreakerError(
                            MSG_STILL_OPEN, retry_after=float(breaker.reset_timeout)
                        )
                else:
                    self._move(STATE_HALF_OPEN)
                    state = STATE_HALF_OPEN
            if error is None and state == STATE_HALF_OPEN:
                if self._trial:
                    error = CircuitBreakerError(MSG_TRIAL_BUSY, retry_after=0.0)
                else:
                    self._trial = True
            ticket = (self._generation, state)
        if error is not None:
            raise error
        return ticket

    def _current(self, ticket: Ticket) -> bool:
        """Whether ``ticket`` is of the current generation (under the lock);
        a current trial call gives its slot back."""
        self._observe()
        if ticket[0] != self._generation:
            return False
        if ticket[1] == STATE_HALF_OPEN:
            self._trial = False
        return True

    def neutral(self, ticket: Ticket) -> None:
        with self._lock:
            self._current(ticket)

    def succeed(self, ticket: Ticket) -> None:
        breaker = self._breaker
        with self._lock:
            if not self._current(ticket):
                return
            state = ticket[1]
            if self._atomic:
                result = self.storage._qb_success(  # type: ignore[attr-defined]
                    state, breaker.success_threshold
                )
                if result == CHANGED:
                    self._note(STATE_CLOSED)
                return
            storage = self.storage
            storage.reset_counter()
            if state == STATE_HALF_OPEN:
                storage.increment_success_counter()
                if storage.success_counter >= breaker.success_threshold:
                    self._move(STATE_CLOSED)

    def fail_ticket(self, ticket: Ticket, fail_max: Any) -> str | None:
        """Record a failure; pybreaker's message if it opened the breaker."""
        with self._lock:
            if not self._current(ticket):
                return None
            state = ticket[1]
            if self._atomic:
                result = self.storage._qb_failure(  # type: ignore[attr-defined]
                    state, fail_max, utcnow()
                )
                if result != CHANGED:
                    return None
                self._note(STATE_OPEN)
            else:
                storage = self.storage
                storage.increment_counter()
                if state == STATE_CLOSED and storage.counter < fail_max:
                    return None
                self._move(STATE_OPEN)
        return MSG_THRESHOLD if state == STATE_CLOSED else MSG_TRIAL_FAILED
