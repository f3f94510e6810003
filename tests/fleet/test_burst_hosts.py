"""The burst rule across real hosts: simulated hosts (each its own process,
segment directory and host id, its own elected agent) on a real redis-server.

No host fails often enough to trip on its own, yet together they reach
``fleet_max_failures`` with no success, and the fleet opens every host's
cell, that of a host that never failed included.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ..redis_server import Backend

pytestmark = [pytest.mark.fleet, pytest.mark.c_extension]
pytest.importorskip("redis", reason="the fleet extra (redis-py) is missing")

FLEET_MAX_FAILURES = 4
#: Failures each host records: none trips alone (max_failures 50), together
#: they make the burst.
FAILURES = (2, 2, 0)

HOST = """
import json, sys, time
import qbreaker
from qbreaker import fleet

url, namespace = sys.argv[1], sys.argv[2]
failures, burst = int(sys.argv[3]), int(sys.argv[4])
fleet.connect(url, namespace=namespace, timeout=2.0)
breaker = qbreaker.CircuitBreaker(
    50, 30.0, shared="pay", fleet=True, fleet_max_failures=burst
)
# The agent counts from its first sight of the cell: fail only after it.
deadline = time.monotonic() + 20.0
while time.monotonic() < deadline:
    view = breaker.metrics().fleet
    if view is not None and view.connected:
        break
    time.sleep(0.01)
for _ in range(failures):
    try:
        with breaker:
            raise OSError("the backend failed")
    except OSError:
        pass

def opened_by_the_fleet() -> bool:
    # The agent publishes its view just after the cell's CAS: wait for both.
    view = breaker.metrics().fleet
    return str(breaker.state) == "open" and view is not None and bool(view.origin)


deadline = time.monotonic() + 20.0
while not opened_by_the_fleet() and time.monotonic() < deadline:
    time.sleep(0.01)
view = breaker.metrics().fleet
print(json.dumps({
    "state": str(breaker.state),
    "fleet_reason": None if view is None else view.reason,
    "origin": None if view is None else view.origin,
}))
"""


def test_a_burst_spread_over_hosts_opens_every_host(
    redis_client: Any, redis_backend: Backend, namespace: str, tmp_path: Path
) -> None:
    url = f"redis://127.0.0.1:{redis_backend.port}/0"
    hosts = []
    for index, failures in enumerate(FAILURES):
        directory = tmp_path / f"host{index}"
        directory.mkdir()
        env = {
            **os.environ,
            "QBREAKER_SHM_DIR": str(directory),
            "QBREAKER_FLEET_HOST_ID": f"host{index}",
            "QBREAKER_REQUIRE_EXTENSIONS": "1",
        }
        env.pop("QBREAKER_NO_EXTENSIONS", None)
        hosts.append(
            subprocess.Popen(
                [sys.executable, "-c", HOST, url, namespace, str(failures),
                 str(FLEET_MAX_FAILURES)],  # fmt: skip
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = []
    for host in hosts:
        out, err = host.communicate(timeout=60)
        assert host.returncode == 0, err
        results.append(json.loads(out))
    for index, result in enumerate(results):
        # Opened by the fleet on every host: no host reached its own
        # max_failures of 50 (that would be origin "local").
        assert result["state"] == "open", (index, result)
        assert result["fleet_reason"] == "burst", (index, result)
        assert result["origin"] == "fleet", (index, result)
