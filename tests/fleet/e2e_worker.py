"""One worker process of a simulated host in the fleet end-to-end test.

``python e2e_worker.py HOST_ID REDIS_URL NAMESPACE BACKEND_PORT``, with the
host's QBREAKER_SHM_DIR in the environment. It joins the fleet (the agent
runs in whichever worker of its host is elected), then calls the counting
backend through a fleet breaker every few ms until SIGTERM (idle while the
host's PAUSE file exists), and prints a JSON summary: calls, rejections,
errors qbreaker raised (there must be none), and the longest time the
breaker itself took on a call. Every breaker operation's end and duration
go to OPS_FILE in the host's directory, for the test's per-phase figures.
"""

from __future__ import annotations

import array
import faulthandler
import http.client
import json
import logging
import os
import signal
import sys
import threading
import time

#: Set by SIGTERM. Installed before qbreaker is imported (a slow start on a
#: loaded machine): a worker stopped while it starts still prints its summary.
STOP = threading.Event()
# Run as a script, or imported by name by another worker script (the fault
# matrix's matrix_worker.py); never when the tests import it as a module.
if __name__ in ("__main__", "e2e_worker"):
    # Set from a thread: the handler may run inside STOP.wait(), which holds
    # the event's lock (qbreaker._cli.signals says why; not imported here,
    # as it imports qbreaker).
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=STOP.set).start())
    # A worker that does not stop is asked for its threads' stacks first.
    faulthandler.register(signal.SIGUSR1, all_threads=True)

import qbreaker  # noqa: E402 - after the handlers
from qbreaker import fleet  # noqa: E402

#: The breaker every worker of every host uses (the e2e test reads these).
MAX_FAILURES = 3
RESET_TIMEOUT = 3.0
CALL_PAUSE = 0.02
#: A call this long is slow. The slow-call rule needs every call of 1000 in
#: the window to be slow, so only the counts matter here, never a trip.
SLOW_CALL = 0.03
PAUSE = "pause"
OPS_FILE = "ops-{pid}.bin"
#: Set: qbreaker's warnings go to stderr (the fault matrix counts them).
LOG_ENV = "QBREAKER_E2E_LOG"


def main() -> int:
    host_id, url, namespace, port = sys.argv[1:5]
    directory = os.environ["QBREAKER_SHM_DIR"]
    paused = os.path.join(directory, PAUSE)
    stop = STOP
    if os.environ.get(LOG_ENV):
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    fleet.connect(url, namespace=namespace, host_id=host_id, timeout=0.25)
    breaker = qbreaker.CircuitBreaker(
        MAX_FAILURES,
        RESET_TIMEOUT,
        1,
        shared="pay",
        fleet=True,
        fleet_quorum=2,
        window_seconds=10.0,
        minimum_calls=1000,
        slow_call_duration=SLOW_CALL,
        slow_call_rate_threshold=1.0,
    )
    calls = rejected = failures = 0
    unexpected: list[str] = []
    ops = array.array("d")  # (end, duration) of every breaker operation
    print("ready", flush=True)
    while not stop.is_set():
        if os.path.exists(paused):
            stop.wait(0.005)
            continue
        started = time.perf_counter()
        try:
            ticket = breaker.acquire()
        except Exception as exc:  # noqa: BLE001 - counted: there must be none
            unexpected.append(repr(exc))
            ticket = 0
        ops.extend((time.monotonic(), time.perf_counter() - started))
        if not ticket:
            rejected += 1
        else:
            calls += 1
            began = time.perf_counter()
            ok = _call(host_id, int(port))
            took = time.perf_counter() - began
            started = time.perf_counter()
            try:
                breaker.release(ticket, ok, took)
            except Exception as exc:  # noqa: BLE001
                unexpected.append(repr(exc))
            ops.extend((time.monotonic(), time.perf_counter() - started))
            failures += not ok
        stop.wait(CALL_PAUSE)
    with open(os.path.join(directory, OPS_FILE.format(pid=os.getpid())), "wb") as f:
        ops.tofile(f)
    summary = {
        "host": host_id,
        "calls": calls,
        "rejected": rejected,
        "failures": failures,
        "unexpected": unexpected[:5],
        "slowest_breaker_ms": max(ops[1::2], default=0.0) * 1000,
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
