# Included by _core_c.pyx after calls.pxi.
# -- async forms -----------------------------------------------------------------
#
# ``@breaker`` on a coroutine function, ``call_async`` and ``async with``,
# with no coroutine frame of qbreaker's own per call.
#
# A decorated coroutine function (_GuardedAsync, by vectorcall) and
# call_async (METH_FASTCALL) return an _Awaiting: a small awaitable that
# keeps the arguments in a C array and, when first sent to, admits, calls fn
# and then delegates every send/throw/close to fn's awaitable, settling its
# ticket exactly once, on return, exception or close(), as the twin's
# coroutines do (see _impl/wrappers.py). The interpreter drives it through the
# am_send slot (PyIter_Send; no StopIteration on return); tp_iternext and the
# send/throw/close methods serve older interpreters and foreign drivers. With
# __await__, send, throw and close it is a collections.abc.Coroutine, which
# asyncio accepts as a task's coroutine. Unlike a coroutine it warns of
# nothing when it is never awaited (it took nothing then either).
#
# ``async with`` does its work in __aenter__/__aexit__ themselves and returns
# _DONE, an awaitable that is already done: no coroutine object per block.
# Both run in the frame of the ``async with``, so the with-ticket store sees
# the same frame that ``with`` would.

cimport cython

cdef extern from *:
    """
    /* The C side of _Awaiting and _Done: slot functions Cython cannot
       declare. qb_await_step is _await_step below, set at module init. */
    typedef PyObject *(*qb_step_fn)(PyObject *self, PyObject *arg, int *done);
    static qb_step_fn qb_await_step;

    /* NULL with StopIteration(value) set; with no exception for None, which
       every driver reads as a return of None. Steals value. */
    static PyObject *qb_stop(PyObject *value) {
        if (value != Py_None) {
            PyObject *stop = PyObject_CallOneArg(PyExc_StopIteration, value);
            if (stop != NULL) {
                PyErr_SetObject(PyExc_StopIteration, stop);
                Py_DECREF(stop);
            }
        }
        Py_DECREF(value);
        return NULL;
    }

    #if PY_VERSION_HEX >= 0x030A0000
    /* am_send and PySendResult: 3.10 and later; 3.9 drives the awaitable
       through tp_iternext and send(). */
    static PySendResult qb_await_send(PyObject *self, PyObject *arg,
                                      PyObject **result) {
        int done = 0;
        *result = qb_await_step(self, arg, &done);
        if (*result == NULL)
            return PYGEN_ERROR;
        return done ? PYGEN_RETURN : PYGEN_NEXT;
    }
    #endif

    static PyObject *qb_await_next(PyObject *self) {
        int done = 0;
        PyObject *value = qb_await_step(self, Py_None, &done);
        return value == NULL || !done ? value : qb_stop(value);
    }

    #if PY_VERSION_HEX >= 0x030A0000
    static PySendResult qb_done_send(PyObject *self, PyObject *arg,
                                     PyObject **result) {
        (void)self; (void)arg;
        Py_INCREF(Py_None);
        *result = Py_None;
        return PYGEN_RETURN;
    }
    #endif

    static PyObject *qb_done_next(PyObject *self) {
        (void)self;
        return NULL;  /* done, returning None */
    }

    static void qb_install_await_slots(PyTypeObject *awaiting, PyTypeObject *done,
                                       qb_step_fn step) {
        qb_await_step = step;
    #if PY_VERSION_HEX >= 0x030A0000
        awaiting->tp_as_async->am_send = qb_await_send;
        done->tp_as_async->am_send = qb_done_send;
    #endif
        awaiting->tp_iternext = qb_await_next;
        done->tp_iternext = qb_done_next;
    #ifdef Py_TPFLAGS_HAVE_AM_SEND
        awaiting->tp_flags |= Py_TPFLAGS_HAVE_AM_SEND;
        done->tp_flags |= Py_TPFLAGS_HAVE_AM_SEND;
    #endif
        PyType_Modified(awaiting);
        PyType_Modified(done);
    }

    /* -1 with an exception, 1 when iter returned (*result its value), 0 when
       it yielded *result. */
    static int qb_send(PyObject *iter, PyObject *arg, PyObject **result) {
    #if PY_VERSION_HEX >= 0x030A0000
        PySendResult r = PyIter_Send(iter, arg, result);
        return r == PYGEN_ERROR ? -1 : r == PYGEN_RETURN;
    #else
        PyObject *r;
        if (arg == Py_None && Py_TYPE(iter)->tp_iternext != NULL)
            r = Py_TYPE(iter)->tp_iternext(iter);
        else
            r = PyObject_CallMethod(iter, "send", "O", arg);
        if (r != NULL) {
            *result = r;
            return 0;
        }
        if (PyErr_Occurred() && !PyErr_ExceptionMatches(PyExc_StopIteration))
            return -1;
        /* A return: its value from StopIteration, or None. */
        *result = NULL;
        if (_PyGen_FetchStopIterationValue(result) < 0)
            return -1;
        return 1;
    #endif
    }

    /* What `await o` delegates to, or NULL if o has no __await__ slot. */
    static PyObject *qb_await_slot(PyObject *o) {
        PyAsyncMethods *am = Py_TYPE(o)->tp_as_async;
        if (am == NULL || am->am_await == NULL) {
            Py_INCREF(Py_None);
            return Py_None;
        }
        return am->am_await(o);
    }

    static inline PyObject *qb_steal(PyObject *o) { return o; }

    /* _Awaiting's tp_dealloc: Cython's, after _awaiting_release when the
       object still holds a ticket or arguments (rare: collected before it
       finished). Cython's own __dealloc__ would save and restore the
       exception state on every deallocation. */
    typedef void (*qb_release_fn)(PyObject *self);
    static qb_release_fn qb_awaiting_release;
    static destructor qb_awaiting_base_dealloc;
    static Py_ssize_t qb_awaiting_ticket_at, qb_awaiting_held_at;

    static void qb_awaiting_dealloc(PyObject *o) {
        if (*(uint64_t *)((char *)o + qb_awaiting_ticket_at) != 0
                || *(Py_ssize_t *)((char *)o + qb_awaiting_held_at) != 0) {
            PyObject *type, *value, *tb;
            PyErr_Fetch(&type, &value, &tb);
            Py_SET_REFCNT(o, 1);  /* alive while Python code may run */
            qb_awaiting_release(o);
            Py_SET_REFCNT(o, 0);
            PyErr_Restore(type, value, tb);
        }
        qb_awaiting_base_dealloc(o);
    }

    static void qb_install_awaiting_dealloc(PyTypeObject *awaiting,
                                            qb_release_fn release,
                                            Py_ssize_t ticket_at,
                                            Py_ssize_t held_at) {
        qb_awaiting_release = release;
        qb_awaiting_ticket_at = ticket_at;
        qb_awaiting_held_at = held_at;
        qb_awaiting_base_dealloc = awaiting->tp_dealloc;
        awaiting->tp_dealloc = qb_awaiting_dealloc;
        PyType_Modified(awaiting);
    }

    /* The exception being raised, taken out of the thread state (never NULL:
       called only with one set). */
    static PyObject *qb_take_exception(void) {
    #if PY_VERSION_HEX >= 0x030C0000
        return PyErr_GetRaisedException();
    #else
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        if (tb != NULL)
            PyException_SetTraceback(value, tb);
        Py_XDECREF(type);
        Py_XDECREF(tb);
        return value;
    #endif
    }
    """
    ctypedef object (*qb_step_fn)(object self, object arg, int *done)
    void qb_install_await_slots(QbTypeObject *awaiting, QbTypeObject *done,
                                qb_step_fn step)
    # No Cython error checks on these two: a failure goes to _await_failed,
    # out of line, so the hot path enters no try block (each saves and
    # restores the handled exception).
    int qb_send(object it, object arg, PyObject **result) noexcept
    PyObject *qb_vectorcall "PyObject_Vectorcall"(
        object fn, PyObject **args, size_t nargsf, PyObject *kwnames) noexcept
    object qb_take_exception()
    ctypedef void (*qb_release_fn)(object self) noexcept
    void qb_install_awaiting_dealloc(QbTypeObject *awaiting, qb_release_fn release,
                                     Py_ssize_t ticket_at, Py_ssize_t held_at)
    object qb_await_slot(object o)
    object qb_steal(PyObject *o)
    bint PyCoro_CheckExact(object o)
    bint PyIter_Check(object o)


cdef enum:
    AWAIT_NEW = 0       # created, not yet sent to: nothing taken
    AWAIT_RUNNING = 1   # delegating to fn's awaitable under a ticket
    AWAIT_FALLBACK = 2  # delegating to the fallback's awaitable, no ticket
    AWAIT_DONE = 3
    ARGV_INLINE = 4     # arguments kept in the object itself; more: the heap

# CO_ITERABLE_COROUTINE: a generator that types.coroutine made awaitable.
cdef int CO_ITERABLE_COROUTINE = 0x100


@cython.freelist(16)
cdef class _Awaiting:
    """The awaitable of one protected async call (see the section comment)."""

    cdef CircuitBreaker breaker
    cdef object fn
    cdef object inner       # what it delegates to once started
    cdef object kwnames     # a tuple of names, or None
    cdef object started     # None unless a slow-call policy times the call
    cdef uint64_t ticket
    cdef Py_ssize_t nargs   # positionals in argv; one value per name follows
    cdef Py_ssize_t nheld   # references held in argv
    cdef PyObject **argv
    cdef PyObject *inline_argv[ARGV_INLINE]
    cdef int stage
    cdef bint from_call_async  # fn may return a non-awaitable: neutral, TypeError

    def __await__(self):
        return self

    def __next__(self):
        cdef int done = 0
        value = _await_step(self, None, &done)
        if done:
            raise StopIteration(value)
        return value

    def send(self, value):
        cdef int done = 0
        result = _await_step(self, value, &done)
        if done:
            raise StopIteration(result)
        return result

    def throw(self, typ, val=None, tb=None):
        if self.stage == AWAIT_NEW or self.stage == AWAIT_DONE:
            # As a coroutine: thrown before it ran, it ends without running.
            self.stage = AWAIT_DONE
            _drop_arguments(self)
            raise _thrown(typ, val, tb)
        throw = getattr(self.inner, "throw", None)
        try:
            if throw is None:
                raise _thrown(typ, val, tb)
            if val is None and tb is None:
                return throw(typ)
            return throw(typ, val, tb)
        except StopIteration as stop:
            _await_returned(self, stop.value)
            raise StopIteration(stop.value)
        except BaseException as exc:
            _await_raised(self, exc)
            raise

    def close(self):
        if self.stage != AWAIT_RUNNING and self.stage != AWAIT_FALLBACK:
            self.stage = AWAIT_DONE
            _drop_arguments(self)
            return
        close = getattr(self.inner, "close", None)
        try:
            if close is not None:
                close()
        except BaseException as exc:
            _await_raised(self, exc)
            raise
        # Closed mid-await: the GeneratorExit a coroutine would see, neutral.
        _await_ended(self)

    def __repr__(self):
        return f"<protected call of {self.fn!r} by {self.breaker!r}>"


cdef void _awaiting_release(_Awaiting a) noexcept:
    # Deallocated holding a ticket (collected mid-await: a task dropped
    # unfinished): neutral, like the GeneratorExit that closes an abandoned
    # coroutine. Or holding arguments: never started.
    cdef uint64_t ticket = a.ticket
    a.ticket = 0
    if ticket:
        _py_settle_full(a.breaker, ticket, OUTCOME_NEUTRAL)
    _drop_arguments(a)


cdef inline int _drop_arguments(_Awaiting a) except -1:
    cdef Py_ssize_t i
    cdef Py_ssize_t n = a.nheld
    cdef PyObject **argv = a.argv
    a.nheld = 0
    a.argv = NULL
    for i in range(n):
        Py_XDECREF(argv[i])
    if argv != NULL and argv != &a.inline_argv[0]:
        PyMem_Free(argv)
    return 0


cdef _Awaiting _new_awaiting(CircuitBreaker b, object fn, PyObject **args,
                             Py_ssize_t nargs, PyObject *kwnames,
                             bint from_call_async):
    cdef _Awaiting a = _Awaiting.__new__(_Awaiting)
    cdef Py_ssize_t i
    cdef Py_ssize_t n = nargs
    if kwnames != NULL:
        n += PyTuple_GET_SIZE(kwnames)
        a.kwnames = <object>kwnames
    a.breaker = b
    a.fn = fn
    a.nargs = nargs
    a.from_call_async = from_call_async
    if n <= ARGV_INLINE:
        a.argv = &a.inline_argv[0]
    else:
        a.argv = <PyObject **>PyMem_Malloc(n * sizeof(PyObject *))
        if a.argv == NULL:
            raise MemoryError()
    for i in range(n):
        Py_INCREF(<object>args[i])
        a.argv[i] = args[i]
    a.nheld = n
    return a


cdef object _await_step(_Awaiting a, object arg, int *done):
    # One send: the value yielded (done stays 0) or returned (done set to 1).
    cdef PyObject *result = NULL
    cdef int returned
    if a.stage == AWAIT_NEW:
        if arg is not None:
            raise TypeError("can't send non-None value to a just-started coroutine")
        value = _await_start(a)
        if a.stage == AWAIT_DONE:
            done[0] = 1
            return value
    elif a.stage == AWAIT_DONE:
        raise RuntimeError("cannot reuse already awaited coroutine")
    returned = qb_send(a.inner, arg, &result)
    if returned < 0:
        _await_failed(a)
    value = qb_steal(result)
    if returned:
        done[0] = 1
        _await_returned(a, value)
    return value


cdef object _await_start(_Awaiting a):
    # The first send: admit, then call fn (or the rejection's fallback) and
    # keep what to delegate to. Returns the result when it is done already.
    cdef CircuitBreaker b = a.breaker
    cdef uint64_t ticket
    cdef PyObject *result
    cdef PyObject *kwnames = NULL if a.kwnames is None else <PyObject *>a.kwnames
    if a.from_call_async and not callable(a.fn):
        a.stage = AWAIT_DONE
        _drop_arguments(a)
        raise TypeError(f"fn must be callable, got {a.fn!r}")
    ticket = _py_admit(b, True)
    if not ticket:
        a.stage = AWAIT_DONE
        fallback = b._rejected(_positional(a.argv, a.nargs),
                               _keywords(a.argv, a.nargs, kwnames))
        _drop_arguments(a)
        if _is_awaitable(fallback):
            a.inner = _awaited_iterator(fallback)
            a.stage = AWAIT_FALLBACK
        return fallback
    a.ticket = ticket
    a.stage = AWAIT_RUNNING
    a.started = _resolve(_now_of(b)) if _timed(b) else None
    result = qb_vectorcall(a.fn, a.argv, a.nargs, kwnames)
    if result == NULL:
        _await_failed(a)  # drops the arguments too
    _drop_arguments(a)
    awaitable = qb_steal(result)
    if PyCoro_CheckExact(awaitable):
        a.inner = awaitable
    else:
        _await_other(a, awaitable)
    return None


cdef int _await_other(_Awaiting a, object awaitable) except -1:
    # fn returned something other than a coroutine: an awaitable to delegate
    # to, or for call_async a neutral TypeError; for the decorator, what
    # awaiting it raises counts as the call's outcome.
    cdef uint64_t ticket = a.ticket
    if a.from_call_async and not _is_awaitable(awaitable):
        a.stage = AWAIT_DONE
        a.ticket = 0
        _py_settle_full(a.breaker, ticket, OUTCOME_NEUTRAL)
        raise _forms.not_awaitable(a.fn, awaitable)
    try:
        a.inner = _awaited_iterator(awaitable)
    except BaseException as exc:
        _await_raised(a, exc)
        raise
    return 0


cdef int _await_failed(_Awaiting a) except -1:
    # Called with an exception set (fn, or the awaitable it delegates to,
    # raised): settle by it, then raise it on.
    exc = qb_take_exception()
    _await_raised(a, exc)
    raise exc


cdef bint _is_awaitable(object o) except -1:
    # inspect.isawaitable, by type slots first.
    if PyCoro_CheckExact(o) or qb_is_awaitable(o):
        return True
    return PyGen_CheckExact(o) and o.gi_code.co_flags & CO_ITERABLE_COROUTINE


cdef object _awaited_iterator(object o):
    # What ``await o`` delegates to, with the interpreter's checks.
    if PyCoro_CheckExact(o):
        return o
    if PyGen_CheckExact(o) and o.gi_code.co_flags & CO_ITERABLE_COROUTINE:
        return o
    it = qb_await_slot(o)
    if it is None:
        raise TypeError(f"object {type(o).__name__} can't be used in 'await' expression")
    if PyCoro_CheckExact(it) or not PyIter_Check(it):
        raise TypeError(f"__await__() returned non-iterator of type '{type(it).__name__}'")
    return it


cdef inline int _await_returned(_Awaiting a, object value) except -1:
    # fn's awaitable returned value: settle by the result rules.
    cdef CircuitBreaker b = a.breaker
    cdef uint64_t ticket = a.ticket
    cdef bint running = a.stage == AWAIT_RUNNING
    a.stage = AWAIT_DONE
    a.ticket = 0
    a.inner = None
    if not running:
        return 0
    if a.started is None and b.cpolicy.host_flags & FLAG_PLAIN_SUCCESS:
        _py_settle(b, ticket, OUTCOME_SUCCESS)
    else:
        b._exit_result(ticket, value, a.started)
    return 0


cdef int _await_raised(_Awaiting a, object exc) except -1:
    # fn (or its awaitable) raised exc: settle by the exception rules.
    cdef uint64_t ticket = a.ticket
    cdef bint running = a.stage == AWAIT_RUNNING
    a.stage = AWAIT_DONE
    a.ticket = 0
    a.inner = None
    _drop_arguments(a)
    if running and ticket:
        a.breaker._exit_exc(ticket, exc, a.started)
    return 0


cdef int _await_ended(_Awaiting a) except -1:
    # Closed mid-await: neutral (a BaseException that is not an Exception).
    cdef uint64_t ticket = a.ticket
    cdef bint running = a.stage == AWAIT_RUNNING
    a.stage = AWAIT_DONE
    a.ticket = 0
    a.inner = None
    if running and ticket:
        _py_settle_full(a.breaker, ticket, OUTCOME_NEUTRAL)
    return 0


cdef BaseException _thrown(object typ, object val, object tb):
    # The exception that throw(typ, val, tb) raises, as generators build it.
    if isinstance(typ, BaseException):
        exc = typ
    elif val is None:
        exc = typ()
    elif isinstance(val, BaseException):
        exc = val
    else:
        exc = typ(val)
    if tb is not None:
        exc = exc.with_traceback(tb)
    return exc


cdef class _Done:
    """An awaitable already done, returning None: what ``async with`` awaits."""

    def __await__(self):
        return self

    def __next__(self):
        raise StopIteration

    def send(self, value):
        raise StopIteration

    def throw(self, typ, val=None, tb=None):
        raise _thrown(typ, val, tb)

    def close(self):
        return None


cdef _Done _DONE = _Done.__new__(_Done)


# -- the decorator and call_async --------------------------------------------------

cdef object _guarded_async_vectorcall(object callable, PyObject **args,
                                      size_t nargsf, PyObject *kwnames):
    cdef _Guarded guarded = <_Guarded>callable
    if guarded.breaker is None:
        raise TypeError("a protected function is made by decorating it with a breaker")
    return _new_awaiting(guarded.breaker, guarded.fn, args,
                         PyVectorcall_NARGS(nargsf), kwnames, False)


cdef class _GuardedAsync(_Guarded):
    """A coroutine function protected by a breaker: each call returns an
    awaitable that runs it under the breaker."""

    def __cinit__(self):
        self.vectorcall = <void *>_guarded_async_vectorcall


cdef object _call_async_method(object self, PyObject **args, Py_ssize_t nargs,
                               PyObject *kwnames):
    # CircuitBreaker.call_async, METH_FASTCALL | METH_KEYWORDS.
    if nargs < 1:
        raise TypeError("call_async() takes the function to call as its first "
                        "positional argument")
    return _new_awaiting(<CircuitBreaker>self, <object>args[0], args + 1,
                         nargs - 1, kwnames, True)


cdef QbMethodDef _CALL_ASYNC_METHOD
_CALL_ASYNC_METHOD.ml_name = "call_async"
_CALL_ASYNC_METHOD.ml_meth = <void *>_call_async_method
_CALL_ASYNC_METHOD.ml_flags = METH_FASTCALL | METH_KEYWORDS
_CALL_ASYNC_METHOD.ml_doc = (b"call_async($self, fn, /, *args, **kwargs)\n--\n\n"
                             b"Await ``fn(*args, **kwargs)`` under the breaker.")


cdef int _install_async_forms() except -1:
    # After _install_vectorcall: call_async as a METH_FASTCALL method,
    # _GuardedAsync called by vectorcall like _Guarded, and the slots.
    cdef QbTypeObject *breaker_type = <QbTypeObject *>CircuitBreaker
    cdef QbTypeObject *guarded_type = <QbTypeObject *>_GuardedAsync
    cdef _GuardedAsync probe = _GuardedAsync.__new__(_GuardedAsync)
    PyDict_SetItemString(breaker_type.tp_dict, "call_async",
                         PyDescr_NewMethod(breaker_type, &_CALL_ASYNC_METHOD))
    PyType_Modified(breaker_type)
    guarded_type.tp_vectorcall_offset = <char *>&probe.vectorcall - <char *><PyObject *>probe
    guarded_type.tp_flags |= Py_TPFLAGS_HAVE_VECTORCALL
    PyType_Modified(guarded_type)
    qb_install_await_slots(<QbTypeObject *>_Awaiting, <QbTypeObject *>_Done,
                           <qb_step_fn>_await_step)
    qb_awith_install(breaker_type, <qb_awith_enter_fn>_awith_enter,
                     <qb_awith_exit_fn>_awith_exit, _awith_orphan)
    cdef _Awaiting sample = _Awaiting.__new__(_Awaiting)
    qb_install_awaiting_dealloc(
        <QbTypeObject *>_Awaiting, <qb_release_fn>_awaiting_release,
        <char *>&sample.ticket - <char *><PyObject *>sample,
        <char *>&sample.nheld - <char *><PyObject *>sample)
    return 0


# -- async with: __aenter__ and __aexit__ ------------------------------------------
#
# ``async with b:`` looks up b.__aenter__ and b.__aexit__ (in that order, back
# to back, with no Python code in between), then calls the first. A Cython
# method would be bound into a new method object at each lookup, two per
# block, which cost more than the breaker's own work. Here __aenter__ and
# __aexit__ are descriptors whose lookups give small objects from a freelist,
# and the pair made by one statement is linked: the __aenter__ lookup makes
# the __aexit__ object too and leaves it in a thread-local slot, which the
# __aexit__ lookup that follows claims. Entering hands the block's ticket to
# that claimed object, and exiting settles it: no with-ticket store work per
# block. A block entered any other way (``await b.__aenter__()`` by hand, the
# class's methods called with the breaker, an __aexit__ looked up on its
# own) keeps its ticket in the with-ticket store as ``with`` does, so every
# documented way of exiting still finds it.
#
# The objects are not tracked by the collector (they hold only the breaker
# and each other, so a cycle needs a breaker that keeps its own bound
# __aenter__ or __aexit__ in its settings).

cdef extern from *:
    """
    /* Free-threaded builds keep the pending __aexit__ per thread. With the
       GIL one slot serves, tagged with the thread that filled it: a
       thread-local costs a __tls_get_addr call per access in a shared
       library. */
    #ifdef Py_GIL_DISABLED
    #  if defined(_MSC_VER)
    #    define QB_THREAD_LOCAL __declspec(thread)
    #  else
    #    define QB_THREAD_LOCAL __thread
    #  endif
    #else
    #  define QB_THREAD_LOCAL
    #endif

    typedef struct qb_awith {
        PyObject_HEAD
        vectorcallfunc vectorcall;
        PyObject *breaker;          /* strong */
        struct qb_awith *exit;      /* an __aenter__'s __aexit__ (strong), else NULL */
        uint64_t ticket;            /* an __aexit__'s block, while held */
        uint64_t start;
        void *frame;                /* the frame that entered it */
        int is_exit;
        int claimed;                /* an __aexit__ given out by a lookup */
        int held;                   /* an __aexit__ holding its block's ticket */
    } qb_awith;

    typedef struct {
        PyObject_HEAD
        vectorcallfunc vectorcall;
        int is_exit;
    } qb_awith_descr;

    /* The Cython side, set at module init. */
    typedef PyObject *(*qb_awith_enter_fn)(PyObject *breaker, qb_awith *exit);
    typedef PyObject *(*qb_awith_exit_fn)(PyObject *breaker, qb_awith *exit,
                                          PyObject *exc_type, PyObject *exc);
    typedef void (*qb_awith_orphan_fn)(qb_awith *exit);
    static qb_awith_enter_fn qb_awith_enter;
    static qb_awith_exit_fn qb_awith_exit;
    static qb_awith_orphan_fn qb_awith_orphan;
    static PyTypeObject *qb_awith_breaker_type;

    /* The __aexit__ made by this thread's last __aenter__ lookup, until the
       __aexit__ lookup that follows claims it (or the __aenter__ object is
       called or dropped): a strong reference. */
    static QB_THREAD_LOCAL qb_awith *qb_awith_pending;
    #ifndef Py_GIL_DISABLED
    static PyThreadState *qb_awith_pending_thread;
    #  define QB_AWITH_PENDING_MINE() (qb_awith_pending_thread == PyThreadState_GET())
    #  define QB_AWITH_PENDING_SET_MINE() (qb_awith_pending_thread = PyThreadState_GET())
    #else
    #  define QB_AWITH_PENDING_MINE() 1
    #  define QB_AWITH_PENDING_SET_MINE() ((void)0)
    #endif

    static PyTypeObject qb_awith_type;
    static PyTypeObject qb_awith_descr_type;

    #ifndef Py_GIL_DISABLED
    /* With the GIL, a freelist: its objects are made and dropped per block. */
    #define QB_AWITH_FREE 32
    static qb_awith *qb_awith_free[QB_AWITH_FREE];
    static int qb_awith_nfree;
    #endif

    static PyObject *qb_awith_call(PyObject *self, PyObject *const *args,
                                   size_t nargsf, PyObject *kwnames);

    static qb_awith *qb_awith_new(PyObject *breaker, int is_exit) {
        qb_awith *a;
    #ifndef Py_GIL_DISABLED
        if (qb_awith_nfree > 0) {
            a = qb_awith_free[--qb_awith_nfree];
    #ifdef Py_REF_DEBUG
            PyObject_Init((PyObject *)a, &qb_awith_type);
    #else
            Py_SET_REFCNT(a, 1);  /* its type is set already, and static */
    #endif
        } else
    #endif
        {
            a = (qb_awith *)PyObject_Malloc(sizeof(qb_awith));
            if (a == NULL)
                return (qb_awith *)PyErr_NoMemory();
            PyObject_Init((PyObject *)a, &qb_awith_type);
        }
        a->vectorcall = qb_awith_call;
        Py_INCREF(breaker);
        a->breaker = breaker;
        a->exit = NULL;
        a->ticket = a->start = 0;
        a->frame = NULL;
        a->is_exit = is_exit;
        a->claimed = a->held = 0;
        return a;
    }

    static void qb_awith_drop_pending(qb_awith *exit) {
        if (exit != NULL && qb_awith_pending == exit && QB_AWITH_PENDING_MINE()) {
            qb_awith_pending = NULL;
            Py_DECREF(exit);
        }
    }

    static void qb_awith_dealloc(PyObject *self) {
        qb_awith *a = (qb_awith *)self;
        if (a->held) {
            /* Entered and never exited: its block stays open, as a with
               block's does, for an __aexit__ from its frame to find (no
               Python code runs here). */
            qb_awith_orphan(a);
            a->held = 0;
        }
        qb_awith_drop_pending(a->exit);
        Py_CLEAR(a->exit);
        Py_CLEAR(a->breaker);
    #ifndef Py_GIL_DISABLED
        if (qb_awith_nfree < QB_AWITH_FREE) {
            qb_awith_free[qb_awith_nfree++] = a;
            return;
        }
    #endif
        PyObject_Free(a);
    }

    static PyObject *qb_awith_call(PyObject *self, PyObject *const *args,
                                   size_t nargsf, PyObject *kwnames) {
        qb_awith *a = (qb_awith *)self;
        Py_ssize_t n = PyVectorcall_NARGS(nargsf);
        qb_awith *exit;
        if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0) {
            PyErr_Format(PyExc_TypeError, "%s() takes no keyword arguments",
                         a->is_exit ? "__aexit__" : "__aenter__");
            return NULL;
        }
        if (a->is_exit) {
            if (n != 3) {
                PyErr_Format(PyExc_TypeError,
                             "__aexit__() takes 3 arguments (exc_type, exc, tb), "
                             "%zd given", n);
                return NULL;
            }
            return qb_awith_exit(a->breaker, a, args[0], args[1]);
        }
        if (n != 0) {
            PyErr_Format(PyExc_TypeError,
                         "__aenter__() takes no arguments (%zd given)", n);
            return NULL;
        }
        exit = a->exit;
        /* Claimed by the statement's __aexit__ lookup: it takes the ticket.
           Else the lookup window has closed: drop the pending reference. */
        if (exit != NULL && !exit->claimed) {
            qb_awith_drop_pending(exit);
            exit = NULL;
        }
        return qb_awith_enter(a->breaker, exit);
    }

    static PyObject *qb_awith_repr(PyObject *self) {
        qb_awith *a = (qb_awith *)self;
        return PyUnicode_FromFormat("<%s of %R>",
                                    a->is_exit ? "__aexit__" : "__aenter__",
                                    a->breaker);
    }

    static PyObject *qb_awith_descr_get(PyObject *self, PyObject *obj,
                                        PyObject *type) {
        qb_awith_descr *d = (qb_awith_descr *)self;
        qb_awith *enter, *exit;
        (void)type;
        if (obj == NULL || obj == Py_None) {
            Py_INCREF(self);
            return self;
        }
        if (!PyObject_TypeCheck(obj, qb_awith_breaker_type)) {
            PyErr_Format(PyExc_TypeError,
                         "%s needs a CircuitBreaker, got %.200s",
                         d->is_exit ? "__aexit__" : "__aenter__",
                         Py_TYPE(obj)->tp_name);
            return NULL;
        }
        if (d->is_exit) {
            exit = qb_awith_pending;
            if (exit != NULL && exit->breaker == obj && QB_AWITH_PENDING_MINE()) {
                qb_awith_pending = NULL;  /* its reference is the caller's now */
                exit->claimed = 1;
                return (PyObject *)exit;
            }
            exit = qb_awith_new(obj, 1);
            if (exit != NULL)
                exit->claimed = 1;   /* on its own: it holds no ticket */
            return (PyObject *)exit;
        }
        exit = qb_awith_new(obj, 1);
        if (exit == NULL)
            return NULL;
        enter = qb_awith_new(obj, 0);
        if (enter == NULL) {
            Py_DECREF(exit);
            return NULL;
        }
        enter->exit = exit;  /* the reference made with it */
        Py_INCREF(exit);
        Py_XSETREF(qb_awith_pending, exit);
        QB_AWITH_PENDING_SET_MINE();
        return (PyObject *)enter;
    }

    /* CircuitBreaker.__aenter__(b) and CircuitBreaker.__aexit__(b, t, e, tb):
       the block keeps its ticket in the with-ticket store. */
    static PyObject *qb_awith_descr_call(PyObject *self, PyObject *const *args,
                                         size_t nargsf, PyObject *kwnames) {
        qb_awith_descr *d = (qb_awith_descr *)self;
        Py_ssize_t n = PyVectorcall_NARGS(nargsf);
        const char *name = d->is_exit ? "__aexit__" : "__aenter__";
        if ((kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0)
                || n != (d->is_exit ? 4 : 1)) {
            PyErr_Format(PyExc_TypeError, "%s() takes %s positional arguments",
                         name, d->is_exit ? "the breaker and 3" : "the breaker as its only");
            return NULL;
        }
        if (!PyObject_TypeCheck(args[0], qb_awith_breaker_type)) {
            PyErr_Format(PyExc_TypeError, "%s needs a CircuitBreaker, got %.200s",
                         name, Py_TYPE(args[0])->tp_name);
            return NULL;
        }
        if (d->is_exit)
            return qb_awith_exit(args[0], NULL, args[1], args[2]);
        return qb_awith_enter(args[0], NULL);
    }

    static PyObject *qb_awith_descr_repr(PyObject *self) {
        return PyUnicode_FromFormat(
            "<method '%s' of 'qbreaker._core_c.CircuitBreaker' objects>",
            ((qb_awith_descr *)self)->is_exit ? "__aexit__" : "__aenter__");
    }

    static PyObject *qb_awith_descr_new_obj(int is_exit) {
        qb_awith_descr *d = PyObject_New(qb_awith_descr, &qb_awith_descr_type);
        if (d == NULL)
            return NULL;
        d->vectorcall = qb_awith_descr_call;
        d->is_exit = is_exit;
        return (PyObject *)d;
    }

    /* Installs the two descriptors in the breaker's class; 0, or -1 with an
       exception set. */
    static int qb_awith_install(PyTypeObject *breaker_type, qb_awith_enter_fn enter,
                                qb_awith_exit_fn exit, qb_awith_orphan_fn orphan) {
        PyObject *d;
        int failed;
        qb_awith_enter = enter;
        qb_awith_exit = exit;
        qb_awith_orphan = orphan;
        qb_awith_breaker_type = breaker_type;

        qb_awith_type.tp_name = "qbreaker._core_c._AsyncWithMethod";
        qb_awith_type.tp_basicsize = sizeof(qb_awith);
        qb_awith_type.tp_dealloc = qb_awith_dealloc;
        qb_awith_type.tp_vectorcall_offset = offsetof(qb_awith, vectorcall);
        qb_awith_type.tp_call = PyVectorcall_Call;
        qb_awith_type.tp_repr = qb_awith_repr;
        qb_awith_type.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL;
        qb_awith_type.tp_doc = "CircuitBreaker.__aenter__ or __aexit__, bound to a breaker.";
        if (PyType_Ready(&qb_awith_type) < 0)
            return -1;

        qb_awith_descr_type.tp_name = "qbreaker._core_c._AsyncWithDescriptor";
        qb_awith_descr_type.tp_basicsize = sizeof(qb_awith_descr);
        qb_awith_descr_type.tp_dealloc = (destructor)PyObject_Free;
        qb_awith_descr_type.tp_vectorcall_offset = offsetof(qb_awith_descr, vectorcall);
        qb_awith_descr_type.tp_call = PyVectorcall_Call;
        qb_awith_descr_type.tp_repr = qb_awith_descr_repr;
        qb_awith_descr_type.tp_descr_get = qb_awith_descr_get;
        qb_awith_descr_type.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL;
        qb_awith_descr_type.tp_doc = "CircuitBreaker.__aenter__ or __aexit__.";
        if (PyType_Ready(&qb_awith_descr_type) < 0)
            return -1;

        d = qb_awith_descr_new_obj(0);
        if (d == NULL)
            return -1;
        failed = PyDict_SetItemString(breaker_type->tp_dict, "__aenter__", d);
        Py_DECREF(d);
        if (failed)
            return -1;
        d = qb_awith_descr_new_obj(1);
        if (d == NULL)
            return -1;
        failed = PyDict_SetItemString(breaker_type->tp_dict, "__aexit__", d);
        Py_DECREF(d);
        if (failed)
            return -1;
        PyType_Modified(breaker_type);
        return 0;
    }
    """
    ctypedef struct qb_awith:
        PyObject *breaker
        uint64_t ticket
        uint64_t start
        void *frame
        int held
    ctypedef object (*qb_awith_enter_fn)(object breaker, qb_awith *exit)
    ctypedef object (*qb_awith_exit_fn)(object breaker, qb_awith *exit,
                                        object exc_type, object exc)
    ctypedef void (*qb_awith_orphan_fn)(qb_awith *exit) noexcept
    int qb_awith_install(QbTypeObject *breaker_type, qb_awith_enter_fn enter,
                         qb_awith_exit_fn exit, qb_awith_orphan_fn orphan) except -1


cdef object _awith_enter(CircuitBreaker b, qb_awith *exit):
    # __aenter__: admit, in the frame of the async with. The ticket goes to
    # the statement's own __aexit__ object when there is one (exit), else to
    # the with-ticket store.
    cdef uint64_t start = 0
    cdef uint64_t ticket
    if exit == NULL or exit.held:
        _enter_block(b)
        return _DONE
    ticket = _py_admit(b, True)
    if not ticket:
        error = _block_rejection(b)  # raised here: see _block_rejection
        if error is not None:
            raise error
    exit.ticket = _timed_ticket(b, ticket, &start)
    exit.start = start
    exit.frame = qb_frame_of(PyThreadState_Get())
    exit.held = 1
    return _DONE


cdef object _awith_exit(CircuitBreaker b, qb_awith *exit, object exc_type,
                        object exc):
    # __aexit__: settle the block's ticket, held here or in the store.
    cdef uint64_t ticket
    if exit == NULL or not exit.held:
        _exit_block(b, exc_type, exc)
        return _DONE
    ticket = exit.ticket
    exit.held = 0
    exit.ticket = 0
    _settle_block(b, ticket, exit.start, exc_type, exc)
    return _DONE


cdef void _awith_orphan(qb_awith *exit) noexcept:
    # An __aexit__ object dropped holding its block's ticket: the block stays
    # open among the orphans', found by an exit from the frame that entered.
    _orphans.push(exit.breaker, exit.frame, exit.ticket, exit.start)
