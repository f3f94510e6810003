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
