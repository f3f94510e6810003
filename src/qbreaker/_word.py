"""The packed state word and the ticket: their layout, written once.

A leaf: it imports nothing of qbreaker. The twin (``qbreaker._impl.twin``, the
executable specification) and the compiled core's Python layer take every
constant and encoder from here; ``_core_c.pxd`` repeats the constants for C,
and ``tests/core/test_parity.py`` checks that the two agree.

The cell
--------
All mutable state of one breaker: the packed state word and six totals
counters (allowed, rejected, successes, failures, neutral, transitions).
All-zero is the valid initial state: closed, generation 0, no failures, so a
cell in a fresh shared-memory segment needs no initialiser. Totals are
statistics and only ever added to; every decision reads the word alone.

The packed state word
---------------------
64 bits. Bits 0-19 (state and generation) are the word's *head*; the payload
above them depends on the state::

    bits    field        states            meaning
    0-1     state        all               0 closed, 1 open, 2 half-open,
                                           3 forced (kind in bit 63)
    2-19    generation   all               +1 (mod 2**18) on every transition
    20-51   failures     closed, forced    consecutive failures
    20-63   opened_at    open              ms tick when it opened
    20-27   in_flight    half-open         probes admitted, not yet reported
    28-35   successes    half-open         successful probes so far
    36-63   entered_at   half-open         ms tick when it became half-open
    63      forced_kind  forced            0 forced open, 1 forced closed

Constants (shift, width): STATE (0, 2), GEN (2, 18), FAIL (20, 32),
OPENED (20, 44), INFLIGHT (20, 8), HSUCC (28, 8), ENTERED (36, 28),
FORCED_KIND (63, 1).

Rules the word obeys:

- Every transition is one compare-and-swap of the whole word, and every
  transition increments the generation. No lock, no second word.
- Time is milliseconds on the monotonic clock (one timeline for every process
  on a host), stored modulo the field width. Elapsed time is computed modulo
  that width too, so it is exact while it stays below half the width: 2**43 ms
  for ``opened_at`` (about 278 years) and 2**27 ms for ``entered_at`` (37.3
  hours), which is why durations are capped at 2**27 - 1 ms. A half-open
  breaker left untouched for a multiple of 2**28 ms can, at worst, see its
  expiry one ``half_open_timeout`` late; it never wedges.
- A ``now`` read before another thread's transition can be older than the
  time that transition stored. Open: an ``opened_at`` after ``now`` counts as
  no time elapsed. Half-open: an ``entered_at`` up to ``STALE_NOW_TICKS``
  (2**16 ms, 65.5 s) after ``now`` counts as no time elapsed too, instead of
  as 2**28 ms, which would end the generation under its probes; the price is
  that a breaker left untouched for just under a multiple of 2**28 ms sees
  its expiry up to 65.5 s later.
- Every 64-bit value is a word of one of the four states: bits its state
  does not use are ignored (and kept until the next transition), and counts
  beyond their limits (probes in flight, successes) only make it reject or
  conclude sooner. So a cell holding arbitrary bytes, as a corrupted shared
  segment may, is still a working breaker; ``reset()`` makes it a clean one.
- The word's generation wraps after 2**18 transitions; tickets carry it in
  full (below).

Tickets
-------
A ticket names the state and the full generation that admitted a call::

    bits    field
    0       1            never 0, so a rejection (0) is the only falsy result
    1-2     state
    3-44    generation   modulo 2**TICKET_GEN_BITS (2**42)
    45-61   probe        not read by the core: the Python API's half-open
    62      tracked      bookkeeping (qbreaker._impl.probes); 0 from the cimport API
    63      0            (the compiled core marks a timed ``with`` ticket there)

Bits 0-20 are ``head << 1 | 1``. The generation's bits above the word's 18
come from the transitions total ``T``, which the winner of every transition
(``_transition``, the only place a generation changes: reset, force and
shared cells included) increments once, right after its CAS. The full
generation ``G`` is the one congruent to the word's modulo 2**18 that lies
nearest ``T``, read next to the word: ``T`` lags ``G`` by the transitions
whose count is still pending and leads it by those counted after the word
was read. That is exact while fewer than 2**17 transitions separate the two,
and a ticket is then misread as current only if it was held across an exact
multiple of 2**42 transitions (51 days of ``reset()`` at a million a
second). A ticket whose state and generation differ from the current ones is
stale: its outcome is counted in totals and changes no state. The same
18-bit word can still repeat under an operation that is descheduled between
its load and its CAS for 2**18 transitions (the CAS compares the word alone),
and a rate window's buckets are keyed by the word's 18 bits.

Time arguments
--------------
Every operation takes ``now`` in ticks, or ``NOW_AUTO`` to read the monotonic
clock lazily, only on paths that decide by time (open, half-open, tripping).
The closed path never reads a clock.
"""

from __future__ import annotations

from ._validate import integer

STATE_SHIFT, STATE_BITS = 0, 2
GEN_SHIFT, GEN_BITS = 2, 18
FAIL_SHIFT, FAIL_BITS = 20, 32
OPENED_SHIFT, OPENED_BITS = 20, 44
INFLIGHT_SHIFT, INFLIGHT_BITS = 20, 8
HSUCC_SHIFT, HSUCC_BITS = 28, 8
ENTERED_SHIFT, ENTERED_BITS = 36, 28
FORCED_KIND_SHIFT, FORCED_KIND_BITS = 63, 1
HEAD_BITS = STATE_BITS + GEN_BITS

S_CLOSED, S_OPEN, S_HALF_OPEN, S_FORCED = 0, 1, 2, 3
OUTCOME_FAILURE, OUTCOME_SUCCESS, OUTCOME_NEUTRAL = 0, 1, 2
# Or'ed into a failure or success: the call took at least slow_call_duration.
OUTCOME_SLOW = 4
OUTCOME_BASE = 3  # masks the slow flag off
WINDOW_NONE, WINDOW_COUNT, WINDOW_TIME = 0, 1, 2
# A bucket's key: the generation it counts for, above its epoch.
KEY_EPOCH_BITS = 40
#: The generation's bits in a ticket (see "Tickets").
TICKET_GEN_BITS = 42
NOW_AUTO = (1 << 64) - 1
#: How far behind a half-open entry time a `now` may be and still be read as
#: "no time elapsed" (a stale reading) rather than as a wrap-around.
STALE_NOW_TICKS = 1 << 16

STATE_FIELD = (1 << STATE_BITS) - 1
GEN_FIELD = (1 << GEN_BITS) - 1
FAIL_MAX = (1 << FAIL_BITS) - 1
OPENED_FIELD = (1 << OPENED_BITS) - 1
INFLIGHT_MAX = (1 << INFLIGHT_BITS) - 1
HSUCC_MAX = (1 << HSUCC_BITS) - 1
ENTERED_FIELD = (1 << ENTERED_BITS) - 1
HEAD_FIELD = (1 << HEAD_BITS) - 1
FAIL_MASK = FAIL_MAX << FAIL_SHIFT
TICKET_GEN_FIELD = (1 << TICKET_GEN_BITS) - 1
#: The bits of a ticket that say whether it is current.
TICKET_BASE = (TICKET_GEN_FIELD << (STATE_BITS + 1)) | (1 << (STATE_BITS + 1)) - 1
#: Bit 63 stays clear: the compiled core marks a timed ``with`` ticket there.
TICKET_MAX = (1 << 63) - 1
GEN_HALF = 1 << (GEN_BITS - 1)

#: Every layout constant by name; the compiled core exports the same dict.
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
KEY_EPOCH_FIELD = (1 << KEY_EPOCH_BITS) - 1

# The Python API's half-open bookkeeping in a ticket (see "Tickets" and
# qbreaker._impl.probes), above the bits that the core reads.
#: Set in every tracked ticket: its release must find it outstanding.
TRACKED = 1 << 62
PROBE_SHIFT = 45
BASE_FIELD = (1 << PROBE_SHIFT) - 1
PROBE_BITS = 62 - PROBE_SHIFT
PROBE_FIELD = (1 << PROBE_BITS) - 1


# -- word builders -----------------------------------------------------------


def next_gen(w: int) -> int:
    return ((w >> GEN_SHIFT) + 1) & GEN_FIELD


def closed_word(gen: int) -> int:
    return S_CLOSED | gen << GEN_SHIFT


def open_word(gen: int, now: int) -> int:
    return S_OPEN | gen << GEN_SHIFT | (now & OPENED_FIELD) << OPENED_SHIFT


def half_open_word(gen: int, in_flight: int, successes: int, entered: int) -> int:
    return (
        S_HALF_OPEN
        | gen << GEN_SHIFT
        | in_flight << INFLIGHT_SHIFT
        | successes << HSUCC_SHIFT
        | (entered & ENTERED_FIELD) << ENTERED_SHIFT
    )


def forced_word(gen: int, kind_closed: int) -> int:
    return S_FORCED | gen << GEN_SHIFT | kind_closed << FORCED_KIND_SHIFT


def ticket_of(transitions: int, w: int) -> int:
    """The ticket of word ``w``; ``transitions``: the total, read before ``w``.

    The full generation is the one nearest ``transitions`` that agrees with
    the word's modulo 2**18 (see "Tickets").
    """
    gen = (w >> GEN_SHIFT) - transitions + GEN_HALF
    full = transitions + (gen & GEN_FIELD) - GEN_HALF
    return (full & TICKET_GEN_FIELD) << (STATE_BITS + 1) | (w & STATE_FIELD) << 1 | 1


def full_generation(transitions: int, w: int) -> int:
    """The full generation of word ``w`` (a ticket's generation field);
    ``transitions``: the total, read before ``w``."""
    return ticket_of(transitions, w) >> (STATE_BITS + 1)


def state_name(w: int) -> str:
    """The state a word is in, by name: closed, open, half-open,
    forced-open or forced-closed."""
    state = w & STATE_FIELD
    if state == S_FORCED:
        return "forced-closed" if w >> FORCED_KIND_SHIFT else "forced-open"
    return _STATE_NAMES[state]


_STATE_NAMES = ("closed", "open", "half-open")


def check_generation(generation: object) -> int:
    """A full generation, as ``open_for`` returns it (0 means "none")."""
    value = integer(generation)
    if value is None:
        raise TypeError(
            f"generation must be an int returned by open_for(), got "
            f"{generation!r} ({type(generation).__name__})"
        )
    if not 0 < value <= TICKET_GEN_FIELD:
        raise ValueError(
            f"generation must be a full generation returned by open_for() "
            f"(an int in [1, {TICKET_GEN_FIELD}]), got {generation!r}"
        )
    return value


def outcome_code(ok: object) -> int:
    if ok is True:
        return OUTCOME_SUCCESS
    if ok is False:
        return OUTCOME_FAILURE
    if ok is None:
        return OUTCOME_NEUTRAL
    raise TypeError(
        f"ok must be True (success), False (failure) or None (neutral), got {ok!r}"
    )


def check_ticket(ticket: object) -> int:
    value = integer(ticket)
    if value is None:
        raise TypeError(
            f"ticket must be an int returned by acquire(), got {ticket!r} "
            f"({type(ticket).__name__})"
        )
    if not (0 < value <= TICKET_MAX) or not value & 1:
        raise ValueError(
            f"ticket must be a non-zero ticket returned by acquire() (an odd int "
            f"in [1, {TICKET_MAX}]), got {ticket!r}"
        )
    return value
