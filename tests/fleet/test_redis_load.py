"""benchmarks/fleet_redis_load.py, a short run: its figures hold together.

The benchmark starts its own redis-server and simulated hosts (one agent
each) and reads ``INFO commandstats`` around a quiet stretch. Here a short
run (HOSTS x BREAKERS, SECONDS) checks its numbers against the agents'
model: one EVALSHA per host per quiet tick, a blocking XREAD every 500 ms,
each sync reading the state of every breaker it carries (the busy ones, and
an idle closed one every FULL_SYNC_TICKS ticks), only the commands the
fleet's ACL allows, and the extrapolations' arithmetic.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.fleet, pytest.mark.fleet_matrix, pytest.mark.c_extension]
pytest.importorskip("redis", reason="the fleet extra (redis-py) is missing")

from qbreaker.fleet.agent import (  # noqa: E402 - needs redis
    EVENTS_BLOCK_MS,
    FULL_SYNC_TICKS,
)
from qbreaker.fleet.redis_backend import (  # noqa: E402
    ACL_COMMANDS,
    HANDSHAKE_COMMANDS,
)

BENCHMARK = Path(__file__).parents[2] / "benchmarks" / "fleet_redis_load.py"
HOSTS = 3
BREAKERS = 20
SECONDS = 8.0
#: The agents' quiet tick (qbreaker.fleet.agent).
TICK = 1.0
#: HGETs of one breaker in a sync (its policy, ring, state, trip reports),
#: and at most those of the sync itself (the test clock's flag, the epoch,
#: the version, the host's seq twice).
HGETS_PER_BREAKER = 4
HGETS_PER_SYNC = 5


@pytest.mark.parametrize("idle", [0, 15])
def test_short_run_is_consistent(idle: int) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (scripts/ci_redis.sh installs it)")
    out = subprocess.run(
        [sys.executable, str(BENCHMARK), "--json", "--seconds", str(SECONDS),
         "--hosts", str(HOSTS), "--breakers", str(BREAKERS), "--idle", str(idle)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout  # fmt: skip
    result = json.loads(out.splitlines()[-1])
    commands = result["commands"]
    seconds = result["seconds"]
    calls = {name: c["calls"] for name, c in commands.items()}
    print(f"\nfleet_redis_load, {HOSTS} hosts x {BREAKERS} breakers ({idle} idle), "
          f"{seconds:.1f} s:")  # fmt: skip
    print(f"  {calls}")
    print(f"  {result['extrapolation']}")
    assert len(result["agents"]) == HOSTS
    assert all(a["syncs"] > 0 and not any(a["errors"].values())
               for a in result["agents"])  # fmt: skip
    # Only what the fleet's minimal ACL allows (scripts' commands included).
    # (A connection made during the run adds its handshake: HELLO, and the
    # agent's CLIENT SETNAME.)
    allowed = set(ACL_COMMANDS) | set(HANDSHAKE_COMMANDS)
    assert set(commands) <= allowed, set(commands) - allowed
    # One sync per host per quiet tick (a tick starts after the last reply).
    ticks = HOSTS * seconds / TICK
    assert 0.7 * ticks <= calls["evalsha"] <= ticks + HOSTS
    # One blocking XREAD per host at a time, each EVENTS_BLOCK_MS (no events).
    reads = HOSTS * seconds / (EVENTS_BLOCK_MS / 1000)
    assert 0.6 * reads <= calls["xread"] <= reads + 2 * HOSTS
    # Every sync reads the state of each busy breaker; an idle one is read
    # by the full syncs alone (at most one per host every FULL_SYNC_TICKS
    # ticks, one at the start, and one after trouble).
    busy = BREAKERS - idle
    assert result["carried_per_sync"] == busy + idle / FULL_SYNC_TICKS
    full_syncs = HOSTS * (2 + seconds / (FULL_SYNC_TICKS * TICK))
    assert calls["hget"] >= HGETS_PER_BREAKER * calls["evalsha"] * busy
    assert calls["hget"] <= (
        HGETS_PER_BREAKER * (calls["evalsha"] * busy + full_syncs * idle)
        + HGETS_PER_SYNC * calls["evalsha"]
    )
    x = result["extrapolation"]
    per_host = calls["evalsha"] / HOSTS / seconds
    assert x["syncs_per_host_s"] == pytest.approx(per_host)
    assert x["target_syncs_per_s"] == pytest.approx(200 * per_host)
    usec = commands["evalsha"]["usec"] / calls["evalsha"]
    assert x["target_sync_usec"] == pytest.approx(usec / BREAKERS * 1000)
    fit = result["calibration"]
    assert fit["per_breaker_usec"] > 0
    carried_at_1000 = result["carried_per_sync"] * 1000 / BREAKERS
    assert x["fitted_sync_usec"] == pytest.approx(
        fit["fixed_usec"] + fit["per_breaker_usec"] * carried_at_1000
    )
