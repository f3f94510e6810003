"""The half-open probes that the Python API admitted and that have not reported.

A ticket names a state and a generation, not a call: every probe of one
half-open generation would get the same one, and releasing one probe's ticket
twice would free another probe's slot, letting more than ``half_open_max``
probes out at once. So ``acquire()`` (and ``with``, ``call()``, the
decorator) turns a half-open ticket into a tracked one, unique among this
process's outstanding probes of the breaker, and the first release of it
forgets it here. A later release of a ticket that is not outstanding changes
nothing while the ticket's generation is current (the breaker checks that);
once the generation has moved on, it is an ordinary stale ticket.

The twin uses this class; the compiled core mirrors it in C (``_Probes`` in
``_core_c.pyx``), same numbers, same tickets. Closed-state tickets never come
here: the closed path stays one load and one count. Tickets from the cimport
API are not tracked (see docs/cython-api.md): their bits 45-62 are 0.
"""

from __future__ import annotations

import threading

from .._forksafe import LockRenewal
from .._word import BASE_FIELD, PROBE_FIELD, PROBE_SHIFT, TRACKED

# The ticket bits too: the compiled core reads them through this module.
__all__ = ("BASE_FIELD", "FORGET_AT", "PROBE_FIELD", "PROBE_SHIFT", "TRACKED", "Probes")

#: Outstanding tickets kept before those of ended generations are dropped (a
#: caller that never releases one must not grow the set for ever). A current
#: generation holds at most half_open_max (< 256) of them, each in a slot.
FORGET_AT = 1024


class Probes:
    """Tracked half-open tickets of one breaker in this process, not yet released."""

    __slots__ = ("lock", "_next", "_out", "__weakref__")

    def __init__(self) -> None:
        # A lock rather than a lone dict operation: numbering, the collision
        # check and the insert must be one step on free-threaded builds too.
        self.lock = threading.Lock()
        self._next = 0
        self._out: set[int] = set()
        _renewed.add(self)

    def issue(self, ticket: int) -> int:
        """``ticket`` (a half-open one, just admitted) made unique and tracked."""
        base = ticket & BASE_FIELD
        with self.lock:
            out = self._out
            if len(out) >= FORGET_AT:
                self._out = out = {t for t in out if t & BASE_FIELD == base}
            number = self._next
            tracked = base | TRACKED | number << PROBE_SHIFT
            while tracked in out:  # a probe out for 2**17 issues: skip its number
                number = (number + 1) & PROBE_FIELD
                tracked = base | TRACKED | number << PROBE_SHIFT
            self._next = (number + 1) & PROBE_FIELD
            out.add(tracked)
        return tracked

    def release(self, ticket: int) -> bool:
        """True if ``ticket`` was outstanding: this is its first release."""
        with self.lock:
            if ticket not in self._out:
                return False
            self._out.discard(ticket)
            return True

    def __len__(self) -> int:
        return len(self._out)


# A lock held by another thread when this process forks is renewed in the child.
_renewed = LockRenewal("lock")
