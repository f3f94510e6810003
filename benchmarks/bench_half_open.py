"""Half-open: probes admitted and released as successes.

The breaker allows 255 probes at once and needs 255 successes to close, so a
round of 100 probes never closes it; before every round ``setup`` restores a
fresh half-open generation (outside the timing).
"""

from __future__ import annotations

from _common import scenario_test
from qbreaker._cli.bench.scenarios import HALF_OPEN

test_half_open = scenario_test(HALF_OPEN)
