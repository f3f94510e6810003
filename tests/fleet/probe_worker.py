"""One worker of a simulated host in the probe-lease end-to-end test.

``python probe_worker.py HOST_ID MODE REDIS_URL NAMESPACE BACKEND_PORT [PAUSE]``,
with the host's QBREAKER_SHM_DIR in the environment. MODE "fleet": a fleet
breaker (the fleet's agent runs in an elected worker); "host": the same
host-wide breaker without the fleet. It calls the backend through the
breaker every PAUSE s (else CALL_PAUSE) until SIGTERM, and prints "ready" once the
breaker exists, then a JSON summary (calls made, errors qbreaker raised).
"""

from __future__ import annotations

import http.client
import json
import signal
import sys
import threading

import qbreaker
from qbreaker import fleet

MAX_FAILURES = 3
RESET_TIMEOUT = 1.0
HALF_OPEN_MAX = 1
CALL_PAUSE = 0.01


def main() -> int:
    host_id, mode, url, namespace, port = sys.argv[1:6]
    pause = float(sys.argv[6]) if len(sys.argv) > 6 else CALL_PAUSE
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if mode == "fleet":
        fleet.connect(url, namespace=namespace, host_id=host_id, timeout=0.25)
    breaker = qbreaker.CircuitBreaker(
        MAX_FAILURES,
        RESET_TIMEOUT,
        HALF_OPEN_MAX,
        shared="pay",
        fleet=mode == "fleet",
        **({"fleet_quorum": 2} if mode == "fleet" else {}),
    )
    calls = 0
    unexpected: list[str] = []
    print("ready", flush=True)
    while not stop.is_set():
        try:
            ticket = breaker.acquire()
            if ticket:
                calls += 1
                breaker.release(ticket, _call(host_id, int(port)))
        except Exception as exc:  # noqa: BLE001 - counted: there must be none
            unexpected.append(repr(exc))
        stop.wait(pause)
    print(json.dumps({"host": host_id, "calls": calls, "unexpected": unexpected[:5]}))
    return 0


def _call(host_id: str, port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", f"/{host_id}")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


if __name__ == "__main__":
    sys.exit(main())
