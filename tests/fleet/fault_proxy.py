"""A TCP proxy on 127.0.0.1 between one host's agent and Redis, for faults.

Each simulated host of the fault matrix talks to Redis through its own
proxy, so that one host can be cut off alone. The proxy forwards bytes both
ways with a thread per direction, and on command:

- ``latency(s)``: delays every chunk it forwards by ``s`` seconds;
- ``blackhole()``: keeps every connection open but forwards nothing (what a
  partition looks like: the agent's calls time out), new ones included;
- ``reset()``: closes every open connection with a TCP RST (SO_LINGER 0);
- ``drop()``: resets every connection and refuses new ones until ``heal()``;
- ``reset_every(s)``: resets every connection every ``s`` seconds, from a
  thread, until ``heal()``.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

#: The most bytes one read forwards.
CHUNK = 65536


class FaultProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.mode = "pass"
        self.delay = 0.0
        self.accepted = 0
        self.resets = 0
        self._lock = threading.Lock()
        self._open: list[tuple[socket.socket, socket.socket]] = []
        self._stop = threading.Event()
        self._resetting: threading.Event | None = None
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        threading.Thread(target=self._accept, daemon=True).start()

    # -- faults ----------------------------------------------------------------
    def latency(self, seconds: float) -> None:
        self.delay = seconds

    def blackhole(self) -> None:
        self.mode = "blackhole"

    def drop(self) -> None:
        self.mode = "drop"
        self.reset()

    def reset(self) -> None:
        with self._lock:
            pairs, self._open = self._open, []
        for pair in pairs:
            for sock in pair:
                _abort(sock)
        self.resets += len(pairs)

    def reset_every(self, seconds: float) -> None:
        resetting = threading.Event()
        self._resetting = resetting

        def loop() -> None:
            while not resetting.wait(seconds) and not self._stop.is_set():
                self.reset()

        threading.Thread(target=loop, daemon=True).start()

    def heal(self) -> None:
        """Back to forwarding everything at once, with no delay."""
        if self._resetting is not None:
            self._resetting.set()
            self._resetting = None
        self.delay = 0.0
        self.mode = "pass"

    def connections(self) -> int:
        """How many client connections are open through the proxy now."""
        with self._lock:
            return len(self._open)

    def close(self) -> None:
        self.heal()
        self._stop.set()
        self.reset()
        self._listener.close()

    # -- forwarding ------------------------------------------------------------
    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:  # noqa: UP041 - 3.9's is not TimeoutError
                continue
            except OSError:
                return
            if self.mode == "drop":
                _abort(client)
                continue
            try:
                upstream = socket.create_connection(
                    ("127.0.0.1", self.target_port), timeout=2
                )
            except OSError:
                _abort(client)  # Redis is down: so is the proxied connection
                continue
            upstream.settimeout(None)
            client.settimeout(None)
            with self._lock:
                self._open.append((client, upstream))
            self.accepted += 1
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(
                    target=self._pump, args=(source, sink), daemon=True
                ).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(CHUNK)
                if not data:
                    break
                if self.mode == "blackhole":
                    continue  # swallowed: the peer waits for its timeout
                if self.delay:
                    time.sleep(self.delay)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open = [p for p in self._open if source not in p]
            _abort(source)
            _abort(sink)


def _abort(sock: socket.socket) -> None:
    """Close with an RST rather than a FIN: what a killed connection sends."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # Wakes the other direction's thread blocked in recv on it.
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
