# cython: language_level=3, embedsignature=True
# cython: freethreading_compatible = True
# cython: binding=False, always_allow_keywords=False
# cython: boundscheck=False, wraparound=False, cdivision=True
"""The compiled core: a line-for-line port of ``_core_py``, the specification.

binding=False and always_allow_keywords=False keep the hot methods plain
METH_NOARGS/METH_O/METH_FASTCALL descriptors, which CPython 3.11 specialises;
the defaults cost about twice as much per call (DESIGN.md).

The GIL is never released inside a Python-facing method: the atomics make the
code correct either way, and releasing it around one CAS measured slower.
"""

from cpython.contextvars cimport PyContextVar_Set, get_value_no_default
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from cpython.set cimport PySet_Add, PySet_Contains, PySet_Discard
from libc.math cimport INFINITY
from libc.stdint cimport int64_t, uint64_t, uintptr_t
from libc.errno cimport ESRCH, errno
from libc.string cimport memmove, memset
from posix.signal cimport kill
from posix.unistd cimport getpid

import contextvars
import functools
import os
from types import MethodType

from qbreaker._impl import methods as _api
from qbreaker._impl import wrappers as _forms
from qbreaker._impl import probes as _probes
from qbreaker._policy import DEFAULT_POLICY, Policy, clock_ticks
from qbreaker._policy import is_slow as _is_slow
from qbreaker._word import check_ticket as _check_ticket
from qbreaker._word import outcome_code as _outcome_code
from qbreaker._impl.events import Dispatcher
from qbreaker._outcomes import (
    DEFAULT_OPTIONS,
    exception_outcome,
    raise_async_fallback,
    result_outcome,
    run_hook,
)
from qbreaker._state import State, Totals


cdef extern from *:
    """
    /* Free-threaded builds only: orders the transitions that the Python API
       wins with their queueing for the listeners (see _transition, _push).
       Process-local, never in a cell, never taken for cimport callers. With
       a GIL, the GIL gives that order already. */
    #if defined(Py_GIL_DISABLED)
    static PyMutex qb_order_mutex;
    static inline void qb_order_lock(void) { PyMutex_Lock(&qb_order_mutex); }
    static inline void qb_order_unlock(void) { PyMutex_Unlock(&qb_order_mutex); }
    static inline void qb_order_after_fork(void) {
        memset(&qb_order_mutex, 0, sizeof qb_order_mutex);
    }
    #define QB_ORDERED 1
    #else
    static inline void qb_order_lock(void) {}
    static inline void qb_order_unlock(void) {}
    static inline void qb_order_after_fork(void) {}
    #define QB_ORDERED 0
    #endif
    """
    void qb_order_lock() noexcept nogil
    void qb_order_unlock() noexcept nogil
    void qb_order_after_fork() noexcept nogil
    enum: QB_ORDERED


def _after_fork_in_child():
    # Only the forking thread survives a fork: an order lock that another
    # thread held at that moment would block every transition in the child.
    qb_order_after_fork()
    _with_tickets_after_fork()


if QB_ORDERED and hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


cdef extern from "Python.h":
    # Only the field we read: the thread's current contextvars.Context.
    ctypedef struct PyThreadState:
        PyObject *context
    PyThreadState *PyThreadState_Get()

LAYOUT = {
    "STATE_SHIFT": STATE_SHIFT,
    "STATE_BITS": STATE_BITS,
    "GEN_SHIFT": GEN_SHIFT,
    "GEN_BITS": GEN_BITS,
    "FAIL_SHIFT": FAIL_SHIFT,
    "FAIL_BITS": FAIL_BITS,
    "OPENED_SHIFT": OPENED_SHIFT,
    "OPENED_BITS": OPENED_BITS,
    "INFLIGHT_SHIFT": INFLIGHT_SHIFT,
    "INFLIGHT_BITS": INFLIGHT_BITS,
    "HSUCC_SHIFT": HSUCC_SHIFT,
    "HSUCC_BITS": HSUCC_BITS,
    "ENTERED_SHIFT": ENTERED_SHIFT,
    "ENTERED_BITS": ENTERED_BITS,
    "FORCED_KIND_SHIFT": FORCED_KIND_SHIFT,
    "FORCED_KIND_BITS": FORCED_KIND_BITS,
    "S_CLOSED": S_CLOSED,
    "S_OPEN": S_OPEN,
    "S_HALF_OPEN": S_HALF_OPEN,
    "S_FORCED": S_FORCED,
    "OUTCOME_FAILURE": OUTCOME_FAILURE,
    "OUTCOME_SUCCESS": OUTCOME_SUCCESS,
    "OUTCOME_NEUTRAL": OUTCOME_NEUTRAL,
    "OUTCOME_SLOW": OUTCOME_SLOW,
    "OUTCOME_BASE": OUTCOME_BASE,
    "WINDOW_NONE": WINDOW_NONE,
    "WINDOW_COUNT": WINDOW_COUNT,
    "WINDOW_TIME": WINDOW_TIME,
    "KEY_EPOCH_BITS": KEY_EPOCH_BITS,
    "TICKET_GEN_BITS": TICKET_GEN_BITS,
}

cdef tuple _STATES = (State.CLOSED, State.OPEN, State.HALF_OPEN)
cdef object _STATE_CLOSED = State.CLOSED
cdef object _STATE_OPEN = State.OPEN

cdef uint64_t STATE_FIELD = (<uint64_t>1 << STATE_BITS) - 1
cdef uint64_t GEN_FIELD = (<uint64_t>1 << GEN_BITS) - 1
cdef uint64_t FAIL_MAX = (<uint64_t>1 << FAIL_BITS) - 1
cdef uint64_t OPENED_FIELD = (<uint64_t>1 << OPENED_BITS) - 1
cdef uint64_t INFLIGHT_MAX = (<uint64_t>1 << INFLIGHT_BITS) - 1
cdef uint64_t HSUCC_MAX = (<uint64_t>1 << HSUCC_BITS) - 1
cdef uint64_t ENTERED_FIELD = (<uint64_t>1 << ENTERED_BITS) - 1
cdef uint64_t STALE_NOW_TICKS = <uint64_t>1 << 16   # as _core_py.STALE_NOW_TICKS
cdef uint64_t HEAD_FIELD = (<uint64_t>1 << HEAD_BITS) - 1
cdef uint64_t FAIL_MASK = FAIL_MAX << FAIL_SHIFT
cdef uint64_t TRACKED_BIT = _probes.TRACKED
cdef uint64_t PROBE_SHIFT = _probes.PROBE_SHIFT
cdef uint64_t PROBE_FIELD = _probes.PROBE_FIELD
cdef uint64_t PROBE_BASE_FIELD = _probes.BASE_FIELD
cdef Py_ssize_t PROBES_FORGET_AT = _probes.FORGET_AT
cdef long long TICKET_MAX = <long long>((<uint64_t>1 << 63) - 1)
# Marks a with-block's stored ticket as timed (tickets use bits 0-62).
cdef uint64_t TIMED_BIT = <uint64_t>1 << 63


# -- word builders -----------------------------------------------------------

cdef inline uint64_t _next_gen(uint64_t w) noexcept nogil:
    return ((w >> GEN_SHIFT) + 1) & GEN_FIELD


cdef inline uint64_t _closed_word(uint64_t gen) noexcept nogil:
    return S_CLOSED | gen << GEN_SHIFT


cdef inline uint64_t _open_word(uint64_t gen, uint64_t now) noexcept nogil:
    return S_OPEN | gen << GEN_SHIFT | (now & OPENED_FIELD) << OPENED_SHIFT


cdef inline uint64_t _half_open_word(uint64_t gen, uint64_t in_flight,
                                     uint64_t successes,
                                     uint64_t entered) noexcept nogil:
    return (S_HALF_OPEN
            | gen << GEN_SHIFT
            | in_flight << INFLIGHT_SHIFT
            | successes << HSUCC_SHIFT
            | (entered & ENTERED_FIELD) << ENTERED_SHIFT)


cdef inline uint64_t _forced_word(uint64_t gen, uint64_t kind_closed) noexcept nogil:
    return S_FORCED | gen << GEN_SHIFT | kind_closed << FORCED_KIND_SHIFT


# The ticket helpers spell their masks from the layout's enum, not from the
# module's variables, so that the compiler folds them: they are on the
# inlined fast paths.

cdef inline uint64_t _ticket_of(uint64_t t, uint64_t w) noexcept nogil:
    # t: the transitions total, read before w. The full generation is the
    # one nearest t that agrees with the word's modulo 2**18 (see _core_py).
    cdef uint64_t half = <uint64_t>1 << (GEN_BITS - 1)
    cdef uint64_t full = t + ((((w >> GEN_SHIFT) - t + half)
                               & ((<uint64_t>1 << GEN_BITS) - 1)) - half)
    return (((full << (STATE_BITS + 1))
             & ((<uint64_t>1 << (TICKET_GEN_BITS + STATE_BITS + 1)) - 1))
            | (w & ((1 << STATE_BITS) - 1)) << 1 | 1)


cdef inline bint _head_matches(uint64_t ticket, uint64_t w) noexcept nogil:
    # The ticket's state and generation modulo 2**18 are the word's.
    return (((ticket >> 1) ^ w) & ((1 << HEAD_BITS) - 1)) == 0


cdef inline bint _ticket_current(uint64_t ticket, uint64_t t,
                                 uint64_t w) noexcept nogil:
    # The ticket is of w's state and generation, t being the transitions
    # total read next to w: _ticket_of(t, w) == ticket & _core_py.TICKET_BASE,
    # in fewer steps (the head matches, and the ticket's generation is within
    # 2**17 of t). Bits above TICKET_BASE are not read.
    cdef uint64_t half = <uint64_t>1 << (GEN_BITS - 1)
    return (_head_matches(ticket, w)
            and (((ticket >> (STATE_BITS + 1)) - t + half)
                 & ((<uint64_t>1 << TICKET_GEN_BITS) - 1)) < 2 * half)


cdef inline uint64_t _open_elapsed(uint64_t w, uint64_t now) noexcept nogil:
    # 0 if it opened "after" now (see _core_py._open_elapsed).
    cdef uint64_t elapsed = (now - (w >> OPENED_SHIFT)) & OPENED_FIELD
    return 0 if elapsed >> (OPENED_BITS - 1) else elapsed


cdef inline uint64_t _expired_half_open(uint64_t w, const qb_policy *pol,
                                        uint64_t now) noexcept nogil:
    # Re-opens as of the moment it expired, not as of now; a `now` a little
    # behind the entry time is a stale reading, not a wrap (see _core_py).
    cdef uint64_t elapsed = (now - (w >> ENTERED_SHIFT)) & ENTERED_FIELD
    if (elapsed < pol.half_open_timeout_ticks
            or elapsed > ENTERED_FIELD - STALE_NOW_TICKS):
        return 0
    return _open_word(_next_gen(w),
                      now - (elapsed - pol.half_open_timeout_ticks))


cdef inline int *_ordered(int *held) noexcept nogil:
    # What the Python API's callers pass as `held`: NULL with a GIL.
    return held if QB_ORDERED else NULL


cdef inline bint _transition(qb_cell *cell, uint64_t *w, uint64_t nw,
                             uint64_t now, qb_translog *log,
                             int *held) noexcept nogil:
    # CAS that changes the generation; the winner counts and logs it.
    cdef uint64_t old = w[0]
    if held != NULL and not held[0]:
        # A Python-API caller without a GIL: from its first transition
        # attempt until _push has queued what it won, no other such caller
        # wins one, so the listeners' queue is in generation order. Only
        # transitions take it; the CAS below still decides, lock-free.
        qb_order_lock()
        held[0] = 1
    if not qb_cas(&cell.word, w, nw):
        return False
    qb_add(&cell.transitions, 1)
    qb_store(&cell.changed_at, now)
    if log != NULL:
        if log.n < QB_LOG_CAP:
            log.from_word[log.n] = old
            log.to_word[log.n] = nw
            log.n += 1
        else:
            log.lost += 1
    return True


cdef inline uint64_t _resolve(uint64_t now) noexcept nogil:
    return qb_monotonic_ms() if now == QB_NOW_AUTO else now


# -- the rate window ------------------------------------------------------------

cdef uint64_t EPOCH_FIELD = (<uint64_t>1 << KEY_EPOCH_BITS) - 1


cdef inline void _bump(uint64_t *counter, bint plain) noexcept nogil:
    # plain: FLAG_PLAIN_WINDOW's case, where the GIL serialises every writer
    # and a locked add would be the window's whole cost.
    if plain:
        counter[0] += 1
    else:
        qb_add(counter, 1)


cdef enum:
    HINT_INDEX_BITS = 5      # buckets <= 16
    HINT_INDEX_MASK = 31


cdef inline uint64_t _window_x(qb_cell *cell, const qb_policy *pol,
                               uint64_t given_now, bint plain) noexcept nogil:
    # Where an outcome falls: its time, or (count windows) the position it
    # takes from the cursor.
    cdef qb_window *win = QB_WINDOW(cell)
    cdef uint64_t x
    if pol.window_kind == WINDOW_TIME:
        return _resolve(given_now)
    if plain:
        x = win.cursor
        win.cursor = x + 1
        return x
    return qb_fetch_add(&win.cursor, 1)


cdef inline uint64_t _window_epoch(qb_cell *cell, const qb_policy *pol, uint64_t x,
                                   uint32_t *index, bint plain) noexcept nogil:
    # The epoch of x and that epoch's bucket. Two 64-bit divisions cost more
    # than the rest of the window's path, so the epoch comes from the
    # header's hint when x falls in the hinted epoch or the next; the hint
    # is checked against x, so a stale or concurrent one only costs the
    # divisions. Unless `plain` (a private window, whose hint only this
    # code writes), its index is checked too: a segment's hint is any
    # bytes, and an index past the buckets would count outside the window.
    cdef qb_window *win = QB_WINDOW(cell)
    cdef uint64_t hint = win.hint if plain else qb_load(&win.hint)
    cdef uint64_t span = pol.window_span
    cdef uint64_t epoch = hint >> HINT_INDEX_BITS
    cdef uint64_t offset = x - epoch * span
    cdef uint32_t i = hint & HINT_INDEX_MASK
    cdef bint foreign = not plain and i >= pol.window_buckets
    if offset >= span or foreign:
        if offset < 2 * span and not foreign:
            epoch += 1
            i = 0 if i + 1 >= pol.window_buckets else i + 1
        else:
            epoch = x // span
            i = epoch % pol.window_buckets
        hint = epoch << HINT_INDEX_BITS | i
        if plain:
            win.hint = hint
        else:
            qb_store(&win.hint, hint)
    index[0] = i
    return epoch


cdef inline bint _window_quick(qb_cell *cell, const qb_policy *pol, uint64_t x,
                               uint64_t w) noexcept nogil:
    # FLAG_PLAIN_WINDOW's common success, with one add: x's bucket already
    # holds this generation's epoch. False: nothing counted yet (the hint
    # may have moved on), take the full path.
    cdef uint32_t index
    cdef uint64_t epoch = _window_epoch(cell, pol, x, &index, True)
    cdef qb_bucket *b = QB_BUCKETS(cell) + index
    if b.key != (((w >> GEN_SHIFT) & GEN_FIELD) << KEY_EPOCH_BITS
                 | (epoch & EPOCH_FIELD)):
        return False
    b.calls += 1
    return True


cdef inline bint _window_add(qb_cell *cell, uint64_t gen, uint64_t epoch,
                             uint32_t index, int outcome, bint plain,
                             uint64_t *landed) noexcept nogil:
    # Count an outcome in bucket `index` (epoch's); True if this call rotated
    # it. `landed`: the epoch the bucket holds, later than `epoch` when a
    # stale x (a descheduled caller, a clock stepped back) finds it rotated.
    cdef qb_bucket *b = QB_BUCKETS(cell) + index
    cdef uint64_t key = gen << KEY_EPOCH_BITS | (epoch & EPOCH_FIELD)
    cdef uint64_t seen = qb_load(&b.key)
    cdef uint64_t ahead
    cdef bint rotated = False
    if seen != key:
        ahead = (epoch - seen) & EPOCH_FIELD
        if (seen >> KEY_EPOCH_BITS) != gen or (
                0 < ahead < (<uint64_t>1 << (KEY_EPOCH_BITS - 1))):
            if plain:
                b.key = key
                rotated = True
            elif qb_cas(&b.key, &seen, key):
                rotated = True
            if rotated:
                qb_store(&b.calls, 0)
                qb_store(&b.failures, 0)
                qb_store(&b.slow, 0)
    _bump(&b.calls, plain)
    if (outcome & OUTCOME_BASE) == OUTCOME_FAILURE:
        _bump(&b.failures, plain)
    if outcome & OUTCOME_SLOW:
        _bump(&b.slow, plain)
    ahead = (seen - epoch) & EPOCH_FIELD
    landed[0] = epoch + ahead if (not rotated and ahead
                                  < (<uint64_t>1 << (KEY_EPOCH_BITS - 1))) else epoch
    return rotated


cdef inline void _window_sums(qb_cell *cell, const qb_policy *pol, uint64_t gen,
                              uint64_t epoch, uint64_t *sums) noexcept nogil:
    # (calls, failures, slow) of generation `gen` in the window ending at
    # `epoch`: its bucket and the buckets - 1 before it.
    cdef qb_bucket *b = QB_BUCKETS(cell)
    cdef uint32_t i
    cdef uint64_t key
    sums[0] = sums[1] = sums[2] = 0
    for i in range(pol.window_buckets):
        key = qb_load(&b[i].key)
        if (key >> KEY_EPOCH_BITS) != gen:
            continue
        if ((epoch - key) & EPOCH_FIELD) < pol.window_buckets:
            sums[0] += qb_load(&b[i].calls)
            sums[1] += qb_load(&b[i].failures)
            sums[2] += qb_load(&b[i].slow)


cdef inline uint64_t _window_now(qb_cell *cell, const qb_policy *pol,
                                 uint64_t now) noexcept nogil:
    # The epoch a reader sums to: the current time's, or the last outcome's.
    cdef qb_window *win = QB_WINDOW(cell)
    cdef uint64_t position
    if pol.window_kind == WINDOW_TIME:
        return now // pol.window_span
    position = qb_load(&win.cursor)
    return (position - 1) // pol.window_span if position else 0


cdef inline bint _rates_crossed(qb_cell *cell, const qb_policy *pol,
                                const uint64_t *sums) noexcept nogil:
    cdef qb_window *win = QB_WINDOW(cell)
    cdef double calls = <double>sums[0]
    if sums[0] == 0 or sums[0] < pol.minimum_calls:
        return False
    if win.failure_rate_threshold and <double>sums[1] >= win.failure_rate_threshold * calls:
        return True
    return win.slow_rate_threshold and <double>sums[2] >= win.slow_rate_threshold * calls


cdef inline bint _window_count(qb_cell *cell, const qb_policy *pol, uint64_t x,
                               uint64_t w, int outcome, bint plain,
                               uint64_t *epoch) noexcept nogil:
    # Count a closed generation's outcome at x (see _window_x); True if the
    # rates must be judged: on failures, slow outcomes, and rotations. A
    # rotation's judgement is skipped when no failed or slow outcome is in
    # the window, since the rates are then 0 (a skipped judgement would have
    # found nothing).
    cdef qb_window *win = QB_WINDOW(cell)
    cdef uint64_t last, landed
    cdef uint32_t index
    cdef bint bad = (outcome & OUTCOME_SLOW) or (outcome & OUTCOME_BASE) == OUTCOME_FAILURE
    epoch[0] = _window_epoch(cell, pol, x, &index, plain)
    if not _window_add(cell, (w >> GEN_SHIFT) & GEN_FIELD, epoch[0], index,
                       outcome, plain, &landed) and not bad:
        return False
    last = qb_load(&win.bad_epoch)
    if bad:
        # bad_epoch: the latest epoch whose bucket counted a failed or slow
        # outcome, raised only (a lower store would let a later rotation
        # skip wrongly).
        while last < landed and not qb_cas(&win.bad_epoch, &last, landed):
            pass
        return True
    return last > epoch[0] or epoch[0] - last < pol.window_buckets


cdef inline bint _window_settle(qb_cell *cell, const qb_policy *pol,
                                uint64_t given_now, uint64_t w, int outcome,
                                qb_translog *log, int *held) noexcept nogil:
    # Count an outcome with atomics; True if its rates tripped the breaker.
    cdef uint64_t epoch
    return (_window_count(cell, pol, _window_x(cell, pol, given_now, False), w,
                          outcome, False, &epoch)
            and _window_judge(cell, pol, given_now, w, epoch, log, held))


cdef bint _window_judge(qb_cell *cell, const qb_policy *pol, uint64_t given_now,
                        uint64_t w, uint64_t epoch, qb_translog *log,
                        int *held) noexcept nogil:
    # The rare part, out of line: sum the window to `epoch`, and trip the
    # generation of `w` if its rates crossed a threshold.
    cdef uint64_t gen = (w >> GEN_SHIFT) & GEN_FIELD
    cdef uint64_t now
    cdef uint64_t sums[3]
    _window_sums(cell, pol, gen, epoch, sums)
    if not _rates_crossed(cell, pol, sums):
        return False
    while (w & STATE_FIELD) == S_CLOSED and ((w >> GEN_SHIFT) & GEN_FIELD) == gen:
        now = _resolve(given_now)
        if _transition(cell, &w, _open_word(_next_gen(w), now), now, log, held):
            return True
    return False  # another thread moved it on: the usual path judges the rest


# -- operations ----------------------------------------------------------------

cdef inline uint64_t _admit_fast(qb_cell *cell, const qb_policy *pol,
                                 uint64_t given_now, qb_translog *log,
                                 int *held) noexcept nogil:
    # The closed path, inlined into the caller: two loads and one count.
    cdef uint64_t t = qb_load(&cell.transitions)
    cdef uint64_t w = qb_load(&cell.word)
    if (w & STATE_FIELD) == S_CLOSED:
        qb_add(&cell.allowed, 1)
        return _ticket_of(t, w)
    return _admit(cell, pol, given_now, log, held)


cdef uint64_t _admit(qb_cell *cell, const qb_policy *pol, uint64_t given_now,
                     qb_translog *log, int *held) noexcept nogil:
    cdef uint64_t t = qb_load(&cell.transitions)
    cdef uint64_t w = qb_load(&cell.word)
    cdef uint64_t state, nw, now
    cdef bint admitted = False
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
            nw = _half_open_word(_next_gen(w), 1, 0, now)
            if _transition(cell, &w, nw, now, log, held):
                w = nw
                admitted = True
                break
            continue
        nw = _expired_half_open(w, pol, now)
        if nw:
            if _transition(cell, &w, nw, now, log, held):
                w = nw
            continue
        if ((w >> INFLIGHT_SHIFT) & INFLIGHT_MAX) >= pol.half_open_max:
            break
        nw = w + (<uint64_t>1 << INFLIGHT_SHIFT)
        if qb_cas(&cell.word, &w, nw):
            w = nw
            admitted = True
            break
    if not admitted:
        qb_add(&cell.rejected, 1)
        return 0
    # One exit for every admission: the ticket's arithmetic inlined once.
    qb_add(&cell.allowed, 1)
    return _ticket_of(t, w)


cdef inline bint _quiet_success(uint64_t w, uint64_t ticket, int outcome) noexcept nogil:
    # A fast success with nothing to reset: closed, no failures, and the
    # ticket (if any) of this generation modulo 2**18. It writes nothing to
    # the word, so a ticket stale by a multiple of 2**18 generations changes
    # nothing here either (both are counted in totals); only a window's count
    # needs the full check, _ticket_current.
    return (outcome == OUTCOME_SUCCESS
            and (w & (STATE_FIELD | FAIL_MASK)) == S_CLOSED
            and (not ticket or _head_matches(ticket, w)))


cdef inline bint _plain_success(const qb_policy *pol, uint64_t w, uint64_t ticket,
                                int outcome) noexcept nogil:
    # ...and no window to count it in: nothing to do but count it.
    return not pol.window_kind and _quiet_success(w, ticket, outcome)


cdef inline bint _settle_fast(qb_cell *cell, const qb_policy *pol,
                              uint64_t given_now, uint64_t ticket, int outcome,
                              qb_translog *log, int *held) noexcept nogil:
    # The plain success inlined into the caller: one load and one count.
    if _plain_success(pol, qb_load(&cell.word), ticket, outcome):
        qb_add(&cell.successes, 1)
        return True
    return _settle(cell, pol, given_now, ticket, outcome, log, held)


cdef bint _settle(qb_cell *cell, const qb_policy *pol, uint64_t given_now,
                  uint64_t ticket, int outcome, qb_translog *log,
                  int *held) noexcept nogil:
    cdef uint64_t t, w, state, failures, in_flight, freed, successes, nw, now
    cdef bint ok
    cdef int slow = outcome & OUTCOME_SLOW
    outcome &= OUTCOME_BASE
    if outcome == OUTCOME_SUCCESS:
        qb_add(&cell.successes, 1)
    elif outcome == OUTCOME_FAILURE:
        qb_add(&cell.failures, 1)
    else:
        qb_add(&cell.neutral, 1)
    t = qb_load(&cell.transitions)
    w = qb_load(&cell.word)
    # The full generation once; from here on a transition shows in the head
    # (short of 2**18 of them within this call, the bound of the word's CAS).
    if ticket and not _ticket_current(ticket, t, w):
        return False
    if (pol.window_kind and outcome != OUTCOME_NEUTRAL
            and (w & STATE_FIELD) == S_CLOSED):
        if _window_settle(cell, pol, given_now, w, outcome | slow, log, held):
            return True
        w = qb_load(&cell.word)
    while True:
        if ticket and not _head_matches(ticket, w):
            return False
        state = w & STATE_FIELD
        if state == S_OPEN or (outcome == OUTCOME_NEUTRAL and state != S_HALF_OPEN):
            return True
        if state == S_CLOSED or state == S_FORCED:
            if state == S_FORCED and not (w >> FORCED_KIND_SHIFT):
                return True
            failures = (w >> FAIL_SHIFT) & FAIL_MAX
            if outcome == OUTCOME_SUCCESS:
                if failures == 0:
                    # The common case writes nothing: no cache-line bounce.
                    return True
                ok = qb_cas(&cell.word, &w, w & ~FAIL_MASK)
            elif failures == FAIL_MAX:
                return True
            elif (state == S_CLOSED and pol.max_failures > 0
                  and failures + 1 >= pol.max_failures):
                now = _resolve(given_now)
                nw = _open_word(_next_gen(w), now)
                ok = _transition(cell, &w, nw, now, log, held)
            else:
                ok = qb_cas(&cell.word, &w, w + (<uint64_t>1 << FAIL_SHIFT))
            if ok:
                return True
            continue
        # Half-open.
        now = _resolve(given_now)
        nw = _expired_half_open(w, pol, now)
        if nw:
            if _transition(cell, &w, nw, now, log, held):
                w = nw
            continue
        in_flight = (w >> INFLIGHT_SHIFT) & INFLIGHT_MAX
        freed = in_flight - 1 if in_flight else 0
        # Under a slow-call policy a slow probe is a failed probe.
        if outcome == OUTCOME_FAILURE or (slow and outcome == OUTCOME_SUCCESS):
            nw = _open_word(_next_gen(w), now)
            ok = _transition(cell, &w, nw, now, log, held)
        elif outcome == OUTCOME_SUCCESS:
            successes = ((w >> HSUCC_SHIFT) & HSUCC_MAX) + 1
            if successes >= pol.success_threshold:
                nw = _closed_word(_next_gen(w))
                ok = _transition(cell, &w, nw, now, log, held)
            else:
                nw = _half_open_word((w >> GEN_SHIFT) & GEN_FIELD, freed,
                                     successes, w >> ENTERED_SHIFT)
                ok = qb_cas(&cell.word, &w, nw)
        elif in_flight == 0:
            return True
        else:
            ok = qb_cas(&cell.word, &w, w - (<uint64_t>1 << INFLIGHT_SHIFT))
        if ok:
            return True


cdef uint64_t qb_admit(qb_cell *cell, const qb_policy *pol, uint64_t now,
                       qb_translog *log) noexcept nogil:
    return _admit_fast(cell, pol, now, log, NULL)


cdef bint qb_settle(qb_cell *cell, const qb_policy *pol, uint64_t now,
                    uint64_t ticket, int outcome, qb_translog *log) noexcept nogil:
    return _settle_fast(cell, pol, now, ticket, outcome, log, NULL)


cdef void qb_renormalize(qb_cell *cell, const qb_policy *pol, uint64_t given_now,
                         qb_translog *log) noexcept nogil:
    _renormalize(cell, pol, given_now, log, NULL)


cdef void qb_reset(qb_cell *cell, uint64_t now, qb_translog *log) noexcept nogil:
    _reset(cell, now, log, NULL)


cdef void qb_force(qb_cell *cell, uint64_t kind_closed, uint64_t now,
                   qb_translog *log) noexcept nogil:
    _force(cell, kind_closed, now, log, NULL)


cdef bint qb_trip(qb_cell *cell, uint64_t given_now, qb_translog *log) noexcept nogil:
    return _trip_closed(cell, given_now, log, NULL)


cdef inline void _renormalize(qb_cell *cell, const qb_policy *pol, uint64_t given_now,
                              qb_translog *log, int *held) noexcept nogil:
    cdef uint64_t w = qb_load(&cell.word)
    cdef uint64_t state, nw, now
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
            nw = _half_open_word(_next_gen(w), 0, 0, now)
        if _transition(cell, &w, nw, now, log, held):
            if state == S_OPEN:
                return
            w = nw


cdef inline void _reset(qb_cell *cell, uint64_t now, qb_translog *log,
                        int *held) noexcept nogil:
    cdef uint64_t w = qb_load(&cell.word)
    now = _resolve(now)
    while not _transition(cell, &w, _closed_word(_next_gen(w)), now, log, held):
        pass


cdef inline void _force(qb_cell *cell, uint64_t kind_closed, uint64_t now,
                        qb_translog *log, int *held) noexcept nogil:
    cdef uint64_t w = qb_load(&cell.word)
    while True:
        if (w & STATE_FIELD) == S_FORCED and (w >> FORCED_KIND_SHIFT) == kind_closed:
            return
        now = _resolve(now)
        if _transition(cell, &w, _forced_word(_next_gen(w), kind_closed), now,
                       log, held):
            return


cdef inline bint _trip_closed(qb_cell *cell, uint64_t given_now, qb_translog *log,
                              int *held) noexcept nogil:
    cdef uint64_t w = qb_load(&cell.word)
    cdef uint64_t now
    while (w & STATE_FIELD) == S_CLOSED:
        now = _resolve(given_now)
        if _transition(cell, &w, _open_word(_next_gen(w), now), now, log, held):
            return True
    return False


cdef inline double _retry_after_ticks(uint64_t w, const qb_policy *pol,
                                      uint64_t now) noexcept nogil:
    cdef uint64_t state = w & STATE_FIELD
    cdef uint64_t elapsed
    if state == S_FORCED:
        return 0.0 if w >> FORCED_KIND_SHIFT else INFINITY
    if state != S_OPEN:
        return 0.0
    elapsed = _open_elapsed(w, _resolve(now))
    return <double>(pol.reset_ticks - elapsed) if elapsed < pol.reset_ticks else 0.0


# -- the Python-facing class ---------------------------------------------------

cdef inline void _own_add(uint64_t *counter) noexcept nogil:
    # A count only this process writes, under the GIL: no locked add. In a
    # shared slot, other processes read it, so it is still an atomic store.
    qb_store(counter, qb_load(counter) + 1)


cdef void _use_spare_bytes(CircuitBreaker b) noexcept:
    # The three hot counts go in _cell_storage's alignment slack: 56 bytes
    # around the cell, in multiples of 8, so at least 24 on one side of it.
    cdef char *start = &b._cell_storage[0]
    cdef char *aligned = <char *>((<uintptr_t>start + 63) & ~(<uintptr_t>63))
    if <size_t>(aligned - start) >= 3 * sizeof(uint64_t):
        b._hot = <uint64_t *>start
    else:
        b._hot = <uint64_t *>(aligned + sizeof(qb_cell))
    b._hot[0] = b._hot[1] = b._hot[2] = 0


cdef inline qb_slot *_slots_of(CircuitBreaker b) noexcept:
    # A shared cell's slots: at the 64-byte offset _use_shared_cell found
    # from the validated policy (not from the segment's own header).
    return <qb_slot *>(<char *>b._cell + 64 * ((b.cpolicy.host_flags >> FLAG_SLOTS_SHIFT) & 0xFF))


cdef uint64_t _process_token = 0
cdef uint64_t _pid_namespace = 0


cdef uint64_t _this_process() except 0:
    # A slot owner's token: pid << 32 | a random nonce, made anew in each
    # process (a forked child sees another pid). Pids alone collide between
    # PID namespaces that share /dev/shm; the namespace's inode, kept beside
    # the token, says whose pids kill() can judge.
    global _process_token, _pid_namespace
    cdef uint64_t pid = <uint64_t>getpid()
    if (_process_token >> 32) != pid:
        _process_token = pid << 32 | (int.from_bytes(os.urandom(4), "little") | 1)
        try:
            _pid_namespace = os.stat("/proc/self/ns/pid").st_ino
        except OSError:
            _pid_namespace = 0  # unknown: never take a slot over
    return _process_token


# Linux's PID_MAX_LIMIT: every pid is below it.
cdef uint64_t PID_LIMIT = 1 << 22


cdef bint _owner_is_dead(uint64_t owner) noexcept nogil:
    # A slot's owner is whatever bytes the segment holds: only a pid that can
    # name one process goes to kill(), since 0 and negative values address
    # process groups, and pid 1 never dies.
    cdef uint64_t pid = owner >> 32
    return (1 < pid < PID_LIMIT and kill(<int>pid, 0) == -1 and errno == ESRCH)


cdef int _claim_slot(CircuitBreaker b) except -1:
    # This process's slot of a shared cell: one it already holds (another
    # breaker object on the same segment: the GIL serialises the two), a
    # free one, or a dead process's of the same PID namespace (its counts
    # stay in the totals). None left: this process keeps counting in the
    # cell, with atomics.
    cdef qb_slot *slots = _slots_of(b)
    cdef uint64_t me = _this_process()
    cdef uint64_t owner
    cdef int i, found = -1
    b.cpolicy.host_flags &= ~FLAG_SLOT_WANTED
    for i in range(QB_SLOTS):
        if qb_load(&slots[i].owner) == me:
            found = i
            break
    if found < 0:
        for i in range(QB_SLOTS):
            owner = 0
            if qb_cas(&slots[i].owner, &owner, me):
                found = i
                break
    if found < 0 and _pid_namespace:
        for i in range(QB_SLOTS):
            owner = qb_load(&slots[i].owner)
            if (_owner_is_dead(owner)
                    and qb_load(&slots[i].pid_namespace) == _pid_namespace
                    and qb_cas(&slots[i].owner, &owner, me)):
                found = i
                break
    if found >= 0:
        qb_store(&slots[found].pid_namespace, _pid_namespace)
        b._hot = &slots[found].allowed
        b.cpolicy.host_flags |= FLAG_LOCAL_COUNTS
    return 0


cdef inline uint64_t _py_admit(CircuitBreaker b, bint ticketed) except? 0:
    # admit for the Python-facing methods: the closed path first, counted in
    # the object's own counters where FLAG_LOCAL_COUNTS allows (the GIL
    # serialises every such caller and no other process shares the cell).
    # Small enough for GCC to inline into each method; the rest is out of
    # line (a larger function here doubled the pair's instructions).
    # ticketed: the caller hands the ticket on (a half-open one is tracked).
    cdef uint64_t t = qb_load(&b._cell.transitions)
    cdef uint64_t w = qb_load(&b._cell.word)
    if (w & STATE_FIELD) == S_CLOSED and b.cpolicy.host_flags & FLAG_LOCAL_COUNTS:
        _own_add(&b._hot[0])
        return _ticket_of(t, w)
    return _py_admit_full(b, ticketed)


cdef uint64_t _py_admit_full(CircuitBreaker b, bint ticketed) except? 0:
    cdef qb_translog log
    cdef uint64_t ticket, w
    cdef int held = 0
    if b.cpolicy.host_flags & FLAG_LOCAL_COUNTS:
        # An open breaker's rejection, counted as the closed path's calls
        # are (the rest of _admit's open branch, without its locked add).
        w = qb_load(&b._cell.word)
        if ((w & STATE_FIELD) == S_OPEN and
                _open_elapsed(w, _resolve(_now_of(b))) < b.cpolicy.reset_ticks):
            _own_add(&b._hot[2])
            return 0
    if b.cpolicy.host_flags & FLAG_SLOT_WANTED:
        _claim_slot(b)
    _events_of(b)
    log.n = 0
    ticket = _admit_fast(b._cell, &b.cpolicy, _now_of(b), &log, _ordered(&held))
    if log.n or held:
        _push(b, &log, held)
    if ticketed and ((ticket >> 1) & STATE_FIELD) == S_HALF_OPEN:
        return _probe_issue(<_Extras>_extras_of(b), ticket)
    return ticket


cdef inline int _py_settle(CircuitBreaker b, uint64_t ticket, int outcome) except -1:
    # settle for the Python-facing methods (see _py_admit, and keep it as
    # small: a window's quick path inlined here stopped the inlining).
    cdef uint64_t w
    if b.cpolicy.host_flags & FLAG_LOCAL_COUNTS:
        w = qb_load(&b._cell.word)
        if _quiet_success(w, ticket, outcome):
            _own_add(&b._hot[1])
            if b.cpolicy.window_kind:
                return _py_window_success(b, w, ticket, outcome)
            return 0
    return _py_settle_full(b, ticket, outcome)


cdef int _py_settle_full(CircuitBreaker b, uint64_t ticket, int outcome) except -1:
    cdef qb_translog log
    cdef int held = 0
    if ticket & TRACKED_BIT and not _probe_reports(b, ticket):
        return 0
    _events_of(b)
    log.n = 0
    _settle_fast(b._cell, &b.cpolicy, _now_of(b), ticket, outcome, &log, _ordered(&held))
    if log.n or held:
        _push(b, &log, held)
    return 0


cdef bint _probe_reports(CircuitBreaker b, uint64_t ticket) except -1:
    # A tracked probe's ticket (see qbreaker._probes): its first release
    # reports; a later one only while its generation is not current, where
    # it is an ordinary stale ticket. Otherwise the slot is free already.
    cdef qb_cell *cell = b._cell
    cdef uint64_t t
    if PySet_Discard((<_Extras>_extras_of(b)).out, ticket) == 1:
        return True
    t = qb_load(&cell.transitions)
    return not _ticket_current(ticket, t, qb_load(&cell.word))


cdef int _py_window_success(CircuitBreaker b, uint64_t w, uint64_t ticket,
                            int outcome) except -1:
    # A quiet success's one part of _settle left to do: count it in the
    # window, where a bucket's rotation can trip the breaker. Not for a
    # ticket stale by a multiple of 2**18 generations (the transitions total
    # read after w serves: _ticket_current allows either order).
    cdef qb_translog log
    cdef uint64_t given = _now_of(b)
    cdef uint64_t epoch, x
    cdef bint judge
    cdef int held = 0
    if ticket and not _ticket_current(ticket, qb_load(&b._cell.transitions), w):
        return 0
    if b.cpolicy.host_flags & FLAG_PLAIN_WINDOW:
        x = _window_x(b._cell, &b.cpolicy, given, True)
        if _window_quick(b._cell, &b.cpolicy, x, w):
            return 0
        judge = _window_count(b._cell, &b.cpolicy, x, w, outcome, True, &epoch)
    else:
        judge = _window_count(b._cell, &b.cpolicy,
                              _window_x(b._cell, &b.cpolicy, given, False),
                              w, outcome, False, &epoch)
    if judge:
        _events_of(b)
        log.n = 0
        _window_judge(b._cell, &b.cpolicy, given, w, epoch, &log, _ordered(&held))
        if log.n or held:
            _push(b, &log, held)
    return 0


cdef inline uint64_t _now_of(CircuitBreaker b) except? 0:
    # A user clock is read on every call: clock= serves tests, and this
    # inlined branch keeps the default path free of any Python call.
    if not (b.cpolicy.host_flags & FLAG_HAS_CLOCK):
        return QB_NOW_AUTO
    return _user_now(b)


cdef uint64_t _user_now(CircuitBreaker b) except? 0:
    return clock_ticks(b._clock())


cdef inline uint64_t _ticket_arg(object ticket) except 0:
    cdef int overflow = 0
    cdef long long value
    if type(ticket) is int:
        value = PyLong_AsLongLongAndOverflow(ticket, &overflow)
        if not overflow and 0 < value <= TICKET_MAX and value & 1:
            return <uint64_t>value
    # Anything else is refused (or, for an int subclass, accepted) with the
    # specification's own messages.
    return <uint64_t>_check_ticket(ticket)


cdef inline int _outcome_arg(object ok) except -1:
    if ok is True:
        return OUTCOME_SUCCESS
    if ok is False:
        return OUTCOME_FAILURE
    if ok is None:
        return OUTCOME_NEUTRAL
    return _outcome_code(ok)


def describe_word(uint64_t w):
    """The public state and the generation of a raw word."""
    cdef uint64_t state = w & STATE_FIELD
    if state == S_FORCED:
        public = _STATE_CLOSED if w >> FORCED_KIND_SHIFT else _STATE_OPEN
    else:
        public = _STATES[state]
    return public, (w >> GEN_SHIFT) & GEN_FIELD


cdef object _events_of(CircuitBreaker b):
    # The breaker's dispatcher, made on first need: most breakers never
    # change state, and a dispatcher costs several times a breaker's memory.
    # Made before an operation, not after its CAS (Python code would run in
    # between).
    cdef void *seen = qb_load_ptr(&b._events_ptr)
    if seen != NULL:
        return <object>seen
    return _publish(&b._events_ptr, Dispatcher(describe_word))


cdef object _extras_of(CircuitBreaker b):
    # The breaker's _Extras, made when it first admits a tracked probe or
    # is given an observation.
    cdef void *seen = qb_load_ptr(&b._extras_ptr)
    if seen != NULL:
        return <object>seen
    return _publish(&b._extras_ptr, _Extras.__new__(_Extras))


cdef class _Extras:
    """What few breakers need, made on first need (``_extras_ptr``).

    The tracked half-open tickets out: qbreaker._probes.Probes, mirrored,
    without its lock: the probe number comes from an atomic counter, and
    each set operation is atomic on its own (free-threaded builds lock the
    set per operation), so no two probes get one ticket. And the metrics
    last given to ``observe()``.
    """

    cdef set out
    cdef uint64_t next
    cdef object last_observation

    def __cinit__(self):
        self.out = set()


cdef uint64_t _probe_issue(_Extras probes, uint64_t ticket) except 0:
    # Probes.issue: the ticket made unique among those out, and tracked.
    cdef uint64_t base = ticket & PROBE_BASE_FIELD
    cdef uint64_t tracked
    if len(probes.out) >= PROBES_FORGET_AT:
        for old in list(probes.out):
            if (<uint64_t>old & PROBE_BASE_FIELD) != base:
                probes.out.discard(old)
    while True:
        tracked = (base | TRACKED_BIT
                   | (qb_fetch_add(&probes.next, 1) & PROBE_FIELD) << PROBE_SHIFT)
        if not PySet_Contains(probes.out, tracked):
            break
    PySet_Add(probes.out, tracked)
    return tracked


cdef object _publish(void **slot, object fresh):
    # Publish `fresh` in an empty owned pointer by CAS, so that two threads
    # never make two; the object there afterwards. The objects published
    # hold no reference to the breaker, so an owned pointer needs no GC visit.
    if qb_cas_ptr(slot, NULL, <void *>fresh):
        Py_INCREF(fresh)  # the pointer's own reference, dropped in __dealloc__
        return fresh
    return <object>qb_load_ptr(slot)


cdef int _push(CircuitBreaker b, qb_translog *log, int held) except -1:
    # Called right after the operation, with no Python code run since its
    # CAS, and either with the GIL held since then or (free-threaded) with
    # the order lock that _transition took: the queue's order is the
    # transitions'. The dispatcher was made (by _events_of) before the
    # operation began, so no Python code runs between its CAS and here.
    cdef int i
    events = _events_of(b)
    try:
        pending = events.pending
        for i in range(log.n):
            pending.append((log.from_word[i], log.to_word[i]))
    finally:
        if held:
            qb_order_unlock()
    events.drain(b)
    return 0


cdef int _set_policy(CircuitBreaker b, object policy) except -1:
    b.cpolicy.max_failures = policy.max_failures
    b.cpolicy.reset_ticks = policy.reset_ticks
    b.cpolicy.half_open_max = policy.half_open_max
    b.cpolicy.success_threshold = policy.success_threshold
    b.cpolicy.half_open_timeout_ticks = policy.half_open_timeout_ticks
    b.cpolicy.window_kind = policy.window_kind
    b.cpolicy.window_buckets = policy.window_buckets
    b.cpolicy.window_span = policy.window_span
    b.cpolicy.minimum_calls = policy.minimum_calls
    return 0


def u64_load(buffer, Py_ssize_t offset):
    """An acquire load of the aligned 64-bit word at ``offset`` of ``buffer``."""
    return qb_load(<uint64_t *>_word_at(buffer, offset))


def u64_store(buffer, Py_ssize_t offset, uint64_t value):
    """A release store to the aligned 64-bit word at ``offset`` of ``buffer``."""
    qb_store(<uint64_t *>_word_at(buffer, offset), value)


cdef unsigned char *_word_at(object buffer, Py_ssize_t offset) except NULL:
    cdef unsigned char[::1] view = buffer
    if offset < 0 or offset + 8 > view.shape[0] or offset & 7:
        raise ValueError(f"offset {offset} is not an aligned word of the buffer")
    if (<uintptr_t>&view[offset]) & 7:
        raise ValueError("buffer is not 8-byte aligned")
    return &view[offset]


cdef int _attach_window(CircuitBreaker b, object policy) except -1:
    # A window makes the cell larger than the object's storage: allocate the
    # cell and its window together, aligned, and remember the offset to free.
    cdef size_t size = QB_CELL_BYTES(policy.window_buckets)
    cdef char *memory = <char *>PyMem_Malloc(size + 63)
    cdef qb_cell *cell
    cdef qb_window *win
    if memory == NULL:
        raise MemoryError()
    cell = <qb_cell *>((<uintptr_t>memory + 63) & ~(<uintptr_t>63))
    memset(cell, 0, size)
    win = QB_WINDOW(cell)
    win.span = policy.window_span
    win.slow_ticks = policy.slow_ticks
    win.failure_rate_threshold = policy.failure_rate_threshold
    win.slow_rate_threshold = policy.slow_rate_threshold
    win.buckets = policy.window_buckets
    win.minimum_calls = policy.minimum_calls
    b._cell = cell
    b.cpolicy.host_flags |= FLAG_OWNS_CELL | (
        (<uint32_t>(<char *>cell - memory)) << FLAG_OFFSET_SHIFT)
    return 0


cdef int _use_shared_cell(CircuitBreaker b, object buffer, object policy) except -1:
    # The cell (and window, set up by the segment's creator) at offset 256 of
    # a segment's mapping; the mapping must outlive the breaker (qbreaker.shared
    # keeps it, and a live export keeps it from being closed under us).
    cdef unsigned char[::1] view = buffer
    cdef size_t need = (QB_CELL_BYTES(policy.window_buckets) if policy.window_kind
                        else sizeof(qb_cell))
    cdef size_t slots_at = (need + 63) & ~(<size_t>63)  # qb_slot is 64-aligned
    if <size_t>view.shape[0] < 256 + slots_at + QB_SLOTS * sizeof(qb_slot):
        raise ValueError("shared buffer too small for this policy")
    b._cell = <qb_cell *>&view[256]
    if (<uintptr_t>b._cell) & 63:
        raise ValueError("shared buffer is not aligned to 64 bytes")
    # Other processes count in the same cell: atomics, until this process
    # has a slot of its own.
    b.cpolicy.host_flags &= ~FLAG_LOCAL_COUNTS
    b.cpolicy.host_flags |= FLAG_SHARED | (slots_at // 64) << FLAG_SLOTS_SHIFT
    if QB_HAVE_GIL:
        b.cpolicy.host_flags |= FLAG_SLOT_WANTED
    return 0


cdef inline bint _timed(CircuitBreaker b) noexcept:
    return (b.cpolicy.host_flags & FLAG_SLOW_POLICY) != 0


cdef inline int _slow_since(CircuitBreaker b, uint64_t started) except -1:
    # OUTCOME_SLOW if a call that started at `started` took slow_call_duration.
    cdef uint64_t elapsed = _resolve(_now_of(b)) - started
    return OUTCOME_SLOW if elapsed >= QB_WINDOW(b._cell).slow_ticks else 0


cdef inline int _slow_arg(CircuitBreaker b, object started) except -1:
    if started is None:
        return 0
    return _slow_since(b, <uint64_t>started)


cdef int _set_options(CircuitBreaker b, object options) except -1:
    b._options = options
    b.cpolicy.host_flags &= ~(FLAG_PLAIN_SUCCESS | FLAG_ASYNC_FALLBACK)
    if options.is_failure_result is None and options.on_success is None:
        b.cpolicy.host_flags |= FLAG_PLAIN_SUCCESS
    if options.fallback_is_async:
        b.cpolicy.host_flags |= FLAG_ASYNC_FALLBACK
    return 0


# -- tickets of ``with`` blocks --------------------------------------------------
#
# A ``with`` block reports against the ticket that it took. An open block is
# recorded under its breaker and the frame running the ``with`` statement,
# which is the same frame at __enter__ and __exit__ wherever that frame runs
# in between (a generator resumed in another thread, tasks sharing one
# context), so blocks that interleave never take each other's tickets.
#
# Each contextvars.Context gets one _WithTickets store, found through a
# ContextVar: a context is run by one thread at a time, so its store needs no
# lock on the hot path. A context copied from another (asyncio copies one per
# task) inherits the ContextVar's value, so a store records the context that
# made it and a context that finds a store it does not own makes its own.
# __exit__ looks in its own context's store first; a block entered in another
# context (its frame resumed elsewhere, or closed by the garbage collector) is
# found by searching every store (a store whose context dies hands its blocks
# to _orphans, searched last). __exit__ called from another frame than
# __enter__ (contextlib.ExitStack, a call by hand) takes its breaker's
# innermost block of this context instead, and failing that reports against
# the current generation, like record_*(). Stores die with their contexts;
# one that only grows (blocks entered by hand, never exited) drops its oldest
# half at MAX_OPEN_BLOCKS. (The twin keeps the same records in a chain per
# context, see _core_py: setting a ContextVar twice per block would cost more
# than the block's whole budget here.)

cdef extern from *:
    """
    /* Free-threaded builds only: a store is used by the thread running its
       context and searched, rarely, by a thread exiting a block entered in
       another context; the list of stores changes when a store is made or
       freed. Lock order: the list, then a store. With a GIL, nothing here
       releases it and no Python code runs in between: the GIL orders it. */
    #if defined(Py_GIL_DISABLED)
    typedef PyMutex qb_blocks_mutex;
    static PyMutex qb_stores_mutex;
    static inline void qb_blocks_lock(qb_blocks_mutex *m) { PyMutex_Lock(m); }
    static inline void qb_blocks_unlock(qb_blocks_mutex *m) { PyMutex_Unlock(m); }
    static inline void qb_blocks_after_fork(qb_blocks_mutex *m) {
        memset(m, 0, sizeof *m);
    }
    #else
    typedef char qb_blocks_mutex;
    static char qb_stores_mutex;
    static inline void qb_blocks_lock(qb_blocks_mutex *m) { (void)m; }
    static inline void qb_blocks_unlock(qb_blocks_mutex *m) { (void)m; }
    static inline void qb_blocks_after_fork(qb_blocks_mutex *m) { (void)m; }
    #endif
    """
    ctypedef struct qb_blocks_mutex:
        pass
    qb_blocks_mutex qb_stores_mutex
    void qb_blocks_lock(qb_blocks_mutex *m) noexcept nogil
    void qb_blocks_unlock(qb_blocks_mutex *m) noexcept nogil
    void qb_blocks_after_fork(qb_blocks_mutex *m) noexcept nogil


cdef extern from *:
    """
    /* The identity of the running Python frame, NULL if none. Only compared,
       never followed. Unlike PyEval_GetFrame() it makes no frame object:
       3.11+ make one only when asked, which would cost a fresh frame (every
       call of a function that holds a with block) an allocation. A generator
       or coroutine keeps its frame in itself, at one address for its life. */
    static inline void *qb_frame_of(PyThreadState *ts) {
    #if PY_VERSION_HEX >= 0x030D0000
        return (void *)ts->current_frame;
    #elif PY_VERSION_HEX >= 0x030B0000
        return (void *)ts->cframe->current_frame;
    #else
        return (void *)ts->frame;
    #endif
    }
    """
    void *qb_frame_of(PyThreadState *ts) noexcept nogil


cdef struct _OpenBlock:
    PyObject *breaker   # identity only, never followed
    void *frame         # identity only: the frame running the with statement
    uint64_t ticket     # bit 63 set: the block is timed, from start
    uint64_t start


cdef Py_ssize_t MAX_OPEN_BLOCKS = 1 << 16
cdef object _WITH_TICKETS = contextvars.ContextVar("qbreaker_with_tickets_c")
# Every live store, for the search of a block entered in another context.
cdef void *_stores = NULL


cdef class _WithTickets:
    cdef PyObject *owner
    cdef Py_ssize_t n, cap
    cdef _OpenBlock *blocks
    cdef qb_blocks_mutex lock
    cdef void *prev
    cdef void *next

    def __dealloc__(self):
        global _stores
        cdef Py_ssize_t i
        qb_blocks_lock(&qb_stores_mutex)
        if self.prev != NULL:
            (<_WithTickets>self.prev).next = self.next
        elif _stores == <void *>self:
            _stores = self.next
        if self.next != NULL:
            (<_WithTickets>self.next).prev = self.prev
        # Its context is gone, not necessarily its blocks' frames: a generator
        # handed to another thread or task still exits its block.
        if _orphans is not None and _orphans is not self:
            for i in range(self.n):
                if _orphans.push(self.blocks[i].breaker, self.blocks[i].frame,
                                 self.blocks[i].ticket, self.blocks[i].start) < 0:
                    break
        qb_blocks_unlock(&qb_stores_mutex)
        PyMem_Free(self.blocks)

    cdef int push(self, PyObject *breaker, void *frame, uint64_t ticket,
                  uint64_t start) noexcept:
        """Record an open block; -1 (no exception set) if out of memory."""
        qb_blocks_lock(&self.lock)
        if self.n == self.cap and self._make_room() < 0:
            qb_blocks_unlock(&self.lock)
            return -1
        self.blocks[self.n].breaker = breaker
        self.blocks[self.n].frame = frame
        self.blocks[self.n].ticket = ticket
        self.blocks[self.n].start = start
        self.n += 1
        qb_blocks_unlock(&self.lock)
        return 0

    cdef int _make_room(self) noexcept:
        cdef Py_ssize_t cap
        cdef void *grown
        if self.cap >= MAX_OPEN_BLOCKS:
            # Only blocks entered by hand and never exited pile up this far:
            # the oldest half goes (exiting one later reports like record_*()).
            self.n -= self.cap // 2
            memmove(self.blocks, self.blocks + self.cap // 2,
                    self.n * sizeof(_OpenBlock))
            return 0
        cap = self.cap * 2 if self.cap else 8
        grown = PyMem_Realloc(self.blocks, cap * sizeof(_OpenBlock))
        if grown == NULL:
            return -1
        self.blocks = <_OpenBlock *>grown
        self.cap = cap
        return 0

    cdef uint64_t pop(self, PyObject *breaker, void *frame, bint any_frame,
                      uint64_t *start) noexcept:
        """The innermost ticket of ``breaker`` in ``frame`` (or in any frame),
        removed; 0 if none."""
        cdef Py_ssize_t i
        cdef uint64_t ticket = 0
        qb_blocks_lock(&self.lock)
        i = self.n - 1
        while i >= 0 and not (self.blocks[i].breaker == breaker
                              and (any_frame or self.blocks[i].frame == frame)):
            i -= 1
        if i >= 0:
            ticket = self.blocks[i].ticket
            start[0] = self.blocks[i].start
            self.n -= 1
            if i < self.n:  # not the innermost: rare, a libc call
                memmove(self.blocks + i, self.blocks + i + 1,
                        (self.n - i) * sizeof(_OpenBlock))
        qb_blocks_unlock(&self.lock)
        return ticket


cdef _WithTickets _new_store():
    global _stores
    cdef _WithTickets store = _WithTickets.__new__(_WithTickets)
    qb_blocks_lock(&qb_stores_mutex)
    store.next = _stores
    if _stores != NULL:
        (<_WithTickets>_stores).prev = <void *>store
    _stores = <void *>store
    qb_blocks_unlock(&qb_stores_mutex)
    return store


# The blocks of stores whose contexts died, searched last; no context's own.
cdef _WithTickets _orphans = _new_store()


cdef _WithTickets _with_tickets(PyThreadState *ts):
    cdef object found = get_value_no_default(_WITH_TICKETS, None)
    # NULL until the thread's first ContextVar.set(): then no store is ours.
    cdef PyObject *context = ts.context
    cdef _WithTickets store
    if found is not None and context != NULL and (<_WithTickets>found).owner == context:
        return <_WithTickets>found
    store = _new_store()
    PyContextVar_Set(_WITH_TICKETS, store)
    # The set made the thread's context if it had none: own that one.
    store.owner = ts.context
    return store


cdef uint64_t _ticket_elsewhere(_WithTickets own, PyObject *breaker, void *frame,
                                uint64_t *start) noexcept:
    """The ticket of a block not found in its own context's store (rare)."""
    cdef uint64_t ticket = 0
    cdef void *store
    qb_blocks_lock(&qb_stores_mutex)
    store = _stores
    while store != NULL and not ticket:
        if store != <void *>own:
            ticket = (<_WithTickets>store).pop(breaker, frame, False, start)
        store = (<_WithTickets>store).next
    qb_blocks_unlock(&qb_stores_mutex)
    if not ticket:
        # Exited from another frame than it entered: the breaker's innermost
        # block of this context.
        ticket = own.pop(breaker, NULL, True, start)
    return ticket


def with_blocks():
    """(open blocks, records held) of this context (tests)."""
    cdef Py_ssize_t n = _with_tickets(PyThreadState_Get()).n
    return n, n


cdef void _with_tickets_after_fork() noexcept:
    # Only the forking thread survives a fork: a lock that another thread
    # held at that moment would block every later search.
    cdef void *store = _stores
    qb_blocks_after_fork(&qb_stores_mutex)
    while store != NULL:
        qb_blocks_after_fork(&(<_WithTickets>store).lock)
        store = (<_WithTickets>store).next


# -- protected calls -------------------------------------------------------------
#
# call() and decorated functions take the vectorcall convention: the
# arguments arrive as a C array and go on to fn the same way, with no tuple
# or dict built per call (Cython's ``def f(*args, **kwargs)`` builds both,
# which cost more than the breaker itself).

cdef extern from "Python.h":
    ctypedef struct QbTypeObject "PyTypeObject":
        Py_ssize_t tp_vectorcall_offset
        unsigned long tp_flags
        PyObject *tp_dict
    ctypedef struct QbMethodDef "PyMethodDef":
        const char *ml_name
        void *ml_meth
        int ml_flags
        const char *ml_doc
    enum:
        METH_FASTCALL
        METH_KEYWORDS
        Py_TPFLAGS_HAVE_VECTORCALL
    object PyDescr_NewMethod(QbTypeObject *type, QbMethodDef *meth)
    int PyDict_SetItemString(PyObject *d, const char *key, object value) except -1
    void PyType_Modified(QbTypeObject *type)
    object PyObject_Vectorcall(object fn, PyObject **args, size_t nargsf,
                               PyObject *kwnames)
    Py_ssize_t PyVectorcall_NARGS(size_t nargsf)
    object PyVectorcall_Call(object callable, object args, object kwargs)
    Py_ssize_t PyTuple_GET_SIZE(PyObject *p)
    bint PyGen_CheckExact(object o)


cdef extern from *:
    """
    /* A type-slot test, the C twin of hasattr(type(o), "__await__"): what
       call() refuses, on its return path, for the cost of two loads. */
    static inline int qb_is_awaitable(PyObject *o) {
        PyAsyncMethods *am = Py_TYPE(o)->tp_as_async;
        return am != NULL && am->am_await != NULL;
    }
    """
    bint qb_is_awaitable(object o) noexcept


cdef tuple _positional(PyObject **args, Py_ssize_t nargs):
    return tuple([<object>args[i] for i in range(nargs)])


cdef dict _keywords(PyObject **args, Py_ssize_t nargs, PyObject *kwnames):
    cdef Py_ssize_t i
    cdef dict kwargs = {}
    if kwnames != NULL:
        names = <object>kwnames
        for i in range(PyTuple_GET_SIZE(kwnames)):
            kwargs[names[i]] = <object>args[nargs + i]
    return kwargs


cdef object _call(CircuitBreaker b, object fn, PyObject **args, Py_ssize_t nargs,
                  PyObject *kwnames):
    # nargs positionals, then one value per name in kwnames (or NULL).
    cdef uint64_t ticket
    if b.cpolicy.host_flags & FLAG_ASYNC_FALLBACK:
        raise_async_fallback(b._options)
    ticket = _py_admit(b, True)
    if not ticket:
        return b._rejected(_positional(args, nargs), _keywords(args, nargs, kwnames))
    # Only under a slow-call policy: a clock read before, one after.
    started = _resolve(_now_of(b)) if _timed(b) else None
    try:
        result = PyObject_Vectorcall(fn, args, nargs, kwnames)
    except BaseException as exc:
        b._exit_exc(ticket, exc, started)
        raise
    if b.cpolicy.host_flags & FLAG_GENERATOR_HOOK and PyGen_CheckExact(result):
        return b._generator_result(ticket, result)
    if qb_is_awaitable(result):
        _refuse_awaitable(b, ticket, fn, result)
    if started is None and b.cpolicy.host_flags & FLAG_PLAIN_SUCCESS:
        _py_settle(b, ticket, OUTCOME_SUCCESS)
    else:
        b._exit_result(ticket, result, started)
    return result


cdef int _refuse_awaitable(CircuitBreaker b, uint64_t ticket, object fn,
                           object result) except -1:
    # Out of line: call() got a coroutine (or another awaitable), whose
    # outcome only awaiting it would show. Neutral, and a TypeError. The
    # full settle: one more call site of _py_settle stopped GCC inlining it
    # into _call (a neutral outcome never takes its quick path anyway).
    _py_settle_full(b, ticket, OUTCOME_NEUTRAL)
    raise _forms.awaitable_refused(fn, result)


cdef object _call_method(object self, PyObject **args, Py_ssize_t nargs,
                         PyObject *kwnames):
    # CircuitBreaker.call, METH_FASTCALL | METH_KEYWORDS (installed below).
    if nargs < 1:
        raise TypeError("call() takes the function to call as its first "
                        "positional argument")
    return _call(<CircuitBreaker>self, <object>args[0], args + 1, nargs - 1, kwnames)


cdef QbMethodDef _CALL_METHOD
_CALL_METHOD.ml_name = "call"
_CALL_METHOD.ml_meth = <void *>_call_method
_CALL_METHOD.ml_flags = METH_FASTCALL | METH_KEYWORDS
_CALL_METHOD.ml_doc = (b"call($self, fn, /, *args, **kwargs)\n--\n\n"
                       b"Run ``fn(*args, **kwargs)`` under the breaker.")


cdef object _guarded_vectorcall(object callable, PyObject **args, size_t nargsf,
                                PyObject *kwnames):
    cdef _Guarded guarded = <_Guarded>callable
    if guarded.breaker is None:
        raise TypeError("a protected function is made by decorating it with a breaker")
    return _call(guarded.breaker, guarded.fn, args, PyVectorcall_NARGS(nargsf), kwnames)


cdef class _Guarded:
    """A function protected by a breaker: each call goes through ``call``."""

    cdef void *vectorcall  # _guarded_vectorcall, at tp_vectorcall_offset
    cdef CircuitBreaker breaker
    cdef object fn
    cdef dict __dict__
    cdef object __weakref__

    def __cinit__(self):
        self.vectorcall = <void *>_guarded_vectorcall

    def __call__(self, *args, **kwargs):
        # Callers that pass a tuple and a dict (tp_call) reach the same
        # _guarded_vectorcall.
        return PyVectorcall_Call(self, args, kwargs)

    def __reduce__(self):
        # By reference, like the function it replaces (see _forms.pickled_name).
        return _forms.pickled_name(self)

    def __copy__(self):
        return self  # as a function is: copying shares it

    def __deepcopy__(self, memo):
        return self

    def __get__(self, obj, objtype):
        # Decorated methods bind like functions do.
        if obj is None:
            return self
        return MethodType(self, obj)

    def __repr__(self):
        return f"<protected {self.fn!r} by {self.breaker!r}>"


cdef class CircuitBreaker:
    """A circuit breaker: closed, open and half-open, lock-free.

    ``CircuitBreaker(max_failures=5, reset_timeout=60.0, half_open_max=3)``;
    see the README for every setting.
    """

    def __cinit__(self, *args, **kwargs):
        # The storage's 56 spare bytes align the cell to 64 inside it from
        # any 8-byte-aligned start.
        self._cell = <qb_cell *>((<uintptr_t>&self._cell_storage[0] + 63)
                                & ~(<uintptr_t>63))
        if <char *>(self._cell + 1) > &self._cell_storage[0] + QB_CELL_STORAGE:
            raise SystemError("qbreaker: the object's cell storage is misaligned")
        memset(self._cell, 0, sizeof(qb_cell))
        _use_spare_bytes(self)
        if getattr(type(self), "_generator_result", None) is not None:
            self.cpolicy.host_flags |= FLAG_GENERATOR_HOOK
        if QB_HAVE_GIL:
            self.cpolicy.host_flags |= FLAG_LOCAL_COUNTS
        _set_policy(self, DEFAULT_POLICY)
        _set_options(self, DEFAULT_OPTIONS)
        self._clock = None
        self._name = None
        self._listeners = ()

    def __dealloc__(self):
        Py_XDECREF(<PyObject *>self._events_ptr)
        Py_XDECREF(<PyObject *>self._extras_ptr)
        if self.cpolicy.host_flags & FLAG_OWNS_CELL:
            PyMem_Free(<char *>self._cell - (self.cpolicy.host_flags >> FLAG_OFFSET_SHIFT & 0xFF))

    def __init__(self, max_failures=5, reset_timeout=60.0, half_open_max=3, *,
                 success_threshold=None, half_open_timeout=None, name=None,
                 exclude=(), is_failure=None, is_failure_result=None,
                 fallback=None, on_state_change=None, on_success=None,
                 on_failure=None, on_reject=None, error_rate_threshold=None,
                 latency_threshold=None, clock=None,
                 failure_rate_threshold=None, slow_call_rate_threshold=None,
                 slow_call_duration=None, window_size=None, window_seconds=None,
                 minimum_calls=None, shared=None, shared_policy="match"):
        _api.init(self, max_failures, reset_timeout, half_open_max,
                  success_threshold, half_open_timeout, name, exclude,
                  is_failure, is_failure_result, fallback, on_state_change,
                  on_success, on_failure, on_reject, error_rate_threshold,
                  latency_threshold, clock, failure_rate_threshold,
                  slow_call_rate_threshold, slow_call_duration, window_size,
                  window_seconds, minimum_calls, shared, shared_policy)

    def _configure(self, policy, clock, options=DEFAULT_OPTIONS, name=None,
                   shared=None):
        """Set the validated policy and clock; once, by the constructor.

        ``shared``: a segment's mapping, whose cell is used in place of the
        breaker's own (see qbreaker._shm for the layout).
        """
        if self.cpolicy.host_flags & FLAG_CONFIGURED:
            raise RuntimeError("a breaker's policy is set once, at construction")
        policy = Policy(*policy)
        if shared is not None:
            _use_shared_cell(self, shared, policy)
        elif policy.window_kind:
            _attach_window(self, policy)
            if QB_HAVE_GIL:
                self.cpolicy.host_flags |= FLAG_PLAIN_WINDOW
        if policy.slow_ticks:
            self.cpolicy.host_flags |= FLAG_SLOW_POLICY
        _set_policy(self, policy)
        self._clock = clock
        if clock is not None:
            self.cpolicy.host_flags |= FLAG_HAS_CLOCK
        _set_options(self, options)
        self._name = name
        self.cpolicy.host_flags |= FLAG_CONFIGURED
        cdef uint64_t unset = 0
        if shared is None:
            qb_store(&self._cell.changed_at, _resolve(_now_of(self)))
        else:
            # Only creation and transitions date the state: attaching to a
            # segment that has one keeps it (its creator's handle, or an early
            # transition, set it), so time_in_state is the same for all.
            qb_cas(&self._cell.changed_at, &unset, _resolve(_now_of(self)))

    def allow(self):
        """True if a call may proceed now; report it with ``record_*()``.

        A rejection is the False result alone: ``on_reject`` and the
        fallback run only for the forms that raise (``with``, ``call``,
        the decorator, ``call_async``).
        """
        cdef uint64_t ticket = _py_admit(self, False)
        return ticket != 0

    def record_success(self):
        """Report a success against the current generation."""
        _py_settle(self, 0, OUTCOME_SUCCESS)

    def record_failure(self):
        """Report a failure against the current generation."""
        _py_settle(self, 0, OUTCOME_FAILURE)

    def acquire(self):
        """A ticket (a non-zero int) if a call may proceed, else 0.

        A rejection is the 0 alone, as for ``allow()``: no ``on_reject``.
        """
        cdef uint64_t ticket = _py_admit(self, True)
        return ticket

    def release(self, ticket, ok, duration=None):
        """Report the outcome of the call that ``ticket`` admitted.

        ``ok`` is True for success, False for failure, None for neutral.
        ``duration`` (seconds, or a timedelta) marks the call slow under a
        slow-call policy.
        """
        cdef uint64_t t = _ticket_arg(ticket)
        cdef int outcome = _outcome_arg(ok)
        if duration is not None and _is_slow(self.policy, duration):
            outcome |= OUTCOME_SLOW
        _py_settle(self, t, outcome)

    def renormalize(self):
        """Move an open breaker whose timeout has passed to half-open."""
        cdef qb_translog log
        cdef int held = 0
        _events_of(self)
        log.n = 0
        _renormalize(self._cell, &self.cpolicy, _now_of(self), &log, _ordered(&held))
        if log.n or held:
            _push(self, &log, held)

    def reset(self):
        """Back to closed, as a new generation."""
        cdef qb_translog log
        cdef int held = 0
        _events_of(self)
        log.n = 0
        _reset(self._cell, _now_of(self), &log, _ordered(&held))
        _push(self, &log, held)

    def force_open(self):
        """Reject every call until ``reset()``."""
        cdef qb_translog log
        cdef int held = 0
        _events_of(self)
        log.n = 0
        _force(self._cell, 0, _now_of(self), &log, _ordered(&held))
        if log.n or held:
            _push(self, &log, held)

    def force_closed(self):
        """Admit every call, never trip, until ``reset()``."""
        cdef qb_translog log
        cdef int held = 0
        _events_of(self)
        log.n = 0
        _force(self._cell, 1, _now_of(self), &log, _ordered(&held))
        if log.n or held:
            _push(self, &log, held)

    def _trip(self):
        """Open a closed, unforced breaker now; True if this call opened it."""
        cdef qb_translog log
        cdef int held = 0
        _events_of(self)
        log.n = 0
        cdef bint tripped = _trip_closed(self._cell, _now_of(self), &log,
                                         _ordered(&held))
        if log.n or held:
            _push(self, &log, held)
        return tripped

    # -- forms of protection ------------------------------------------------

    def __enter__(self):
        cdef uint64_t ticket = _py_admit(self, True)
        cdef uint64_t start = 0
        cdef PyThreadState *ts
        cdef _WithTickets own
        if not ticket:
            self._raise_open()
        if _timed(self):
            start = _resolve(_now_of(self))
            ticket |= TIMED_BIT
        ts = PyThreadState_Get()
        own = _with_tickets(ts)
        if own.push(<PyObject *>self, qb_frame_of(ts), ticket, start) < 0:
            # The block never runs: give its ticket back.
            _py_settle(self, ticket & ~TIMED_BIT, OUTCOME_NEUTRAL)
            raise MemoryError()

    def __exit__(self, exc_type, exc, tb):
        cdef uint64_t start = 0
        cdef PyThreadState *ts = PyThreadState_Get()
        cdef void *frame = qb_frame_of(ts)
        cdef _WithTickets own = _with_tickets(ts)
        cdef uint64_t ticket = own.pop(<PyObject *>self, frame, False, &start)
        if not ticket:
            ticket = _ticket_elsewhere(own, <PyObject *>self, frame, &start)
        started = None
        if ticket & TIMED_BIT:
            ticket &= ~TIMED_BIT
            started = start
        if exc_type is not None:
            self._exit_exc(ticket, exc, started)
        elif started is None and self.cpolicy.host_flags & FLAG_PLAIN_SUCCESS:
            _py_settle(self, ticket, OUTCOME_SUCCESS)
        else:
            self._exit_ok(ticket, started)

    def _guard(self, fn):
        """``fn`` wrapped so that each call goes through ``call``."""
        cdef _Guarded guarded = _Guarded.__new__(_Guarded)
        guarded.breaker = self
        guarded.fn = fn
        functools.update_wrapper(guarded, fn)
        return guarded

    def _started(self):
        """The tick a call starts at, under a slow-call policy; else None."""
        if not _timed(self):
            return None
        return _resolve(_now_of(self))

    def _exit_ok(self, ticket, started=None):
        """A call admitted with ``ticket`` succeeded (no result to judge)."""
        _py_settle(self, ticket, OUTCOME_SUCCESS | _slow_arg(self, started))
        if self._options.on_success is not None:
            run_hook(self._options.on_success, self)

    def _exit_result(self, ticket, result, started=None):
        """A call returned ``result``; ``is_failure_result`` may call it failed."""
        if self.cpolicy.host_flags & FLAG_PLAIN_SUCCESS and started is None:
            _py_settle(self, ticket, OUTCOME_SUCCESS)
            return
        if result_outcome(self._options, result):
            self._exit_ok(ticket, started)
            return
        _py_settle(self, ticket, OUTCOME_FAILURE | _slow_arg(self, started))
        if self._options.on_failure is not None:
            run_hook(self._options.on_failure, self, result)

    def _exit_exc(self, ticket, exc, started=None):
        """A call raised ``exc``: failure, success or neutral by the rules."""
        ok = exception_outcome(self._options, exc, self)
        if ok is True:
            self._exit_ok(ticket, started)
            return
        slow = _slow_arg(self, started) if ok is False else 0
        _py_settle(self, ticket, _outcome_arg(ok) | slow)
        if ok is False and self._options.on_failure is not None:
            run_hook(self._options.on_failure, self, exc)

    # -- reading ------------------------------------------------------------

    # The metrics last given to observe(), or None: kept in _Extras (the
    # twin's plain attribute, written by the shared methods).
    @property
    def _last_observation(self):
        cdef void *seen = qb_load_ptr(&self._extras_ptr)
        return None if seen == NULL else (<_Extras>seen).last_observation

    @_last_observation.setter
    def _last_observation(self, value):
        (<_Extras>_extras_of(self)).last_observation = value

    @property
    def state(self):
        cdef uint64_t w = qb_load(&self._cell.word)
        cdef uint64_t state = w & STATE_FIELD
        if state == S_FORCED:
            return _STATE_CLOSED if w >> FORCED_KIND_SHIFT else _STATE_OPEN
        return _STATES[state]

    @property
    def forced(self):
        cdef uint64_t w = qb_load(&self._cell.word)
        if (w & STATE_FIELD) != S_FORCED:
            return None
        return "closed" if w >> FORCED_KIND_SHIFT else "open"

    @property
    def generation(self):
        return (qb_load(&self._cell.word) >> GEN_SHIFT) & GEN_FIELD

    @property
    def consecutive_failures(self):
        cdef uint64_t w = qb_load(&self._cell.word)
        if (w & STATE_FIELD) == S_CLOSED or (w & STATE_FIELD) == S_FORCED:
            return (w >> FAIL_SHIFT) & FAIL_MAX
        return 0

    @property
    def retry_after(self):
        """Seconds until a probe can be admitted (see CircuitOpenError)."""
        return _retry_after_ticks(qb_load(&self._cell.word), &self.cpolicy,
                                  _now_of(self)) / 1000

    @property
    def time_in_state(self):
        """Seconds since the last transition (or since construction)."""
        cdef uint64_t now = _resolve(_now_of(self))
        cdef int64_t elapsed = <int64_t>(now - qb_load(&self._cell.changed_at))
        # 0, not 584 million years, when a clock stepped back (or a
        # segment's bytes) put the last transition after now.
        return <double>elapsed / 1000.0 if elapsed > 0 else 0.0

    @property
    def policy(self):
        cdef qb_policy *p = &self.cpolicy
        cdef qb_window *win
        if not p.window_kind:
            return Policy(p.max_failures, p.reset_ticks, p.half_open_max,
                          p.success_threshold, p.half_open_timeout_ticks)
        win = QB_WINDOW(self._cell)
        return Policy(p.max_failures, p.reset_ticks, p.half_open_max,
                      p.success_threshold, p.half_open_timeout_ticks,
                      p.window_kind, p.window_buckets, p.window_span, p.minimum_calls,
                      win.failure_rate_threshold, win.slow_rate_threshold,
                      win.slow_ticks)

    def _window_sums(self):
        """(calls, failures, slow) in the window now; zeros without one."""
        cdef uint64_t sums[3]
        cdef uint64_t w, epoch
        if not self.cpolicy.window_kind:
            return 0, 0, 0
        w = qb_load(&self._cell.word)
        epoch = _window_now(self._cell, &self.cpolicy, _resolve(_now_of(self)))
        _window_sums(self._cell, &self.cpolicy, (w >> GEN_SHIFT) & GEN_FIELD, epoch,
                     sums)
        return sums[0], sums[1], sums[2]

    @property
    def max_failures(self):
        return self.cpolicy.max_failures

    @property
    def reset_timeout(self):
        """Seconds, as validated and rounded to the millisecond."""
        return self.cpolicy.reset_ticks / 1000.0

    @property
    def half_open_max(self):
        return self.cpolicy.half_open_max

    @property
    def success_threshold(self):
        return self.cpolicy.success_threshold

    @property
    def half_open_timeout(self):
        """Seconds, as validated and rounded to the millisecond."""
        return self.cpolicy.half_open_timeout_ticks / 1000.0

    @property
    def _word(self):
        return qb_load(&self._cell.word)

    def totals(self):
        cdef qb_cell *c = self._cell
        cdef qb_slot *slots
        cdef uint64_t allowed = qb_load(&c.allowed)
        cdef uint64_t successes = qb_load(&c.successes)
        cdef uint64_t rejected = qb_load(&c.rejected)
        cdef int i
        if self.cpolicy.host_flags & FLAG_SHARED:
            slots = _slots_of(self)
            for i in range(QB_SLOTS):
                allowed += qb_load(&slots[i].allowed)
                successes += qb_load(&slots[i].successes)
                rejected += qb_load(&slots[i].rejected)
        else:
            allowed += self._hot[0]
            successes += self._hot[1]
            rejected += self._hot[2]
        return Totals(allowed, rejected, successes,
                      qb_load(&c.failures), qb_load(&c.neutral),
                      qb_load(&c.transitions))

    @property
    def _slot(self):
        """This process's slot of a shared cell, or -1 (see _claim_slot)."""
        if (self.cpolicy.host_flags & (FLAG_SHARED | FLAG_LOCAL_COUNTS)
                != (FLAG_SHARED | FLAG_LOCAL_COUNTS)):
            return -1
        return (<char *>self._hot - <char *>_slots_of(self)) // sizeof(qb_slot)

    def _forked(self):
        """In a fork's child: the parent's slot is the parent's; claim anew."""
        if self.cpolicy.host_flags & FLAG_SHARED:
            _use_spare_bytes(self)
            self.cpolicy.host_flags &= ~FLAG_LOCAL_COUNTS
            if QB_HAVE_GIL:
                self.cpolicy.host_flags |= FLAG_SLOT_WANTED

    # -- the Python-level API, written once in _api ------------------------------

    @property
    def name(self):
        """Given at construction, else the first decorated function's
        qualified name, else a generated ``breaker-N``."""
        return _api.name(self)

    def _adopt_name(self, qualname):
        _api.adopt_name(self, qualname)

    @property
    def listeners(self):
        return self._listeners

    def add_listener(self, listener):
        """Call ``listener(breaker, old_state, new_state)`` on each transition."""
        _api.add_listener(self, listener)

    def remove_listener(self, listener):
        """Stop calling ``listener``; ValueError if it was not added."""
        _api.remove_listener(self, listener)

    def _raise_open(self):
        _api.raise_open(self)

    def _rejected(self, args, kwargs):
        return _api.rejected(self, args, kwargs)

    def __call__(self, fn):
        """Use the breaker as a decorator, on any kind of function."""
        return _forms.decorate(self, fn)

    def call_async(self, fn, /, *args, **kwargs):
        """Await ``fn(*args, **kwargs)`` under the breaker."""
        return _forms.call_async(self, fn, *args, **kwargs)

    async def __aenter__(self):
        self.__enter__()

    async def __aexit__(self, exc_type, exc, tb):
        self.__exit__(exc_type, exc, tb)

    def observe(self, metrics):
        """Record an observation; trip a closed breaker if it crosses a threshold.

        From the closed state (not forced), it opens the breaker when
        ``error_rate >= error_rate_threshold`` or ``latency >=
        latency_threshold`` (thresholds that are None never trip). In any
        other state it only records. Returns True if this call opened it.
        """
        return _api.observe(self, metrics)

    def metrics(self):
        """A snapshot of the state and totals (read field by field)."""
        return _api.metrics(self)

    def __repr__(self):
        return _api.describe(self)

    def __copy__(self):
        _api.refuse_copy(self)

    def __deepcopy__(self, memo):
        _api.refuse_copy(self)


# For _shm's layout check: a shared segment's slot count and slot size.
SHARED_SLOTS = (QB_SLOTS, sizeof(qb_slot))


cdef int _install_vectorcall() except -1:
    # CircuitBreaker.call as a METH_FASTCALL method, and _Guarded callable
    # by vectorcall: set up once, before either type is used.
    cdef QbTypeObject *breaker_type = <QbTypeObject *>CircuitBreaker
    cdef QbTypeObject *guarded_type = <QbTypeObject *>_Guarded
    cdef _Guarded probe = _Guarded.__new__(_Guarded)
    PyDict_SetItemString(breaker_type.tp_dict, "call",
                         PyDescr_NewMethod(breaker_type, &_CALL_METHOD))
    PyType_Modified(breaker_type)
    guarded_type.tp_vectorcall_offset = <char *>&probe.vectorcall - <char *><PyObject *>probe
    guarded_type.tp_flags |= Py_TPFLAGS_HAVE_VECTORCALL
    PyType_Modified(guarded_type)
    return 0


_install_vectorcall()
