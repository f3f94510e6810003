"""A throwaway redis-server for ``demo --fleet``: loopback, no persistence.

It listens on 127.0.0.1 on a free port, keeps nothing on disk (its working
directory is a temporary one, removed with it), runs in a session of its own
so that a Ctrl-C in the terminal reaches the demo first (which then stops it
last, after the hosts), and on Linux is sent SIGTERM if the demo dies
without stopping it.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ATTEMPTS = 3  # a free port can be taken between choosing it and binding it
READY_SECONDS = 10.0


class RedisServerError(RuntimeError):
    """The redis-server could not be started."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LocalRedis:
    """``with LocalRedis(exe) as server:`` ``server.url`` until the block ends."""

    def __init__(self, exe: str) -> None:
        self.exe = exe
        self.url = ""
        self.pid: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None

    def __enter__(self) -> LocalRedis:
        self._dir = Path(tempfile.mkdtemp(prefix="qbreaker-demo-redis-"))
        try:
            self._start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            _stop(proc)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _start(self) -> None:
        assert self._dir is not None
        log = self._dir / "redis.log"
        last = "no attempt"
        for _ in range(ATTEMPTS):
            port = free_port()
            proc = subprocess.Popen(
                [self.exe, "--port", str(port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--daemonize", "no",
                 "--dir", str(self._dir), "--logfile", str(log)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )  # fmt: skip
            self._proc, self.pid = proc, proc.pid
            if _answers(proc, port):
                self.url = f"redis://127.0.0.1:{port}/0"
                return
            _stop(proc)
            self._proc = None
            last = log.read_text(errors="replace")[-300:] if log.exists() else ""
        raise RedisServerError(
            f"redis-server did not start on 127.0.0.1: {last.strip() or 'no log'}"
        )


def _answers(proc: subprocess.Popen[bytes], port: int) -> bool:
    """Whether it answers PING before it exits or READY_SECONDS pass."""
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
            return
        except subprocess.TimeoutExpired:
            proc.kill()
    proc.wait()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    # PR_SET_PDEATHSIG: SIGTERM when the thread that started it ends (the
    # demo's main thread: the demo dying, even by SIGKILL).
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
