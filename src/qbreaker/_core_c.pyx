# cython: language_level=3, embedsignature=True
# cython: freethreading_compatible = True
# cython: binding=False, always_allow_keywords=False
# cython: boundscheck=False, wraparound=False, cdivision=True
"""The compiled core; the pure-Python twin is its executable specification.

What is mirrored: the word's layout and the state machine on it (admit,
settle, renormalize, reset, force, trip, tickets and their checks), the
window's keys and rates, and the Python-level API, which both cores take
from the same modules. Each operation here does what the twin's does, with
the same results, totals and transitions. What is not: how the work is done.
The window finds its bucket from a hint instead of dividing, skips the
judgements that could find nothing, and counts a private window with plain
adds; the closed path counts in the object's (or its slot's) own counters,
inlined into each method; ``with`` blocks keep their tickets in a C store
per context; ``call`` and decorated functions take vectorcall. Equal
results are checked, not assumed: tests/core/test_parity.py (layout, API,
docstrings) and tests/core/test_differential.py (random operation sequences on
both cores: results, tickets, words and totals).

The code is split by concern into ``_native/*.pxi``, included below.

binding=False and always_allow_keywords=False keep the hot methods plain
METH_NOARGS/METH_O/METH_FASTCALL descriptors, which CPython 3.11 specialises;
the defaults cost about twice as much per call (docs/performance.md).

The GIL is never released inside a Python-facing method: the atomics make the
code correct either way, and releasing it around one CAS measured slower.
"""

from cpython.contextvars cimport PyContextVar_Set, get_value_no_default
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from cpython.set cimport PySet_Add, PySet_Contains, PySet_Discard
from libc.math cimport INFINITY
from libc.stdint cimport int64_t, uint64_t, uintptr_t
from libc.errno cimport ESRCH, errno
from libc.string cimport memmove, memset
from posix.signal cimport kill
from posix.unistd cimport getpid

import contextvars
import functools
import os
from types import MethodType

from qbreaker._impl import methods as _api
from qbreaker._impl import wrappers as _forms
from qbreaker._impl import probes as _probes
from qbreaker._policy import DEFAULT_POLICY, Policy, clock_ticks, duration_ticks
from qbreaker._policy import is_slow as _is_slow
from qbreaker._word import check_generation as _check_generation
from qbreaker._word import check_ticket as _check_ticket
from qbreaker._word import state_name as _state_name
from qbreaker._word import outcome_code as _outcome_code
from qbreaker._impl.events import Dispatcher
from qbreaker._outcomes import (
    DEFAULT_OPTIONS,
    exception_outcome,
    raise_async_fallback,
    result_outcome,
    run_hook,
)
from qbreaker._state import State, Totals


# The core, by concern; each file uses only what the files before it define
# (and what _core_c.pxd declares).
include "_native/word.pxi"
include "_native/transitions.pxi"
include "_native/window.pxi"
include "_native/ops.pxi"
include "_native/shared_cell.pxi"
include "_native/probes.pxi"
include "_native/fastpath.pxi"
include "_native/with_tickets.pxi"
include "_native/rejections.pxi"
include "_native/calls.pxi"
include "_native/awaitables.pxi"
include "_native/group.pxi"


cdef int _set_policy(CircuitBreaker b, object policy) except -1:
    b.cpolicy.max_failures = policy.max_failures
    b.cpolicy.reset_ticks = policy.reset_ticks
    b.cpolicy.half_open_max = policy.half_open_max
    b.cpolicy.success_threshold = policy.success_threshold
    b.cpolicy.half_open_timeout_ticks = policy.half_open_timeout_ticks
    b.cpolicy.window_kind = policy.window_kind
    b.cpolicy.window_buckets = policy.window_buckets
    b.cpolicy.window_span = policy.window_span
    b.cpolicy.minimum_calls = policy.minimum_calls
    return 0


cdef int _set_options(CircuitBreaker b, object options) except -1:
    if options is not DEFAULT_OPTIONS or b._extras_ptr != NULL:
        (<_Extras>_extras_of(b)).options = options
    b.cpolicy.host_flags &= ~(FLAG_PLAIN_SUCCESS | FLAG_ASYNC_FALLBACK
                              | FLAG_REJECT_HOOK)
    if options.is_failure_result is None and options.on_success is None:
        b.cpolicy.host_flags |= FLAG_PLAIN_SUCCESS
    if options.fallback_is_async:
        b.cpolicy.host_flags |= FLAG_ASYNC_FALLBACK
    if options.on_reject is not None or _overrides_rejection(type(b)):
        b.cpolicy.host_flags |= FLAG_REJECT_HOOK
    return 0


cdef inline uint64_t _timed_ticket(CircuitBreaker self, uint64_t ticket,
                                   uint64_t *start) except? 0:
    # A with block's ticket as stored: under a slow-call policy, TIMED_BIT
    # set and its start in *start.
    if _timed(self):
        start[0] = _resolve(_now_of(self))
        return ticket | TIMED_BIT
    return ticket


cdef inline int _enter_block(CircuitBreaker self) except -1:
    # __enter__ (and __aenter__ outside its statement): admit, and record the
    # block's ticket. The rejection is raised here, not deeper (see
    # _block_rejection).
    cdef uint64_t start = 0
    cdef uint64_t ticket = _py_admit(self, True)
    cdef PyThreadState *ts
    cdef _WithTickets own
    if not ticket:
        error = _block_rejection(self)
        if error is not None:
            raise error
    ticket = _timed_ticket(self, ticket, &start)
    ts = PyThreadState_Get()
    own = _with_tickets(ts)
    if own.push(<PyObject *>self, qb_frame_of(ts), ticket, start) < 0:
        # The block never runs: give its ticket back.
        _py_settle(self, ticket & ~TIMED_BIT, OUTCOME_NEUTRAL)
        raise MemoryError()
    return 0


cdef inline int _exit_block(CircuitBreaker self, object exc_type, object exc) except -1:
    # __exit__ (and __aexit__ outside its statement): settle the block's own
    # ticket.
    cdef uint64_t start = 0
    cdef PyThreadState *ts = PyThreadState_Get()
    cdef void *frame = qb_frame_of(ts)
    cdef _WithTickets own = _with_tickets(ts)
    cdef uint64_t ticket = own.pop(<PyObject *>self, frame, False, &start)
    if not ticket:
        ticket = _ticket_elsewhere(own, <PyObject *>self, frame, &start)
    return _settle_block(self, ticket, start, exc_type, exc)


cdef inline int _settle_block(CircuitBreaker self, uint64_t ticket, uint64_t start,
                              object exc_type, object exc) except -1:
    # A block's ticket settled: a plain success inline, the rest out of line.
    if (exc_type is None and not (ticket & TIMED_BIT)
            and self.cpolicy.host_flags & FLAG_PLAIN_SUCCESS):
        return _py_settle(self, ticket, OUTCOME_SUCCESS)
    return _settle_block_full(self, ticket, start, exc_type, exc)


cdef int _settle_block_full(CircuitBreaker self, uint64_t ticket, uint64_t start,
                            object exc_type, object exc) except -1:
    started = None
    if ticket & TIMED_BIT:
        ticket &= ~TIMED_BIT
        started = start
    if exc_type is not None:
        self._exit_exc(ticket, exc, started)
    elif started is None and self.cpolicy.host_flags & FLAG_PLAIN_SUCCESS:
        _py_settle(self, ticket, OUTCOME_SUCCESS)
    else:
        self._exit_ok(ticket, started)
    return 0


cdef class CircuitBreaker:
    """A circuit breaker: closed, open and half-open, lock-free.

    ``CircuitBreaker(max_failures=5, reset_timeout=60.0, half_open_max=3)``;
    see docs/settings.md for every setting.
    """

    def __cinit__(self, *args, **kwargs):
        self._cell = <qb_cell *>_storage_cell(self)
        memset(self._cell, 0, sizeof(qb_cell))
        _use_spare_bytes(self)
        if getattr(type(self), "_generator_result", None) is not None:
            self.cpolicy.host_flags |= FLAG_GENERATOR_HOOK
        if QB_HAVE_GIL:
            self.cpolicy.host_flags |= FLAG_LOCAL_COUNTS
        _set_policy(self, DEFAULT_POLICY)
        _set_options(self, DEFAULT_OPTIONS)

    def __dealloc__(self):
        Py_XDECREF(_name_slot(self)[0])
        Py_XDECREF(<PyObject *>self._extras_ptr)
        if self.cpolicy.host_flags & FLAG_OWNS_CELL:
            PyMem_Free(<char *>self._cell - (self.cpolicy.host_flags >> FLAG_OFFSET_SHIFT & 0xFF))

    def __init__(self, max_failures=5, reset_timeout=60.0, half_open_max=3, *,
                 success_threshold=None, half_open_timeout=None, name=None,
                 exclude=(), is_failure=None, is_failure_result=None,
                 fallback=None, on_state_change=None, on_success=None,
                 on_failure=None, on_reject=None, error_rate_threshold=None,
                 latency_threshold=None, clock=None,
                 failure_rate_threshold=None, slow_call_rate_threshold=None,
                 slow_call_duration=None, window_size=None, window_seconds=None,
                 minimum_calls=None, shared=None, shared_policy="match",
                 fleet=False, fleet_quorum=2, fleet_max_failures=None,
                 fleet_window=10.0):
        _api.init(self, max_failures, reset_timeout, half_open_max,
                  success_threshold, half_open_timeout, name, exclude,
                  is_failure, is_failure_result, fallback, on_state_change,
                  on_success, on_failure, on_reject, error_rate_threshold,
                  latency_threshold, clock, failure_rate_threshold,
                  slow_call_rate_threshold, slow_call_duration, window_size,
                  window_seconds, minimum_calls, shared, shared_policy,
                  fleet, fleet_quorum, fleet_max_failures, fleet_window)

    def _configure(self, policy, clock, options=DEFAULT_OPTIONS, name=None,
                   shared=None):
        """Set the validated policy and clock; once, by the constructor.

        ``shared``: a segment's mapping, whose cell is used in place of the
        breaker's own (see qbreaker._impl.segment_format for the layout).
        """
        if self.cpolicy.host_flags & FLAG_CONFIGURED:
            raise RuntimeError("a breaker's policy is set once, at construction")
        policy = Policy(*policy)
        if shared is not None:
            _use_shared_cell(self, shared, policy)
        elif policy.window_kind:
            _attach_window(self, policy)
            if QB_HAVE_GIL:
                self.cpolicy.host_flags |= FLAG_PLAIN_WINDOW
        if policy.slow_ticks:
            self.cpolicy.host_flags |= FLAG_SLOW_POLICY
        _set_policy(self, policy)
        if clock is not None:
            (<_Extras>_extras_of(self)).clock = clock
            self.cpolicy.host_flags |= FLAG_HAS_CLOCK
        _set_options(self, options)
        _set_name(self, name)
        self.cpolicy.host_flags |= FLAG_CONFIGURED
        cdef uint64_t unset = 0
        if shared is None:
            qb_store(&self._cell.changed_at, _resolve(_now_of(self)))
        else:
            # Only creation and transitions date the state: attaching to a
            # segment that has one keeps it (its creator's handle, or an early
            # transition, set it), so time_in_state is the same for all.
            qb_cas(&self._cell.changed_at, &unset, _resolve(_now_of(self)))

    def allow(self):
        """True if a call may proceed now; report it with ``record_*()``.

        A rejection is the False result alone: ``on_reject`` and the
        fallback run only for the forms that raise (``with``, ``call``,
        the decorator, ``call_async``).
        """
        cdef uint64_t ticket = _py_admit(self, False)
        return ticket != 0

    def record_success(self):
        """Report a success against the current generation."""
        _py_settle(self, 0, OUTCOME_SUCCESS)

    def record_failure(self):
        """Report a failure against the current generation."""
        _py_settle(self, 0, OUTCOME_FAILURE)

    def acquire(self):
        """A ticket (a non-zero int) if a call may proceed, else 0.

        A rejection is the 0 alone, as for ``allow()``: no ``on_reject``.
        """
        cdef uint64_t ticket = _py_admit(self, True)
        return ticket

    def release(self, ticket, ok, duration=None):
        """Report the outcome of the call that ``ticket`` admitted.

        ``ok`` is True for success, False for failure, None for neutral.
        ``duration`` (seconds, or a timedelta) marks the call slow under a
        slow-call policy.
        """
        cdef uint64_t t = _ticket_arg(ticket)
        cdef int outcome = _outcome_arg(ok)
        if duration is not None and _is_slow(self.policy, duration):
            outcome |= OUTCOME_SLOW
        _py_settle(self, t, outcome)

    def renormalize(self):
        """Move an open breaker whose timeout has passed to half-open."""
        cdef qb_translog log
        cdef int held = 0
        _events_of(self)
        log.n = 0
        _renormalize(self._cell, &self.cpolicy, _now_of(self), &log, _ordered(&held))
        if log.n or held:
            _push(self, &log, held)

    def reset(self):
        """Back to closed, as a new generation."""
        cdef qb_translog log
        cdef int held = 0
        _events_of(self)
        log.n = 0
        _reset(self._cell, _now_of(self), &log, _ordered(&held))
        _push(self, &log, held)

    def force_open(self):
        """Reject every call until ``reset()``."""
        cdef qb_translog log
        cdef int held = 0
        _events_of(self)
        log.n = 0
        _force(self._cell, 0, _now_of(self), &log, _ordered(&held))
        if log.n or held:
            _push(self, &log, held)

    def force_closed(self):
        """Admit every call, never trip, until ``reset()``."""
        cdef qb_translog log
        cdef int held = 0
        _events_of(self)
        log.n = 0
        _force(self._cell, 1, _now_of(self), &log, _ordered(&held))
        if log.n or held:
            _push(self, &log, held)

    def _trip(self):
        """Open a closed, unforced breaker now; True if this call opened it."""
        cdef qb_translog log
        cdef int held = 0
        _events_of(self)
        log.n = 0
        cdef bint tripped = _trip_closed(self._cell, _now_of(self), &log,
                                         _ordered(&held))
        if log.n or held:
            _push(self, &log, held)
        return tripped

    def open_for(self, seconds):
        """Open now for ``seconds``, then probe as usual; an open that would
        end sooner is extended instead (no new transition), a forced breaker
        is left alone. The full generation of the open made or extended,
        else 0 (forced, or open for longer already)."""
        cdef uint64_t ticks = duration_ticks("seconds", seconds)
        cdef qb_translog log
        cdef int held = 0
        _events_of(self)
        log.n = 0
        cdef uint64_t gen = _open_for(self._cell, &self.cpolicy, ticks, _now_of(self),
                                      &log, _ordered(&held))
        if log.n or held:
            _push(self, &log, held, "open_for")
        return gen

    # -- the fleet agent's operations (see docs/semantics.md) -----------------

    def _extend_open(self, generation, seconds):
        """If open in full ``generation``: expiring no sooner than ``seconds``
        from now (True); no transition. Else False, unchanged."""
        cdef uint64_t gen = _check_generation(generation)
        cdef uint64_t ticks = duration_ticks("seconds", seconds)
        return _extend_open(self._cell, &self.cpolicy, gen, ticks, _now_of(self))

    def _expire_open(self, generation):
        """If open in full ``generation``: expired now (True), so that the
        next call probes as usual; no transition. Else False, unchanged."""
        cdef uint64_t gen = _check_generation(generation)
        return _expire_open(self._cell, &self.cpolicy, gen, _now_of(self))

    def _close_if(self, generation):
        """Closed (reason "fleet") if still open in full ``generation``, or
        half-open in the probe generation after it: True. Else False."""
        cdef uint64_t gen = _check_generation(generation)
        cdef qb_translog log
        cdef int held = 0
        _events_of(self)
        log.n = 0
        cdef bint closed = _close_if(self._cell, gen, _now_of(self), &log,
                                     _ordered(&held))
        if log.n or held:
            _push(self, &log, held, "fleet")
        return closed

    def _word_view(self):
        """(state name, full generation, retry_after) from one read of the word."""
        cdef uint64_t t = qb_load(&self._cell.transitions)
        cdef uint64_t w = qb_load(&self._cell.word)
        return (_state_name(w), _full_gen(t, w),
                _retry_after_ticks(w, &self.cpolicy, _now_of(self)) / 1000)

    # -- forms of protection ------------------------------------------------

    def __enter__(self):
        _enter_block(self)

    def __exit__(self, exc_type, exc, tb):
        _exit_block(self, exc_type, exc)

    # __aenter__ and __aexit__: descriptors installed at module init (see
    # _native/awaitables.pxi); each returns an awaitable already done.

    def _guard(self, fn):
        """``fn`` wrapped so that each call goes through ``call``."""
        cdef _Guarded guarded = _Guarded.__new__(_Guarded)
        guarded.breaker = self
        guarded.fn = fn
        functools.update_wrapper(guarded, fn)
        return guarded

    def _guard_async(self, fn):
        """``fn``, a coroutine function, wrapped so that each call returns an
        awaitable that runs it under the breaker."""
        cdef _GuardedAsync guarded
        if not _forms.function_like(fn):
            return _forms.guard_async(self, fn)
        guarded = _GuardedAsync.__new__(_GuardedAsync)
        guarded.breaker = self
        guarded.fn = fn
        functools.update_wrapper(guarded, fn)
        _forms.mark_coroutine_function(guarded, fn)
        return guarded

    def _started(self):
        """The tick a call starts at, under a slow-call policy; else None."""
        if not _timed(self):
            return None
        return _resolve(_now_of(self))

    def _exit_ok(self, ticket, started=None):
        """A call admitted with ``ticket`` succeeded (no result to judge)."""
        _py_settle(self, ticket, OUTCOME_SUCCESS | _slow_arg(self, started))
        if _options_of(self).on_success is not None:
            run_hook(_options_of(self).on_success, self)

    def _exit_result(self, ticket, result, started=None):
        """A call returned ``result``; ``is_failure_result`` may call it failed."""
        if self.cpolicy.host_flags & FLAG_PLAIN_SUCCESS and started is None:
            _py_settle(self, ticket, OUTCOME_SUCCESS)
            return
        if result_outcome(_options_of(self), result):
            self._exit_ok(ticket, started)
            return
        _py_settle(self, ticket, OUTCOME_FAILURE | _slow_arg(self, started))
        if _options_of(self).on_failure is not None:
            run_hook(_options_of(self).on_failure, self, result)

    def _exit_exc(self, ticket, exc, started=None):
        """A call raised ``exc``: failure, success or neutral by the rules."""
        ok = exception_outcome(_options_of(self), exc, self)
        if ok is True:
            self._exit_ok(ticket, started)
            return
        slow = _slow_arg(self, started) if ok is False else 0
        _py_settle(self, ticket, _outcome_arg(ok) | slow)
        if ok is False and _options_of(self).on_failure is not None:
            run_hook(_options_of(self).on_failure, self, exc)

    # -- reading ------------------------------------------------------------

    # The metrics last given to observe(), or None: kept in _Extras (the
    # twin's plain attribute, written by the shared methods).
    @property
    def _last_observation(self):
        cdef void *seen = qb_load_ptr(&self._extras_ptr)
        return None if seen == NULL else (<_Extras>seen).last_observation

    @_last_observation.setter
    def _last_observation(self, value):
        (<_Extras>_extras_of(self)).last_observation = value

    @property
    def state(self):
        return _public_state(qb_load(&self._cell.word))

    @property
    def forced(self):
        cdef uint64_t w = qb_load(&self._cell.word)
        if (w & STATE_FIELD) != S_FORCED:
            return None
        return "closed" if w >> FORCED_KIND_SHIFT else "open"

    @property
    def generation(self):
        return (qb_load(&self._cell.word) >> GEN_SHIFT) & GEN_FIELD

    @property
    def consecutive_failures(self):
        cdef uint64_t w = qb_load(&self._cell.word)
        if (w & STATE_FIELD) == S_CLOSED or (w & STATE_FIELD) == S_FORCED:
            return (w >> FAIL_SHIFT) & FAIL_MAX
        return 0

    @property
    def retry_after(self):
        """Seconds until a probe can be admitted (see CircuitOpenError)."""
        return _retry_after_ticks(qb_load(&self._cell.word), &self.cpolicy,
                                  _now_of(self)) / 1000

    @property
    def time_in_state(self):
        """Seconds since the last transition (or since construction)."""
        cdef uint64_t now = _resolve(_now_of(self))
        cdef int64_t elapsed = <int64_t>(now - qb_load(&self._cell.changed_at))
        # 0, not 584 million years, when a clock stepped back (or a
        # segment's bytes) put the last transition after now.
        return <double>elapsed / 1000.0 if elapsed > 0 else 0.0

    @property
    def policy(self):
        cdef qb_policy *p = &self.cpolicy
        cdef qb_window *win
        if not p.window_kind:
            return Policy(p.max_failures, p.reset_ticks, p.half_open_max,
                          p.success_threshold, p.half_open_timeout_ticks)
        win = QB_WINDOW(self._cell)
        return Policy(p.max_failures, p.reset_ticks, p.half_open_max,
                      p.success_threshold, p.half_open_timeout_ticks,
                      p.window_kind, p.window_buckets, p.window_span, p.minimum_calls,
                      win.failure_rate_threshold, win.slow_rate_threshold,
                      win.slow_ticks)

    def _window_sums(self):
        """(calls, failures, slow) in the window now; zeros without one."""
        cdef uint64_t sums[3]
        cdef uint64_t w, epoch
        if not self.cpolicy.window_kind:
            return 0, 0, 0
        w = qb_load(&self._cell.word)
        epoch = _window_now(self._cell, &self.cpolicy, _resolve(_now_of(self)))
        _window_sums(self._cell, &self.cpolicy, (w >> GEN_SHIFT) & GEN_FIELD, epoch,
                     sums)
        return sums[0], sums[1], sums[2]

    @property
    def max_failures(self):
        return self.cpolicy.max_failures

    @property
    def reset_timeout(self):
        """Seconds, as validated and rounded to the millisecond."""
        return self.cpolicy.reset_ticks / 1000.0

    @property
    def half_open_max(self):
        return self.cpolicy.half_open_max

    @property
    def success_threshold(self):
        return self.cpolicy.success_threshold

    @property
    def half_open_timeout(self):
        """Seconds, as validated and rounded to the millisecond."""
        return self.cpolicy.half_open_timeout_ticks / 1000.0

    @property
    def _word(self):
        return qb_load(&self._cell.word)

    def totals(self):
        cdef qb_cell *c = self._cell
        cdef qb_slot *slots
        cdef uint64_t allowed = qb_load(&c.allowed)
        cdef uint64_t successes = qb_load(&c.successes)
        cdef uint64_t rejected = qb_load(&c.rejected)
        cdef int i
        if self.cpolicy.host_flags & FLAG_SHARED:
            slots = _slots_of(self)
            for i in range(QB_SLOTS):
                allowed += qb_load(&slots[i].allowed)
                successes += qb_load(&slots[i].successes)
                rejected += qb_load(&slots[i].rejected)
        else:
            allowed += self._hot[0]
            successes += self._hot[1]
            rejected += self._hot[2]
        return Totals(allowed, rejected, successes,
                      qb_load(&c.failures), qb_load(&c.neutral),
                      qb_load(&c.transitions), _opens_total(self))

    def _slow_total(self):
        """Slow outcomes reported so far (host-wide for a shared breaker)."""
        return _slow_total(self)

    @property
    def _slot(self):
        """This process's slot of a shared cell, or -1 (see _claim_slot)."""
        if (self.cpolicy.host_flags & (FLAG_SHARED | FLAG_LOCAL_COUNTS)
                != (FLAG_SHARED | FLAG_LOCAL_COUNTS)):
            return -1
        return (<char *>self._hot - <char *>_slots_of(self)) // sizeof(qb_slot)

    def _forked(self):
        """In a fork's child: the parent's slot is the parent's; claim anew."""
        if self.cpolicy.host_flags & FLAG_SHARED:
            _use_spare_bytes(self)
            self.cpolicy.host_flags &= ~FLAG_LOCAL_COUNTS
            if QB_HAVE_GIL:
                self.cpolicy.host_flags |= FLAG_SLOT_WANTED

    # -- the Python-level API, written once in _api ------------------------------

    @property
    def name(self):
        """Given at construction, else the first decorated function's
        qualified name, else a generated ``breaker-N``."""
        return _api.name(self)

    def _adopt_name(self, qualname):
        _api.adopt_name(self, qualname)

    @property
    def listeners(self):
        return _listeners_of(self)

    # _name: in the cell storage's spare bytes (see _name_slot); _options and
    # _listeners: in _Extras unless the defaults (see _core_c.pxd). Read and
    # replaced by the shared Python-level methods.
    @property
    def _name(self):
        return _name_of(self)

    @_name.setter
    def _name(self, value):
        _set_name(self, value)

    @property
    def _options(self):
        return _options_of(self)

    @_options.setter
    def _options(self, value):
        (<_Extras>_extras_of(self)).options = value

    @property
    def _listeners(self):
        return _listeners_of(self)

    @_listeners.setter
    def _listeners(self, tuple value):
        (<_Extras>_extras_of(self)).listeners = value

    def add_listener(self, listener):
        """Call ``listener(breaker, old_state, new_state)`` on each transition."""
        _api.add_listener(self, listener)

    def remove_listener(self, listener):
        """Stop calling ``listener``; ValueError if it was not added."""
        _api.remove_listener(self, listener)

    def _raise_open(self):
        _api.raise_open(self)

    def _rejected(self, args, kwargs):
        return _api.rejected(self, args, kwargs)

    def __call__(self, fn):
        """Use the breaker as a decorator, on any kind of function."""
        return _forms.decorate(self, fn)

    def observe(self, metrics):
        """Record an observation; trip a closed breaker if it crosses a threshold.

        From the closed state (not forced), it opens the breaker when
        ``error_rate >= error_rate_threshold`` or ``latency >=
        latency_threshold`` (thresholds that are None never trip). In any
        other state it only records. Returns True if this call opened it.
        """
        return _api.observe(self, metrics)

    def metrics(self):
        """A snapshot of the state and totals (read field by field)."""
        return _api.metrics(self)

    def __repr__(self):
        return _api.describe(self)

    def __copy__(self):
        _api.refuse_copy(self)

    def __deepcopy__(self, memo):
        _api.refuse_copy(self)


# -- module init --------------------------------------------------------------

def _after_fork_in_child():
    # Only the forking thread survives a fork: an order lock that another
    # thread held at that moment would block every transition in the child.
    qb_order_after_fork()
    _with_tickets_after_fork()


if QB_ORDERED and hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


_install_extras_gc()  # first: no breaker may exist before it
_install_vectorcall()
_install_async_forms()
