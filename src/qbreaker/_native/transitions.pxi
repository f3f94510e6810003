# Included by _core_c.pyx after word.pxi. A transition: the CAS that starts a
# new generation, the order lock that keeps the listeners' queue in
# generation order on free-threaded builds, and the hand-over of what an
# operation won to the breaker's Dispatcher (made on first need).


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


cdef object _publish(void **slot, object fresh):
    # Publish `fresh` in an empty owned pointer by CAS, so that two threads
    # never make two; the object there afterwards. A dispatcher holds no
    # reference to its breaker; the _Extras can (its settings), and the
    # breaker's traverse visits it (see _install_extras_gc).
    if qb_cas_ptr(slot, NULL, <void *>fresh):
        Py_INCREF(fresh)  # the pointer's own reference, dropped in __dealloc__
        return fresh
    return <object>qb_load_ptr(slot)


cdef object _events_of(CircuitBreaker b):
    # The breaker's dispatcher, made on first need: most breakers never
    # change state, and a dispatcher costs several times a breaker's memory.
    # Made before an operation, not after its CAS (Python code would run in
    # between).
    cdef _Extras extras = <_Extras>_extras_of(b)
    cdef void *seen = qb_load_ptr(&extras.events_ptr)
    if seen != NULL:
        return <object>seen
    return _publish(&extras.events_ptr, Dispatcher(describe_word))


cdef int _push(CircuitBreaker b, qb_translog *log, int held,
               object reason=None) except -1:
    # Called right after the operation, with no Python code run since its
    # CAS, and either with the GIL held since then or (free-threaded) with
    # the order lock that _transition took: the queue's order is the
    # transitions'. The dispatcher was made (by _events_of) before the
    # operation began, so no Python code runs between its CAS and here.
    # `reason`: what the log says caused them (open_for, the fleet), or None.
    cdef int i
    cdef uint64_t opens = 0
    events = _events_of(b)
    try:
        pending = events.pending
        for i in range(log.n):
            if reason is None:
                pending.append((log.from_word[i], log.to_word[i]))
            else:
                pending.append((log.from_word[i], log.to_word[i], reason))
            if (log.to_word[i] & STATE_FIELD) == S_OPEN:
                opens += 1
        if opens:
            # After the queueing: counting may allocate (and so collect).
            qb_add(_opens_counter(b), opens)
    finally:
        if held:
            qb_order_unlock()
    events.drain(b)
    return 0


# -- the opens total ------------------------------------------------------------
# Transitions into open (forced open is no transition into S_OPEN), counted by
# their winner in _push: rare, so not in the cell's one line. A shared cell's
# count is the segment header's word right before the cell
# (segment_format.OPENS_OFFSET), added to by every process; a private one's
# is in the breaker's _Extras (probes.pxi), made on its first open.


cdef inline uint64_t *_shared_opens(CircuitBreaker b) noexcept:
    return <uint64_t *>(<char *>b._cell - sizeof(uint64_t))


cdef uint64_t *_opens_counter(CircuitBreaker b) except NULL:
    if b.cpolicy.host_flags & FLAG_SHARED:
        return _shared_opens(b)
    return &(<_Extras>_extras_of(b)).opens


cdef uint64_t _opens_total(CircuitBreaker b) noexcept:
    cdef void *extras
    if b.cpolicy.host_flags & FLAG_SHARED:
        return qb_load(_shared_opens(b))
    extras = qb_load_ptr(&b._extras_ptr)
    return 0 if extras == NULL else qb_load(&(<_Extras>extras).opens)


# -- the slow total -------------------------------------------------------------
# Slow outcomes (a call that took slow_call_duration, under a slow-call
# policy), for the fleet agent's slow counts. Counted by _py_settle_full, the
# out-of-line settle every slow outcome takes (the inlined closed path takes
# plain successes only), in the same places as the opens total: the segment
# header's word before the opens word (segment_format.SLOW_OFFSET), or the
# private breaker's _Extras. Settles through the C API (qb_settle) have no
# breaker object and are not counted here.


cdef inline uint64_t *_shared_slow(CircuitBreaker b) noexcept:
    return <uint64_t *>(<char *>b._cell - 2 * sizeof(uint64_t))


cdef int _count_slow(CircuitBreaker b) except -1:
    if b.cpolicy.host_flags & FLAG_SHARED:
        qb_add(_shared_slow(b), 1)
    else:
        qb_add(&(<_Extras>_extras_of(b)).slow, 1)
    return 0


cdef uint64_t _slow_total(CircuitBreaker b) noexcept:
    cdef void *extras
    if b.cpolicy.host_flags & FLAG_SHARED:
        return qb_load(_shared_slow(b))
    extras = qb_load_ptr(&b._extras_ptr)
    return 0 if extras == NULL else qb_load(&(<_Extras>extras).slow)
