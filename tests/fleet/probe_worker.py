"""One worker of a simulated host in the probe-lease and backend-fault tests.

``python probe_worker.py HOST_ID MODE REDIS_URL NAMESPACE BACKEND_PORT [PAUSE]``,
with the host's QBREAKER_SHM_DIR in the environment. MODE "fleet": a fleet
breaker (the fleet's agent runs in an elected worker); "host": the same
host-wide breaker without the fleet. It calls the backend through the
breaker every PAUSE s (else CALL_PAUSE) until SIGTERM, and prints "ready" once the
breaker exists, then a JSON summary (calls made, errors qbreaker raised, the
longest a call and its breaker operations took).

A call that a half-open cell admitted (a probe: its ticket is a tracked
one) carries e2e_support's PROBE_HEADER with the generation it probes
under: the fleet's, as this host's agent last saw it, in fleet mode; the
cell's own in host mode. ``CONFIG_ENV``, a JSON object, overrides the
breaker's settings (``max_failures``, ``reset_timeout``, ``half_open_max``,
``success_threshold``) and ``call_timeout``, the caller's timeout.
"""

from __future__ import annotations

import faulthandler
import http.client
import json
import os
import signal
import sys
import threading
import time
from typing import Any

#: Set by SIGTERM. Installed before qbreaker is imported (a slow start on a
#: loaded machine): a worker stopped while it starts still prints its summary.
STOP = threading.Event()
if __name__ == "__main__":
    # Set from a thread: the handler may run inside STOP.wait(), which holds
    # the event's lock (qbreaker._cli.signals says why; not imported here,
    # as it imports qbreaker).
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=STOP.set).start())
    # A worker that does not stop is asked for its threads' stacks first.
    faulthandler.register(signal.SIGUSR1, all_threads=True)

import qbreaker  # noqa: E402 - after the handlers
from qbreaker import fleet  # noqa: E402
from qbreaker._word import BASE_FIELD, TRACKED  # noqa: E402

MAX_FAILURES = 3
RESET_TIMEOUT = 1.0
HALF_OPEN_MAX = 1
CALL_PAUSE = 0.01
CALL_TIMEOUT = 5.0
CONFIG_ENV = "QBREAKER_PROBE_WORKER"
#: The same as e2e_support.PROBE_HEADER (this script imports no test module).
PROBE_HEADER = "X-Probe-Generation"
NAME = "pay"


def main() -> int:
    host_id, mode, url, namespace, port = sys.argv[1:6]
    pause = float(sys.argv[6]) if len(sys.argv) > 6 else CALL_PAUSE
    config = json.loads(os.environ.get(CONFIG_ENV, "{}"))
    call_timeout = float(config.pop("call_timeout", CALL_TIMEOUT))
    settings: dict[str, Any] = {
        "max_failures": MAX_FAILURES,
        "reset_timeout": RESET_TIMEOUT,
        "half_open_max": HALF_OPEN_MAX,
        **config,
    }
    stop = STOP
    if mode == "fleet":
        fleet.connect(url, namespace=namespace, host_id=host_id, timeout=0.25)
        settings.update(fleet=True, fleet_quorum=2)
    breaker = qbreaker.CircuitBreaker(**settings, shared=NAME)
    calls = 0
    longest_call = longest_breaker = 0.0
    unexpected: list[str] = []
    print("ready", flush=True)
    while not stop.is_set():
        try:
            started = time.perf_counter()
            ticket = breaker.acquire()
            took = time.perf_counter() - started
            if ticket:
                calls += 1
                began = time.perf_counter()
                ok = _call(host_id, int(port), _probe_of(ticket, mode), call_timeout)
                longest_call = max(longest_call, time.perf_counter() - began)
                started = time.perf_counter()
                breaker.release(ticket, ok)
                took += time.perf_counter() - started
            longest_breaker = max(longest_breaker, took)
        except Exception as exc:  # noqa: BLE001 - counted: there must be none
            unexpected.append(repr(exc))
        stop.wait(pause)
    summary = {
        "host": host_id,
        "calls": calls,
        "unexpected": unexpected[:5],
        "longest_call_s": longest_call,
        "longest_breaker_s": longest_breaker,
    }
    print(json.dumps(summary), flush=True)
    return 0


def _probe_of(ticket: int, mode: str) -> int | None:
    """The generation a probe's ticket probes under; None for a closed call."""
    if not ticket & TRACKED:
        return None
    if mode == "fleet":
        view = fleet.status().breakers.get(NAME)
        return 0 if view is None else view.generation
    return ticket & BASE_FIELD


def _call(host_id: str, port: int, probe: int | None, timeout: float) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {} if probe is None else {PROBE_HEADER: str(probe)}
    try:
        connection.request("GET", f"/{host_id}", headers=headers)
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


if __name__ == "__main__":
    sys.exit(main())
