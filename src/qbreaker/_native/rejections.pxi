# Included by _core_c.pyx after with_tickets.pxi.
# -- rejections that raise or call the fallback ----------------------------------
#
# Out of line from __enter__ and call() (see _rejected in calls.pxi): an
# open breaker's answer. A plain breaker builds its CircuitOpenError here
# the way CircuitOpenError._rejection() does, without a Python frame: no
# __init__, the attributes stored from C, the message formatted only when
# read (that formatting cost several times the raise itself). A class that
# overrides _raise_open or _rejected (the pybreaker compat layer), and a
# breaker with an on_reject hook, take the Python-level methods instead.

from qbreaker._errors import _Rejection
from qbreaker._errors import _PENDING
from qbreaker._outcomes import Options


cdef extern from *:
    """
    /* The exception's tp_new alone (BaseException.__new__): no __init__. */
    static PyObject *qb_new_bare(PyObject *type, PyObject *args) {
        return ((PyTypeObject *)type)->tp_new((PyTypeObject *)type, args, NULL);
    }
    """
    object qb_new_bare(object type, object args)


# Where an Options tuple keeps the fallback, read by index on the rejection path.
cdef Py_ssize_t _FALLBACK_AT = Options._fields.index("fallback")

# The args of a fresh rejection, until its message is read (see _errors).
cdef tuple _PENDING_ARGS = (_PENDING,)


cdef bint _overrides_rejection(type cls) except -1:
    # Read once per breaker, into FLAG_REJECT_HOOK.
    return cls is not CircuitBreaker and (
        getattr(cls, "_raise_open") is not getattr(CircuitBreaker, "_raise_open")
        or getattr(cls, "_rejected") is not getattr(CircuitBreaker, "_rejected"))


cdef object _open_error(CircuitBreaker b):
    # CircuitOpenError._rejection(name, state, retry_after, b), from one load
    # of the word.
    cdef uint64_t w = qb_load(&b._cell.word)
    name = _name_of(b)
    if name is None:
        name = _api.name(b)
    error = qb_new_bare(_Rejection, _PENDING_ARGS)
    error.name = name
    error.state = _public_state(w)
    error.retry_after = _retry_after_ticks(w, &b.cpolicy, _now_of(b)) / 1000
    error._breaker = b
    return error


cdef object _block_rejection(CircuitBreaker b):
    # ``with`` on an open breaker: the error its caller raises, or None if an
    # overriding _raise_open returned (then the block goes on, as it always
    # has). Returned, not raised here: each compiled function an exception
    # leaves adds a traceback entry, about 1,200 instructions.
    if not b.cpolicy.host_flags & FLAG_REJECT_HOOK:
        return _open_error(b)
    b._raise_open()
    return None
