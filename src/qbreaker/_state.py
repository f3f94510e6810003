"""Public value types shared by both cores."""

from __future__ import annotations

import enum
from typing import NamedTuple


class State(enum.IntEnum):
    """A breaker's state. The values are the state bits of the packed word."""

    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2

    def __str__(self) -> str:
        return _STATE_NAMES[self]

    def __format__(self, spec: str) -> str:
        return format(_STATE_NAMES[self], spec)


_STATE_NAMES = {
    State.CLOSED: "closed",
    State.OPEN: "open",
    State.HALF_OPEN: "half-open",
}


class Totals(NamedTuple):
    """Monotonic counters of everything a breaker has seen since creation.

    ``allowed`` and ``rejected`` count admission decisions; ``successes``,
    ``failures`` and ``neutral`` count reported outcomes, stale ones included;
    ``transitions`` counts state changes (every new generation); ``opens``
    the transitions into open (trips, ``open_for``, failed probes; forcing
    open is not one), host-wide for a shared breaker.
    """

    allowed: int
    rejected: int
    successes: int
    failures: int
    neutral: int
    transitions: int
    opens: int = 0
