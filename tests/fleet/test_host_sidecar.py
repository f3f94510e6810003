"""``python -m qbreaker agent`` (the sidecar) and ``python -m qbreaker fleet``
against the session's real redis-server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

import qbreaker
from qbreaker import fleet

from .host_helpers import host_dir

__all__ = ("host_dir",)  # a fixture

pytestmark = [pytest.mark.fleet, pytest.mark.c_extension]


def redis_url(client: Any) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}/0"


def cli_env(url: str, namespace: str) -> dict[str, str]:
    return {
        **os.environ,
        "QBREAKER_FLEET_URL": url,
        "QBREAKER_FLEET_NAMESPACE": namespace,
        "QBREAKER_FLEET_HOST_ID": "sidecar-host",
    }


def test_sidecar_agent_serves_workers_that_never_connect_to_redis(
    host_dir: str, redis_client: Any, namespace: str
) -> None:
    url = redis_url(redis_client)
    fleet.connect(url, namespace=namespace, agent="sidecar")
    breaker = qbreaker.CircuitBreaker(2, 30.0, shared="pay", fleet=True)
    sidecar = subprocess.Popen(
        [sys.executable, "-m", "qbreaker", "agent"],
        env=cli_env(url, namespace),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            current = fleet.status()
            if current.connected and "pay" in current.breakers:
                break
            time.sleep(0.02)
        assert current.connected, current
        assert (current.mode, current.agent_pid) == ("sidecar", sidecar.pid)
        assert current.host_id == "sidecar-host"
        # This worker runs no agent, so it opens no connection.
        assert fleet._runner is None
        assert breaker.metrics().fleet.state == "closed"
        done = subprocess.run(
            [sys.executable, "-m", "qbreaker", "fleet", "open", "pay"],
            env=cli_env(url, namespace),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert "pay: fleet forced_open" in done.stdout
        deadline = time.monotonic() + 5
        while breaker.state != qbreaker.State.OPEN and time.monotonic() < deadline:
            time.sleep(0.005)
        assert breaker.state == qbreaker.State.OPEN
        assert fleet.status().breakers["pay"].origin == "fleet"
    finally:
        sidecar.send_signal(signal.SIGTERM)
        out, err = sidecar.communicate(timeout=30)
    assert sidecar.returncode == 0, err
    assert f"pid {sidecar.pid}" in out
    # It gave its lease back on the way out.
    assert not fleet.status().agent_alive


def test_fleet_command_with_redis_unreachable_changes_nothing(host_dir: str) -> None:
    env = cli_env("redis://127.0.0.1:9/0", "unreachable")
    done = subprocess.run(
        [sys.executable, "-m", "qbreaker", "fleet", "close", "pay"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "unreachable" in done.stderr and "nothing is queued" in done.stderr
    # --host-only needs the host's segment, and no Redis.
    breaker = qbreaker.CircuitBreaker(2, 30.0, shared="pay")
    done = subprocess.run(
        [sys.executable, "-m", "qbreaker", "fleet", "open", "pay", "--host-only"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert breaker.forced == "open"
