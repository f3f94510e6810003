# Included by _core_c.pyx after probes.pxi. The Python-facing methods' admit
# and settle: a small inlined closed path counted in the object's own (or
# its slot's) counters, and everything else out of line; the arguments'
# conversion and the clock reads they share.


cdef inline void _own_add(uint64_t *counter) noexcept nogil:
    # A count only this process writes, under the GIL: no locked add. In a
    # shared slot, other processes read it, so it is still an atomic store.
    qb_store(counter, qb_load(counter) + 1)


# _cell_storage: the cell and, on one side of it, SPARE_BYTES for the three
# hot counts and the name (an owned str, or NULL).
cdef enum:
    SPARE_BYTES = 32
    NAME_AT = 3


cdef inline char *_storage_cell(CircuitBreaker b) noexcept:
    # Where the in-object cell goes: on its cache line when the storage's 48
    # spare bytes leave SPARE_BYTES on one side of it (the storage starts
    # 16-byte aligned), else at the storage's start (8-byte aligned: an
    # object header of another size), SPARE_BYTES after it.
    cdef char *start = &b._cell_storage[0]
    cdef char *aligned = <char *>((<uintptr_t>start + 63) & ~(<uintptr_t>63))
    cdef size_t before = aligned - start
    if before + sizeof(qb_cell) + SPARE_BYTES <= QB_CELL_STORAGE or (
            before >= SPARE_BYTES and before + sizeof(qb_cell) <= QB_CELL_STORAGE):
        return aligned
    return start


cdef inline uint64_t *_spare_bytes(CircuitBreaker b) noexcept:
    # The SPARE_BYTES beside the in-object cell (used or not: a shared or
    # windowed breaker keeps its cell elsewhere, and its name here still).
    cdef char *start = &b._cell_storage[0]
    cdef char *cell = _storage_cell(b)
    if <size_t>(cell - start) >= SPARE_BYTES:
        return <uint64_t *>start
    return <uint64_t *>(cell + sizeof(qb_cell))


cdef inline PyObject **_name_slot(CircuitBreaker b) noexcept:
    return <PyObject **>&_spare_bytes(b)[NAME_AT]


cdef inline object _name_of(CircuitBreaker b):
    cdef PyObject *name = _name_slot(b)[0]
    return None if name == NULL else <object>name


cdef int _set_name(CircuitBreaker b, object name) except -1:
    cdef PyObject **slot = _name_slot(b)
    cdef PyObject *old = slot[0]
    if name is not None and type(name) is not str:
        raise TypeError(f"a breaker's name must be a str or None, got {name!r}")
    if name is None:
        slot[0] = NULL
    else:
        Py_INCREF(name)
        slot[0] = <PyObject *>name
    Py_XDECREF(old)
    return 0


cdef void _use_spare_bytes(CircuitBreaker b) noexcept:
    # The three hot counts go in the spare bytes beside the in-object cell.
    b._hot = _spare_bytes(b)
    b._hot[0] = b._hot[1] = b._hot[2] = 0


# _py_admit's error value: all ones, never a ticket (tickets use bits 0-62),
# so a rejection's 0 costs its callers no PyErr_Occurred() call.
cdef inline uint64_t _py_admit(CircuitBreaker b, bint ticketed) except 0xFFFFFFFFFFFFFFFF:
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


cdef uint64_t _py_admit_full(CircuitBreaker b, bint ticketed) except 0xFFFFFFFFFFFFFFFF:
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
    if outcome & OUTCOME_SLOW and (outcome & OUTCOME_BASE) != OUTCOME_NEUTRAL:
        _count_slow(b)  # as the window counts them: neutral is never slow
    _events_of(b)
    log.n = 0
    _settle_fast(b._cell, &b.cpolicy, _now_of(b), ticket, outcome, &log, _ordered(&held))
    if log.n or held:
        _push(b, &log, held)
    return 0


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
    return clock_ticks((<_Extras>_extras_of(b)).clock())


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
