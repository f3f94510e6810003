"""Real servers on 127.0.0.1 for the integration tests, scripted per test.

``Backend`` is a threaded HTTP/1.1 server: each request gets the backend's
current ``status``, ``headers`` and ``body``, after ``hang`` seconds when
set, or a body cut short with ``truncate``. It counts the requests it
received (``hits``). ``closed_port()`` is a port nothing listens on, so a
connection to it is refused.
"""

from __future__ import annotations

import asyncio
import http.server
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave at once, not 40 ms apart (Nagle and delayed ACK).
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:
        self.server.backend._serve(self)

    do_POST = do_PUT = do_DELETE = do_HEAD = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    backend: Backend


class Backend:
    """An HTTP server on 127.0.0.1 answering as scripted."""

    def __init__(self) -> None:
        self.status = 200
        self.headers: dict[str, str] = {}
        self.body = b"ok"
        self.hang = 0.0  # seconds before answering (cut short by close())
        self.truncate = False  # announce more body than is sent, then close
        self.hits = 0
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.backend = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.02,), daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self, handler: _Handler) -> None:
        with self._lock:
            self.hits += 1
            status, headers, body = self.status, dict(self.headers), self.body
            hang, truncate = self.hang, self.truncate
        length = int(handler.headers.get("Content-Length") or 0)
        if length:
            handler.rfile.read(length)
        if hang and self._closing.wait(hang):
            return
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body) + (100 if truncate else 0)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)
        if truncate:
            handler.wfile.flush()
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)

    async def until_hits(self, hits: int) -> None:
        """Wait (at most 5 s) until the backend has received ``hits``
        requests, so that a call being cancelled is known to be in flight."""
        for _ in range(500):
            if self.hits >= hits:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"the backend got {self.hits} requests, not {hits}")

    def close(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@contextmanager
def backend() -> Iterator[Backend]:
    server = Backend()
    try:
        yield server
    finally:
        server.close()


def closed_port() -> int:
    """A port on 127.0.0.1 that was just free: connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
