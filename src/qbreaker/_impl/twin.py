"""The pure-Python twin of the compiled core: the executable specification.

The cell's packed word and the tickets are laid out in ``qbreaker._word``;
this module is what the core does with them. Its sections come in the order
of the compiled core's ``_native/*.pxi`` includes, each under a banner that
names the file it mirrors, so that the two read side by side; the cell and
its atomics, which the compiled core takes from C headers, come first.

What is mirrored: the word's layout and the state machine on it (admit,
settle, renormalize, reset, force, trip), the tickets and their checks, the
window's keys and rates, and the Python-level API, which both cores take
from the same modules. Each operation gives the same results, totals and
transitions on both. What is not: how the compiled core does the work. Its
window finds its bucket from a hint instead of dividing, skips the
judgements that could find nothing, and counts a private window with plain
adds; its closed path is inlined into each method and counts in the
object's (or its slot's) own counters; its ``with`` blocks keep their
tickets in a C store per context (a chain per context here); ``call`` and
decorated functions take vectorcall. And the twin has no cell shared
between processes. A change of behaviour lands in both cores, and
``tests/core/test_parity.py`` (layout, API, docstrings) and
``tests/core/test_differential.py`` (random operation sequences on both
cores: results, tickets, words and totals) say whether they still agree.
"""

from __future__ import annotations

import contextvars
import datetime
import functools
import math
import sys
import threading
import time
import types
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Optional

from .._errors import SharedStateError
from .._forksafe import LockRenewal
from .._outcomes import (
    DEFAULT_OPTIONS,
    Hook,
    Options,
    exception_outcome,
    raise_async_fallback,
    result_outcome,
    run_hook,
)
from .._policy import (
    DEFAULT_POLICY,
    Policy,
    Seconds,
    clock_ticks,
    duration_ticks,
    is_slow,
)
from .._state import State, Totals
from .._word import (
    ENTERED_FIELD,
    ENTERED_SHIFT,
    FAIL_MASK,
    FAIL_MAX,
    FAIL_SHIFT,
    FORCED_KIND_SHIFT,
    GEN_FIELD,
    GEN_SHIFT,
    HEAD_FIELD,
    HSUCC_MAX,
    HSUCC_SHIFT,
    INFLIGHT_MAX,
    INFLIGHT_SHIFT,
    KEY_EPOCH_BITS,
    KEY_EPOCH_FIELD,
    NOW_AUTO,
    OPENED_BITS,
    OPENED_FIELD,
    OPENED_SHIFT,
    OUTCOME_BASE,
    OUTCOME_FAILURE,
    OUTCOME_NEUTRAL,
    OUTCOME_SLOW,
    OUTCOME_SUCCESS,
    S_CLOSED,
    S_FORCED,
    S_HALF_OPEN,
    S_OPEN,
    STALE_NOW_TICKS,
    STATE_FIELD,
    TICKET_BASE,
    TICKET_GEN_FIELD,
    TRACKED,
    WINDOW_TIME,
    check_generation,
    check_ticket,
    closed_word,
    forced_word,
    full_generation,
    half_open_word,
    next_gen,
    open_word,
    outcome_code,
    state_name,
    ticket_of,
)
from . import events, methods, wrappers
from .methods import BreakerAPI, Clock, Listener
from .probes import Probes

if TYPE_CHECKING:
    from typing import ParamSpec, TypeVar

    P = ParamSpec("P")
    R = TypeVar("R")

__all__ = ("CircuitBreaker", "CoreBreaker")


# -- cell (twin only) ---------------------------------------------------------
# The compiled core's cell and atomics are C (qb_cell.h, qb_atomic.h, declared
# by _core_c.pxd before the includes); here a lock stands in for the atomics.


class Cell:
    """Stands in for the C struct; its lock stands in for the CPU's atomics."""

    __slots__ = ("word", "totals", "changed_at", "lock", "window", "__weakref__")

    def __init__(self, buckets: int = 0) -> None:
        self.word = 0
        # allowed, rejected, successes, failures, neutral, transitions, opens,
        # slow (the compiled core keeps opens and slow outside the cell: see
        # _transition and CircuitBreaker._settle)
        self.totals = [0, 0, 0, 0, 0, 0, 0, 0]
        # Tick of the last transition: statistics (time in state), never read
        # by a decision, so it may trail the word by an instant.
        self.changed_at = 0
        self.lock = threading.Lock()
        self.window = Window(buckets) if buckets else None
        _cells.add(self)


# A cell lock held by another thread when this process forks is renewed in
# the child (see _forksafe).
_cells = LockRenewal("lock")


(T_ALLOWED, T_REJECTED, T_SUCCESSES, T_FAILURES, T_NEUTRAL, T_TRANSITIONS,
 T_OPENS, T_SLOW) = range(8)  # fmt: skip
# Indexed by outcome code.
_OUTCOME_TOTAL = (T_FAILURES, T_SUCCESSES, T_NEUTRAL)


def _load(cell: Cell) -> int:
    return cell.word


def _cas(cell: Cell, expected: int, desired: int) -> tuple[bool, int]:
    """Compare-and-swap; on failure also returns the value seen."""
    with cell.lock:
        seen = cell.word
        if seen != expected:
            return False, seen
        cell.word = desired
        return True, desired


def _add(cell: Cell, index: int) -> None:
    with cell.lock:
        cell.totals[index] += 1


def _load_ticketed(cell: Cell) -> tuple[int, int]:
    """(transitions, word), in the order ``ticket_of`` needs them."""
    transitions = cell.totals[T_TRANSITIONS]
    return transitions, cell.word


# -- word: mirrors _native/word.pxi -------------------------------------------


_STATES = (State.CLOSED, State.OPEN, State.HALF_OPEN)


def _open_remaining(w: int, reset_ticks: int, now: int) -> int:
    """Ticks until an open word expires, 0 if it has.

    An ``opened_at`` after ``now`` adds its lead: ``open_for`` stores an
    open of any length as one that opened that far in the future (and a
    ``now`` read before a concurrent transition sees a little of that too).
    """
    left = ((w >> OPENED_SHIFT) + reset_ticks - now) & OPENED_FIELD
    return 0 if left >> (OPENED_BITS - 1) else left


def _reopened(w: int, reset_ticks: int, expiry: int) -> int:
    """Open word ``w``, in the same generation, expiring at tick ``expiry``."""
    return open_word((w >> GEN_SHIFT) & GEN_FIELD, expiry - reset_ticks)


def _open_elapsed(w: int, now: int) -> int:
    """Ticks since an open word opened; 0 if it opened "after" ``now``.

    A time read before a concurrent transition can be older than the time
    that transition stored. The 44-bit field cannot wrap in practice (2**43
    ms is 278 years), so a difference in its upper half means "negative".
    """
    elapsed = (now - (w >> OPENED_SHIFT)) & OPENED_FIELD
    return 0 if elapsed >> (OPENED_BITS - 1) else elapsed


def _expired_half_open(w: int, pol: Policy, now: int) -> int:
    """The open word a timed-out half-open word becomes, else 0.

    It re-opens as of the moment it expired, not as of now, so an idle
    breaker admits its next probe ``reset_timeout`` after that moment.
    """
    elapsed = (now - (w >> ENTERED_SHIFT)) & ENTERED_FIELD
    stale = elapsed > ENTERED_FIELD - STALE_NOW_TICKS  # `now` read before entry
    if elapsed < pol.half_open_timeout_ticks or stale:
        return 0
    return open_word(next_gen(w), now - (elapsed - pol.half_open_timeout_ticks))


_COARSE = getattr(time, "CLOCK_MONOTONIC_COARSE", None)


def monotonic_ms() -> int:
    # The same clock and truncation as qb_monotonic_ms() in qb_clock.h.
    if _COARSE is not None:
        return time.clock_gettime_ns(_COARSE) // 1_000_000
    return time.monotonic_ns() // 1_000_000


def _resolve(now: int) -> int:
    return monotonic_ms() if now == NOW_AUTO else now


def describe_word(w: int) -> tuple[State, int]:
    """The public state and the generation of a raw word."""
    state = w & STATE_FIELD
    if state == S_FORCED:
        public = State.CLOSED if w >> FORCED_KIND_SHIFT else State.OPEN
    else:
        public = _STATES[state]
    return public, (w >> GEN_SHIFT) & GEN_FIELD


# -- transitions: mirrors _native/transitions.pxi -----------------------------


#: Where transitions record (old word, new word): anything with append, or None.
TransitionLog = Optional[Any]


def _transition(
    cell: Cell,
    w: int,
    nw: int,
    now: int,
    log: TransitionLog,
    reason: str | None = None,
) -> tuple[bool, int]:
    """CAS that changes the generation; the winner counts and logs it.

    A transition into open also counts in the opens total (the compiled
    core's _push counts those from its log, outside the cell). ``reason``:
    what the log says caused it (open_for, the fleet), or None.
    """
    with cell.lock:
        seen = cell.word
        if seen != w:
            return False, seen
        cell.word = nw
        cell.totals[T_TRANSITIONS] += 1
        if nw & STATE_FIELD == S_OPEN:
            cell.totals[T_OPENS] += 1
        cell.changed_at = now
        # Logged under the lock that made the swap, so the log's order is the
        # order of the transitions. (The C core gets that order from the GIL.)
        if log is not None:
            log.append((w, nw) if reason is None else (w, nw, reason))
        return True, nw


# -- window: mirrors _native/window.pxi ---------------------------------------
# Window (twin only) stands in for qb_window and its buckets (qb_cell.h).


class Window:
    """The rate window, after the cell: a cursor and ``buckets`` buckets.

    Each bucket is a key word, (generation << 40 | epoch), and three
    counters: calls, failures, slow. An epoch is a bucket's slice of the
    window: ``now // span`` for a time window, ``position // span`` for a
    count window, where ``position`` is the cursor's count of outcomes.

    A recorder whose key differs from the bucket's replaces a bucket of
    another generation or an older epoch (CAS on the key) and zeroes its
    counters, then adds; a bucket already at a newer epoch takes the late
    outcome as it is. Tagging keys with the generation clears the window on
    every transition without touching it: a new generation matches no key.

    Not exact while a bucket rotates: an outcome added between the key's CAS
    and the zeroing of the counters is lost, and a late one can land in the
    next epoch's bucket. At most one outcome per thread recording into that
    bucket at that instant; each decision reads the buckets one by one.
    """

    __slots__ = ("cursor", "keys", "calls", "failures", "slow")

    def __init__(self, buckets: int) -> None:
        self.cursor = 0
        self.keys = [0] * buckets
        self.calls = [0] * buckets
        self.failures = [0] * buckets
        self.slow = [0] * buckets


def _window_epoch(cell: Cell, pol: Policy, now: int) -> int:
    """The epoch an outcome counts in: by time, or by its position."""
    if pol.window_kind == WINDOW_TIME:
        return now // pol.window_span
    window = cell.window
    assert window is not None
    with cell.lock:
        position = window.cursor
        window.cursor = (position + 1) & 0xFFFF_FFFF_FFFF_FFFF
    return position // pol.window_span


def _window_add(cell: Cell, pol: Policy, gen: int, epoch: int, outcome: int) -> bool:
    """Count an outcome in its bucket; True if this call rotated the bucket."""
    window = cell.window
    assert window is not None
    i = epoch % pol.window_buckets
    key = gen << KEY_EPOCH_BITS | (epoch & KEY_EPOCH_FIELD)
    rotated = False
    with cell.lock:
        seen = window.keys[i]
    if seen != key and (
        seen >> KEY_EPOCH_BITS != gen
        or 0 < (epoch - seen) & KEY_EPOCH_FIELD < 1 << (KEY_EPOCH_BITS - 1)
    ):
        with cell.lock:  # stands in for a CAS of the key
            if window.keys[i] == seen:
                window.keys[i] = key
                rotated = True
        if rotated:
            with cell.lock:  # three plain stores in C, after the CAS
                window.calls[i] = window.failures[i] = window.slow[i] = 0
    with cell.lock:
        window.calls[i] += 1
        if outcome & OUTCOME_BASE == OUTCOME_FAILURE:
            window.failures[i] += 1
        if outcome & OUTCOME_SLOW:
            window.slow[i] += 1
    return rotated


def window_sums(cell: Cell, pol: Policy, gen: int, epoch: int) -> tuple[int, int, int]:
    """(calls, failures, slow) of generation ``gen`` in the window ending at
    ``epoch``: its bucket and the ``window_buckets - 1`` before it."""
    window = cell.window
    calls = failures = slow = 0
    if window is None:
        return 0, 0, 0
    for i in range(pol.window_buckets):
        with cell.lock:
            key = window.keys[i]
            c, f, s = window.calls[i], window.failures[i], window.slow[i]
        if key >> KEY_EPOCH_BITS != gen:
            continue
        if (epoch - key) & KEY_EPOCH_FIELD < pol.window_buckets:
            calls += c
            failures += f
            slow += s
    return calls, failures, slow


def window_now(cell: Cell, pol: Policy, now: int) -> int:
    """The epoch a reader sums to: the current time's, or the last outcome's."""
    if pol.window_kind == WINDOW_TIME:
        return now // pol.window_span
    window = cell.window
    assert window is not None
    position = window.cursor
    return (position - 1) // pol.window_span if position else 0


def _rates_crossed(pol: Policy, calls: int, failures: int, slow: int) -> bool:
    if calls == 0 or calls < pol.minimum_calls:
        return False
    rate, slow_rate = pol.failure_rate_threshold, pol.slow_rate_threshold
    return bool(
        (rate and failures >= rate * calls) or (slow_rate and slow >= slow_rate * calls)
    )


def _window_settle(
    cell: Cell, pol: Policy, given_now: int, w: int, outcome: int, log: TransitionLog
) -> bool:
    """Count a closed generation's outcome; True if its rates tripped it.

    The rates are judged on failures, slow outcomes and rotations, never on
    a plain success in a bucket already current.
    """
    gen = (w >> GEN_SHIFT) & GEN_FIELD
    now = _resolve(given_now) if pol.window_kind == WINDOW_TIME else 0
    epoch = _window_epoch(cell, pol, now)
    rotated = _window_add(cell, pol, gen, epoch, outcome)
    if not (
        rotated or outcome & OUTCOME_SLOW or outcome & OUTCOME_BASE == OUTCOME_FAILURE
    ):
        return False
    if not _rates_crossed(pol, *window_sums(cell, pol, gen, epoch)):
        return False
    while w & STATE_FIELD == S_CLOSED and (w >> GEN_SHIFT) & GEN_FIELD == gen:
        now = _resolve(given_now)
        ok, w = _transition(cell, w, open_word(next_gen(w), now), now, log)
        if ok:
            return True
    return False  # another thread moved it on: the usual path judges the rest


# -- ops: mirrors _native/ops.pxi ---------------------------------------------


def admit(cell: Cell, pol: Policy, given_now: int, log: TransitionLog) -> int:
    """Admit a call: its ticket, or 0 when rejected."""
    t, w = _load_ticketed(cell)
    admitted = False
    while True:
        state = w & STATE_FIELD
        if state == S_CLOSED or (state == S_FORCED and w >> FORCED_KIND_SHIFT):
            admitted = True
            break
        if state == S_FORCED:
            break
        now = _resolve(given_now)
        if state == S_OPEN:
            if _open_elapsed(w, now) < pol.reset_ticks:
                break
            # The caller that performs the transition is the first probe.
            nw = half_open_word(next_gen(w), 1, 0, now)
            ok, seen = _transition(cell, w, nw, now, log)
            w = seen
            if ok:
                admitted = True
                break
            continue
        nw = _expired_half_open(w, pol, now)
        if nw:
            ok, seen = _transition(cell, w, nw, now, log)
            w = nw if ok else seen
            continue
        if (w >> INFLIGHT_SHIFT) & INFLIGHT_MAX >= pol.half_open_max:
            break
        nw = w + (1 << INFLIGHT_SHIFT)
        ok, w = _cas(cell, w, nw)
        if ok:
            admitted = True
            break
    if not admitted:
        _add(cell, T_REJECTED)
        return 0
    _add(cell, T_ALLOWED)
    return ticket_of(t, w)


def settle(
    cell: Cell,
    pol: Policy,
    given_now: int,
    ticket: int,
    outcome: int,
    log: TransitionLog,
) -> bool:
    """Report an outcome: for ``ticket``, or for the current generation if 0.

    Returns False when the ticket is stale (counted in totals only). Bits of
    the ticket above ``TICKET_BASE`` are not read.
    """
    slow = outcome & OUTCOME_SLOW
    outcome &= OUTCOME_BASE
    _add(cell, _OUTCOME_TOTAL[outcome])
    ticket &= TICKET_BASE
    t, w = _load_ticketed(cell)
    # The full generation once; from here on a transition shows in the head
    # (short of 2**18 of them within this call, the bound of the word's CAS).
    if ticket and ticket != ticket_of(t, w):
        return False
    if pol.window_kind and outcome != OUTCOME_NEUTRAL and w & STATE_FIELD == S_CLOSED:
        if _window_settle(cell, pol, given_now, w, outcome | slow, log):
            return True
        w = _load(cell)
    while True:
        if ticket and (ticket >> 1) & HEAD_FIELD != w & HEAD_FIELD:
            return False
        state = w & STATE_FIELD
        if state == S_OPEN or outcome == OUTCOME_NEUTRAL and state != S_HALF_OPEN:
            return True
        if state == S_CLOSED or state == S_FORCED:
            if state == S_FORCED and not w >> FORCED_KIND_SHIFT:
                return True
            failures = (w >> FAIL_SHIFT) & FAIL_MAX
            if outcome == OUTCOME_SUCCESS:
                if failures == 0:
                    # The common case writes nothing: no cache-line bounce.
                    return True
                ok, seen = _cas(cell, w, w & ~FAIL_MASK)
            elif failures == FAIL_MAX:
                return True
            elif state == S_CLOSED and 0 < pol.max_failures <= failures + 1:
                now = _resolve(given_now)
                nw = open_word(next_gen(w), now)
                ok, seen = _transition(cell, w, nw, now, log)
            else:
                ok, seen = _cas(cell, w, w + (1 << FAIL_SHIFT))
            if ok:
                return True
            w = seen
            continue
        # Half-open.
        now = _resolve(given_now)
        nw = _expired_half_open(w, pol, now)
        if nw:
            ok, seen = _transition(cell, w, nw, now, log)
            w = nw if ok else seen
            continue
        in_flight = (w >> INFLIGHT_SHIFT) & INFLIGHT_MAX
        freed = in_flight - 1 if in_flight else 0
        # Under a slow-call policy a slow probe is a failed probe.
        if outcome == OUTCOME_FAILURE or (slow and outcome == OUTCOME_SUCCESS):
            nw = open_word(next_gen(w), now)
            ok, seen = _transition(cell, w, nw, now, log)
        elif outcome == OUTCOME_SUCCESS:
            successes = ((w >> HSUCC_SHIFT) & HSUCC_MAX) + 1
            if successes >= pol.success_threshold:
                nw = closed_word(next_gen(w))
                ok, seen = _transition(cell, w, nw, now, log)
            else:
                nw = half_open_word(
                    (w >> GEN_SHIFT) & GEN_FIELD, freed, successes, w >> ENTERED_SHIFT
                )
                ok, seen = _cas(cell, w, nw)
        elif in_flight == 0:
            return True
        else:
            ok, seen = _cas(cell, w, w - (1 << INFLIGHT_SHIFT))
        if ok:
            return True
        w = seen


def renormalize(cell: Cell, pol: Policy, given_now: int, log: TransitionLog) -> None:
    """Apply the transitions that time alone causes, admitting nothing."""
    w = _load(cell)
    while True:
        state = w & STATE_FIELD
        if state != S_OPEN and state != S_HALF_OPEN:
            return
        now = _resolve(given_now)
        if state == S_HALF_OPEN:
            nw = _expired_half_open(w, pol, now)
            if not nw:
                return
        elif _open_elapsed(w, now) < pol.reset_ticks:
            return
        else:
            nw = half_open_word(next_gen(w), 0, 0, now)
        ok, seen = _transition(cell, w, nw, now, log)
        w = nw if ok else seen
        if ok and state == S_OPEN:
            return


def reset(cell: Cell, now: int, log: TransitionLog) -> None:
    """Back to closed with no failures, always as a new generation."""
    now = _resolve(now)
    w = _load(cell)
    while True:
        ok, w = _transition(cell, w, closed_word(next_gen(w)), now, log)
        if ok:
            return


def force(cell: Cell, kind_closed: int, now: int, log: TransitionLog) -> None:
    """Hold the breaker open (0) or closed (1) until reset."""
    w = _load(cell)
    while True:
        if w & STATE_FIELD == S_FORCED and w >> FORCED_KIND_SHIFT == kind_closed:
            return
        now = _resolve(now)
        nw = forced_word(next_gen(w), kind_closed)
        ok, w = _transition(cell, w, nw, now, log)
        if ok:
            return


def trip(cell: Cell, given_now: int, log: TransitionLog) -> bool:
    """Open a closed (not forced) breaker as of now; True if this call did."""
    w = _load(cell)
    while w & STATE_FIELD == S_CLOSED:
        now = _resolve(given_now)
        ok, w = _transition(cell, w, open_word(next_gen(w), now), now, log)
        if ok:
            return True
    return False


def retry_after_ticks(w: int, pol: Policy, now: int) -> float:
    """Ticks until a breaker whose word is ``w`` can admit a probe.

    0 when closed or half-open (busy slots free as their probes report),
    infinite when forced open.
    """
    state = w & STATE_FIELD
    if state == S_FORCED:
        return 0.0 if w >> FORCED_KIND_SHIFT else math.inf
    if state != S_OPEN:
        return 0.0
    return float(_open_remaining(w, pol.reset_ticks, _resolve(now)))


# Explicit opens: open_for, and the fleet agent's operations. Out of the hot
# paths. An open word keeps only opened_at, so an open that lasts ``ticks``
# from now is stored as opened at now + ticks - reset_ticks: an opened_at
# after now counts as no time elapsed, and the usual expiry check needs no
# other change.


def _later(a: int, b: int) -> bool:
    """Tick ``a`` is after tick ``b``, on opened_at's circle of 2**44 ticks."""
    d = (a - b) & OPENED_FIELD
    return d != 0 and not d >> (OPENED_BITS - 1)


def _open_in(t: int, w: int, generation: int) -> bool:
    return w & STATE_FIELD == S_OPEN and full_generation(t, w) == generation


def open_for(
    cell: Cell, pol: Policy, ticks: int, given_now: int, log: TransitionLog
) -> int:
    """Open until now + ``ticks``: a transition from closed or half-open, an
    extension (no transition) of an open expiring sooner. The full
    generation of that open, or 0: forced, or open for longer already."""
    t, w = _load_ticketed(cell)
    while True:
        state = w & STATE_FIELD
        if state == S_FORCED:
            return 0
        now = _resolve(given_now)
        expiry = now + ticks
        if state == S_OPEN:
            if not _later(expiry, (w >> OPENED_SHIFT) + pol.reset_ticks):
                return 0
            nw = _reopened(w, pol.reset_ticks, expiry)
            ok, w = _cas(cell, w, nw)
            if ok:
                return full_generation(t, nw)
            continue
        nw = open_word(next_gen(w), expiry - pol.reset_ticks)
        ok, w = _transition(cell, w, nw, now, log, "open_for")
        if ok:
            return full_generation(cell.totals[T_TRANSITIONS], nw)


def extend_open(
    cell: Cell, pol: Policy, generation: int, ticks: int, given_now: int
) -> bool:
    """Open in ``generation``: expiring no sooner than now + ``ticks`` (True)."""
    t, w = _load_ticketed(cell)
    while _open_in(t, w, generation):
        expiry = _resolve(given_now) + ticks
        if not _later(expiry, (w >> OPENED_SHIFT) + pol.reset_ticks):
            return True
        ok, w = _cas(cell, w, _reopened(w, pol.reset_ticks, expiry))
        if ok:
            return True
    return False


def expire_open(cell: Cell, pol: Policy, generation: int, given_now: int) -> bool:
    """Open in ``generation``: expired by now (True), so the next call probes."""
    t, w = _load_ticketed(cell)
    while _open_in(t, w, generation):
        now = _resolve(given_now)
        if _open_remaining(w, pol.reset_ticks, now) == 0:
            return True
        ok, w = _cas(cell, w, _reopened(w, pol.reset_ticks, now))
        if ok:
            return True
    return False


def close_if(cell: Cell, generation: int, given_now: int, log: TransitionLog) -> bool:
    """Closed (a transition) if still open in ``generation`` or half-open in
    the probe generation that follows it; else False, unchanged."""
    t, w = _load_ticketed(cell)
    while True:
        state = w & STATE_FIELD
        gen = full_generation(t, w)
        if not (
            (state == S_OPEN and gen == generation)
            or (state == S_HALF_OPEN and gen == (generation + 1) & TICKET_GEN_FIELD)
        ):
            return False
        now = _resolve(given_now)
        ok, w = _transition(cell, w, closed_word(next_gen(w)), now, log, "fleet")
        if ok:
            return True


# -- shared_cell: mirrors _native/shared_cell.pxi -----------------------------
# Nothing here: the twin has no shared cell. CircuitBreaker.__init__ and
# CoreBreaker._configure refuse one.


# -- probes: mirrors _native/probes.pxi ---------------------------------------
# The tracked probes are qbreaker._impl.probes.Probes itself; current_ticket
# is what a tracked probe's later release is checked against, as in
# _probe_reports.


def current_ticket(cell: Cell) -> int:
    """What a ticket of the current state and generation carries (its base)."""
    return ticket_of(*_load_ticketed(cell))


# -- fastpath: mirrors _native/fastpath.pxi -----------------------------------
# Nothing here: the twin has no separate closed path. CoreBreaker's methods
# call admit and settle directly, and read the clock in _now, _started and
# _slow.


# -- with_tickets: mirrors _native/with_tickets.pxi ---------------------------
#
# A ``with`` block reports against the ticket that it took. An open block is
# recorded under its breaker and the frame running the ``with`` statement,
# which is the same frame at __enter__ and __exit__ wherever that frame runs in
# between (a generator resumed in another thread, tasks sharing one context),
# so blocks that interleave never take each other's tickets. A block is looked
# up in this order:
#
# 1. its breaker and frame among the blocks entered in this context;
# 2. its breaker and frame among the blocks of generator and coroutine frames
#    entered in other contexts (resumed elsewhere, or closed by the garbage
#    collector);
# 3. exited from another frame than it entered (contextlib.ExitStack, a call
#    by hand): its breaker's innermost block of this context;
# 4. none: it reports against the current generation, like record_*().
#
# Each context holds an immutable chain of its blocks in one ContextVar, so a
# context copied from another (asyncio copies one per task) starts from its
# parent's chain and changes only its own. A block exited elsewhere is marked
# closed and its link dropped the next time the chain is rebuilt or compacted.
# An open block whose chains all died (its context is gone) joins _ORPHANS. A
# chain, or _ORPHANS, that only grows (blocks entered by hand, never exited)
# drops its oldest half at MAX_OPEN_BLOCKS. Frames are compared
# by identity, never kept alive. (The compiled core keeps the same records in
# a mutable store per context, searching every store for step 2.)


MAX_OPEN_BLOCKS = 1 << 16
# Frames that can suspend inside a block and resume in another context.
# inspect's CO_GENERATOR | CO_COROUTINE | CO_ITERABLE_COROUTINE |
# CO_ASYNC_GENERATOR, fixed by CPython's code-object ABI; spelt out so that
# importing the twin does not import inspect (and re).
_SUSPENDABLE = 0x20 | 0x80 | 0x100 | 0x200


class _OpenBlock:
    """One open ``with`` block."""

    __slots__ = ("breaker", "frame", "ticket", "started", "open", "__weakref__")

    def __init__(
        self, breaker: object, frame: int, ticket: int, started: int | None
    ) -> None:
        self.breaker = breaker
        self.frame = frame  # id() of the frame running the with statement
        self.ticket = ticket
        self.started = started
        self.open = True

    def __del__(self) -> None:
        # Its context died, not necessarily its frame: a generator handed to
        # another thread or task still exits this block. No lock here: this
        # can run inside any critical section (a list append is atomic).
        if self.open:
            if len(_ORPHANS) >= MAX_OPEN_BLOCKS:
                del _ORPHANS[: MAX_OPEN_BLOCKS // 2]
            _ORPHANS.append(self)


class _Link(NamedTuple):
    """A context's chain of blocks, innermost first."""

    block: _OpenBlock
    rest: _Link | None
    length: int  # links in the chain, closed ones included
    compact_at: int  # the length at which closed links are dropped


_WITH_TICKETS: contextvars.ContextVar[_Link | None] = contextvars.ContextVar(
    "qbreaker_with_tickets", default=None
)
# The open blocks of generator and coroutine frames, in every context (step 2).
# Weak: a block dies with the chains that hold it, into _ORPHANS if open.
_SUSPENDED: weakref.WeakSet[_OpenBlock] = weakref.WeakSet()
# Open blocks whose contexts died, oldest first (step 2, searched last).
_ORPHANS: list[_OpenBlock] = []
# Guards _SUSPENDED and every block's ``open``: a block is claimed once.
# Re-entrant: the collector can finalize an abandoned generator inside one of
# these sections (any allocation may run it, and free-threaded builds do),
# and the generator's GeneratorExit exits its block, claiming the lock again
# in this thread. A plain lock deadlocked there; the sections below iterate
# over snapshots, so such a nested claim cannot upset them.
_blocks = LockRenewal("lock", threading.RLock)


class _BlocksLock:
    __slots__ = ("lock", "__weakref__")

    def __init__(self) -> None:
        self.lock = threading.RLock()
        _blocks.add(self)


_BLOCKS = _BlocksLock()


def _chain(
    blocks: list[_OpenBlock], rest: _Link | None, compact_at: int
) -> _Link | None:
    """``blocks`` (outermost first) linked onto ``rest``."""
    for block in blocks:
        rest = _Link(
            block, rest, rest.length + 1 if rest is not None else 1, compact_at
        )
    return rest


def _compacted(chain: _Link) -> _Link | None:
    """``chain`` without its closed links, and without its oldest half if it
    holds MAX_OPEN_BLOCKS open ones."""
    blocks: list[_OpenBlock] = []
    link: _Link | None = chain
    while link is not None:
        if link.block.open:
            blocks.append(link.block)
        link = link.rest
    blocks.reverse()
    if len(blocks) >= MAX_OPEN_BLOCKS:
        dropped, blocks = blocks[: len(blocks) // 2], blocks[len(blocks) // 2 :]
        with _BLOCKS.lock:
            for block in dropped:
                block.open = False
    # Compacting again only after as many pushes keeps it O(1) a block.
    return _chain(blocks, None, 2 * len(blocks) + 64)


def _enter_block(breaker: CoreBreaker, frame: types.FrameType) -> None:
    ticket = breaker.acquire()
    if not ticket:
        breaker._raise_open()  # type: ignore[attr-defined]
    _push_with_ticket(breaker, frame, ticket, breaker._started())


def _exit_block(
    breaker: CoreBreaker,
    frame: types.FrameType,
    exc_type: object,
    exc: BaseException | None,
) -> None:
    ticket, started = _pop_with_ticket(breaker, frame)
    if exc_type is None:
        breaker._exit_ok(ticket, started)
    else:
        breaker._exit_exc(ticket, exc, started)  # type: ignore[arg-type]


def _push_with_ticket(
    breaker: object, frame: types.FrameType | None, ticket: int, started: int | None
) -> None:
    block = _OpenBlock(breaker, id(frame), ticket, started)
    chain = _WITH_TICKETS.get()
    if chain is not None and chain.length >= min(chain.compact_at, MAX_OPEN_BLOCKS):
        chain = _compacted(chain)
    _WITH_TICKETS.set(
        _chain([block], chain, chain.compact_at if chain is not None else 64)
    )
    if frame is not None and frame.f_code.co_flags & _SUSPENDABLE:
        with _BLOCKS.lock:
            _SUSPENDED.add(block)


def _claim_in_chain(
    chain: _Link | None, breaker: object, frame: int | None
) -> _OpenBlock | None:
    """Close and unlink the innermost open block of ``breaker`` in this
    context's chain, entered in ``frame`` (None: in any frame)."""
    kept: list[_OpenBlock] = []
    with _BLOCKS.lock:
        while chain is not None:
            block = chain.block
            if (
                block.open
                and block.breaker is breaker
                and (frame is None or block.frame == frame)
            ):
                block.open = False
                _SUSPENDED.discard(block)
                break
            if block.open:
                kept.append(block)
            chain = chain.rest
    if chain is None:
        return None
    kept.reverse()
    _WITH_TICKETS.set(_chain(kept, chain.rest, chain.compact_at))
    return block


def _claim_elsewhere(breaker: object, frame: int) -> _OpenBlock | None:
    """Close the open block of ``breaker`` in ``frame`` entered in another
    context, if any."""
    with _BLOCKS.lock:
        for block in list(_SUSPENDED):
            if block.open and block.breaker is breaker and block.frame == frame:
                block.open = False
                _SUSPENDED.discard(block)
                return block
        # Backwards by index: an orphan may be appended meanwhile.
        for block in reversed(list(_ORPHANS)):
            if block.open and block.breaker is breaker and block.frame == frame:
                block.open = False
                _ORPHANS.remove(block)
                return block
    return None


def _pop_with_ticket(
    breaker: object, frame: types.FrameType | None
) -> tuple[int, int | None]:
    """(ticket, start) of ``breaker``'s block that ``frame`` exits, or (0, None)."""
    chain = _WITH_TICKETS.get()
    block = (
        _claim_in_chain(chain, breaker, id(frame))
        or _claim_elsewhere(breaker, id(frame))
        or _claim_in_chain(chain, breaker, None)
    )
    if block is None:
        return 0, None
    return block.ticket, block.started


def with_blocks() -> tuple[int, int]:
    """(open blocks, records held) of this context (tests): closed records
    stay until the chain is next rebuilt or compacted."""
    chain = _WITH_TICKETS.get()
    held = chain.length if chain is not None else 0
    open_blocks = 0
    while chain is not None:
        open_blocks += chain.block.open
        chain = chain.rest
    return open_blocks, held


# -- calls: mirrors _native/calls.pxi -----------------------------------------


class _Guarded:
    """A function protected by a breaker: each call goes through ``call``."""

    __slots__ = ("breaker", "fn", "__dict__", "__weakref__")

    def __init__(self, breaker: CoreBreaker, fn: Any) -> None:
        self.breaker = breaker
        self.fn = fn
        functools.update_wrapper(self, fn)

    def __call__(self, /, *args: Any, **kwargs: Any) -> Any:
        return self.breaker.call(self.fn, *args, **kwargs)

    def __reduce__(self) -> str:
        # By reference, like the function it replaces (see wrappers.pickled_name).
        return wrappers.pickled_name(self)

    def __copy__(self) -> _Guarded:
        return self  # as a function is: copying shares it

    def __deepcopy__(self, memo: object) -> _Guarded:
        return self

    def __get__(self, obj: object, objtype: object = None) -> Any:
        # Decorated methods bind like functions do.
        if obj is None:
            return self
        return types.MethodType(self, obj)

    def __repr__(self) -> str:
        return f"<protected {self.fn!r} by {self.breaker!r}>"


# -- the class: mirrors CircuitBreaker in _core_c.pyx -------------------------
# In two here: CoreBreaker, the core's own methods, and CircuitBreaker, which
# adds the Python-level API (qbreaker._impl.methods) and the constructor.


class CoreBreaker:
    """The breaker's hot path. ``CircuitBreaker`` adds the ergonomic API."""

    __slots__ = (
        "_cell",
        "_policy",
        "_clock",
        "_configured",
        "_options",
        "_name",
        "_listeners",
        "_events",
        "_last_observation",
        "_probes",
        "__weakref__",
    )
    _cell: Cell
    _policy: Policy
    _clock: Any
    _configured: bool
    _options: Options
    _name: str | None
    _listeners: tuple[Any, ...]
    _events: Any
    _last_observation: Any
    _probes: Probes

    def __new__(cls, *args: object, **kwargs: object) -> CoreBreaker:
        # Like the compiled __cinit__: the cell exists before, and regardless
        # of, any __init__, so calling __init__ again cannot wipe a live one.
        self = super().__new__(cls)
        self._cell = Cell()
        self._policy = DEFAULT_POLICY
        self._clock = None
        self._configured = False
        self._options = DEFAULT_OPTIONS
        self._name = None
        self._listeners = ()
        self._events = events.Dispatcher(describe_word)
        self._last_observation = None
        self._probes = Probes()
        return self

    def _configure(
        self,
        policy: tuple[Any, ...],
        clock: object,
        options: Options = DEFAULT_OPTIONS,
        name: str | None = None,
        shared: Any = None,
    ) -> None:
        """Set the validated policy and clock; once, by the constructor.

        ``shared``: a segment's mapping, whose cell is used in place of the
        breaker's own (see qbreaker._impl.segment_format for the layout).
        """
        if shared is not None:
            raise ValueError("the pure-Python core cannot use a shared cell")
        if self._configured:
            raise RuntimeError("a breaker's policy is set once, at construction")
        self._policy = Policy(*policy)
        if self._policy.window_kind:
            self._cell = Cell(self._policy.window_buckets)
        self._clock = clock
        self._options = options
        self._name = name
        self._configured = True
        self._cell.changed_at = _resolve(self._now())

    def _now(self) -> int:
        if self._clock is None:
            return NOW_AUTO
        return clock_ticks(self._clock())

    def _deliver(self, log: Any) -> None:
        # The core appended this call's transitions to the dispatcher's queue
        # (under the cell lock, so in order); deliver them, and any others.
        if log:
            self._events.drain(self)

    def allow(self) -> bool:
        """True if a call may proceed now; report it with ``record_*()``.

        A rejection is the False result alone: ``on_reject`` and the
        fallback run only for the forms that raise (``with``, ``call``,
        the decorator, ``call_async``).
        """
        log = self._events.pending
        ok = admit(self._cell, self._policy, self._now(), log) != 0
        self._deliver(log)
        return ok

    def record_success(self) -> None:
        """Report a success against the current generation."""
        log = self._events.pending
        settle(self._cell, self._policy, self._now(), 0, OUTCOME_SUCCESS, log)
        self._deliver(log)

    def record_failure(self) -> None:
        """Report a failure against the current generation."""
        log = self._events.pending
        settle(self._cell, self._policy, self._now(), 0, OUTCOME_FAILURE, log)
        self._deliver(log)

    def acquire(self) -> int:
        """A ticket (a non-zero int) if a call may proceed, else 0.

        A rejection is the 0 alone, as for ``allow()``: no ``on_reject``.
        """
        log = self._events.pending
        ticket = admit(self._cell, self._policy, self._now(), log)
        if (ticket >> 1) & STATE_FIELD == S_HALF_OPEN:
            ticket = self._probes.issue(ticket)
        self._deliver(log)
        return ticket

    def release(
        self,
        ticket: int,
        ok: bool | None,
        duration: float | datetime.timedelta | None = None,
    ) -> None:
        """Report the outcome of the call that ``ticket`` admitted.

        ``ok`` is True for success, False for failure, None for neutral.
        ``duration`` (seconds, or a timedelta) marks the call slow under a
        slow-call policy.
        """
        outcome = outcome_code(ok)
        if duration is not None and is_slow(self._policy, duration):
            outcome |= OUTCOME_SLOW
        self._settle(check_ticket(ticket), outcome)

    def _settle(self, ticket: int, outcome: int) -> None:
        if ticket & TRACKED and not self._probes.release(ticket):
            if ticket & TICKET_BASE == current_ticket(self._cell):
                return  # released before: its probe's slot is free already
        if outcome & OUTCOME_SLOW and outcome & OUTCOME_BASE != OUTCOME_NEUTRAL:
            # The slow total (the fleet agent's slow counts), as the window
            # counts slow outcomes: the compiled core counts it in
            # _py_settle_full, out of its inlined path.
            _add(self._cell, T_SLOW)
        log = self._events.pending
        settle(self._cell, self._policy, self._now(), ticket, outcome, log)
        self._deliver(log)

    def renormalize(self) -> None:
        """Move an open breaker whose timeout has passed to half-open."""
        log = self._events.pending
        renormalize(self._cell, self._policy, self._now(), log)
        self._deliver(log)

    def reset(self) -> None:
        """Back to closed, as a new generation."""
        log = self._events.pending
        reset(self._cell, self._now(), log)
        self._deliver(log)

    def force_open(self) -> None:
        """Reject every call until ``reset()``."""
        log = self._events.pending
        force(self._cell, 0, self._now(), log)
        self._deliver(log)

    def force_closed(self) -> None:
        """Admit every call, never trip, until ``reset()``."""
        log = self._events.pending
        force(self._cell, 1, self._now(), log)
        self._deliver(log)

    def _trip(self) -> bool:
        """Open a closed, unforced breaker now; True if this call opened it."""
        log = self._events.pending
        tripped = trip(self._cell, self._now(), log)
        self._deliver(log)
        return tripped

    def open_for(self, seconds: Seconds) -> int:
        """Open now for ``seconds``, then probe as usual; an open that would
        end sooner is extended instead (no new transition), a forced breaker
        is left alone. The full generation of the open made or extended,
        else 0 (forced, or open for longer already)."""
        ticks = duration_ticks("seconds", seconds)
        log = self._events.pending
        generation = open_for(self._cell, self._policy, ticks, self._now(), log)
        self._deliver(log)
        return generation

    # -- the fleet agent's operations (see docs/semantics.md) -----------------

    def _extend_open(self, generation: int, seconds: Seconds) -> bool:
        """If open in full ``generation``: expiring no sooner than ``seconds``
        from now (True); no transition. Else False, unchanged."""
        gen = check_generation(generation)
        ticks = duration_ticks("seconds", seconds)
        return extend_open(self._cell, self._policy, gen, ticks, self._now())

    def _expire_open(self, generation: int) -> bool:
        """If open in full ``generation``: expired now (True), so that the
        next call probes as usual; no transition. Else False, unchanged."""
        gen = check_generation(generation)
        return expire_open(self._cell, self._policy, gen, self._now())

    def _close_if(self, generation: int) -> bool:
        """Closed (reason "fleet") if still open in full ``generation``, or
        half-open in the probe generation after it: True. Else False."""
        gen = check_generation(generation)
        log = self._events.pending
        closed = close_if(self._cell, gen, self._now(), log)
        self._deliver(log)
        return closed

    def _word_view(self) -> tuple[str, int, float]:
        """(state name, full generation, retry_after) from one read of the word."""
        t, w = _load_ticketed(self._cell)
        retry = retry_after_ticks(w, self._policy, self._now()) / 1000
        return state_name(w), full_generation(t, w), retry

    # -- forms of protection ------------------------------------------------

    def __enter__(self) -> None:
        _enter_block(self, sys._getframe(1))

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        _exit_block(self, sys._getframe(1), exc_type, exc)

    async def __aenter__(self) -> None:
        # Running, this coroutine's caller is the frame of the async with.
        _enter_block(self, sys._getframe(1))

    async def __aexit__(
        self, exc_type: object, exc: BaseException | None, tb: object
    ) -> None:
        _exit_block(self, sys._getframe(1), exc_type, exc)

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn(*args, **kwargs)`` under the breaker."""
        if self._options.fallback_is_async:
            raise_async_fallback(self._options)
        ticket = self.acquire()
        if not ticket:
            return self._rejected(args, kwargs)  # type: ignore[attr-defined,no-any-return]
        started = self._started()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._exit_exc(ticket, exc, started)
            raise
        # A subclass's _generator_result counts a returned generator when it
        # finishes (as FLAG_GENERATOR_HOOK does in the compiled core).
        hook = getattr(type(self), "_generator_result", None)
        if hook is not None and type(result) is types.GeneratorType:
            return hook(self, ticket, result)  # type: ignore[no-any-return]
        if hasattr(type(result), "__await__"):  # the compiled core's slot test
            self._settle(ticket, OUTCOME_NEUTRAL)
            raise wrappers.awaitable_refused(fn, result)
        self._exit_result(ticket, result, started)
        return result

    def _guard(self, fn: Any) -> Any:
        """``fn`` wrapped so that each call goes through ``call``."""
        return _Guarded(self, fn)

    def _started(self) -> int | None:
        """The tick a call starts at, under a slow-call policy; else None."""
        if not self._policy.slow_ticks:
            return None
        return _resolve(self._now())

    def _slow(self, started: int | None) -> int:
        """OUTCOME_SLOW if a call that started at ``started`` was slow."""
        if started is None:
            return 0
        elapsed = (_resolve(self._now()) - started) & 0xFFFF_FFFF_FFFF_FFFF
        return OUTCOME_SLOW if elapsed >= self._policy.slow_ticks else 0

    def _exit_ok(self, ticket: int, started: int | None = None) -> None:
        """A call admitted with ``ticket`` succeeded (no result to judge)."""
        self._settle(ticket, OUTCOME_SUCCESS | self._slow(started))
        if self._options.on_success is not None:
            run_hook(self._options.on_success, self)

    def _exit_result(
        self, ticket: int, result: object, started: int | None = None
    ) -> None:
        """A call returned ``result``; ``is_failure_result`` may call it failed."""
        if result_outcome(self._options, result):
            self._exit_ok(ticket, started)
            return
        self._settle(ticket, OUTCOME_FAILURE | self._slow(started))
        if self._options.on_failure is not None:
            run_hook(self._options.on_failure, self, result)

    def _exit_exc(
        self, ticket: int, exc: BaseException, started: int | None = None
    ) -> None:
        """A call raised ``exc``: failure, success or neutral by the rules."""
        ok = exception_outcome(self._options, exc, self)
        if ok is True:
            self._exit_ok(ticket, started)
            return
        slow = self._slow(started) if ok is False else 0
        self._settle(ticket, outcome_code(ok) | slow)
        if ok is False and self._options.on_failure is not None:
            run_hook(self._options.on_failure, self, exc)

    # -- reading ------------------------------------------------------------

    @property
    def state(self) -> State:
        return describe_word(_load(self._cell))[0]

    @property
    def forced(self) -> str | None:
        w = _load(self._cell)
        if w & STATE_FIELD != S_FORCED:
            return None
        return "closed" if w >> FORCED_KIND_SHIFT else "open"

    @property
    def generation(self) -> int:
        return (_load(self._cell) >> GEN_SHIFT) & GEN_FIELD

    @property
    def consecutive_failures(self) -> int:
        w = _load(self._cell)
        if w & STATE_FIELD in (S_CLOSED, S_FORCED):
            return (w >> FAIL_SHIFT) & FAIL_MAX
        return 0

    @property
    def retry_after(self) -> float:
        """Seconds until a probe can be admitted (see CircuitOpenError)."""
        return retry_after_ticks(_load(self._cell), self._policy, self._now()) / 1000

    @property
    def time_in_state(self) -> float:
        """Seconds since the last transition (or since construction)."""
        elapsed = (
            _resolve(self._now()) - self._cell.changed_at
        ) & 0xFFFF_FFFF_FFFF_FFFF
        # 0, not 584 million years, when a clock stepped back put the last
        # transition after now (a difference in the upper half is negative).
        return 0.0 if elapsed >> 63 else elapsed / 1000

    @property
    def policy(self) -> Policy:
        return self._policy

    @property
    def max_failures(self) -> int:
        return self._policy.max_failures

    @property
    def reset_timeout(self) -> float:
        """Seconds, as validated and rounded to the millisecond."""
        return self._policy.reset_ticks / 1000

    @property
    def half_open_max(self) -> int:
        return self._policy.half_open_max

    @property
    def success_threshold(self) -> int:
        return self._policy.success_threshold

    @property
    def half_open_timeout(self) -> float:
        """Seconds, as validated and rounded to the millisecond."""
        return self._policy.half_open_timeout_ticks / 1000

    @property
    def _word(self) -> int:
        return _load(self._cell)

    def _window_sums(self) -> tuple[int, int, int]:
        """(calls, failures, slow) in the window now; zeros without one."""
        if not self._policy.window_kind:
            return 0, 0, 0
        w = _load(self._cell)
        gen = (w >> GEN_SHIFT) & GEN_FIELD
        epoch = window_now(self._cell, self._policy, _resolve(self._now()))
        return window_sums(self._cell, self._policy, gen, epoch)

    def totals(self) -> Totals:
        with self._cell.lock:
            return Totals(*self._cell.totals[:T_SLOW])

    def _slow_total(self) -> int:
        """Slow outcomes reported so far (host-wide for a shared breaker)."""
        with self._cell.lock:
            return self._cell.totals[T_SLOW]


class CircuitBreaker(BreakerAPI, CoreBreaker):
    """A circuit breaker: closed, open and half-open, lock-free.

    ``CircuitBreaker(max_failures=5, reset_timeout=60.0, half_open_max=3)``;
    see the README for every setting. This is the pure-Python twin, exported
    as ``qbreaker.PyCircuitBreaker``.
    """

    __slots__ = ()

    def __init__(
        self,
        max_failures: int | None = 5,
        reset_timeout: Seconds = 60.0,
        half_open_max: int = 3,
        *,
        success_threshold: int | None = None,
        half_open_timeout: Seconds | None = None,
        name: str | None = None,
        exclude: Iterable[type[BaseException]] = (),
        is_failure: Callable[[BaseException], object] | None = None,
        is_failure_result: Callable[[Any], object] | None = None,
        fallback: Callable[..., Any] | None = None,
        on_state_change: Listener | None = None,
        on_success: Hook | None = None,
        on_failure: Hook | None = None,
        on_reject: Hook | None = None,
        error_rate_threshold: float | None = None,
        latency_threshold: Seconds | None = None,
        clock: Clock | None = None,
        failure_rate_threshold: float | None = None,
        slow_call_rate_threshold: float | None = None,
        slow_call_duration: Seconds | None = None,
        window_size: int | None = None,
        window_seconds: Seconds | None = None,
        minimum_calls: int | None = None,
        shared: str | None = None,
        shared_policy: str = "match",
        fleet: bool = False,
        fleet_quorum: int = 2,
        fleet_max_failures: int | None = None,
        fleet_window: Seconds = 10.0,
    ) -> None:
        # Every parameter, by name: locals() holds nothing else yet.
        arguments = {k: v for k, v in locals().items() if k != "self"}
        config = methods.make_config(**arguments)
        if config.fleet is not None:
            raise SharedStateError(
                "the pure-Python core cannot be a fleet breaker (fleet=True): a "
                "fleet breaker is a shared one, and this core cannot share a "
                "breaker between processes; use the compiled core (unset "
                "QBREAKER_NO_EXTENSIONS)"
            )
        if config.shared is not None:
            raise SharedStateError(
                "the pure-Python core cannot share a breaker between processes: "
                "it has no atomic compare-and-swap on shared memory; use the "
                "compiled core (unset QBREAKER_NO_EXTENSIONS)"
            )
        methods.configure(self, config)
