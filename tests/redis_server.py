"""A real ``redis-server`` on 127.0.0.1 for the tests that need Redis.

The session fixture ``redis_backend`` (tests/conftest.py) starts one on a free
port, without persistence, and stops it at the end. Only if it cannot start
(``scripts/ci_redis.sh`` installs it) does the fixture hand out fakeredis, with
the reason: the pybreaker compat tests then run there and warn, while the fleet
tests, whose Lua fakeredis does not run faithfully, skip with that reason.
"""

from __future__ import annotations

import dataclasses
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


@dataclasses.dataclass
class Backend:
    kind: str
    connect: Callable[..., Any]
    fallback_reason: str | None = None
    port: int | None = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start_redis(exe: str, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    redis = pytest.importorskip("redis")
    last = "no attempt"
    for attempt in range(3):
        port = free_port()
        log = workdir / f"redis-{attempt}.log"
        proc = subprocess.Popen(
            [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--dir", str(workdir),
             "--logfile", str(log)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                redis.Redis(host="127.0.0.1", port=port, socket_timeout=1).ping()
                return proc, port
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        proc.kill()
        proc.wait(10)
        last = log.read_text(errors="replace")[-500:] if log.exists() else "no log"
    raise RuntimeError(f"redis-server did not answer PING: {last}")


def redis_server() -> Iterator[Backend]:
    """The generator behind the ``redis_backend`` fixture."""
    redis = pytest.importorskip("redis")
    exe = shutil.which("redis-server")
    reason = None
    if exe is None:
        reason = "redis-server is not installed (scripts/ci_redis.sh installs it)"
    else:
        workdir = Path(tempfile.mkdtemp(prefix="qbreaker-redis-"))
        try:
            proc, port = _start_redis(exe, workdir)
        except Exception as exc:  # noqa: BLE001 - reported by every test
            reason = f"redis-server could not start: {exc}"
    if reason is None:
        try:
            yield Backend(
                "redis-server",
                lambda **kw: redis.Redis(host="127.0.0.1", port=port, **kw),
                port=port,
            )
        finally:
            proc.terminate()
            proc.wait(10)
            shutil.rmtree(workdir, ignore_errors=True)
        return
    fakeredis = pytest.importorskip("fakeredis")
    server = fakeredis.FakeServer()
    yield Backend(
        "fakeredis", lambda **kw: fakeredis.FakeRedis(server=server, **kw), reason
    )
