"""One worker process of a simulated host in ``python -m qbreaker demo --fleet``.

``python -m qbreaker._cli.demo.fleet_worker CONFIG_JSON``, with the host's
QBREAKER_SHM_DIR in the environment. The demo talks to it in lines:

- it prints ``{"ready": true}`` once its breaker exists (the host's first
  worker, its monitor, waits for the host's agent to have synced with the
  fleet first), then reads ``go START END URL`` on stdin: monotonic times
  (one clock for every process of a machine) and the backend's URL;
- it calls the backend through the breaker, a request per ``period`` until
  END, tagging each with its host and whether its ticket is a half-open
  probe's; the monitor also prints each change of the host's state, when it
  happened and, for an open, why (``{"at": ..., "state": ..., "why": ...}``);
- at the end it prints ``{"calls": ..., "rejected": ..., "unexpected": [...]}``
  (errors qbreaker raised: there must be none) and exits 0.

It stops early on SIGTERM or when its stdin closes (the demo is gone).
"""

from __future__ import annotations

import http.client
import json
import signal
import sys
import threading
import time
import urllib.parse
from typing import Any

import qbreaker
from qbreaker import State, fleet
from qbreaker._word import S_HALF_OPEN, STATE_FIELD

from ..signals import set_on_signals
from .common import drive

MONITOR_INTERVAL = 0.01  # seconds between reads of the host's state
ORIGIN_SECONDS = 2.0  # how long an open waits for the agent to say why
READY_SECONDS = 20.0  # how long the monitor waits for the agent's first sync


def is_probe(ticket: int) -> bool:
    """Whether the ticket admitted a half-open probe: bits 1-2 of a ticket
    are the state that admitted it (``qbreaker._word``, "Tickets")."""
    return (ticket >> 1) & STATE_FIELD == S_HALF_OPEN


class Worker:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.host: str = config["host"]
        self.fleet: bool = config["fleet"]
        self.stop = threading.Event()
        self.url = ""
        self.calls = self.rejected = 0
        self.unexpected: list[str] = []
        self._lock = threading.Lock()
        if self.fleet:
            fleet.connect(
                config["redis"],
                namespace=config["namespace"],
                host_id=self.host,
                agent="auto",
            )
        self.breaker = qbreaker.CircuitBreaker(
            config["max_failures"],
            config["reset_timeout"],
            config["half_open_max"],
            half_open_timeout=config["half_open_timeout"],
            shared=config["name"],
            **({"fleet": True, "fleet_quorum": config["quorum"]} if self.fleet else {}),
        )

    def get(self) -> None:
        """One request through the breaker (``drive`` calls it)."""
        try:
            ticket = self.breaker.acquire()
        except Exception as exc:  # noqa: BLE001 - reported: there must be none
            self._unexpected(exc)
            return
        if not ticket:
            self.rejected += 1
            return
        self.calls += 1
        ok = self._call(is_probe(ticket))
        try:
            self.breaker.release(ticket, ok)
        except Exception as exc:  # noqa: BLE001
            self._unexpected(exc)

    def _call(self, probe: bool) -> bool:
        parts = urllib.parse.urlsplit(self.url)
        query = urllib.parse.urlencode({"host": self.host, "probe": int(probe)})
        connection = http.client.HTTPConnection(
            parts.hostname or "127.0.0.1", parts.port, timeout=self.config["timeout"]
        )
        try:
            connection.request("GET", f"{parts.path}?{query}")
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()

    def _unexpected(self, exc: Exception) -> None:
        with self._lock:
            self.unexpected.append(repr(exc))

    # -- the monitor (the host's first worker) ------------------------------

    def wait_for_fleet(self) -> None:
        """Until the host's agent has synced this breaker with the fleet."""
        deadline = time.monotonic() + READY_SECONDS
        while not self.stop.is_set():
            view = self.breaker.metrics().fleet
            if view is not None and view.connected and view.state is not None:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"host {self.host}: its fleet agent did not sync within "
                    f"{READY_SECONDS:g} s ({fleet.status().last_error or 'no error'})"
                )
            time.sleep(MONITOR_INTERVAL)

    def monitor(self, end: float) -> None:
        """Print each change of the host's state until ``end``."""
        seen = self.breaker.state
        while not self.stop.wait(MONITOR_INTERVAL) and time.monotonic() < end:
            state = self.breaker.state
            if state is seen:
                continue
            at = time.monotonic()
            why = self._why_open() if seen is State.CLOSED else ""
            report({"at": at, "state": str(state), "why": why})
            seen = state

    def _why_open(self) -> str:
        """Why the host's cell opened: its own trip, or the fleet's decision
        (the agent says so in its next status, a scan or a sync later)."""
        if not self.fleet:
            return "local trip"
        deadline = time.monotonic() + ORIGIN_SECONDS
        while time.monotonic() < deadline and not self.stop.is_set():
            view = self.breaker.metrics().fleet
            if view is not None and view.origin == "local":
                return "local trip"
            if view is not None and view.origin == "fleet":
                by = ", ".join(view.tripped_by) or "?"
                return f"the fleet opened it ({view.reason}: {by})"
            time.sleep(MONITOR_INTERVAL)
        return "unknown (the agent did not say)"


def stop_at_eof(stop: threading.Event) -> None:
    sys.stdin.read()
    stop.set()


def report(message: dict[str, Any]) -> None:
    print(json.dumps(message), flush=True)


def main() -> int:
    config = json.loads(sys.argv[1])
    worker = Worker(config)
    monitors = config["monitor"]
    if monitors and worker.fleet:
        worker.wait_for_fleet()
    report({"ready": True})
    line = sys.stdin.readline().split()
    if len(line) != 4 or line[0] != "go":
        return 0  # the demo stopped before the start
    start, end, worker.url = float(line[1]), float(line[2]), line[3]
    # The demo gone (stdin closed) or SIGTERM: stop at once.
    set_on_signals(worker.stop, signal.SIGTERM)
    threading.Thread(target=stop_at_eof, args=(worker.stop,), daemon=True).start()
    threads = [
        threading.Thread(
            target=drive,
            args=(worker, start + config["offset"], end, worker.stop, config["period"]),
        )
    ]
    if monitors:
        threads.append(threading.Thread(target=worker.monitor, args=(end,)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report(
        {
            "calls": worker.calls,
            "rejected": worker.rejected,
            "unexpected": worker.unexpected[:5],
        }
    )
    if worker.fleet:
        fleet.disconnect()
    return 0


if __name__ == "__main__":
    sys.exit(main())
