"""pybreaker's value types, and the listener delivery of the compat breaker.

Everything here is public through ``qbreaker.compat.pybreaker``, except
``Delivery`` and the helpers, which the breaker and its engines share. The
listener class is in ``breaker``: its callbacks take the breaker itself.
"""

from __future__ import annotations

import collections
import datetime
import threading
from typing import Callable, Literal, overload

from ..._errors import BreakerError
from .protocol import Breaker

STATE_OPEN = "open"
STATE_CLOSED = "closed"
STATE_HALF_OPEN = "half-open"
STATES = (STATE_CLOSED, STATE_OPEN, STATE_HALF_OPEN)

# pybreaker's own messages, so that code matching on them keeps working.
MSG_STILL_OPEN = "Timeout not elapsed yet, circuit breaker still open"
MSG_THRESHOLD = "Failures threshold reached, circuit breaker opened"
MSG_TRIAL_FAILED = "Trial call failed, circuit breaker opened"
# pybreaker never rejects in half-open: its lock makes the next caller wait for
# the trial. Here that caller is rejected at once instead (retry_after 0.0).
MSG_TRIAL_BUSY = "Trial call in progress, circuit breaker half-open"

UTC = datetime.timezone.utc


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(UTC)


def aware(moment: datetime.datetime) -> datetime.datetime:
    """``moment`` fit for arithmetic with aware datetimes: a naive one is read
    as UTC, as pybreaker's Redis storage reads it and as code written for the
    pybreaker releases that used ``datetime.utcnow()`` means it."""
    return moment.replace(tzinfo=UTC) if moment.utcoffset() is None else moment


@overload
def check_opened_at(
    value: object, *, none_ok: Literal[True]
) -> datetime.datetime | None: ...


@overload
def check_opened_at(value: object, *, none_ok: Literal[False]) -> datetime.datetime: ...


def check_opened_at(value: object, *, none_ok: bool) -> datetime.datetime | None:
    """``value`` if a storage's ``opened_at`` may be set to it, else TypeError."""
    if isinstance(value, datetime.datetime) or (value is None and none_ok):
        return value
    accepted = "a datetime.datetime (naive: UTC)" + (" or None" if none_ok else "")
    raise TypeError(
        f"opened_at must be {accepted}, got {value!r} ({type(value).__name__})"
    )


def check_state(name: str) -> str:
    """``name`` if it is one of the three states, else pybreaker's ValueError."""
    if name not in STATES:
        raise ValueError(f"Unknown state {name!r}, valid states: {', '.join(STATES)}")
    return name


class CircuitBreakerError(BreakerError):
    """A call was rejected, or the call that tripped the breaker failed.

    When the breaker is open, calls fail at once with this error and the
    protected function never runs. With ``throw_new_error_on_trip`` (the
    default), the failing call that opens the breaker raises it too, chained
    from the original exception.

    ``retry_after``, which pybreaker does not have: seconds until the breaker
    can admit a trial call (0.0 when a trial call is in progress in
    half-open). None on an instance made by user code without it.
    """

    def __init__(self, *args: object, retry_after: float | None = None) -> None:
        super().__init__(*args)
        # In __dict__, so BaseException.__reduce__ pickles it with the args.
        self.retry_after = retry_after


class CircuitBreakerState:
    """A state as listeners see it: ``name`` is 'closed', 'open' or 'half-open'.

    These objects only describe a state; making one changes nothing (in
    pybreaker the constructor with ``notify=True`` also resets counters and
    calls listeners).
    """

    def __init__(self, cb: Breaker, name: str) -> None:
        self._breaker = cb
        self._name = name

    @property
    def name(self) -> str:
        """'closed', 'open' or 'half-open'."""
        return self._name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._breaker.name!r}>"


class _FixedState(CircuitBreakerState):
    """A state class of one name, with pybreaker's constructor signature."""

    STATE = ""

    def __init__(
        self,
        cb: Breaker,
        prev_state: CircuitBreakerState | None = None,
        notify: bool = False,
    ) -> None:
        super().__init__(cb, self.STATE)


class CircuitClosedState(_FixedState):
    """The breaker admits every call and counts consecutive failures."""

    STATE = STATE_CLOSED


class CircuitOpenState(_FixedState):
    """The breaker rejects every call until ``reset_timeout`` has elapsed."""

    STATE = STATE_OPEN


class CircuitHalfOpenState(_FixedState):
    """The breaker admits one trial call at a time."""

    STATE = STATE_HALF_OPEN


_STATE_CLASSES: dict[str, Callable[[Breaker], CircuitBreakerState]] = {
    STATE_CLOSED: CircuitClosedState,
    STATE_OPEN: CircuitOpenState,
    STATE_HALF_OPEN: CircuitHalfOpenState,
}


def make_state(cb: Breaker, name: str) -> CircuitBreakerState:
    return _STATE_CLASSES[check_state(name)](cb)


class CircuitBreakerStorage:
    """Where a breaker keeps its state; subclass it to store it elsewhere.

    A subclass overrides every property and method below. The breaker reads
    and writes it under a lock of its own, never held across a protected
    call. ``CircuitMemoryStorage`` (the default) and ``CircuitRedisStorage``
    are the two provided.
    """

    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def name(self) -> str:
        """A human friendly name that identifies this storage."""
        return self._name

    @property
    def state(self) -> str:
        """The current state: 'closed', 'open' or 'half-open'."""
        raise NotImplementedError

    @state.setter
    def state(self, state: str) -> None:
        raise NotImplementedError

    def increment_counter(self) -> None:
        """Increase the failure counter by one."""

    def reset_counter(self) -> None:
        """Set the failure counter to zero."""

    def increment_success_counter(self) -> None:
        """Increase the success counter by one."""

    def reset_success_counter(self) -> None:
        """Set the success counter to zero."""

    @property
    def counter(self) -> int:
        """The failure counter."""
        raise NotImplementedError

    @property
    def success_counter(self) -> int:
        """The success counter (successful trial calls in half-open)."""
        raise NotImplementedError

    @property
    def opened_at(self) -> datetime.datetime | None:
        """When the breaker last opened, or None. The breakers read a naive
        datetime as UTC."""
        raise NotImplementedError

    @opened_at.setter
    def opened_at(self, value: datetime.datetime) -> None:
        raise NotImplementedError


Event = tuple[Callable[..., object], tuple[object, ...]]


class Delivery:
    """Runs one breaker's listener callbacks one at a time.

    Callbacks a thread makes itself (before_call, success, failure) run in a
    *section*: ``enter()`` takes the lock (a thread already inside nests),
    ``leave()`` runs what was posted meanwhile and releases it. State changes
    are posted from wherever the engine notices them (``post``), which never
    blocks, and run at the next ``drain()``, ``leave()`` or ``pump()``. The
    lock is never held across a protected call, only across callbacks, so
    listeners are serialized without serializing the calls. Exceptions of
    listeners propagate to the thread that runs them, as in pybreaker.
    """

    __slots__ = ("_lock", "_owner", "_queue")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner = 0
        self._queue: collections.deque[Event] = collections.deque()

    def post(self, fn: Callable[..., object], *args: object) -> None:
        self._queue.append((fn, args))

    def enter(self) -> bool:
        """Start a section; False if this thread was inside one already."""
        me = threading.get_ident()
        if self._owner == me:
            return False
        self._lock.acquire()
        self._owner = me
        return True

    def drain(self) -> None:
        """Run everything posted so far (inside a section only)."""
        queue = self._queue
        while True:
            try:
                fn, args = queue.popleft()
            except IndexError:
                return
            fn(*args)

    def leave(self, entered: bool) -> None:
        if not entered:
            self.drain()
            return
        try:
            self.drain()
        finally:
            self._owner = 0
            self._lock.release()
        self.pump()  # posted between our last pop and the release

    def pump(self) -> None:
        """Run what is posted, unless another thread is running callbacks:
        that thread runs it before it leaves (the re-check in ``leave``)."""
        while self._queue:
            if self._owner == threading.get_ident():
                return
            if not self._lock.acquire(blocking=False):
                return
            self._owner = threading.get_ident()
            try:
                self.drain()
            finally:
                self._owner = 0
                self._lock.release()
