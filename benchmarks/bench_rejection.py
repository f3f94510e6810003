"""Open state: the non-raising rejection, and the raising one.

``open-reject``: ``allow()`` returning False (the closed scenario's loop, only
the answer differs), against the empty loop and the floor's ``allow()``.
``open-raise``: ``with breaker:`` and ``call(f)`` raising CircuitOpenError,
caught in Python, against the floor raising from C and the peers' errors.
"""

from __future__ import annotations

from _common import scenario_test
from qbreaker._cli.bench.scenarios import OPEN_RAISE, OPEN_REJECT

test_open_reject = scenario_test(OPEN_REJECT)
test_open_raise = scenario_test(OPEN_RAISE)
