# cython: language_level=3, freethreading_compatible=True
"""A third-party extension driving a breaker through the cimport API."""

from libc.stdint cimport uint64_t

from qbreaker._core_c cimport (
    OUTCOME_FAILURE,
    OUTCOME_NEUTRAL,
    OUTCOME_SLOW,
    OUTCOME_SUCCESS,
    QB_NOW_AUTO,
    CircuitBreaker,
    qb_admit,
    qb_cell,
    qb_force,
    qb_load,
    qb_nogil_cell,
    qb_renormalize,
    qb_reset,
    qb_settle,
    qb_store,
    qb_trip,
)


def hammer(CircuitBreaker b, int calls, int fail_every, uint64_t now=QB_NOW_AUTO):
    """Admit and settle `calls` calls without the GIL; returns (admitted, stale)."""
    cdef int i, admitted = 0, stale = 0
    cdef uint64_t ticket
    cdef qb_cell *cell = qb_nogil_cell(b)
    with nogil:
        for i in range(calls):
            ticket = qb_admit(cell, &b.cpolicy, now, NULL)
            if ticket:
                admitted += 1
                if not qb_settle(cell, &b.cpolicy, now, ticket,
                                 OUTCOME_FAILURE if fail_every and i % fail_every == 0
                                 else OUTCOME_SUCCESS, NULL):
                    stale += 1
    return admitted, stale


# Time steps (ticks) that drive() takes between operations: none, small ones,
# and the widths the word's time fields wrap at.
cdef uint64_t[12] STEPS = [0, 1, 10, 999, 60_000, 1 << 16, (1 << 27) - 1,
                           1 << 27, 1 << 28, 1 << 43, 1 << 44, 0xFFFF_FFFF_FFFF]


def drive(CircuitBreaker b, uint64_t word, bytes ops, uint64_t now):
    """Put `word`, any 64 bits, in the breaker's cell, then run one operation
    per byte of `ops` without the GIL (low nibble: which; high: the time step
    before it). Returns the cell's final word."""
    cdef qb_cell *cell = qb_nogil_cell(b)
    cdef uint64_t ticket = 0
    cdef const unsigned char *codes = ops
    cdef Py_ssize_t i, n = len(ops)
    cdef unsigned char op
    with nogil:
        qb_store(&cell.word, word)
        for i in range(n):
            op = codes[i] & 15
            now += STEPS[(codes[i] >> 4) % 12]
            if op == 0:
                ticket = qb_admit(cell, &b.cpolicy, now, NULL)
            elif op == 1:
                qb_settle(cell, &b.cpolicy, now, ticket, OUTCOME_SUCCESS, NULL)
            elif op == 2:
                qb_settle(cell, &b.cpolicy, now, ticket, OUTCOME_FAILURE, NULL)
            elif op == 3:
                qb_settle(cell, &b.cpolicy, now, ticket, OUTCOME_NEUTRAL, NULL)
            elif op == 4:
                qb_settle(cell, &b.cpolicy, now, 0, OUTCOME_SUCCESS, NULL)
            elif op == 5:
                qb_settle(cell, &b.cpolicy, now, 0, OUTCOME_FAILURE, NULL)
            elif op == 6:
                qb_settle(cell, &b.cpolicy, now, ticket,
                          OUTCOME_SUCCESS | OUTCOME_SLOW, NULL)
            elif op == 7:
                qb_renormalize(cell, &b.cpolicy, now, NULL)
            elif op == 8:
                qb_reset(cell, now, NULL)
            elif op == 9:
                qb_force(cell, 0, now, NULL)
            elif op == 10:
                qb_force(cell, 1, now, NULL)
            elif op == 11:
                qb_trip(cell, now, NULL)
            elif op == 12:
                # A ticket made of arbitrary bits, as a caller's bug would.
                qb_settle(cell, &b.cpolicy, now, (word ^ now) | 1,
                          OUTCOME_FAILURE, NULL)
            elif op == 13:
                # Other arbitrary bits, mid-way.
                word = word * <uint64_t>6364136223846793005 + <uint64_t>1442695040888963407
                qb_store(&cell.word, word)
            else:
                ticket = (word >> (i & 63)) | 1
        word = qb_load(&cell.word)
    return word


def admit(CircuitBreaker b, uint64_t now=QB_NOW_AUTO):
    """One qb_admit without the GIL: its ticket, or 0."""
    cdef qb_cell *cell = qb_nogil_cell(b)
    cdef uint64_t ticket
    with nogil:
        ticket = qb_admit(cell, &b.cpolicy, now, NULL)
    return ticket


def settle(CircuitBreaker b, uint64_t ticket, int outcome, uint64_t now=QB_NOW_AUTO):
    """One qb_settle without the GIL: False when the ticket was stale."""
    cdef qb_cell *cell = qb_nogil_cell(b)
    cdef bint current
    with nogil:
        current = qb_settle(cell, &b.cpolicy, now, ticket, outcome, NULL)
    return current
