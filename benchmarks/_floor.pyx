# cython: language_level=3
# cython: binding=False, always_allow_keywords=False
"""The physical floor: Python-to-C calls that do nothing.

Same directives as src/qbreaker/_core_c.pyx, so each method is the same kind
of descriptor (METH_NOARGS / METH_FASTCALL) that CPython 3.11 specialises.
What the breaker costs above these calls is the cost of its work.
"""


cdef class Floor:
    """A breaker that decides nothing: ``Floor(admit=False)`` always rejects."""

    cdef bint admit

    def __cinit__(self, bint admit=True):
        self.admit = admit

    def allow(self):
        return self.admit

    def record_success(self):
        pass

    def record_failure(self):
        pass

    def acquire(self):
        # The shape of a ticket (a small odd int), without making one.
        return 1 if self.admit else 0

    def release(self, ticket, ok):
        pass

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        return False
