# Included by _core_c.pyx after calls.pxi.
# -- the BreakerGroup hit path --------------------------------------------------
#
# qbreaker._impl.group.BreakerGroup subclasses GroupHits when this core is
# selected: a lookup of an existing name is one C-level dict lookup, and a
# compiled breaker found there is driven through the same inline fast paths as
# its own methods, with no Python frame. Everything else (a miss, a name that
# is not exactly a str, creation, eviction) is the Python class's get().
#
# dict.get gives a strong reference (PyDict_GetItemRef where there is no GIL),
# so a breaker evicted by another thread stays alive while it is used here.

cimport cython


@cython.auto_pickle(False)
cdef class GroupHits:
    """The hit path of ``BreakerGroup`` (see qbreaker._impl.group)."""

    # Name to breaker; the group's only index of its breakers.
    cdef public dict _breakers

    def __getitem__(self, name):
        cdef object b = self._breakers.get(name) if type(name) is str else None
        return self.get(name) if b is None else b

    def allow(self, name):
        cdef object b = self._breakers.get(name) if type(name) is str else None
        if b is None:
            b = self.get(name)
        if type(b) is CircuitBreaker:
            return _py_admit(<CircuitBreaker>b, False) != 0
        return b.allow()

    def record_success(self, name):
        cdef object b = self._breakers.get(name) if type(name) is str else None
        if b is None:
            b = self.get(name)
        if type(b) is CircuitBreaker:
            _py_settle(<CircuitBreaker>b, 0, OUTCOME_SUCCESS)
        else:
            b.record_success()

    def record_failure(self, name):
        cdef object b = self._breakers.get(name) if type(name) is str else None
        if b is None:
            b = self.get(name)
        if type(b) is CircuitBreaker:
            _py_settle(<CircuitBreaker>b, 0, OUTCOME_FAILURE)
        else:
            b.record_failure()
