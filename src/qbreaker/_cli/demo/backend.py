"""The demo's flaky backend: a local HTTP server that follows a fixed script.

The script is a pure function of the elapsed fraction of the run and of the
request's serial number, so two backends started together (one behind a
breaker, one not) meet the same outage at the same moments.

A request may say who sent it and whether it is a half-open probe, in its
query (``?host=host1&probe=1``, the fleet demo's callers do): the backend
counts both, and the probes it is answering at once.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
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


class Tags(NamedTuple):
    """What a request's query says about it."""

    host: str  # "" when it does not say
    probe: bool

    @classmethod
    def of(cls, path: str) -> Tags:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
        return cls(query.get("host", [""])[0], query.get("probe") == ["1"])


UNTAGGED = Tags("", probe=False)


class Backend:
    """The script served on 127.0.0.1, on a port the system picks.

    ``latency``: how long every answer takes (a hanging one takes ``hang``).
    """

    def __init__(
        self, start: float, seconds: float, hang: float, latency: float = 0.0
    ) -> None:
        self.start, self.seconds, self.hang = start, seconds, hang
        self.latency = latency
        self.calls: Counter[str] = Counter()  # requests received, by phase
        self.probes: Counter[str] = Counter()  # probes received, by phase
        self.by_host: Counter[str] = Counter()  # requests, by the host they name
        self.probes_by_host: Counter[str] = Counter()
        # The most probes answered at once, by phase (of their arrival).
        self.peak_probes: Counter[str] = Counter()
        self.served = 0
        self._probing = 0  # probes being answered now
        self._interval_peak = 0
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

    @property
    def probing(self) -> int:
        """Probes being answered now (a caller may hold its reply a moment before
        the handler marks it finished)."""
        with self._lock:
            return self._probing

    def take_peak_probes(self) -> int:
        """The most probes answered at once since the last call."""
        with self._lock:
            peak, self._interval_peak = self._interval_peak, self._probing
        return peak

    def answer(self, tags: Tags = UNTAGGED) -> tuple[int, bytes]:
        """Count this request, follow the script (maybe hanging), and reply.
        A probe stays counted as answered until ``finished(tags)``."""
        phase = phase_at((time.monotonic() - self.start) / self.seconds)
        with self._lock:
            self.served += 1
            serial = self.served
            self.calls[phase] += 1
            self.by_host[tags.host] += 1
            if tags.probe:
                self.probes[phase] += 1
                self.probes_by_host[tags.host] += 1
                self._probing += 1
                self._interval_peak = max(self._interval_peak, self._probing)
                self.peak_probes[phase] = max(self.peak_probes[phase], self._probing)
        reply = reply_for(phase, serial)
        if reply.hang:
            self._stop.wait(self.hang)
        elif self.latency:
            self._stop.wait(self.latency)
        if reply.status == 200:
            return 200, f"price #{serial}".encode()
        return reply.status, b"unavailable"

    def finished(self, tags: Tags) -> None:
        """The reply to a request is written: its caller has it."""
        if tags.probe:
            with self._lock:
                self._probing -= 1


class _Server(ThreadingHTTPServer):
    # Non-daemon handler threads, so that server_close() joins them all.
    daemon_threads = False
    backend: Backend


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        backend, tags = cast(_Server, self.server).backend, Tags.of(self.path)
        status, body = backend.answer(tags)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the caller timed out and hung up: nobody to answer
        finally:
            backend.finished(tags)

    def log_message(self, format: str, *args: object) -> None:
        pass  # the timeline reports the traffic; a line per request would drown it
