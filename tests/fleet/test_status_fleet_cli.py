"""``python -m qbreaker status --fleet``, in a real process, against a real
redis-server: the fleet-wide view, and a clear failure without Redis."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
from typing import Any

from .helpers import Host, delta, policy
from .test_host_agent import wall_ms


def status_fleet(*options: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QBREAKER_FLEET")}
    return subprocess.run(
        [sys.executable, "-m", "qbreaker", "status", "--fleet", *options],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip


def test_the_fleet_wide_view_from_redis(
    redis_client: Any, make_redis_backend: Any, namespace: str
) -> None:
    backend = make_redis_backend()
    pol = policy()
    other = dataclasses.replace(pol, reset_timeout_ms=9_000)
    now = wall_ms()
    h1, h2, h3 = (Host(backend, h) for h in ("h1", "h2", "h3"))
    h1.sync(now, delta("pay", pol, tripped=True), delta("search", pol))
    h2.sync(now, delta("pay", pol, tripped=True))  # the quorum: open
    h3.sync(now, delta("pay", other))  # a rolling policy change
    port = redis_client.connection_pool.connection_kwargs["port"]
    url = f"redis://127.0.0.1:{port}/0"
    done = status_fleet("--url", url, "--namespace", namespace)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == [
        "name", "state", "gen", "remaining", "tripped", "by", "reason", "lease"
    ]  # fmt: skip
    pay = next(line for line in lines if line.startswith("pay "))
    assert " open " in pay and "h1, h2" in pay
    search = next(line for line in lines if line.startswith("search "))
    assert " closed " in search
    assert any(
        line.startswith("policy conflict: 'pay' from host h3") for line in lines
    ), lines
    done = status_fleet("--url", url, "--namespace", namespace, "--json")
    assert done.returncode == 0, done.stderr
    view = json.loads(done.stdout)
    states = {b["name"]: b for b in view["breakers"]}
    assert states["pay"]["state"] == "open"
    assert sorted(states["pay"]["tripped_by"]) == ["h1", "h2"]
    assert [c["host_id"] for c in view["policy_conflicts"]] == ["h3"]


def test_an_unreachable_redis_is_one_clear_line_and_exit_1() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = status_fleet("--url", f"redis://127.0.0.1:{port}/0", "--namespace", "x")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("the fleet backend is unreachable (")
    assert done.stderr.strip().endswith("no fleet-wide view")


def test_without_a_namespace_it_says_so_and_exits_2() -> None:
    done = status_fleet("--url", "redis://127.0.0.1:1/0")
    assert done.returncode == 2
    assert "namespace is required" in done.stderr
