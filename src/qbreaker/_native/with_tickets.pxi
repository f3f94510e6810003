# Included by _core_c.pyx after fastpath.pxi.
# -- tickets of ``with`` blocks --------------------------------------------------
#
# A ``with`` block reports against the ticket that it took. An open block is
# recorded under its breaker and the frame running the ``with`` statement,
# which is the same frame at __enter__ and __exit__ wherever that frame runs
# in between (a generator resumed in another thread, tasks sharing one
# context), so blocks that interleave never take each other's tickets.
#
# Each contextvars.Context gets one _WithTickets store, found through a
# ContextVar: a context is run by one thread at a time, so its store needs no
# lock on the hot path. A context copied from another (asyncio copies one per
# task) inherits the ContextVar's value, so a store records the context that
# made it and a context that finds a store it does not own makes its own.
# __exit__ looks in its own context's store first; a block entered in another
# context (its frame resumed elsewhere, or closed by the garbage collector) is
# found by searching every store (a store whose context dies hands its blocks
# to _orphans, searched last). __exit__ called from another frame than
# __enter__ (contextlib.ExitStack, a call by hand) takes its breaker's
# innermost block of this context instead, and failing that reports against
# the current generation, like record_*(). Stores die with their contexts;
# one that only grows (blocks entered by hand, never exited) drops its oldest
# half at MAX_OPEN_BLOCKS. (The twin keeps the same records in a chain per
# context, see the twin: setting a ContextVar twice per block would cost more
# than the block's whole budget here.)


cdef extern from "Python.h":
    # Only the field we read: the thread's current contextvars.Context.
    ctypedef struct PyThreadState:
        PyObject *context
    PyThreadState *PyThreadState_Get()


# Marks a with-block's stored ticket as timed (tickets use bits 0-62).
cdef uint64_t TIMED_BIT = <uint64_t>1 << 63


cdef extern from *:
    """
    /* Free-threaded builds only: a store is used by the thread running its
       context and searched, rarely, by a thread exiting a block entered in
       another context; the list of stores changes when a store is made or
       freed. Lock order: the list, then a store. With a GIL, nothing here
       releases it and no Python code runs in between: the GIL orders it. */
    #if defined(Py_GIL_DISABLED)
    typedef PyMutex qb_blocks_mutex;
    static PyMutex qb_stores_mutex;
    static inline void qb_blocks_lock(qb_blocks_mutex *m) { PyMutex_Lock(m); }
    static inline void qb_blocks_unlock(qb_blocks_mutex *m) { PyMutex_Unlock(m); }
    static inline void qb_blocks_after_fork(qb_blocks_mutex *m) {
        memset(m, 0, sizeof *m);
    }
    #else
    typedef char qb_blocks_mutex;
    static char qb_stores_mutex;
    static inline void qb_blocks_lock(qb_blocks_mutex *m) { (void)m; }
    static inline void qb_blocks_unlock(qb_blocks_mutex *m) { (void)m; }
    static inline void qb_blocks_after_fork(qb_blocks_mutex *m) { (void)m; }
    #endif
    """
    ctypedef struct qb_blocks_mutex:
        pass
    qb_blocks_mutex qb_stores_mutex
    void qb_blocks_lock(qb_blocks_mutex *m) noexcept nogil
    void qb_blocks_unlock(qb_blocks_mutex *m) noexcept nogil
    void qb_blocks_after_fork(qb_blocks_mutex *m) noexcept nogil


cdef extern from *:
    """
    /* The identity of the running Python frame, NULL if none. Only compared,
       never followed. Unlike PyEval_GetFrame() it makes no frame object:
       3.11+ make one only when asked, which would cost a fresh frame (every
       call of a function that holds a with block) an allocation. A generator
       or coroutine keeps its frame in itself, at one address for its life. */
    static inline void *qb_frame_of(PyThreadState *ts) {
    #if PY_VERSION_HEX >= 0x030D0000
        return (void *)ts->current_frame;
    #elif PY_VERSION_HEX >= 0x030B0000
        return (void *)ts->cframe->current_frame;
    #else
        return (void *)ts->frame;
    #endif
    }
    """
    void *qb_frame_of(PyThreadState *ts) noexcept nogil


cdef struct _OpenBlock:
    PyObject *breaker   # identity only, never followed
    void *frame         # identity only: the frame running the with statement
    uint64_t ticket     # bit 63 set: the block is timed, from start
    uint64_t start


cdef Py_ssize_t MAX_OPEN_BLOCKS = 1 << 16
cdef object _WITH_TICKETS = contextvars.ContextVar("qbreaker_with_tickets_c")
# Every live store, for the search of a block entered in another context.
cdef void *_stores = NULL


cdef class _WithTickets:
    cdef PyObject *owner
    cdef Py_ssize_t n, cap
    cdef _OpenBlock *blocks
    cdef qb_blocks_mutex lock
    cdef void *prev
    cdef void *next

    def __dealloc__(self):
        global _stores
        cdef Py_ssize_t i
        qb_blocks_lock(&qb_stores_mutex)
        if self.prev != NULL:
            (<_WithTickets>self.prev).next = self.next
        elif _stores == <void *>self:
            _stores = self.next
        if self.next != NULL:
            (<_WithTickets>self.next).prev = self.prev
        # Its context is gone, not necessarily its blocks' frames: a generator
        # handed to another thread or task still exits its block.
        if _orphans is not None and _orphans is not self:
            for i in range(self.n):
                if _orphans.push(self.blocks[i].breaker, self.blocks[i].frame,
                                 self.blocks[i].ticket, self.blocks[i].start) < 0:
                    break
        qb_blocks_unlock(&qb_stores_mutex)
        PyMem_Free(self.blocks)

    cdef int push(self, PyObject *breaker, void *frame, uint64_t ticket,
                  uint64_t start) noexcept:
        """Record an open block; -1 (no exception set) if out of memory."""
        qb_blocks_lock(&self.lock)
        if self.n == self.cap and self._make_room() < 0:
            qb_blocks_unlock(&self.lock)
            return -1
        self.blocks[self.n].breaker = breaker
        self.blocks[self.n].frame = frame
        self.blocks[self.n].ticket = ticket
        self.blocks[self.n].start = start
        self.n += 1
        qb_blocks_unlock(&self.lock)
        return 0

    cdef int _make_room(self) noexcept:
        cdef Py_ssize_t cap
        cdef void *grown
        if self.cap >= MAX_OPEN_BLOCKS:
            # Only blocks entered by hand and never exited pile up this far:
            # the oldest half goes (exiting one later reports like record_*()).
            self.n -= self.cap // 2
            memmove(self.blocks, self.blocks + self.cap // 2,
                    self.n * sizeof(_OpenBlock))
            return 0
        cap = self.cap * 2 if self.cap else 8
        grown = PyMem_Realloc(self.blocks, cap * sizeof(_OpenBlock))
        if grown == NULL:
            return -1
        self.blocks = <_OpenBlock *>grown
        self.cap = cap
        return 0

    cdef uint64_t pop(self, PyObject *breaker, void *frame, bint any_frame,
                      uint64_t *start) noexcept:
        """The innermost ticket of ``breaker`` in ``frame`` (or in any frame),
        removed; 0 if none."""
        cdef Py_ssize_t i
        cdef uint64_t ticket = 0
        qb_blocks_lock(&self.lock)
        i = self.n - 1
        while i >= 0 and not (self.blocks[i].breaker == breaker
                              and (any_frame or self.blocks[i].frame == frame)):
            i -= 1
        if i >= 0:
            ticket = self.blocks[i].ticket
            start[0] = self.blocks[i].start
            self.n -= 1
            if i < self.n:  # not the innermost: rare, a libc call
                memmove(self.blocks + i, self.blocks + i + 1,
                        (self.n - i) * sizeof(_OpenBlock))
        qb_blocks_unlock(&self.lock)
        return ticket


cdef _WithTickets _new_store():
    global _stores
    cdef _WithTickets store = _WithTickets.__new__(_WithTickets)
    qb_blocks_lock(&qb_stores_mutex)
    store.next = _stores
    if _stores != NULL:
        (<_WithTickets>_stores).prev = <void *>store
    _stores = <void *>store
    qb_blocks_unlock(&qb_stores_mutex)
    return store


# The blocks of stores whose contexts died, searched last; no context's own.
cdef _WithTickets _orphans = _new_store()


cdef _WithTickets _with_tickets(PyThreadState *ts):
    cdef object found = get_value_no_default(_WITH_TICKETS, None)
    # NULL until the thread's first ContextVar.set(): then no store is ours.
    cdef PyObject *context = ts.context
    cdef _WithTickets store
    if found is not None and context != NULL and (<_WithTickets>found).owner == context:
        return <_WithTickets>found
    store = _new_store()
    PyContextVar_Set(_WITH_TICKETS, store)
    # The set made the thread's context if it had none: own that one.
    store.owner = ts.context
    return store


cdef uint64_t _ticket_elsewhere(_WithTickets own, PyObject *breaker, void *frame,
                                uint64_t *start) noexcept:
    """The ticket of a block not found in its own context's store (rare)."""
    cdef uint64_t ticket = 0
    cdef void *store
    qb_blocks_lock(&qb_stores_mutex)
    store = _stores
    while store != NULL and not ticket:
        if store != <void *>own:
            ticket = (<_WithTickets>store).pop(breaker, frame, False, start)
        store = (<_WithTickets>store).next
    qb_blocks_unlock(&qb_stores_mutex)
    if not ticket:
        # Exited from another frame than it entered: the breaker's innermost
        # block of this context.
        ticket = own.pop(breaker, NULL, True, start)
    return ticket


def with_blocks():
    """(open blocks, records held) of this context (tests)."""
    cdef Py_ssize_t n = _with_tickets(PyThreadState_Get()).n
    return n, n


cdef void _with_tickets_after_fork() noexcept:
    # Only the forking thread survives a fork: a lock that another thread
    # held at that moment would block every later search.
    cdef void *store = _stores
    qb_blocks_after_fork(&qb_stores_mutex)
    while store != NULL:
        qb_blocks_after_fork(&(<_WithTickets>store).lock)
        store = (<_WithTickets>store).next
