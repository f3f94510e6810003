# cython: language_level=3, freethreading_compatible=True
# cython: binding=False, always_allow_keywords=False
# cython: freethreading_compatible=True
"""Benchmark baselines, compiled: the physical floor of a breaker's calls.

``python -m qbreaker bench`` and ``benchmarks/`` compare the breaker with
these. The directives are those of ``_core_c.pyx``, so every method is the same
kind of descriptor (METH_NOARGS / METH_O / METH_FASTCALL) that CPython 3.11
specialises: what the breaker costs above these calls is the cost of its work,
not of a different calling convention.

It ships in the wheel (about 110 kB compressed) so that the benchmark runs on
an installed package without a compiler. Nothing else in qbreaker imports it.

Free-threaded CPython: without ``freethreading_compatible`` importing this
module would switch the GIL back on and the benchmark would measure a GIL
build. It is safe: ``Floor.admit`` is written only by ``__cinit__``,
``NullContext`` has no state, and ``hammer`` touches the cell only through the
core's atomics.

``hammer`` is the native-thread benchmark: it drives a breaker through the
cimport API (``qb_admit`` / ``qb_settle``) with the GIL released for the whole
loop, as a Cython user of ``_core_c.pxd`` would.
"""

from libc.stdint cimport uint64_t

from qbreaker._core_c cimport (
    OUTCOME_SUCCESS,
    QB_NOW_AUTO,
    CircuitBreaker,
    qb_admit,
    qb_cell,
    qb_nogil_cell,
    qb_settle,
)


class FloorRejected(Exception):
    """Raised by a rejecting floor's ``__enter__``: the floor of a raise from C."""


cdef class Floor:
    """A breaker that decides nothing: ``Floor(False)`` rejects every call.

    Each method does the least its counterpart on ``CircuitBreaker`` must:
    return the answer, or nothing (``call(fn)`` calls ``fn()``). A rejecting
    floor's ``__enter__`` raises a fresh ``FloorRejected``, the floor of
    ``with breaker:`` on an open breaker (``CircuitOpenError`` is raised the
    same way, from C, caught in Python).
    """

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

    def call(self, fn):
        # METH_O and no arguments for fn: the least a compiled call(f) can
        # cost. Calling f from C enters a new evaluation loop, which the pair
        # around a Python-level f() does not; this row shows that price.
        return fn()

    def __enter__(self):
        if not self.admit:
            raise FloorRejected()
        return None

    def __exit__(self, exc_type, exc, tb):
        return False


cdef class NullContext:
    """The trivial compiled context manager: ``with`` and nothing else.

    The reference of the ``with breaker:`` target. It keeps no per-thread
    ticket, which the breaker must: the target allows 1.5x this for that.
    """

    def __enter__(self):
        return None

    def __exit__(self, exc_type, exc, tb):
        return False


def hammer(CircuitBreaker breaker, Py_ssize_t calls):
    """Admit and settle ``calls`` successes on ``breaker`` without the GIL.

    Returns how many were admitted. The GIL is released before the first call
    and taken back after the last, so N Python threads each running this are
    N native threads on the breaker's cell.
    """
    cdef Py_ssize_t i
    cdef Py_ssize_t admitted = 0
    cdef uint64_t ticket
    cdef qb_cell *cell = qb_nogil_cell(breaker)
    with nogil:
        for i in range(calls):
            ticket = qb_admit(cell, &breaker.cpolicy, QB_NOW_AUTO, NULL)
            if ticket:
                admitted += 1
                qb_settle(cell, &breaker.cpolicy, QB_NOW_AUTO, ticket,
                          OUTCOME_SUCCESS, NULL)
    return admitted


cdef extern from *:
    """
    /* An awaitable already done, returning None, driven the cheapest way:
       am_send answers at once, tp_iternext ends with no StopIteration. */
    #if PY_VERSION_HEX >= 0x030A0000
    static PySendResult qb_floor_done_send(PyObject *self, PyObject *arg,
                                           PyObject **result) {
        (void)self; (void)arg;
        Py_INCREF(Py_None);
        *result = Py_None;
        return PYGEN_RETURN;
    }
    #endif

    static PyObject *qb_floor_done_next(PyObject *self) {
        (void)self;
        return NULL;
    }

    static void qb_floor_install_done(PyTypeObject *done) {
    #if PY_VERSION_HEX >= 0x030A0000
        done->tp_as_async->am_send = qb_floor_done_send;
    #endif
        done->tp_iternext = qb_floor_done_next;
    #ifdef Py_TPFLAGS_HAVE_AM_SEND
        done->tp_flags |= Py_TPFLAGS_HAVE_AM_SEND;
    #endif
        PyType_Modified(done);
    }
    """
    ctypedef struct PyTypeObject:
        pass
    void qb_floor_install_done(PyTypeObject *done)


cdef class _FloorDone:
    """An awaitable already done (its slots are set below)."""

    def __await__(self):
        return self

    def __next__(self):
        raise StopIteration


cdef _FloorDone _FLOOR_DONE = _FloorDone.__new__(_FloorDone)
qb_floor_install_done(<PyTypeObject *>_FloorDone)


cdef class NullAsyncContext:
    """The trivial compiled async context manager: ``async with`` and nothing
    else, awaiting an already-done awaitable at entry and exit.

    The price of the ``async with`` statement itself, which no breaker can go
    under: the reference that explains the ``async with`` row.
    """

    def __aenter__(self):
        return _FLOOR_DONE

    def __aexit__(self, exc_type, exc, tb):
        return _FLOOR_DONE
