# Included by _core_c.pyx after shared_cell.pxi. What few breakers need,
# made on first need (_Extras): the tracked half-open tickets out, a
# lock-free mirror of qbreaker._impl.probes.Probes, the last observation, the
# event dispatcher, settings other than the defaults, and a private breaker's
# opens and slow totals (see transitions.pxi).


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
    given to ``observe()``. The event dispatcher. The breaker's ``_options``,
    ``_listeners`` and clock where they are not the defaults (a breaker in a
    group of 100,000 keeps none of these). And a private breaker's opens and
    slow totals.
    """

    # The set of tracked probes out: NULL until the first tracked probe, then
    # published by CAS and owned (see _probes_out).
    cdef void *out_ptr
    cdef uint64_t next
    cdef object last_observation
    cdef uint64_t opens
    cdef uint64_t slow
    cdef object options
    cdef tuple listeners
    cdef object clock
    # The Dispatcher, made on first need (see _events_of); owned, or NULL.
    cdef void *events_ptr

    def __cinit__(self):
        self.options = DEFAULT_OPTIONS
        self.listeners = ()

    def __dealloc__(self):
        Py_XDECREF(<PyObject *>self.events_ptr)
        Py_XDECREF(<PyObject *>self.out_ptr)


cdef inline set _probes_out(_Extras probes):
    # The set of tracked probes out, made by the first probe. Published by
    # CAS: on a free-threaded build two first probes may come at once, and a
    # plain "if None: make one" let each make its own set, one of them lost
    # with its ticket, whose release then counted nothing (seen in CI).
    cdef void *seen = qb_load_ptr(&probes.out_ptr)
    if seen != NULL:
        return <set>seen
    return <set>_publish(&probes.out_ptr, set())


cdef inline object _options_of(CircuitBreaker b):
    cdef void *extras = qb_load_ptr(&b._extras_ptr)
    return DEFAULT_OPTIONS if extras == NULL else (<_Extras>extras).options


cdef inline tuple _listeners_of(CircuitBreaker b):
    cdef void *extras = qb_load_ptr(&b._extras_ptr)
    return () if extras == NULL else (<_Extras>extras).listeners


cdef extern from *:
    """
    /* The breaker's owned _extras_ptr holds objects that may refer back to
       the breaker (hooks, listeners, a clock: a bound method of an object
       that keeps the breaker is a cycle). Its other object fields are a
       name (a str) and the weak reference list, so Cython makes the class
       no collector type: it is made one here, before any breaker exists,
       visiting and clearing that pointer (and Cython's own fields, if a
       later version adds any). */
    static traverseproc qb_breaker_base_traverse;
    static inquiry qb_breaker_base_clear;
    static destructor qb_breaker_base_dealloc;
    static Py_ssize_t qb_breaker_extras_at;

    static int qb_breaker_traverse(PyObject *o, visitproc visit, void *arg) {
        PyObject *extras = *(PyObject **)((char *)o + qb_breaker_extras_at);
        Py_VISIT(extras);
        return qb_breaker_base_traverse != NULL ?
            qb_breaker_base_traverse(o, visit, arg) : 0;
    }

    static int qb_breaker_clear(PyObject *o) {
        PyObject **slot = (PyObject **)((char *)o + qb_breaker_extras_at);
        PyObject *extras = *slot;
        *slot = NULL;
        Py_XDECREF(extras);
        return qb_breaker_base_clear != NULL ? qb_breaker_base_clear(o) : 0;
    }

    static void qb_breaker_dealloc(PyObject *o) {
        PyObject_GC_UnTrack(o);  /* Python code may run in the deallocation */
        qb_breaker_base_dealloc(o);
    }

    static void qb_install_extras_gc(PyTypeObject *type, Py_ssize_t extras_at) {
        qb_breaker_extras_at = extras_at;
        if (type->tp_flags & Py_TPFLAGS_HAVE_GC) {
            qb_breaker_base_traverse = type->tp_traverse;
            qb_breaker_base_clear = type->tp_clear;
        } else {
            type->tp_flags |= Py_TPFLAGS_HAVE_GC;
            type->tp_free = PyObject_GC_Del;
            qb_breaker_base_dealloc = type->tp_dealloc;
            type->tp_dealloc = qb_breaker_dealloc;
        }
        type->tp_traverse = qb_breaker_traverse;
        type->tp_clear = qb_breaker_clear;
        PyType_Modified(type);
    }
    """
    void qb_install_extras_gc(QbTypeObject *type, Py_ssize_t extras_at)


cdef Py_ssize_t _extras_offset() except -1:
    # Made and freed before the class becomes a collector type.
    cdef CircuitBreaker sample = CircuitBreaker.__new__(CircuitBreaker)
    return <char *>&sample._extras_ptr - <char *><PyObject *>sample


cdef int _install_extras_gc() except -1:
    qb_install_extras_gc(<QbTypeObject *>CircuitBreaker, _extras_offset())
    return 0


cdef uint64_t _probe_issue(_Extras probes, uint64_t ticket) except 0:
    # Probes.issue: the ticket made unique among those out, and tracked.
    cdef uint64_t base = ticket & PROBE_BASE_FIELD
    cdef uint64_t tracked
    cdef set out = _probes_out(probes)
    if len(out) >= PROBES_FORGET_AT:
        for old in list(out):
            if (<uint64_t>old & PROBE_BASE_FIELD) != base:
                out.discard(old)
    while True:
        tracked = (base | TRACKED_BIT
                   | (qb_fetch_add(&probes.next, 1) & PROBE_FIELD) << PROBE_SHIFT)
        if not PySet_Contains(out, tracked):
            break
    PySet_Add(out, tracked)
    return tracked


cdef bint _probe_reports(CircuitBreaker b, uint64_t ticket) except -1:
    # A tracked probe's ticket (see qbreaker._impl.probes): its first release
    # reports; a later one only while its generation is not current, where
    # it is an ordinary stale ticket. Otherwise the slot is free already.
    cdef qb_cell *cell = b._cell
    cdef uint64_t t
    if PySet_Discard(_probes_out(<_Extras>_extras_of(b)), ticket) == 1:
        return True
    t = qb_load(&cell.transitions)
    return not _ticket_current(ticket, t, qb_load(&cell.word))
