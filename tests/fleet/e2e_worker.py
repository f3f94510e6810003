"""One worker process of a simulated host in the fleet end-to-end test.

``python e2e_worker.py HOST_ID REDIS_URL NAMESPACE BACKEND_PORT``, with the
host's QBREAKER_SHM_DIR in the environment. It joins the fleet (the agent
runs in whichever worker of its host is elected), then calls the counting
backend through a fleet breaker every few ms until SIGTERM, and prints a
JSON summary: calls, rejections, errors qbreaker raised (there must be none),
and the longest time the breaker itself took on a call.
"""

from __future__ import annotations

import http.client
import json
import signal
import sys
import threading
import time

import qbreaker
from qbreaker import fleet

#: The breaker every worker of every host uses (the e2e test reads these).
MAX_FAILURES = 3
RESET_TIMEOUT = 3.0
CALL_PAUSE = 0.02


def main() -> int:
    host_id, url, namespace, port = sys.argv[1:5]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    fleet.connect(url, namespace=namespace, host_id=host_id, timeout=0.25)
    breaker = qbreaker.CircuitBreaker(
        MAX_FAILURES, RESET_TIMEOUT, 1, shared="pay", fleet=True, fleet_quorum=2
    )
    calls = rejected = failures = 0
    unexpected: list[str] = []
    slowest = 0.0
    print("ready", flush=True)
    while not stop.is_set():
        started = time.perf_counter()
        try:
            admitted = breaker.allow()
        except Exception as exc:  # noqa: BLE001 - counted: there must be none
            unexpected.append(repr(exc))
            admitted = False
        slowest = max(slowest, time.perf_counter() - started)
        if not admitted:
            rejected += 1
        else:
            calls += 1
            ok = _call(host_id, int(port))
            started = time.perf_counter()
            try:
                if ok:
                    breaker.record_success()
                else:
                    failures += 1
                    breaker.record_failure()
            except Exception as exc:  # noqa: BLE001
                unexpected.append(repr(exc))
            slowest = max(slowest, time.perf_counter() - started)
        stop.wait(CALL_PAUSE)
    summary = {
        "host": host_id,
        "calls": calls,
        "rejected": rejected,
        "failures": failures,
        "unexpected": unexpected[:5],
        "slowest_breaker_ms": slowest * 1000,
    }
    print(json.dumps(summary), flush=True)
    return 0


def _call(host_id: str, port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", f"/{host_id}")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


if __name__ == "__main__":
    sys.exit(main())
