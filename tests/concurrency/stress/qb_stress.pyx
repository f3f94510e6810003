# cython: language_level=3, freethreading_compatible=True
# cython: boundscheck=False, wraparound=False, cdivision=True
"""The stress harness: N native threads drive ONE breaker without the GIL.

Compiled by the test setup (tests/concurrency/stress/harness.py), never shipped. Each
worker is a Python thread whose target enters ``with nogil:`` at once and
stays there for the whole run, so with or without a GIL the workers run in
parallel on the breaker's cell, through the public cimport API only:
qb_admit, qb_settle, qb_renormalize and qb_reset, each with a qb_translog so
that every transition is seen by the thread that won it.

What the workers check while they run (each violation is counted, and the
first of each kind is kept with its words):

- every transition a thread wins steps the generation by exactly one and is a
  legal edge of the state machine for the operation that won it (with the
  shared tick clock, its times are checked too);
- a settle that returns False (stale ticket) won no transition other than the
  time-driven expiry of the ticket's own half-open generation; a settle whose
  ticket was already stale before the call returns False and wins nothing;
- after an admit in half-open, the word of that generation holds at most
  half_open_max probes, and so does the harness's own count of the probes of
  that generation that are between their admit and their settle.

What ``Run.check_*`` and tests/concurrency/stress/harness.py check afterwards: totals
exact, each transition won by exactly one thread (per-generation counts form
a chain without gaps, and match the transitions counter), no half-open slot
left in flight.
"""

from libc.stdint cimport uint64_t
from libc.stdlib cimport calloc, free, realloc

from qbreaker._core_c cimport (
    ENTERED_BITS,
    ENTERED_SHIFT,
    FAIL_BITS,
    FAIL_SHIFT,
    GEN_BITS,
    GEN_SHIFT,
    HEAD_BITS,
    HSUCC_BITS,
    HSUCC_SHIFT,
    INFLIGHT_BITS,
    INFLIGHT_SHIFT,
    OPENED_BITS,
    OPENED_SHIFT,
    OUTCOME_FAILURE,
    OUTCOME_NEUTRAL,
    OUTCOME_SUCCESS,
    QB_NOW_AUTO,
    S_CLOSED,
    S_HALF_OPEN,
    S_OPEN,
    CircuitBreaker,
    qb_admit,
    qb_cas,
    qb_cell,
    qb_load,
    qb_monotonic_ms,
    qb_nogil_cell,
    qb_policy,
    qb_renormalize,
    qb_reset,
    qb_settle,
    qb_store,
    qb_translog,
)

cdef extern from *:
    """
    #if defined(_WIN32)
    #  include <windows.h>
    static void qb_stress_yield(void) { SwitchToThread(); }
    #else
    #  include <sched.h>
    static void qb_stress_yield(void) { sched_yield(); }
    #endif
    """
    void qb_stress_yield() noexcept nogil

cdef enum:
    HOLD_MAX = 4
    N_GEN = 1 << 18           # 2 ** GEN_BITS, checked at import

# Operation kinds, as recorded in captured logs.
OP_ADMIT, OP_SETTLE, OP_RENORMALIZE, OP_RESET = 1, 2, 3, 4
cdef enum:
    K_ADMIT = 1
    K_SETTLE = 2
    K_RENORM = 3
    K_RESET = 4

# Violation kinds.
VIOLATIONS = (
    "none",
    "generation does not step by one",
    "illegal transition for the operation that won it",
    "half-open word holds more than half_open_max probes",
    "harness saw more than half_open_max probes of one generation in flight",
    "a settle returning False (stale) won a transition other than an expiry",
    "a settle whose ticket was stale before the call was accepted or won",
    "translog overflow",
    "a ticket for a state that admits nothing",
    "a half-open generation expired on a clock reading older than its start",
)
cdef enum:
    V_GEN_STEP = 1
    V_ILLEGAL = 2
    V_INFLIGHT_WORD = 3
    V_INFLIGHT_HARNESS = 4
    V_STALE_WON = 5
    V_PRESTALE = 6
    V_LOG_LOST = 7
    V_TICKET_STATE = 8
    V_STALE_EXPIRY = 9
    N_V = 10

# A `now` this far behind a half-open generation's start is a reading taken
# before another thread's transition, not 74 hours of elapsed time (the
# core's STALE_NOW_TICKS guard, mirrored here).
cdef uint64_t STALE_NOW_TICKS = 1 << 16

cdef uint64_t STATE_FIELD = 3
cdef uint64_t GEN_FIELD = (<uint64_t>1 << GEN_BITS) - 1
cdef uint64_t HEAD_FIELD = (<uint64_t>1 << HEAD_BITS) - 1
cdef uint64_t FAIL_MAX = (<uint64_t>1 << FAIL_BITS) - 1
cdef uint64_t OPENED_FIELD = (<uint64_t>1 << OPENED_BITS) - 1
cdef uint64_t INFLIGHT_MAX = (<uint64_t>1 << INFLIGHT_BITS) - 1
cdef uint64_t HSUCC_MAX = (<uint64_t>1 << HSUCC_BITS) - 1
cdef uint64_t ENTERED_FIELD = (<uint64_t>1 << ENTERED_BITS) - 1

assert N_GEN == 1 << GEN_BITS


ctypedef struct Worker:
    uint64_t rng
    uint64_t ops_limit
    # What this thread did.
    uint64_t calls            # qb_* calls of any kind
    uint64_t admits
    uint64_t allowed
    uint64_t rejected
    uint64_t settles[3]       # by outcome code
    uint64_t settle_false     # settles that returned False (stale)
    uint64_t prestale         # settles whose ticket was stale before the call
    uint64_t renorms
    uint64_t resets
    uint64_t ticks            # shared-clock advances
    uint64_t won              # transitions won (logged)
    uint64_t half_open_admits
    uint64_t stale_expiries   # half-open expiries on a stale `now`
    uint64_t started_ms       # when it passed the start gate
    uint64_t ended_ms
    uint64_t violations[N_V]
    uint64_t first[N_V][4]    # (from/word, to/ticket, now, op) of the first one
    # Held tickets, settled some operations later (many become stale).
    uint64_t held[HOLD_MAX]
    int nheld
    # Captured transitions: (from, to, op) triples.
    uint64_t *cap
    uint64_t ncap
    uint64_t capmax
    int cap_overflow
    char pad[64]


ctypedef struct Ctx:
    qb_cell *cell
    const qb_policy *pol
    int nthreads
    bint ticks_mode           # shared tick clock, else QB_NOW_AUTO
    bint tickets              # settle with tickets, else seed form (ticket 0)
    bint windowed             # the breaker has a rate window: it may trip on
                              # any counted outcome, not only on a failure
    bint stale_guard          # the core ignores a stale `now` in half-open
    uint64_t deadline_ms      # 0: none
    uint64_t duration_ms
    # Probabilities, in 1/65536.
    uint64_t p_fail
    uint64_t p_neutral
    uint64_t p_hold
    uint64_t p_release_held
    uint64_t p_renorm
    uint64_t p_reset
    uint64_t p_tick
    char pad0[64]
    uint64_t clock            # the shared tick clock
    char pad1[64]
    uint64_t ready
    uint64_t go
    char pad2[64]
    uint64_t *left            # per generation: transitions out of it
    uint64_t *probes          # per generation: harness-counted probes in flight
    Worker **workers


cdef inline uint64_t _next(uint64_t *s) noexcept nogil:
    # xorshift64*
    cdef uint64_t x = s[0]
    x ^= x >> 12
    x ^= x << 25
    x ^= x >> 27
    s[0] = x
    return x * <uint64_t>0x2545F4914F6CDD1D


cdef inline uint64_t _splitmix(uint64_t x) noexcept nogil:
    x += <uint64_t>0x9E3779B97F4A7C15
    x = (x ^ (x >> 30)) * <uint64_t>0xBF58476D1CE4E5B9
    x = (x ^ (x >> 27)) * <uint64_t>0x94D049BB133111EB
    return x ^ (x >> 31)


cdef inline uint64_t _fetch_add(uint64_t *p, uint64_t v) noexcept nogil:
    """Atomic add returning the new value, from qb_atomic.h's CAS only."""
    cdef uint64_t old = qb_load(p)
    while not qb_cas(p, &old, old + v):
        pass
    return old + v


cdef inline uint64_t _gen(uint64_t w) noexcept nogil:
    return (w >> GEN_SHIFT) & GEN_FIELD


cdef inline uint64_t _inflight(uint64_t w) noexcept nogil:
    return (w >> INFLIGHT_SHIFT) & INFLIGHT_MAX


cdef inline uint64_t _hsucc(uint64_t w) noexcept nogil:
    return (w >> HSUCC_SHIFT) & HSUCC_MAX


cdef inline void _violate(Worker *me, int kind, uint64_t a, uint64_t b,
                          uint64_t now, uint64_t op) noexcept nogil:
    if me.violations[kind] == 0:
        me.first[kind][0] = a
        me.first[kind][1] = b
        me.first[kind][2] = now
        me.first[kind][3] = op
    me.violations[kind] += 1


cdef inline bint _is_expiry(const qb_policy *pol, uint64_t f, uint64_t t) noexcept nogil:
    # A timed-out half-open generation re-opens as of the moment it expired:
    # opened_at == entered_at + half_open_timeout (mod the entered field).
    return ((f & STATE_FIELD) == S_HALF_OPEN and (t & STATE_FIELD) == S_OPEN
            and (((t >> OPENED_SHIFT) - (f >> ENTERED_SHIFT)
                  - pol.half_open_timeout_ticks) & ENTERED_FIELD) == 0)


cdef int _legal(Ctx *c, int op, int outcome, uint64_t f, uint64_t t,
                uint64_t now) noexcept nogil:
    """0 if f -> t is a transition that operation `op` may make, else a V_*."""
    cdef const qb_policy *pol = c.pol
    cdef uint64_t fs = f & STATE_FIELD
    cdef uint64_t ts = t & STATE_FIELD
    cdef uint64_t gen = _gen(t)
    cdef bint known = c.ticks_mode       # `now` is the op's time
    if gen != ((_gen(f) + 1) & GEN_FIELD):
        return V_GEN_STEP
    if op == K_RESET:
        return 0 if t == (S_CLOSED | gen << GEN_SHIFT) else V_ILLEGAL
    if _is_expiry(pol, f, t):
        if known and ((now - (f >> ENTERED_SHIFT)) & ENTERED_FIELD) < pol.half_open_timeout_ticks:
            return V_ILLEGAL
        if known and ((now - (f >> ENTERED_SHIFT)) & ENTERED_FIELD) > ENTERED_FIELD - STALE_NOW_TICKS:
            return V_STALE_EXPIRY
        return 0
    if fs == S_OPEN and ts == S_HALF_OPEN and (op == K_ADMIT or op == K_RENORM):
        if _inflight(t) != (1 if op == K_ADMIT else 0) or _hsucc(t) != 0:
            return V_ILLEGAL
        if known:
            if ((t >> ENTERED_SHIFT) & ENTERED_FIELD) != (now & ENTERED_FIELD):
                return V_ILLEGAL
            if ((now - (f >> OPENED_SHIFT)) & OPENED_FIELD) < pol.reset_ticks:
                return V_ILLEGAL
        return 0
    if op != K_SETTLE:
        return V_ILLEGAL
    if ts == S_OPEN and fs == S_CLOSED and c.windowed and outcome != OUTCOME_NEUTRAL:
        # A rate window trips on the outcome that crossed its threshold, or
        # on the outcome that rotated it: either kind.
        if known and ((t >> OPENED_SHIFT) & OPENED_FIELD) != (now & OPENED_FIELD):
            return V_ILLEGAL
        return 0
    if outcome == OUTCOME_FAILURE and ts == S_OPEN:
        if known and ((t >> OPENED_SHIFT) & OPENED_FIELD) != (now & OPENED_FIELD):
            return V_ILLEGAL
        if fs == S_HALF_OPEN:
            return 0
        if fs == S_CLOSED and ((f >> FAIL_SHIFT) & FAIL_MAX) + 1 >= pol.max_failures:
            return 0
        return V_ILLEGAL
    if (outcome == OUTCOME_SUCCESS and fs == S_HALF_OPEN
            and t == (S_CLOSED | gen << GEN_SHIFT)
            and _hsucc(f) + 1 >= pol.success_threshold):
        return 0
    return V_ILLEGAL


cdef void _logged(Ctx *c, Worker *me, qb_translog *log, int op, int outcome,
                  uint64_t now) noexcept nogil:
    """Account for and check the transitions this thread just won."""
    cdef int i, bad
    cdef uint64_t f, t
    cdef void *grown
    if log.lost:
        _violate(me, V_LOG_LOST, <uint64_t>log.lost, 0, now, op)
    for i in range(log.n):
        f = log.from_word[i]
        t = log.to_word[i]
        me.won += 1
        _fetch_add(&c.left[_gen(f)], 1)
        bad = _legal(c, op, outcome, f, t, now)
        if bad == V_STALE_EXPIRY:
            me.stale_expiries += 1
            bad = V_STALE_EXPIRY if c.stale_guard else 0
        if bad:
            _violate(me, bad, f, t, now, <uint64_t>(op | outcome << 8))
        if me.capmax:
            if me.ncap == me.capmax * 3 or me.cap == NULL:
                if me.ncap >= <uint64_t>3 << 22:      # 4M transitions per thread
                    me.cap_overflow = 1
                    continue
                grown = realloc(me.cap, (me.ncap * 2 + 3 * 1024) * sizeof(uint64_t))
                if grown == NULL:
                    me.cap_overflow = 1
                    continue
                me.cap = <uint64_t *>grown
                me.capmax = (me.ncap * 2 + 3 * 1024) // 3
            me.cap[me.ncap] = f
            me.cap[me.ncap + 1] = t
            me.cap[me.ncap + 2] = <uint64_t>(op | outcome << 8)
            me.ncap += 3


cdef inline uint64_t _now(Ctx *c) noexcept nogil:
    # Read right before each call. A transition another thread makes between
    # this read and our call can carry a later time: the core must (and does)
    # stay exact with such a stale `now`; see README "Thread safety".
    return qb_load(&c.clock) if c.ticks_mode else QB_NOW_AUTO


cdef void _settle_one(Ctx *c, Worker *me, uint64_t ticket, int outcome,
                      bint counted) noexcept nogil:
    cdef qb_translog log
    cdef uint64_t now, before, gen
    cdef bint stale_before, ok
    cdef int i
    if counted:
        # Leaving the harness's count of this generation's probes in flight
        # before the core frees the slot: the count never exceeds the truth.
        _fetch_add(&c.probes[(ticket >> 1 >> GEN_SHIFT) & GEN_FIELD], <uint64_t>-1)
    log.n = 0
    log.lost = 0
    before = qb_load(&c.cell.word)
    stale_before = ticket != 0 and ((ticket >> 1) & HEAD_FIELD) != (before & HEAD_FIELD)
    now = _now(c)
    ok = qb_settle(c.cell, c.pol, now, ticket if c.tickets else 0, outcome, &log)
    me.calls += 1
    me.settles[outcome] += 1
    if not c.tickets:
        _logged(c, me, &log, K_SETTLE, outcome, now)
        return
    if stale_before:
        me.prestale += 1
        if ok or log.n:
            _violate(me, V_PRESTALE, before, ticket, now, ok)
    if not ok:
        me.settle_false += 1
        # Only the expiry of the ticket's own half-open generation, which is
        # driven by time, not by this outcome, may happen in a stale settle.
        for i in range(log.n):
            if ((log.from_word[i] ^ (ticket >> 1)) & HEAD_FIELD) or not _is_expiry(
                    c.pol, log.from_word[i], log.to_word[i]):
                _violate(me, V_STALE_WON, log.from_word[i], log.to_word[i], now, ticket)
    _logged(c, me, &log, K_SETTLE, outcome, now)


cdef inline int _outcome(Ctx *c, uint64_t r) noexcept nogil:
    r &= 0xFFFF
    if r < c.p_fail:
        return OUTCOME_FAILURE
    if r < c.p_fail + c.p_neutral:
        return OUTCOME_NEUTRAL
    return OUTCOME_SUCCESS


cdef void _work(Ctx *c, int idx) noexcept nogil:
    cdef Worker *me = c.workers[idx]
    cdef qb_translog log
    cdef uint64_t r, now, ticket, w, n, head
    cdef uint64_t *slot
    cdef int i
    cdef bint counted
    # Start together: the last thread to arrive sets the deadline and opens
    # the gate; the others spin on it without the GIL.
    if _fetch_add(&c.ready, 1) == <uint64_t>c.nthreads:
        if c.duration_ms:
            c.deadline_ms = qb_monotonic_ms() + c.duration_ms
        qb_store(&c.go, 1)
    while not qb_load(&c.go):
        # Yield: with more threads than cores, a spinning waiter could keep
        # the last thread (or, under TSAN, everyone) from getting anywhere.
        qb_stress_yield()
    me.started_ms = qb_monotonic_ms()
    while me.calls < me.ops_limit:
        if c.deadline_ms and (me.calls & 1023) == 0 and qb_monotonic_ms() >= c.deadline_ms:
            break
        r = _next(&me.rng)
        if c.ticks_mode and ((r >> 48) & 0xFFFF) < c.p_tick:
            _fetch_add(&c.clock, 1)
            me.ticks += 1
        if (r & 0xFFFF) < c.p_reset:
            log.n = 0
            log.lost = 0
            now = _now(c)
            qb_reset(c.cell, now, &log)
            me.calls += 1
            me.resets += 1
            _logged(c, me, &log, K_RESET, 0, now)
            continue
        if (r & 0xFFFF) < c.p_reset + c.p_renorm:
            log.n = 0
            log.lost = 0
            now = _now(c)
            qb_renormalize(c.cell, c.pol, now, &log)
            me.calls += 1
            me.renorms += 1
            _logged(c, me, &log, K_RENORM, 0, now)
            continue
        if me.nheld and ((r >> 16) & 0xFFFF) < c.p_release_held:
            ticket = me.held[0]
            me.nheld -= 1
            for i in range(me.nheld):
                me.held[i] = me.held[i + 1]
            _settle_one(c, me, ticket, _outcome(c, r >> 32), False)
            continue
        log.n = 0
        log.lost = 0
        now = _now(c)
        ticket = qb_admit(c.cell, c.pol, now, &log)
        me.calls += 1
        me.admits += 1
        _logged(c, me, &log, K_ADMIT, 0, now)
        if not ticket:
            me.rejected += 1
            continue
        me.allowed += 1
        # The ticket's head: bits above it carry the generation's high bits.
        head = (ticket >> 1) & HEAD_FIELD
        counted = False
        if (head & STATE_FIELD) == S_HALF_OPEN:
            me.half_open_admits += 1
            if c.tickets:
                slot = &c.probes[(head >> GEN_SHIFT) & GEN_FIELD]
                n = _fetch_add(slot, 1)
                counted = True
                if n > c.pol.half_open_max:
                    _violate(me, V_INFLIGHT_HARNESS, n, ticket, now, K_ADMIT)
                w = qb_load(&c.cell.word)
                if (w & HEAD_FIELD) == head and _inflight(w) > c.pol.half_open_max:
                    _violate(me, V_INFLIGHT_WORD, w, ticket, now, K_ADMIT)
        elif (head & STATE_FIELD) != S_CLOSED:
            _violate(me, V_TICKET_STATE, 0, ticket, now, K_ADMIT)
        if me.nheld < HOLD_MAX and ((r >> 16) & 0xFFFF) >= 0x10000 - c.p_hold:
            if counted:
                _fetch_add(slot, <uint64_t>-1)
            me.held[me.nheld] = ticket
            me.nheld += 1
            continue
        _settle_one(c, me, ticket, _outcome(c, r >> 32), counted)
    # Report every ticket still held.
    while me.nheld:
        me.nheld -= 1
        r = _next(&me.rng)
        _settle_one(c, me, me.held[me.nheld], _outcome(c, r), False)
    me.ended_ms = qb_monotonic_ms()


cdef class Run:
    """One run's shared state; ``work(i)`` is thread i's body."""

    cdef Ctx c
    cdef CircuitBreaker breaker
    cdef readonly int nthreads

    def __cinit__(self, CircuitBreaker breaker, int threads, uint64_t ops,
                  double seconds=0.0, str clock="ticks", bint tickets=True,
                  double p_fail=0.2, double p_neutral=0.05, double p_hold=0.01,
                  double p_release_held=0.05, double p_renorm=0.001,
                  double p_reset=0.0001, double p_tick=0.02,
                  uint64_t start_tick=1_000_000, uint64_t seed=1,
                  bint capture=False, bint windowed=False, bint stale_guard=False):
        cdef int i
        cdef Worker *w
        if threads < 1:
            raise ValueError("threads must be >= 1")
        if clock not in ("ticks", "auto"):
            raise ValueError("clock is 'ticks' or 'auto'")
        self.breaker = breaker
        self.nthreads = threads
        self.c.cell = qb_nogil_cell(breaker)
        self.c.pol = &breaker.cpolicy
        self.c.nthreads = threads
        self.c.ticks_mode = clock == "ticks"
        self.c.tickets = tickets
        self.c.windowed = windowed
        self.c.stale_guard = stale_guard
        self.c.duration_ms = <uint64_t>(seconds * 1000)
        self.c.p_fail = <uint64_t>(p_fail * 65536)
        self.c.p_neutral = <uint64_t>(p_neutral * 65536)
        self.c.p_hold = <uint64_t>(p_hold * 65536)
        self.c.p_release_held = <uint64_t>(p_release_held * 65536)
        self.c.p_renorm = <uint64_t>(p_renorm * 65536)
        self.c.p_reset = <uint64_t>(p_reset * 65536)
        self.c.p_tick = <uint64_t>(p_tick * 65536)
        self.c.clock = start_tick
        self.c.left = <uint64_t *>calloc(N_GEN, sizeof(uint64_t))
        self.c.probes = <uint64_t *>calloc(N_GEN, sizeof(uint64_t))
        self.c.workers = <Worker **>calloc(threads, sizeof(Worker *))
        if self.c.left == NULL or self.c.probes == NULL or self.c.workers == NULL:
            raise MemoryError()
        for i in range(threads):
            # One allocation per worker: no false sharing of the counters.
            w = <Worker *>calloc(1, sizeof(Worker))
            if w == NULL:
                raise MemoryError()
            self.c.workers[i] = w
            w.rng = _splitmix(seed * 1000003 + <uint64_t>i) | 1
            w.ops_limit = ops // <uint64_t>threads + (1 if <uint64_t>i < ops % <uint64_t>threads else 0)
            w.capmax = 1 if capture else 0

    def __dealloc__(self):
        cdef int i
        if self.c.workers != NULL:
            for i in range(self.nthreads):
                if self.c.workers[i] != NULL:
                    free(self.c.workers[i].cap)
                    free(self.c.workers[i])
            free(self.c.workers)
        free(self.c.left)
        free(self.c.probes)

    def work(self, int i):
        """Thread i's whole run, without the GIL."""
        if not 0 <= i < self.nthreads:
            raise IndexError(i)
        with nogil:
            _work(&self.c, i)

    @property
    def deadline_ms(self):
        return self.c.deadline_ms

    @property
    def clock(self):
        return qb_load(&self.c.clock)

    def workers(self):
        """Per thread: a dict of what it did and what it saw."""
        cdef int i, k
        cdef Worker *w
        out = []
        for i in range(self.nthreads):
            w = self.c.workers[i]
            out.append({
                "calls": w.calls, "admits": w.admits, "allowed": w.allowed,
                "rejected": w.rejected,
                "successes": w.settles[OUTCOME_SUCCESS],
                "failures": w.settles[OUTCOME_FAILURE],
                "neutral": w.settles[OUTCOME_NEUTRAL],
                "settle_false": w.settle_false, "prestale": w.prestale,
                "renorms": w.renorms, "resets": w.resets, "ticks": w.ticks,
                "won": w.won, "half_open_admits": w.half_open_admits,
                "stale_expiries": w.stale_expiries,
                "started_ms": w.started_ms, "ended_ms": w.ended_ms,
                "violations": {VIOLATIONS[k]: (w.violations[k], tuple(
                    w.first[k][j] for j in range(4)))
                    for k in range(1, N_V) if w.violations[k]},
                "capture_overflow": bool(w.cap_overflow),
            })
        return out

    def transitions(self):
        """Captured (from_word, to_word, op | outcome << 8, thread) tuples."""
        cdef int i
        cdef uint64_t j
        cdef Worker *w
        out = []
        for i in range(self.nthreads):
            w = self.c.workers[i]
            for j in range(0, w.ncap, 3):
                out.append((w.cap[j], w.cap[j + 1], w.cap[j + 2], i))
        return out

    def generation_counts(self, uint64_t gen0, uint64_t total):
        """Generations whose count of transitions out of them is not what a
        gapless chain of `total` transitions from `gen0` gives: a list of
        (generation, counted, expected), empty when the chain is exact."""
        cdef uint64_t q = total // N_GEN
        cdef uint64_t r = total % N_GEN
        cdef uint64_t g, want
        bad = []
        for g in range(N_GEN):
            want = q + (1 if ((g - gen0) & GEN_FIELD) < r else 0)
            if self.c.left[g] != want:
                bad.append((g, self.c.left[g], want))
                if len(bad) > 20:
                    break
        return bad

    def probes_in_flight(self):
        """Generations where the harness still counts probes in flight."""
        cdef uint64_t g
        return [(g, self.c.probes[g]) for g in range(N_GEN) if self.c.probes[g]]


# -- a deliberate data race, for scripts/tsan.sh ---------------------------------
#
# Two threads bump a plain (non-atomic) counter. ThreadSanitizer must report
# it: the TSAN script runs this first and refuses to call a clean run clean
# unless the canary was caught, so a build that lost its instrumentation, or
# a runtime that was not preloaded, cannot pass silently.

cdef extern from *:
    """
    static volatile unsigned long long qb_stress_canary = 0;
    static void qb_stress_canary_bump(void) { qb_stress_canary = qb_stress_canary + 1; }
    static unsigned long long qb_stress_canary_get(void) { return qb_stress_canary; }
    """
    void qb_stress_canary_bump() noexcept nogil
    unsigned long long qb_stress_canary_get() noexcept nogil

cdef uint64_t _canary_gate = 0


cdef void _canary_body(uint64_t n) noexcept nogil:
    cdef uint64_t i
    # Both threads start together (the gate is atomic, so it orders nothing
    # that follows it), then race on a volatile counter the compiler cannot
    # fold into one add.
    _fetch_add(&_canary_gate, 1)
    while qb_load(&_canary_gate) < 2:
        qb_stress_yield()
    for i in range(n):
        qb_stress_canary_bump()


def race_canary(uint64_t n=100000):
    """Race on purpose (never called by the test suite)."""
    import threading

    def body():
        with nogil:
            _canary_body(n)

    threads = [threading.Thread(target=body) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return qb_stress_canary_get()
