# The compiled core's C-level API. Another Cython extension can
#     from qbreaker._core_c cimport CircuitBreaker, qb_admit, qb_settle, QB_NOW_AUTO
# and drive a breaker without the GIL:
#     cell = qb_nogil_cell(b)    # with the GIL, before any nogil use
#     t = qb_admit(cell, &b.cpolicy, QB_NOW_AUTO, NULL)
# The layout constants mirror _word.py; tests/core/test_parity.py compares them.

from libc.stdint cimport uint16_t, uint32_t, uint64_t


cdef extern from "qb_cell.h" nogil:
    ctypedef struct qb_cell:
        uint64_t word
        uint64_t allowed
        uint64_t rejected
        uint64_t successes
        uint64_t failures
        uint64_t neutral
        uint64_t transitions
        uint64_t changed_at
    ctypedef struct qb_translog:
        int n
        int lost
        uint64_t from_word[8]
        uint64_t to_word[8]
    ctypedef struct qb_window:
        uint64_t cursor
        uint64_t span
        uint64_t slow_ticks
        double failure_rate_threshold
        double slow_rate_threshold
        uint32_t buckets
        uint32_t minimum_calls
        uint64_t hint
        uint64_t bad_epoch
    ctypedef struct qb_bucket:
        uint64_t key
        uint64_t calls
        uint64_t failures
        uint64_t slow
    ctypedef struct qb_slot:
        uint64_t owner
        uint64_t allowed
        uint64_t successes
        uint64_t rejected
        uint64_t pid_namespace
    enum: QB_SLOTS
    qb_window *QB_WINDOW(qb_cell *cell)
    qb_bucket *QB_BUCKETS(qb_cell *cell)
    size_t QB_CELL_BYTES(uint32_t buckets)
    int QB_HAVE_GIL
    uint64_t QB_NOW_AUTO
    int QB_LOG_CAP
    enum: QB_CELL_STORAGE


cdef extern from "qb_atomic.h" nogil:
    uint64_t qb_load(const uint64_t *p)
    bint qb_cas(uint64_t *p, uint64_t *expected, uint64_t desired)
    void qb_add(uint64_t *p, uint64_t v)
    uint64_t qb_fetch_add(uint64_t *p, uint64_t v)
    bint qb_cas_ptr(void **p, void *expected, void *desired)
    void *qb_load_ptr(void **p)
    void qb_store(uint64_t *p, uint64_t v)


cdef extern from "qb_clock.h" nogil:
    uint64_t qb_monotonic_ms()


cdef enum:
    STATE_SHIFT = 0
    STATE_BITS = 2
    GEN_SHIFT = 2
    GEN_BITS = 18
    FAIL_SHIFT = 20
    FAIL_BITS = 32
    OPENED_SHIFT = 20
    OPENED_BITS = 44
    INFLIGHT_SHIFT = 20
    INFLIGHT_BITS = 8
    HSUCC_SHIFT = 28
    HSUCC_BITS = 8
    ENTERED_SHIFT = 36
    ENTERED_BITS = 28
    FORCED_KIND_SHIFT = 63
    FORCED_KIND_BITS = 1
    HEAD_BITS = 20

    S_CLOSED = 0
    S_OPEN = 1
    S_HALF_OPEN = 2
    S_FORCED = 3

    OUTCOME_FAILURE = 0
    OUTCOME_SUCCESS = 1
    OUTCOME_NEUTRAL = 2
    OUTCOME_SLOW = 4
    OUTCOME_BASE = 3

    WINDOW_NONE = 0
    WINDOW_COUNT = 1
    WINDOW_TIME = 2
    KEY_EPOCH_BITS = 40
    # A ticket's generation bits (see _word's "Tickets").
    TICKET_GEN_BITS = 42


ctypedef struct qb_policy:
    # Durations are at most 2**27 - 1 ticks (see _settings.MAX_DURATION_TICKS).
    uint32_t reset_ticks
    uint32_t half_open_timeout_ticks
    uint32_t max_failures          # 0: the consecutive-failure trip is off
    uint16_t half_open_max
    uint16_t success_threshold
    # WINDOW_*. The window's shape is read from here, validated and private
    # to this process, never from its header in the cell's memory, which a
    # shared segment lets any process overwrite: a zero span or too many
    # buckets there would divide by zero or index past the window. The
    # header's thresholds and slow ticks are read there (no value of them
    # can crash the core).
    uint16_t window_kind
    uint16_t window_buckets
    uint32_t window_span
    uint32_t minimum_calls
    # Not read by the core: the owning object's cached FLAG_* bits.
    uint32_t host_flags


cdef enum:
    FLAG_CONFIGURED = 1
    FLAG_HAS_CLOCK = 2
    FLAG_PLAIN_SUCCESS = 4       # no is_failure_result, no on_success hook
    FLAG_ASYNC_FALLBACK = 8
    FLAG_OWNS_CELL = 16          # the cell (and its window) was allocated
    FLAG_SLOW_POLICY = 32        # time protected calls: slow_call_duration is set
    # Count the closed path's allowed and successes in _hot_counts, plainly:
    # set on GIL builds for a private cell, where the GIL serialises every
    # Python-facing caller; the cimport API always counts in the cell.
    FLAG_LOCAL_COUNTS = 64
    # Count a window's closed-path successes with plain adds, for the same
    # reason; cleared for good once qb_nogil_cell hands the cell out.
    FLAG_PLAIN_WINDOW = 128
    # Bits 8-15 of host_flags: the aligned cell's offset in that allocation.
    FLAG_OFFSET_SHIFT = 8
    # The cell is in a shared segment, followed by its QB_SLOTS slots.
    FLAG_SHARED = 1 << 16
    # GIL builds: claim a slot on the next closed-path admit (see _claim_slot).
    FLAG_SLOT_WANTED = 1 << 17
    # The class defines _generator_result(ticket, generator): call() hands it
    # a generator that the protected function returned, to count when the
    # generator finishes (the pybreaker compat layer's generator call).
    FLAG_GENERATOR_HOOK = 1 << 18
    # Bits 20-27: a shared cell's slots, in 64-byte units after the cell.
    FLAG_SLOTS_SHIFT = 20
    # A rejection runs Python-level code: an on_reject hook, or the class's
    # own _raise_open or _rejected (the pybreaker compat layer's).
    FLAG_REJECT_HOOK = 1 << 28


# Every operation takes `now` (ms ticks, or QB_NOW_AUTO to read the monotonic
# clock only if a decision needs it) and `log` (NULL, or where to record the
# transitions it wins).

# Admit a call: its ticket, or 0 when rejected. A ticket carries the state
# and 42 bits of generation (see _word's "Tickets").
cdef uint64_t qb_admit(qb_cell *cell, const qb_policy *pol, uint64_t now,
                       qb_translog *log) noexcept nogil
# Report an outcome for `ticket`, or for the current generation if 0.
# Returns False when the ticket is stale. Settle each ticket once: nothing
# here remembers a half-open ticket's release, so a second one frees another
# probe's slot (the Python API's release() guards against that).
cdef bint qb_settle(qb_cell *cell, const qb_policy *pol, uint64_t now,
                    uint64_t ticket, int outcome, qb_translog *log) noexcept nogil
cdef void qb_renormalize(qb_cell *cell, const qb_policy *pol, uint64_t now,
                         qb_translog *log) noexcept nogil
cdef void qb_reset(qb_cell *cell, uint64_t now, qb_translog *log) noexcept nogil
cdef void qb_force(qb_cell *cell, uint64_t kind_closed, uint64_t now,
                   qb_translog *log) noexcept nogil
cdef bint qb_trip(qb_cell *cell, uint64_t now, qb_translog *log) noexcept nogil


cdef class CircuitBreaker:
    # The field order keeps _cell_storage at a 16-byte offset (64 with the
    # GIL build's header), so 48 bytes of slack align the cell; 32 of them,
    # on one side of it, hold the three hot counts and the name. A breaker
    # takes 208 bytes with its collector header (see docs/performance.md).
    # Points into _cell_storage, an allocation with the window, or a
    # shared-memory segment. Code without the GIL takes it by qb_nogil_cell.
    cdef qb_cell *_cell
    cdef qb_policy cpolicy
    # allowed, successes of the closed path and rejected of the open one
    # (see FLAG_LOCAL_COUNTS): in the spare bytes of _cell_storage, or in
    # this process's slot of a shared segment; totals() adds them to the
    # cell's.
    cdef uint64_t *_hot
    # The cell lives inside the object: one allocation per breaker, and room
    # to align it to its cache line wherever the allocator put the object.
    cdef char _cell_storage[QB_CELL_STORAGE]
    # The _Extras, made on first need (see _extras_of); owned, or NULL: what
    # few breakers need (the event dispatcher, settings other than the
    # defaults: options, listeners, a clock; probes out, last observation).
    # Visited by the collector (see _install_extras_gc).
    cdef void *_extras_ptr
    cdef object __weakref__


# The breaker's cell, for code that drives it without the GIL: call it with
# the GIL held, before the first nogil use. The Python-facing methods count a
# private window's successes with plain adds (only the GIL serialises them);
# from this call on they use atomics, as nogil code does.
cdef inline qb_cell *qb_nogil_cell(CircuitBreaker b) noexcept:
    if b.cpolicy.host_flags & FLAG_PLAIN_WINDOW:
        b.cpolicy.host_flags &= ~FLAG_PLAIN_WINDOW
    return b._cell
