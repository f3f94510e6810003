"""The demo's flaky backend: a local HTTP server that follows a fixed script.

The script is a pure function of the elapsed fraction of the run and of the
request's serial number, so two backends started together (one behind a
breaker, one not) meet the same outage at the same moments.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple, cast

# Each phase with the fraction of the run at which it ends.
PHASES = (("healthy", 0.25), ("503s", 0.45), ("hanging", 0.65), ("recovering", 1.0))
OUTAGE = ("503s", "hanging")
# While recovering, every n-th request still fails: "mostly healthy".
RECOVERY_FAILS_EVERY = 10


class Reply(NamedTuple):
    status: int
    hang: bool  # hold the request past the client's timeout before answering


def phase_at(fraction: float) -> str:
    """The script's phase at ``fraction`` (elapsed / run length) of the run."""
    for name, end in PHASES:
        if fraction < end:
            return name
    return PHASES[-1][0]


def reply_for(phase: str, serial: int) -> Reply:
    """What the ``serial``-th request (counting from 1) gets in ``phase``."""
    if phase == "503s":
        return Reply(503, hang=False)
    if phase == "hanging":
        return Reply(504, hang=True)
    if phase == "recovering" and serial % RECOVERY_FAILS_EVERY == 0:
        return Reply(503, hang=False)
    return Reply(200, hang=False)


class Backend:
    """The script served on 127.0.0.1, on a port the system picks."""

    def __init__(self, start: float, seconds: float, hang: float) -> None:
        self.start, self.seconds, self.hang = start, seconds, hang
        self.calls: Counter[str] = Counter()  # requests received, by phase
        self.served = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.backend = self
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="qbreaker-demo-backend",
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/price"

    def __enter__(self) -> Backend:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()  # wakes hanging handlers, so closing does not wait
        self._server.shutdown()
        self._thread.join()
        self._server.server_close()  # joins the handler threads

    def answer(self) -> tuple[int, bytes]:
        """Count this request, follow the script (maybe hanging), and reply."""
        phase = phase_at((time.monotonic() - self.start) / self.seconds)
        with self._lock:
            self.served += 1
            serial = self.served
            self.calls[phase] += 1
        reply = reply_for(phase, serial)
        if reply.hang:
            self._stop.wait(self.hang)
        if reply.status == 200:
            return 200, f"price #{serial}".encode()
        return reply.status, b"unavailable"


class _Server(ThreadingHTTPServer):
    # Non-daemon handler threads, so that server_close() joins them all.
    daemon_threads = False
    backend: Backend


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        status, body = cast(_Server, self.server).backend.answer()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the caller timed out and hung up: nobody to answer

    def log_message(self, format: str, *args: object) -> None:
        pass  # the timeline reports the traffic; a line per request would drown it
