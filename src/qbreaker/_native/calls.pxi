# Included by _core_c.pyx after rejections.pxi.
# -- protected calls -------------------------------------------------------------
#
# call() and decorated functions take the vectorcall convention: the
# arguments arrive as a C array and go on to fn the same way, with no tuple
# or dict built per call (Cython's ``def f(*args, **kwargs)`` builds both,
# which cost more than the breaker itself).

cdef extern from "Python.h":
    ctypedef struct QbTypeObject "PyTypeObject":
        Py_ssize_t tp_vectorcall_offset
        unsigned long tp_flags
        PyObject *tp_dict
    ctypedef struct QbMethodDef "PyMethodDef":
        const char *ml_name
        void *ml_meth
        int ml_flags
        const char *ml_doc
    enum:
        METH_FASTCALL
        METH_KEYWORDS
        Py_TPFLAGS_HAVE_VECTORCALL
    object PyDescr_NewMethod(QbTypeObject *type, QbMethodDef *meth)
    int PyDict_SetItemString(PyObject *d, const char *key, object value) except -1
    void PyType_Modified(QbTypeObject *type)
    object PyObject_Vectorcall(object fn, PyObject **args, size_t nargsf,
                               PyObject *kwnames)
    Py_ssize_t PyVectorcall_NARGS(size_t nargsf)
    object PyVectorcall_Call(object callable, object args, object kwargs)
    Py_ssize_t PyTuple_GET_SIZE(PyObject *p)
    PyObject *PyTuple_GET_ITEM(object p, Py_ssize_t i)
    bint PyGen_CheckExact(object o)


cdef extern from *:
    """
    /* A type-slot test, the C twin of hasattr(type(o), "__await__"): what
       call() refuses, on its return path, for the cost of two loads. */
    static inline int qb_is_awaitable(PyObject *o) {
        PyAsyncMethods *am = Py_TYPE(o)->tp_as_async;
        return am != NULL && am->am_await != NULL;
    }
    """
    bint qb_is_awaitable(object o) noexcept


cdef tuple _positional(PyObject **args, Py_ssize_t nargs):
    return tuple([<object>args[i] for i in range(nargs)])


cdef dict _keywords(PyObject **args, Py_ssize_t nargs, PyObject *kwnames):
    cdef Py_ssize_t i
    cdef dict kwargs = {}
    if kwnames != NULL:
        names = <object>kwnames
        for i in range(PyTuple_GET_SIZE(kwnames)):
            kwargs[names[i]] = <object>args[nargs + i]
    return kwargs


cdef object _rejected(CircuitBreaker b, PyObject **args, Py_ssize_t nargs,
                      PyObject *kwnames):
    # call() and the decorator on an open breaker: the fallback's result, or
    # CircuitOpenError. Out of line; the fallback gets the call's own
    # argument array, with no tuple or dict built for it.
    if b.cpolicy.host_flags & FLAG_REJECT_HOOK:
        return b._rejected(_positional(args, nargs), _keywords(args, nargs, kwnames))
    options = _options_of(b)
    if type(options) is not Options:  # _options replaced by hand
        return b._rejected(_positional(args, nargs), _keywords(args, nargs, kwnames))
    fallback = <object>PyTuple_GET_ITEM(options, _FALLBACK_AT)
    if fallback is None:
        raise _open_error(b)
    return PyObject_Vectorcall(fallback, args, nargs, kwnames)


cdef object _call(CircuitBreaker b, object fn, PyObject **args, Py_ssize_t nargs,
                  PyObject *kwnames):
    # nargs positionals, then one value per name in kwnames (or NULL).
    cdef uint64_t ticket
    if b.cpolicy.host_flags & FLAG_ASYNC_FALLBACK:
        raise_async_fallback(_options_of(b))
    ticket = _py_admit(b, True)
    if not ticket:
        return _rejected(b, args, nargs, kwnames)
    # Only under a slow-call policy: a clock read before, one after.
    started = _resolve(_now_of(b)) if _timed(b) else None
    try:
        result = PyObject_Vectorcall(fn, args, nargs, kwnames)
    except BaseException as exc:
        b._exit_exc(ticket, exc, started)
        raise
    if b.cpolicy.host_flags & FLAG_GENERATOR_HOOK and PyGen_CheckExact(result):
        return b._generator_result(ticket, result)
    if qb_is_awaitable(result):
        _refuse_awaitable(b, ticket, fn, result)
    if started is None and b.cpolicy.host_flags & FLAG_PLAIN_SUCCESS:
        _py_settle(b, ticket, OUTCOME_SUCCESS)
    else:
        b._exit_result(ticket, result, started)
    return result


cdef int _refuse_awaitable(CircuitBreaker b, uint64_t ticket, object fn,
                           object result) except -1:
    # Out of line: call() got a coroutine (or another awaitable), whose
    # outcome only awaiting it would show. Neutral, and a TypeError. The
    # full settle: one more call site of _py_settle stopped GCC inlining it
    # into _call (a neutral outcome never takes its quick path anyway).
    _py_settle_full(b, ticket, OUTCOME_NEUTRAL)
    raise _forms.awaitable_refused(fn, result)


cdef object _call_method(object self, PyObject **args, Py_ssize_t nargs,
                         PyObject *kwnames):
    # CircuitBreaker.call, METH_FASTCALL | METH_KEYWORDS (installed below).
    if nargs < 1:
        raise TypeError("call() takes the function to call as its first "
                        "positional argument")
    return _call(<CircuitBreaker>self, <object>args[0], args + 1, nargs - 1, kwnames)


cdef QbMethodDef _CALL_METHOD
_CALL_METHOD.ml_name = "call"
_CALL_METHOD.ml_meth = <void *>_call_method
_CALL_METHOD.ml_flags = METH_FASTCALL | METH_KEYWORDS
_CALL_METHOD.ml_doc = (b"call($self, fn, /, *args, **kwargs)\n--\n\n"
                       b"Run ``fn(*args, **kwargs)`` under the breaker.")


cdef object _guarded_vectorcall(object callable, PyObject **args, size_t nargsf,
                                PyObject *kwnames):
    cdef _Guarded guarded = <_Guarded>callable
    if guarded.breaker is None:
        raise TypeError("a protected function is made by decorating it with a breaker")
    return _call(guarded.breaker, guarded.fn, args, PyVectorcall_NARGS(nargsf), kwnames)


cdef class _Guarded:
    """A function protected by a breaker: each call goes through ``call``."""

    cdef void *vectorcall  # _guarded_vectorcall, at tp_vectorcall_offset
    cdef CircuitBreaker breaker
    cdef object fn
    cdef dict __dict__
    cdef object __weakref__

    def __cinit__(self):
        self.vectorcall = <void *>_guarded_vectorcall

    def __call__(self, *args, **kwargs):
        # Callers that pass a tuple and a dict (tp_call) reach the same
        # _guarded_vectorcall.
        return PyVectorcall_Call(self, args, kwargs)

    def __reduce__(self):
        # By reference, like the function it replaces (see _forms.pickled_name).
        return _forms.pickled_name(self)

    def __copy__(self):
        return self  # as a function is: copying shares it

    def __deepcopy__(self, memo):
        return self

    def __get__(self, obj, objtype):
        # Decorated methods bind like functions do.
        if obj is None:
            return self
        return MethodType(self, obj)

    def __repr__(self):
        return f"<protected {self.fn!r} by {self.breaker!r}>"


cdef int _install_vectorcall() except -1:
    # CircuitBreaker.call as a METH_FASTCALL method, and _Guarded callable
    # by vectorcall: set up once, before either type is used.
    cdef QbTypeObject *breaker_type = <QbTypeObject *>CircuitBreaker
    cdef QbTypeObject *guarded_type = <QbTypeObject *>_Guarded
    cdef _Guarded probe = _Guarded.__new__(_Guarded)
    PyDict_SetItemString(breaker_type.tp_dict, "call",
                         PyDescr_NewMethod(breaker_type, &_CALL_METHOD))
    PyType_Modified(breaker_type)
    guarded_type.tp_vectorcall_offset = <char *>&probe.vectorcall - <char *><PyObject *>probe
    guarded_type.tp_flags |= Py_TPFLAGS_HAVE_VECTORCALL
    PyType_Modified(guarded_type)
    return 0
