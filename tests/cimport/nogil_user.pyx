# cython: language_level=3, freethreading_compatible=True
"""A third-party extension driving a breaker through the cimport API."""

from libc.stdint cimport uint64_t

from qbreaker._core_c cimport (
    OUTCOME_FAILURE,
    OUTCOME_SUCCESS,
    QB_NOW_AUTO,
    CircuitBreaker,
    qb_admit,
    qb_cell,
    qb_nogil_cell,
    qb_settle,
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
