"""A backend on 127.0.0.1 that the test switches between healthy and dead.

It keeps listening while dead and answers 503, so that it can count every
call that reached it. Each request is recorded with the phase the test set
and the headers the app forwards: which worker sent it, and the state and
generation of the breaker that admitted it.

A probe (a call a half-open breaker admitted) is held ``probe_hold`` seconds
before the answer, so that its time in the backend dominates its time in
flight. It stops counting as in progress before its answer is sent, so its
time in progress lies inside the breaker's admit-to-settle: the backend's
count of probes in progress at once is at most the breaker's count of
probes in flight (and equal to it while the holds overlap), and its peak,
per half-open generation, is what the test holds to ``half_open_max``.
(Counted after sending, a descheduled handler thread let the next probe
begin before the last one ended, and the peak read one too high.)
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Hashable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Generic, NamedTuple, TypeVar, cast


class Hit(NamedTuple):
    """One request that reached the backend."""

    phase: str
    healthy: bool
    pid: int
    admitted: str  # "closed" or "half-open": the admitting state
    generation: int


class Backend:
    """``with Backend() as backend``: serves until the block ends."""

    def __init__(self, probe_hold: float = 0.25) -> None:
        self.phase = "start"
        self.healthy = True
        self.probe_hold = probe_hold
        self._hits: list[Hit] = []
        # Probes in progress: by generation (every worker's probes of one
        # generation together), by (worker, generation), and all of them.
        self._by_generation: _Gauge[int] = _Gauge()
        self._by_worker: _Gauge[tuple[int, int]] = _Gauge()
        self._all: _Gauge[None] = _Gauge()
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.backend = self
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="qbreaker-e2e-backend",
            daemon=True,
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/call"

    def switch(self, phase: str, healthy: bool) -> None:
        """From now on, answer as ``healthy`` and file hits under ``phase``."""
        with self._lock:
            self.phase, self.healthy = phase, healthy

    def hits(self, phase: str | None = None) -> list[Hit]:
        with self._lock:
            return [h for h in self._hits if phase is None or h.phase == phase]

    def peak_probes(self) -> tuple[Counter[int], Counter[tuple[int, int]], int]:
        """The most probes in progress at once: by generation, by (worker,
        generation), and in all."""
        with self._lock:
            return (
                Counter(self._by_generation.peak),
                Counter(self._by_worker.peak),
                self._all.peak[None],
            )

    def begin(self, pid: int, admitted: str, generation: int) -> tuple[int, bool]:
        """Count a request; its status, and whether it is a probe."""
        probe = admitted == "half-open"
        with self._lock:
            self._hits.append(Hit(self.phase, self.healthy, pid, admitted, generation))
            if probe:
                self._by_generation.enter(generation)
                self._by_worker.enter((pid, generation))
                self._all.enter(None)
            status = 200 if self.healthy else 503
        if probe:
            time.sleep(self.probe_hold)
        return status, probe

    def end(self, pid: int, generation: int) -> None:
        """A probe's answer is ready, about to be sent."""
        with self._lock:
            self._by_generation.leave(generation)
            self._by_worker.leave((pid, generation))
            self._all.leave(None)

    def __enter__(self) -> Backend:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._thread.join(10)
        self._server.server_close()


K = TypeVar("K", bound=Hashable)


class _Gauge(Generic[K]):
    """How many are in progress now, and the most at once, by key."""

    def __init__(self) -> None:
        self.now: Counter[K] = Counter()
        self.peak: Counter[K] = Counter()

    def enter(self, key: K) -> None:
        self.now[key] += 1
        self.peak[key] = max(self.peak[key], self.now[key])

    def leave(self, key: K) -> None:
        self.now[key] -= 1


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # four workers and their retries, never refused
    backend: Backend


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        backend = cast(_Server, self.server).backend
        pid = int(self.headers.get("X-Worker-Pid", "0"))
        generation = int(self.headers.get("X-Breaker-Generation", "-1"))
        admitted = self.headers.get("X-Breaker-Admitted", "?")
        status, probe = backend.begin(pid, admitted, generation)
        if probe:
            backend.end(pid, generation)
        body = b"ok" if status == 200 else b"dead"
        try:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except OSError:
            pass  # the caller gave up: nobody to answer

    def log_message(self, format: str, *args: object) -> None:
        pass
