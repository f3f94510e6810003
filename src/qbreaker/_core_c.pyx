# cython: language_level=3, embedsignature=True
# cython: binding=False, always_allow_keywords=False
# cython: boundscheck=False, wraparound=False, cdivision=True
"""The compiled core: a line-for-line port of ``_core_py``, the specification.

binding=False and always_allow_keywords=False keep the hot methods plain
METH_NOARGS/METH_O/METH_FASTCALL descriptors, which CPython 3.11 specialises;
the defaults cost about twice as much per call (DESIGN.md).

The GIL is never released inside a Python-facing method: the atomics make the
code correct either way, and releasing it around one CAS measured slower.
"""

from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport uint64_t, uintptr_t
from libc.string cimport memset

from qbreaker._core_py import DEFAULT_POLICY, Policy
from qbreaker._core_py import _check_ticket, _outcome_code, clock_ticks
from qbreaker._state import State, Totals

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
cdef uint64_t HEAD_FIELD = (<uint64_t>1 << HEAD_BITS) - 1
cdef uint64_t FAIL_MASK = FAIL_MAX << FAIL_SHIFT
cdef long long TICKET_MAX = <long long>(HEAD_FIELD << 1 | 1)


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


cdef inline uint64_t _ticket_of(uint64_t w) noexcept nogil:
    return (w & HEAD_FIELD) << 1 | 1


cdef inline uint64_t _expired_half_open(uint64_t w, const qb_policy *pol,
                                        uint64_t now) noexcept nogil:
    # Re-opens as of the moment it expired, not as of now (see _core_py).
    cdef uint64_t elapsed = (now - (w >> ENTERED_SHIFT)) & ENTERED_FIELD
    if elapsed < pol.half_open_timeout_ticks:
        return 0
    return _open_word(_next_gen(w),
                      now - (elapsed - pol.half_open_timeout_ticks))


cdef inline bint _transition(qb_cell *cell, uint64_t *w,
                             uint64_t nw) noexcept nogil:
    # CAS that changes the generation; the winner counts the transition.
    if qb_cas(&cell.word, w, nw):
        qb_add(&cell.transitions, 1)
        return True
    return False


# -- operations ----------------------------------------------------------------

cdef inline uint64_t _admit(qb_cell *cell, const qb_policy *pol,
                            uint64_t now) noexcept nogil:
    cdef uint64_t w = qb_load(&cell.word)
    cdef uint64_t state, nw
    while True:
        state = w & STATE_FIELD
        if state == S_CLOSED or (state == S_FORCED and w >> FORCED_KIND_SHIFT):
            qb_add(&cell.allowed, 1)
            return _ticket_of(w)
        if state == S_FORCED:
            break
        if now == QB_NOW_AUTO:
            now = qb_monotonic_ms()
        if state == S_OPEN:
            if ((now - (w >> OPENED_SHIFT)) & OPENED_FIELD) < pol.reset_ticks:
                break
            # The caller that performs the transition is the first probe.
            nw = _half_open_word(_next_gen(w), 1, 0, now)
            if _transition(cell, &w, nw):
                qb_add(&cell.allowed, 1)
                return _ticket_of(nw)
            continue
        nw = _expired_half_open(w, pol, now)
        if nw:
            if _transition(cell, &w, nw):
                w = nw
            continue
        if ((w >> INFLIGHT_SHIFT) & INFLIGHT_MAX) >= pol.half_open_max:
            break
        nw = w + (<uint64_t>1 << INFLIGHT_SHIFT)
        if qb_cas(&cell.word, &w, nw):
            qb_add(&cell.allowed, 1)
            return _ticket_of(nw)
    qb_add(&cell.rejected, 1)
    return 0


cdef inline bint _settle(qb_cell *cell, const qb_policy *pol, uint64_t now,
                         uint64_t ticket, int outcome) noexcept nogil:
    cdef uint64_t w, state, failures, in_flight, freed, successes, nw
    cdef bint ok
    if outcome == OUTCOME_SUCCESS:
        qb_add(&cell.successes, 1)
    elif outcome == OUTCOME_FAILURE:
        qb_add(&cell.failures, 1)
    else:
        qb_add(&cell.neutral, 1)
    w = qb_load(&cell.word)
    while True:
        if ticket and (ticket >> 1) != (w & HEAD_FIELD):
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
                if now == QB_NOW_AUTO:
                    now = qb_monotonic_ms()
                ok = _transition(cell, &w, _open_word(_next_gen(w), now))
            else:
                ok = qb_cas(&cell.word, &w, w + (<uint64_t>1 << FAIL_SHIFT))
            if ok:
                return True
            continue
        # Half-open.
        if now == QB_NOW_AUTO:
            now = qb_monotonic_ms()
        nw = _expired_half_open(w, pol, now)
        if nw:
            if _transition(cell, &w, nw):
                w = nw
            continue
        in_flight = (w >> INFLIGHT_SHIFT) & INFLIGHT_MAX
        freed = in_flight - 1 if in_flight else 0
        if outcome == OUTCOME_FAILURE:
            ok = _transition(cell, &w, _open_word(_next_gen(w), now))
        elif outcome == OUTCOME_SUCCESS:
            successes = ((w >> HSUCC_SHIFT) & HSUCC_MAX) + 1
            if successes >= pol.success_threshold:
                ok = _transition(cell, &w, _closed_word(_next_gen(w)))
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


cdef uint64_t qb_admit(qb_cell *cell, const qb_policy *pol,
                       uint64_t now) noexcept nogil:
    return _admit(cell, pol, now)


cdef bint qb_settle(qb_cell *cell, const qb_policy *pol, uint64_t now,
                    uint64_t ticket, int outcome) noexcept nogil:
    return _settle(cell, pol, now, ticket, outcome)


cdef void qb_renormalize(qb_cell *cell, const qb_policy *pol,
                         uint64_t now) noexcept nogil:
    cdef uint64_t w = qb_load(&cell.word)
    cdef uint64_t state, nw
    while True:
        state = w & STATE_FIELD
        if state != S_OPEN and state != S_HALF_OPEN:
            return
        if now == QB_NOW_AUTO:
            now = qb_monotonic_ms()
        if state == S_HALF_OPEN:
            nw = _expired_half_open(w, pol, now)
            if not nw:
                return
        elif ((now - (w >> OPENED_SHIFT)) & OPENED_FIELD) < pol.reset_ticks:
            return
        else:
            nw = _half_open_word(_next_gen(w), 0, 0, now)
        if _transition(cell, &w, nw):
            if state == S_OPEN:
                return
            w = nw


cdef void qb_reset(qb_cell *cell) noexcept nogil:
    cdef uint64_t w = qb_load(&cell.word)
    while not _transition(cell, &w, _closed_word(_next_gen(w))):
        pass


cdef void qb_force(qb_cell *cell, uint64_t kind_closed) noexcept nogil:
    cdef uint64_t w = qb_load(&cell.word)
    while True:
        if (w & STATE_FIELD) == S_FORCED and (w >> FORCED_KIND_SHIFT) == kind_closed:
            return
        if _transition(cell, &w, _forced_word(_next_gen(w), kind_closed)):
            return


# -- the Python-facing class ---------------------------------------------------

cdef inline uint64_t _now_of(CoreBreaker b) except? 0:
    # A user clock is read on every call: clock= serves tests, and a branch
    # here keeps the default path free of any Python call.
    if b._clock is None:
        return QB_NOW_AUTO
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


cdef int _set_policy(CoreBreaker b, object policy) except -1:
    b.cpolicy.max_failures = policy.max_failures
    b.cpolicy.reset_ticks = policy.reset_ticks
    b.cpolicy.half_open_max = policy.half_open_max
    b.cpolicy.success_threshold = policy.success_threshold
    b.cpolicy.half_open_timeout_ticks = policy.half_open_timeout_ticks
    return 0


cdef class CoreBreaker:
    """The breaker's hot path. ``CircuitBreaker`` adds the ergonomic API."""

    def __cinit__(self, *args, **kwargs):
        # Over-allocate and align by hand: pymalloc serves the 127 bytes from
        # its pools, cheaper in memory than an aligned allocator's header.
        self._cell_memory = PyMem_Malloc(sizeof(qb_cell) + 63)
        if self._cell_memory == NULL:
            raise MemoryError()
        self.cell = <qb_cell *>((<uintptr_t>self._cell_memory + 63)
                                & ~(<uintptr_t>63))
        memset(self.cell, 0, sizeof(qb_cell))
        _set_policy(self, DEFAULT_POLICY)
        self._clock = None
        self._configured = False

    def __dealloc__(self):
        PyMem_Free(self._cell_memory)

    def _configure(self, policy, clock):
        """Set the validated policy and clock; once, by the constructor."""
        if self._configured:
            raise RuntimeError("a breaker's policy is set once, at construction")
        _set_policy(self, Policy(*policy))
        self._clock = clock
        self._configured = True

    def allow(self):
        """True if a call may proceed now; report it with ``record_*()``."""
        return _admit(self.cell, &self.cpolicy, _now_of(self)) != 0

    def record_success(self):
        """Report a success against the current generation."""
        _settle(self.cell, &self.cpolicy, _now_of(self), 0, OUTCOME_SUCCESS)

    def record_failure(self):
        """Report a failure against the current generation."""
        _settle(self.cell, &self.cpolicy, _now_of(self), 0, OUTCOME_FAILURE)

    def acquire(self):
        """A ticket (a non-zero int) if a call may proceed, else 0."""
        return _admit(self.cell, &self.cpolicy, _now_of(self))

    def release(self, ticket, ok):
        """Report the outcome of the call that ``ticket`` admitted.

        ``ok`` is True for success, False for failure, None for neutral.
        """
        cdef uint64_t t = _ticket_arg(ticket)
        cdef int outcome = _outcome_arg(ok)
        _settle(self.cell, &self.cpolicy, _now_of(self), t, outcome)

    def renormalize(self):
        """Move an open breaker whose timeout has passed to half-open."""
        qb_renormalize(self.cell, &self.cpolicy, _now_of(self))

    def reset(self):
        """Back to closed, as a new generation."""
        qb_reset(self.cell)

    def force_open(self):
        """Reject every call until ``reset()``."""
        qb_force(self.cell, 0)

    def force_closed(self):
        """Admit every call, never trip, until ``reset()``."""
        qb_force(self.cell, 1)

    @property
    def state(self):
        cdef uint64_t w = qb_load(&self.cell.word)
        cdef uint64_t state = w & STATE_FIELD
        if state == S_FORCED:
            return _STATE_CLOSED if w >> FORCED_KIND_SHIFT else _STATE_OPEN
        return _STATES[state]

    @property
    def forced(self):
        cdef uint64_t w = qb_load(&self.cell.word)
        if (w & STATE_FIELD) != S_FORCED:
            return None
        return "closed" if w >> FORCED_KIND_SHIFT else "open"

    @property
    def generation(self):
        return (qb_load(&self.cell.word) >> GEN_SHIFT) & GEN_FIELD

    @property
    def consecutive_failures(self):
        cdef uint64_t w = qb_load(&self.cell.word)
        if (w & STATE_FIELD) == S_CLOSED or (w & STATE_FIELD) == S_FORCED:
            return (w >> FAIL_SHIFT) & FAIL_MAX
        return 0

    @property
    def policy(self):
        cdef qb_policy *p = &self.cpolicy
        return Policy(p.max_failures, p.reset_ticks, p.half_open_max,
                      p.success_threshold, p.half_open_timeout_ticks)

    @property
    def _word(self):
        return qb_load(&self.cell.word)

    def totals(self):
        cdef qb_cell *c = self.cell
        return Totals(qb_load(&c.allowed), qb_load(&c.rejected),
                      qb_load(&c.successes), qb_load(&c.failures),
                      qb_load(&c.neutral), qb_load(&c.transitions))
