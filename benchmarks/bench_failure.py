"""Closed state, failure path: consecutive failures up to the trip.

``max_failures`` equals the round, so every round is 99 counted failures and
one trip (one clock read, one transition); ``setup`` closes it again.
"""

from __future__ import annotations

from _common import scenario_test
from qbreaker._cli.bench.scenarios import FAILURE_TRIP

test_failure_trip = scenario_test(FAILURE_TRIP)
