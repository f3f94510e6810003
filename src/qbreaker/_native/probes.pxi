# Included by _core_c.pyx after shared_cell.pxi. What few breakers need,
# made on first need (_Extras): the tracked half-open tickets out, a
# lock-free mirror of qbreaker._impl.probes.Probes, the last observation, and
# a private breaker's opens and slow totals (see transitions.pxi).


cdef uint64_t TRACKED_BIT = _probes.TRACKED
cdef uint64_t PROBE_SHIFT = _probes.PROBE_SHIFT
cdef uint64_t PROBE_FIELD = _probes.PROBE_FIELD
cdef uint64_t PROBE_BASE_FIELD = _probes.BASE_FIELD
cdef Py_ssize_t PROBES_FORGET_AT = _probes.FORGET_AT


cdef object _extras_of(CircuitBreaker b):
    # The breaker's _Extras, made when it first admits a tracked probe, is
    # given an observation, or (private) opens or has a slow outcome.
    cdef void *seen = qb_load_ptr(&b._extras_ptr)
    if seen != NULL:
        return <object>seen
    return _publish(&b._extras_ptr, _Extras.__new__(_Extras))


cdef class _Extras:
    """What few breakers need, made on first need (``_extras_ptr``).

    The tracked half-open tickets out: qbreaker._impl.probes.Probes, mirrored,
    without its lock: the probe number comes from an atomic counter, and
    each set operation is atomic on its own (free-threaded builds lock the
    set per operation), so no two probes get one ticket. The metrics last
    given to ``observe()``. And a private breaker's opens and slow totals.
    """

    cdef set out
    cdef uint64_t next
    cdef object last_observation
    cdef uint64_t opens
    cdef uint64_t slow

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


cdef bint _probe_reports(CircuitBreaker b, uint64_t ticket) except -1:
    # A tracked probe's ticket (see qbreaker._impl.probes): its first release
    # reports; a later one only while its generation is not current, where
    # it is an ordinary stale ticket. Otherwise the slot is free already.
    cdef qb_cell *cell = b._cell
    cdef uint64_t t
    if PySet_Discard((<_Extras>_extras_of(b)).out, ticket) == 1:
        return True
    t = qb_load(&cell.transitions)
    return not _ticket_current(ticket, t, qb_load(&cell.word))
