"""``CircuitMemoryStorage``: pybreaker's in-memory state, kept in qbreaker's core.

The state lives in one ``qbreaker.CircuitBreaker`` (the selected core; a
subclass of it, see ``core``), so every guarantee of the core holds:
one packed word changed only by compare-and-swap, exact counters under any
number of threads, a ticket per admitted call that ties its outcome to the
generation that admitted it, and one trial call at a time in half-open
(``half_open_max=1``). No lock is held across a protected call.

How pybreaker's behaviour maps onto the core:

- Closed: the core counts consecutive failures in its word; its own trip is
  off (``max_failures`` at the field's limit) and the compat layer trips it
  with ``_trip()`` when a failure it reported leaves ``fail_max`` or more in
  the same generation. So ``fail_max`` can change at any time, as in
  pybreaker, and ``_trip()``'s result names the one call that tripped it
  (the one that raises CircuitBreakerError).
- Open, half-open, closing on ``success_threshold``: the core's own, with the
  compat layer's clock (``time.monotonic``, exact to the millisecond: the
  core's native clock is the coarse one).
- ``open()``, ``half_open()``, a new ``reset_timeout`` or
  ``success_threshold``: the core cannot be set to an arbitrary state or
  policy, so a new core is built in the wanted state and replaces the old one
  (``_rebuild``). Calls admitted by the old core report to it and change
  nothing any more: like a trip, a manual transition ends the generation of
  the calls in flight. ``close()`` is the core's ``reset()``.
- ``fail_counter`` in open and half-open: the core keeps no count there;
  pybreaker's counter keeps the value it had when the breaker opened (plus
  one per failed trial call, back to 0 after a successful one), so the
  engine keeps that number beside the core (``held``).
"""

from __future__ import annotations

import datetime
import math
import threading
import weakref
from typing import Any

from ..._impl.select import CircuitBreaker as _SelectedCore
from ..._policy import MAX_DURATION_SECONDS, SUCCESS_THRESHOLD_LIMIT
from ..._state import State
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
    check_opened_at,
    check_state,
    utcnow,
)
from .core import (
    FAIL_MAX,
    FAIL_SHIFT,
    FUTURE_SECONDS,
    HEAD,
    MIN_SECONDS,
    NAMES,
    OPENED_BITS,
    OPENED_FIELD,
    OPENED_SHIFT,
    PREPARING,
    S_CLOSED,
    S_HALF_OPEN,
    S_OPEN,
    SF,
    Clock,
    core_class,
    successes,
)
from .protocol import Breaker

#: A call admitted on the Python paths: the core that admitted it and its
#: ticket (the core may be replaced while the call runs).
Ticket = tuple[Any, int]


class MemoryEngine:
    """The state of a ``CircuitMemoryStorage``: the core, and what it lacks."""

    def __init__(self, state: str, base: type | None) -> None:
        self._base = core_class(base or _SelectedCore)
        # Held by manual transitions, rebuilds and the transition listener;
        # never by a protected call, never while a listener runs.
        self._admin = threading.RLock()
        self._breakers: list[weakref.ref[Breaker]] = []
        self._policy: tuple[float, int] = (60.0, 1)
        self._held = 0
        self._opened_at: datetime.datetime | None = None
        self._clock: Clock | None = None
        self.core: Any = None
        with self._admin:
            self._rebuild(check_state(state), opened=None)

    # -- the breakers on this storage --------------------------------------

    def attach(self, breaker: Breaker) -> None:
        """``breaker`` uses this storage; the last attached owns the
        compiled paths and sets the policy (shared by all its breakers)."""
        with self._admin:
            alive = [r for r in self._breakers if r() not in (None, breaker)]
            self._breakers = [*alive, weakref.ref(breaker)]
            self._set_policy(breaker)
        for other in self.breakers():
            other._rebind()

    def owner(self) -> Breaker | None:
        breakers = self._breakers
        return breakers[-1]() if breakers else None

    def breakers(self) -> list[Breaker]:
        return [b for b in (r() for r in self._breakers) if b is not None]

    def fast_core(self, breaker: Breaker) -> Any:
        """The core whose compiled paths ``breaker`` may use, or None."""
        return self.core if self.owner() is breaker else None

    def reconfigure(self, breaker: Breaker) -> None:
        with self._admin:
            self._set_policy(breaker)
        for other in self.breakers():
            other._rebind()

    def _set_policy(self, breaker: Breaker) -> None:
        timeout = float(breaker.reset_timeout)
        # pybreaker closes when success_counter >= success_threshold.
        threshold = math.ceil(breaker.success_threshold)
        policy = (timeout, min(max(threshold, 1), SUCCESS_THRESHOLD_LIMIT))
        if policy == self._policy:
            return
        self._policy = policy
        w = self.core._word
        state = w & SF
        if state == S_CLOSED:
            self._rebuild(STATE_CLOSED, failures=(w >> FAIL_SHIFT) & FAIL_MAX)
        elif state == S_OPEN:
            self._rebuild(STATE_OPEN, opened=self._opened_tick(w))
        else:
            self._rebuild(STATE_HALF_OPEN, trials=successes(w))

    def _opened_tick(self, w: int) -> float:
        """The seconds of ``time.monotonic`` at which an open word opened."""
        now_ms, elapsed = self._open_elapsed(w)
        return (now_ms - elapsed) / 1000

    def _open_elapsed(self, w: int) -> tuple[int, int]:
        """Now, and the time since an open word opened, in the core's
        milliseconds; negative if it opened after now."""
        assert self._clock is not None
        now_ms = round(self._clock() * 1000)
        opened = (w >> OPENED_SHIFT) & OPENED_FIELD
        elapsed = (now_ms - opened) & OPENED_FIELD
        if elapsed >> (OPENED_BITS - 1):
            # Opened after now: an opened_at set in the future, or a racing
            # read. The core waits for that time, then for the timeout.
            elapsed -= 1 << OPENED_BITS
        return now_ms, elapsed

    # -- building a core in a given state ------------------------------------

    def _rebuild(
        self,
        state: str,
        *,
        failures: int = 0,
        opened: float | None = None,
        trials: int = 0,
    ) -> None:
        """Publish a new core in ``state`` (under ``_admin``).

        ``opened``: the monotonic time it opened (open), None for "long
        enough ago that the next call is a trial" (a storage made open, as
        pybreaker's open state without ``opened_at``). ``trials``: successful
        trial calls already made (half-open).
        """
        timeout, threshold = self._policy
        eager = timeout < MIN_SECONDS / 2
        seconds = min(max(timeout, MIN_SECONDS), MAX_DURATION_SECONDS)
        previous = self._clock
        clock = Clock(eager, previous.last if previous is not None else 0.0)
        core = self._base(
            FAIL_MAX,  # the compat layer trips it (see the module docstring)
            seconds,
            1,  # one trial call at a time
            success_threshold=threshold,
            # A slow trial call keeps its slot as long as it runs, as in
            # pybreaker, whose trial call holds the lock.
            half_open_timeout=MAX_DURATION_SECONDS,
            clock=clock,
            name=PREPARING,
        )
        core._qb_engine = self
        core.add_listener(self._on_transition)
        if state == STATE_CLOSED:
            for _ in range(failures):
                core.record_failure()
        else:
            now = clock()
            clock.pinned = opened if opened is not None else now - seconds - 0.002
            try:
                core._trip()
            finally:
                clock.pinned = None
            if state == STATE_HALF_OPEN:
                core.renormalize()
                for _ in range(min(trials, threshold - 1)):
                    core.record_success()
        owner = self.owner()
        core._name = owner.name if owner is not None else None
        self._clock = clock
        self.core = core  # from here on its transitions are the breaker's

    def _on_transition(self, core: Any, old: State, new: State) -> None:
        # The core's listener: once per transition, in order, one at a time.
        with self._admin:
            if core is not self.core:
                return  # a replaced core, or one not yet published
            if new is State.OPEN:
                seconds = core.time_in_state
                self._opened_at = utcnow() - datetime.timedelta(seconds=seconds)
            self._announce(str(old), str(new))

    def _announce(self, old: str, new: str) -> None:
        for breaker in self.breakers():
            breaker._state_event(old, new)

    # -- outcomes ----------------------------------------------------------------

    def admit(self) -> Ticket:
        core = self.core
        ticket = core.acquire()
        if not ticket:
            raise self.rejection(core)
        return core, ticket

    def rejection(self, core: Any) -> CircuitBreakerError:
        w = core._word
        if w & SF == S_HALF_OPEN:
            return CircuitBreakerError(MSG_TRIAL_BUSY, retry_after=0.0)
        retry: float = core.retry_after
        timeout = self._policy[0]
        if retry >= timeout and w & SF == S_OPEN and core is self.core:
            # Just opened, or opened_at set in the future: the core waits
            # for that time, then the timeout, but reports the timeout only.
            elapsed = self._open_elapsed(w)[1]
            if elapsed < 0:
                retry = timeout - elapsed / 1000
        return CircuitBreakerError(MSG_STILL_OPEN, retry_after=retry)

    def release(self, core: Any, ticket: int, ok: bool | None) -> None:
        if ticket:
            core.release(ticket, ok)
        elif ok is True:  # no ticket (see the core's ``with``): current generation
            core.record_success()
        elif ok is False:
            core.record_failure()

    def succeed(self, ticket: Ticket) -> None:
        self.release(ticket[0], ticket[1], True)

    def neutral(self, ticket: Ticket) -> None:
        self.release(ticket[0], ticket[1], None)

    def fail_ticket(self, ticket: Ticket, fail_max: Any) -> str | None:
        return self.fail(ticket[0], ticket[1], fail_max)

    def fail(self, core: Any, ticket: int, fail_max: Any) -> str | None:
        """Report a failure; pybreaker's message if it opened the breaker."""
        if core is not self.core:
            self.release(core, ticket, False)  # a replaced core: nothing to do
            return None
        head = (ticket >> 1) & HEAD if ticket else core._word & HEAD
        if head & SF == S_CLOSED:
            self.release(core, ticket, False)
            w = core._word
            if w & HEAD != head:
                return None  # stale: admitted before a transition
            failures = (w >> FAIL_SHIFT) & FAIL_MAX
            if failures < fail_max:
                return None
            # Set first: a reader that sees the breaker open sees the count
            # it opened with. Exactly one caller's _trip() returns True.
            self._held = failures
            return MSG_THRESHOLD if core._trip() else None
        if head & SF == S_HALF_OPEN:
            w = core._word
            current = w & HEAD == head
            if current:
                # The only trial call of this generation: its failure reopens
                # the breaker. pybreaker's counter was reset by any success.
                self._held = (0 if successes(w) else self._held) + 1
            self.release(core, ticket, False)
            if current and core._word & SF == S_OPEN:
                return MSG_TRIAL_FAILED
            return None
        self.release(core, ticket, False)
        return None

    # -- reading ---------------------------------------------------------------

    @property
    def current_state(self) -> str:
        return NAMES[self.core._word & SF]

    @property
    def fail_counter(self) -> int:
        w: int = self.core._word
        state = w & SF
        if state == S_CLOSED:
            return (w >> FAIL_SHIFT) & FAIL_MAX
        if state == S_HALF_OPEN and successes(w):
            return 0
        return self._held

    @property
    def success_counter(self) -> int:
        w: int = self.core._word
        return successes(w) if w & SF == S_HALF_OPEN else 0

    @property
    def opened_at(self) -> datetime.datetime | None:
        return self._opened_at

    # -- manual control (pybreaker's open(), half_open(), close()) -------------

    def set_state(self, state: str) -> None:
        """Move to ``state`` now, as pybreaker's manual methods do: always a
        transition (open -> open too), counters as pybreaker leaves them."""
        check_state(state)
        with self._admin:
            old = self.current_state
            if state == STATE_CLOSED:
                self.core.reset()  # its listener announces it
                return
            held = self.fail_counter
            assert self._clock is not None
            if state == STATE_OPEN:
                self._rebuild(STATE_OPEN, opened=self._clock())
                self._opened_at = utcnow()
            else:
                self._rebuild(STATE_HALF_OPEN)
            self._held = held
            self._announce(old, state)
        for breaker in self.breakers():
            breaker._rebind()

    def set_opened_at(self, value: datetime.datetime | None) -> None:
        """pybreaker's ``storage.opened_at = value``: when open, the reset
        timeout now counts from ``value`` (naive: UTC); None, as in pybreaker,
        lets the next call through as a trial."""
        with self._admin:
            self._opened_at = value
            if self.core._word & SF != S_OPEN:
                return
            assert self._clock is not None
            opened = None
            if value is not None:
                ago = (utcnow() - aware(value)).total_seconds()
                # The word keeps the time modulo 2**OPENED_BITS ms: out of
                # these bounds a distant time would wrap round to a near one.
                ago = min(max(ago, -FUTURE_SECONDS), MAX_DURATION_SECONDS + 1)
                opened = self._clock() - ago
            held = self._held
            self._rebuild(STATE_OPEN, opened=opened)
            self._held = held
        for breaker in self.breakers():
            breaker._rebind()

    def adjust_counter(self, delta: int | None) -> None:
        """``increment_counter`` (+1) and ``reset_counter`` (None) of the
        storage API: they change the count, never the state."""
        with self._admin:
            core = self.core
            if core._word & SF == S_CLOSED:
                # The core never trips by itself (see _rebuild).
                if delta:
                    core.record_failure()
                else:
                    core.record_success()
            else:
                self._held = self._held + 1 if delta else 0

    def adjust_success_counter(self, delta: int | None) -> None:
        """``increment_success_counter`` (+1: a successful trial, which may
        close the breaker) and ``reset_success_counter`` (None)."""
        with self._admin:
            w = self.core._word
            if w & SF != S_HALF_OPEN:
                return  # 0 outside half-open, as the counter reads there
            if delta:
                self.core.record_success()
            elif successes(w):
                held = self._held
                self._rebuild(STATE_HALF_OPEN)
                self._held = held
        for breaker in self.breakers():
            breaker._rebind()


class CircuitMemoryStorage(CircuitBreakerStorage):
    """The breaker's state in this process: the default storage.

    ``core_class`` (not in pybreaker): the qbreaker core class to keep it in;
    default ``qbreaker.CircuitBreaker``, the selected core.

    Several breakers may share one storage; they share its state and its
    policy (``reset_timeout``, ``success_threshold``: the last breaker made
    with it or reconfigured sets them).
    """

    def __init__(self, state: str, *, core_class: type | None = None) -> None:
        super().__init__("memory")
        self._engine = MemoryEngine(state, core_class)

    @property
    def state(self) -> str:
        return self._engine.current_state

    @state.setter
    def state(self, state: str) -> None:
        self._engine.set_state(state)
        self._pump()

    def increment_counter(self) -> None:
        self._engine.adjust_counter(1)

    def reset_counter(self) -> None:
        self._engine.adjust_counter(None)

    def increment_success_counter(self) -> None:
        self._engine.adjust_success_counter(1)
        self._pump()

    def reset_success_counter(self) -> None:
        self._engine.adjust_success_counter(None)

    @property
    def counter(self) -> int:
        return self._engine.fail_counter

    @property
    def success_counter(self) -> int:
        return self._engine.success_counter

    @property
    def opened_at(self) -> datetime.datetime | None:
        return self._engine.opened_at

    @opened_at.setter
    def opened_at(self, value: datetime.datetime | None) -> None:
        self._engine.set_opened_at(check_opened_at(value, none_ok=True))

    def _pump(self) -> None:
        for breaker in self._engine.breakers():
            breaker._delivery.pump()
