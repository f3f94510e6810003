# Included by _core_c.pyx, first. The state word: its fields (and LAYOUT, for
# the parity tests), the word of each state, tickets and how they are checked
# against a word, the public reading of a word (describe_word), and the clock
# read that every `now` resolves by. No cell and no memory: every operation
# builds on these.


cdef uint64_t STATE_FIELD = (<uint64_t>1 << STATE_BITS) - 1
cdef uint64_t GEN_FIELD = (<uint64_t>1 << GEN_BITS) - 1
cdef uint64_t FAIL_MAX = (<uint64_t>1 << FAIL_BITS) - 1
cdef uint64_t OPENED_FIELD = (<uint64_t>1 << OPENED_BITS) - 1
cdef uint64_t INFLIGHT_MAX = (<uint64_t>1 << INFLIGHT_BITS) - 1
cdef uint64_t HSUCC_MAX = (<uint64_t>1 << HSUCC_BITS) - 1
cdef uint64_t ENTERED_FIELD = (<uint64_t>1 << ENTERED_BITS) - 1
cdef uint64_t STALE_NOW_TICKS = <uint64_t>1 << 16   # as _word.STALE_NOW_TICKS
cdef uint64_t HEAD_FIELD = (<uint64_t>1 << HEAD_BITS) - 1
cdef uint64_t FAIL_MASK = FAIL_MAX << FAIL_SHIFT
cdef long long TICKET_MAX = <long long>((<uint64_t>1 << 63) - 1)


LAYOUT = {
    "STATE_SHIFT": STATE_SHIFT,
    "STATE_BITS": STATE_BITS,
    "GEN_SHIFT": GEN_SHIFT,
    "GEN_BITS": GEN_BITS,
    "FAIL_SHIFT": FAIL_SHIFT,
    "FAIL_BITS": FAIL_BITS,
    "OPENED_SHIFT": OPENED_SHIFT,
    "OPENED_BITS": OPENED_BITS,
    "INFLIGHT_SHIFT": INFLIGHT_SHIFT,
    "INFLIGHT_BITS": INFLIGHT_BITS,
    "HSUCC_SHIFT": HSUCC_SHIFT,
    "HSUCC_BITS": HSUCC_BITS,
    "ENTERED_SHIFT": ENTERED_SHIFT,
    "ENTERED_BITS": ENTERED_BITS,
    "FORCED_KIND_SHIFT": FORCED_KIND_SHIFT,
    "FORCED_KIND_BITS": FORCED_KIND_BITS,
    "S_CLOSED": S_CLOSED,
    "S_OPEN": S_OPEN,
    "S_HALF_OPEN": S_HALF_OPEN,
    "S_FORCED": S_FORCED,
    "OUTCOME_FAILURE": OUTCOME_FAILURE,
    "OUTCOME_SUCCESS": OUTCOME_SUCCESS,
    "OUTCOME_NEUTRAL": OUTCOME_NEUTRAL,
    "OUTCOME_SLOW": OUTCOME_SLOW,
    "OUTCOME_BASE": OUTCOME_BASE,
    "WINDOW_NONE": WINDOW_NONE,
    "WINDOW_COUNT": WINDOW_COUNT,
    "WINDOW_TIME": WINDOW_TIME,
    "KEY_EPOCH_BITS": KEY_EPOCH_BITS,
    "TICKET_GEN_BITS": TICKET_GEN_BITS,
}


cdef tuple _STATES = (State.CLOSED, State.OPEN, State.HALF_OPEN)
cdef object _STATE_CLOSED = State.CLOSED
cdef object _STATE_OPEN = State.OPEN


cdef inline object _public_state(uint64_t w):
    # The State a word shows: a forced word shows the state it was forced to.
    cdef uint64_t state = w & STATE_FIELD
    if state == S_FORCED:
        return _STATE_CLOSED if w >> FORCED_KIND_SHIFT else _STATE_OPEN
    return _STATES[state]


cdef inline uint64_t _next_gen(uint64_t w) noexcept nogil:
    return ((w >> GEN_SHIFT) + 1) & GEN_FIELD


cdef inline uint64_t _closed_word(uint64_t gen) noexcept nogil:
    return S_CLOSED | gen << GEN_SHIFT


cdef inline uint64_t _open_word(uint64_t gen, uint64_t now) noexcept nogil:
    return S_OPEN | gen << GEN_SHIFT | (now & OPENED_FIELD) << OPENED_SHIFT


cdef inline uint64_t _half_open_word(uint64_t gen, uint64_t in_flight,
                                     uint64_t successes,
                                     uint64_t entered) noexcept nogil:
    return (S_HALF_OPEN
            | gen << GEN_SHIFT
            | in_flight << INFLIGHT_SHIFT
            | successes << HSUCC_SHIFT
            | (entered & ENTERED_FIELD) << ENTERED_SHIFT)


cdef inline uint64_t _forced_word(uint64_t gen, uint64_t kind_closed) noexcept nogil:
    return S_FORCED | gen << GEN_SHIFT | kind_closed << FORCED_KIND_SHIFT


# The ticket helpers spell their masks from the layout's enum, not from the
# module's variables, so that the compiler folds them: they are on the
# inlined fast paths.

cdef inline uint64_t _ticket_of(uint64_t t, uint64_t w) noexcept nogil:
    # t: the transitions total, read before w. The full generation is the
    # one nearest t that agrees with the word's modulo 2**18 (see the twin).
    cdef uint64_t half = <uint64_t>1 << (GEN_BITS - 1)
    cdef uint64_t full = t + ((((w >> GEN_SHIFT) - t + half)
                               & ((<uint64_t>1 << GEN_BITS) - 1)) - half)
    return (((full << (STATE_BITS + 1))
             & ((<uint64_t>1 << (TICKET_GEN_BITS + STATE_BITS + 1)) - 1))
            | (w & ((1 << STATE_BITS) - 1)) << 1 | 1)


cdef inline bint _head_matches(uint64_t ticket, uint64_t w) noexcept nogil:
    # The ticket's state and generation modulo 2**18 are the word's.
    return (((ticket >> 1) ^ w) & ((1 << HEAD_BITS) - 1)) == 0


cdef inline bint _ticket_current(uint64_t ticket, uint64_t t,
                                 uint64_t w) noexcept nogil:
    # The ticket is of w's state and generation, t being the transitions
    # total read next to w: _ticket_of(t, w) == ticket & _word.TICKET_BASE,
    # in fewer steps (the head matches, and the ticket's generation is within
    # 2**17 of t). Bits above TICKET_BASE are not read.
    cdef uint64_t half = <uint64_t>1 << (GEN_BITS - 1)
    return (_head_matches(ticket, w)
            and (((ticket >> (STATE_BITS + 1)) - t + half)
                 & ((<uint64_t>1 << TICKET_GEN_BITS) - 1)) < 2 * half)


cdef inline uint64_t _full_gen(uint64_t t, uint64_t w) noexcept nogil:
    # The full generation of word w, t being the transitions total read next
    # to it: a ticket's generation field (see the twin's full_generation).
    return _ticket_of(t, w) >> (STATE_BITS + 1)


cdef inline uint64_t _open_elapsed(uint64_t w, uint64_t now) noexcept nogil:
    # 0 if it opened "after" now (see the twin's _open_elapsed).
    cdef uint64_t elapsed = (now - (w >> OPENED_SHIFT)) & OPENED_FIELD
    return 0 if elapsed >> (OPENED_BITS - 1) else elapsed


cdef inline uint64_t _open_remaining(uint64_t w, uint64_t reset_ticks,
                                     uint64_t now) noexcept nogil:
    # Ticks until an open word expires; an opened_at after now (open_for's,
    # or a stale now) adds its lead (see the twin's _open_remaining).
    cdef uint64_t left = ((w >> OPENED_SHIFT) + reset_ticks - now) & OPENED_FIELD
    return 0 if left >> (OPENED_BITS - 1) else left


cdef inline uint64_t _reopened(uint64_t w, uint64_t reset_ticks,
                               uint64_t expiry) noexcept nogil:
    # Open word w, same generation, expiring at tick `expiry`.
    return _open_word((w >> GEN_SHIFT) & GEN_FIELD, expiry - reset_ticks)


cdef inline uint64_t _expired_half_open(uint64_t w, const qb_policy *pol,
                                        uint64_t now) noexcept nogil:
    # Re-opens as of the moment it expired, not as of now; a `now` a little
    # behind the entry time is a stale reading, not a wrap (see the twin).
    cdef uint64_t elapsed = (now - (w >> ENTERED_SHIFT)) & ENTERED_FIELD
    if (elapsed < pol.half_open_timeout_ticks
            or elapsed > ENTERED_FIELD - STALE_NOW_TICKS):
        return 0
    return _open_word(_next_gen(w),
                      now - (elapsed - pol.half_open_timeout_ticks))


cdef inline uint64_t _resolve(uint64_t now) noexcept nogil:
    return qb_monotonic_ms() if now == QB_NOW_AUTO else now


def describe_word(uint64_t w):
    """The public state and the generation of a raw word."""
    return _public_state(w), (w >> GEN_SHIFT) & GEN_FIELD
