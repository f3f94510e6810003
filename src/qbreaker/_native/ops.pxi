# Included by _core_c.pyx after window.pxi. The operations on a cell: admit,
# settle, renormalize, reset, force, trip; lock-free and without the GIL.
# The qb_* functions are the C API that _core_c.pxd declares for cimport
# users; the Python-facing methods call the _-prefixed ones directly.


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
    return <double>_open_remaining(w, pol.reset_ticks, _resolve(now))


# -- explicit opens: open_for, and the fleet agent's operations ---------------
# Out of the hot paths: none of these is called by admit or settle. An open
# word keeps only opened_at, so an open that lasts `ticks` from now is stored
# as opened at now + ticks - reset_ticks: an opened_at after now counts as no
# time elapsed, and the usual expiry check needs no other change.


cdef inline bint _later(uint64_t a, uint64_t b) noexcept nogil:
    # Tick a is after tick b, on opened_at's circle of 2**44 ticks.
    cdef uint64_t d = (a - b) & OPENED_FIELD
    return d != 0 and not (d >> (OPENED_BITS - 1))


cdef inline bint _open_in(uint64_t t, uint64_t w, uint64_t generation) noexcept nogil:
    return (w & STATE_FIELD) == S_OPEN and _full_gen(t, w) == generation


cdef uint64_t _open_for(qb_cell *cell, const qb_policy *pol, uint64_t ticks,
                        uint64_t given_now, qb_translog *log,
                        int *held) noexcept nogil:
    # Open until now + ticks: a transition from closed or half-open, an
    # extension (no transition) of an open expiring sooner. The full
    # generation of that open, or 0: forced, or open for longer already.
    cdef uint64_t t = qb_load(&cell.transitions)
    cdef uint64_t w = qb_load(&cell.word)
    cdef uint64_t state, nw, now, expiry
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
            if qb_cas(&cell.word, &w, nw):
                return _full_gen(t, nw)
            continue
        nw = _open_word(_next_gen(w), expiry - pol.reset_ticks)
        if _transition(cell, &w, nw, now, log, held):
            return _full_gen(qb_load(&cell.transitions), nw)


cdef bint _extend_open(qb_cell *cell, const qb_policy *pol, uint64_t generation,
                       uint64_t ticks, uint64_t given_now) noexcept nogil:
    # Open in `generation`: expiring no sooner than now + ticks (True).
    cdef uint64_t t = qb_load(&cell.transitions)
    cdef uint64_t w = qb_load(&cell.word)
    cdef uint64_t expiry
    while _open_in(t, w, generation):
        expiry = _resolve(given_now) + ticks
        if not _later(expiry, (w >> OPENED_SHIFT) + pol.reset_ticks):
            return True
        if qb_cas(&cell.word, &w, _reopened(w, pol.reset_ticks, expiry)):
            return True
    return False


cdef bint _expire_open(qb_cell *cell, const qb_policy *pol, uint64_t generation,
                       uint64_t given_now) noexcept nogil:
    # Open in `generation`: expired by now (True), so the next call probes.
    cdef uint64_t t = qb_load(&cell.transitions)
    cdef uint64_t w = qb_load(&cell.word)
    cdef uint64_t now
    while _open_in(t, w, generation):
        now = _resolve(given_now)
        if _open_remaining(w, pol.reset_ticks, now) == 0:
            return True
        if qb_cas(&cell.word, &w, _reopened(w, pol.reset_ticks, now)):
            return True
    return False


cdef bint _close_if(qb_cell *cell, uint64_t generation, uint64_t given_now,
                    qb_translog *log, int *held) noexcept nogil:
    # Closed (a transition) if still open in `generation` or half-open in the
    # probe generation that follows it; else False, unchanged.
    cdef uint64_t t = qb_load(&cell.transitions)
    cdef uint64_t w = qb_load(&cell.word)
    cdef uint64_t state, gen, now
    while True:
        state = w & STATE_FIELD
        gen = _full_gen(t, w)
        if not ((state == S_OPEN and gen == generation)
                or (state == S_HALF_OPEN
                    and gen == ((generation + 1) & ((<uint64_t>1 << TICKET_GEN_BITS) - 1)))):
            return False
        now = _resolve(given_now)
        if _transition(cell, &w, _closed_word(_next_gen(w)), now, log, held):
            return True
