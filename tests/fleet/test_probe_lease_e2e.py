"""The probe lease end to end: how many probes reach a dead backend.

HOSTS simulated hosts (each its own segment directory and host id) with
WORKERS worker processes each (tests/fleet/probe_worker.py), a real
redis-server, and a local HTTP backend that fails every call, records each
one's start and end, and takes PROBE_SLEEP over it (so that probes that
overlap are seen to). Once every host's cell is open, the backend's
arrivals over WINDOW are the probes; the same run is made in host-wide mode
(no fleet) for comparison. Printed with ``-s``.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qbreaker import State, shared

from ..redis_server import free_port
from . import probe_worker
from .servers import redis_process, wait_for

pytestmark = [pytest.mark.fleet, pytest.mark.fleet_matrix, pytest.mark.c_extension]
redis = pytest.importorskip("redis", reason="the fleet extra (redis-py) is missing")

HOSTS = 4
WORKERS = 2
PROBE_SLEEP = 0.05
WINDOW = 4 * probe_worker.RESET_TIMEOUT
WORKER = Path(__file__).with_name("probe_worker.py")


class DeadBackend:
    """Every ``GET /HOST`` fails after PROBE_SLEEP; (host, start, end) kept."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float, float]] = []
        lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                started = time.monotonic()
                time.sleep(PROBE_SLEEP)
                with lock:
                    outer.calls.append(
                        (self.path.strip("/"), started, time.monotonic())
                    )
                self.send_response(500)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def between(self, since: float, until: float) -> list[tuple[str, float, float]]:
        return [c for c in list(self.calls) if since <= c[1] < until]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def most_at_once(calls: list[tuple[str, float, float]]) -> int:
    """The most calls in flight at one instant."""
    edges = sorted([(s, 1) for _, s, _ in calls] + [(e, -1) for _, _, e in calls])
    most = current = 0
    for _, step in edges:
        current += step
        most = max(most, current)
    return most


class Host:
    def __init__(self, base: Path, host_id: str, mode: str, args: list[str]) -> None:
        self.directory = base / f"{mode}-{host_id}"
        self.directory.mkdir(mode=0o700)
        env = {
            **os.environ,
            "QBREAKER_SHM_DIR": str(self.directory),
        }
        self.workers = [
            subprocess.Popen(
                [sys.executable, str(WORKER), host_id, mode, *args],
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            for _ in range(WORKERS)
        ]
        self._cell: Any = None

    def state(self) -> Any:
        if self._cell is None:
            saved = os.environ.get("QBREAKER_SHM_DIR")
            os.environ["QBREAKER_SHM_DIR"] = str(self.directory)
            try:
                self._cell = shared.open_existing("pay")
            except Exception:  # noqa: BLE001 - not made yet
                return None
            finally:
                if saved is None:
                    del os.environ["QBREAKER_SHM_DIR"]
                else:
                    os.environ["QBREAKER_SHM_DIR"] = saved
        return self._cell.state

    def stop(self) -> list[dict[str, Any]]:
        for worker in self.workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        summaries = []
        for worker in self.workers:
            try:
                out, _ = worker.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                worker.kill()
                out, _ = worker.communicate()
            summaries += [json.loads(x) for x in out.splitlines() if x.startswith("{")]
        return summaries


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict[str, Any]]:
    base = Path(tempfile.mkdtemp(prefix="qbreaker-lease-e2e-", dir="/dev/shm"
                                 if os.path.isdir("/dev/shm") else None))  # fmt: skip
    backend = DeadBackend()
    port = free_port()
    try:
        with redis_process(tmp_path, "redis", "--port", str(port)):
            client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
            wait_for(client.ping, "redis-server")
            client.close()
            yield {
                "base": base,
                "backend": backend,
                "url": f"redis://127.0.0.1:{port}/0",
            }
    finally:
        backend.close()
        shutil.rmtree(base, ignore_errors=True)


def probes(world: dict[str, Any], mode: str) -> tuple[int, int, list[dict[str, Any]]]:
    """Backend calls over WINDOW once every host is open, the most at once,
    and the workers' summaries."""
    args = [world["url"], f"lease-{os.getpid()}-{mode}", str(world["backend"].port)]
    hosts = [Host(world["base"], f"host{i}", mode, args) for i in range(HOSTS)]
    try:
        wait_for(
            lambda: all(h.state() == State.OPEN for h in hosts),
            f"every host open ({mode})",
            timeout=60,
        )
        started = time.monotonic()
        time.sleep(WINDOW)
        calls = world["backend"].between(started, time.monotonic())
    finally:
        summaries = [s for h in hosts for s in h.stop()]
    return len(calls), most_at_once(calls), summaries


def test_one_probe_host_at_a_time(world: dict[str, Any]) -> None:
    fleet_calls, fleet_most, fleet_summaries = probes(world, "fleet")
    host_calls, host_most, host_summaries = probes(world, "host")
    print(
        f"\nprobes reaching a dead backend over {WINDOW:.0f} s, {HOSTS} hosts x "
        f"{WORKERS} workers, reset_timeout {probe_worker.RESET_TIMEOUT} s, "
        f"half_open_max {probe_worker.HALF_OPEN_MAX}:\n"
        f"  fleet (probe lease): {fleet_calls} calls, at most {fleet_most} at once\n"
        f"  host-wide:           {host_calls} calls, at most {host_most} at once"
    )
    assert all(not s["unexpected"] for s in fleet_summaries + host_summaries)
    assert len(fleet_summaries) == len(host_summaries) == HOSTS * WORKERS
    # Host-wide, every host probes once per reset_timeout.
    assert host_calls >= HOSTS * (WINDOW / probe_worker.RESET_TIMEOUT - 1)
    # The fleet: one host at a time, a probe per fleet open at most.
    assert fleet_calls <= WINDOW / probe_worker.RESET_TIMEOUT + 1
    assert fleet_most <= probe_worker.HALF_OPEN_MAX
