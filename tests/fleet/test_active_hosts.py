"""Active hosts in the fleet-wide view: every sync records its host's time
(backend time), trimmed by age; ``overview()`` returns the hosts that synced
within a window, on both backends (the spec and the scripts in Redis), and
``python -m qbreaker status --fleet`` prints them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from qbreaker.fleet._protocol import (
    ACTIVE_HOSTS_KEPT_MS,
    ACTIVE_WITHIN_MS,
    ActiveHost,
)

from .helpers import T0, Host, delta, policy
from .test_host_agent import wall_ms
from .test_status_fleet_cli import status_fleet


def test_hosts_that_synced_within_the_window(backend: Any) -> None:
    pol = policy()
    h1, h2, h3 = (Host(backend, h) for h in ("h1", "h2", "h3"))
    h1.sync(T0, delta("db", pol))
    h2.sync(T0 + 1_000, delta("db", pol))
    h3.sync(T0 + 2_500)  # a sync without breakers is a sign of life too
    at = T0 + 3_000
    overview = backend.overview(ACTIVE_WITHIN_MS, time_ms=at)
    assert overview.active_hosts == (
        ActiveHost("h1", 3_000), ActiveHost("h2", 2_000), ActiveHost("h3", 500)
    )  # fmt: skip
    assert overview.active_within_ms == ACTIVE_WITHIN_MS
    assert overview.states == backend.view(time_ms=at)
    # The window's edge is in it; a host a millisecond older is not.
    assert [h.host_id for h in backend.overview(2_000, time_ms=at).active_hosts] == [
        "h2", "h3"
    ]  # fmt: skip
    assert backend.overview(1, time_ms=at).active_hosts == ()
    # A resent (duplicate) sync still says the host is alive.
    h1.resend(T0 + 2_900)
    assert backend.overview(1_000, time_ms=at).active_hosts == (
        ActiveHost("h1", 100), ActiveHost("h3", 500)
    )  # fmt: skip


def test_the_record_is_bounded_by_age(backend: Any) -> None:
    pol = policy()
    for i in range(20):
        Host(backend, f"old{i}").sync(T0, delta("db", pol))
    later = T0 + ACTIVE_HOSTS_KEPT_MS
    Host(backend, "new").sync(later, delta("db", pol))
    # At the edge the old ones are still kept (and in the widest window).
    widest = backend.overview(ACTIVE_HOSTS_KEPT_MS, time_ms=later).active_hosts
    assert len(widest) == 21
    Host(backend, "newer").sync(later + 1, delta("db", pol))
    widest = backend.overview(ACTIVE_HOSTS_KEPT_MS, time_ms=later + 1).active_hosts
    assert [h.host_id for h in widest] == ["new", "newer"]


@pytest.mark.fleet
def test_redis_keeps_one_sorted_set_trimmed_by_age(make_redis_backend: Any) -> None:
    backend = make_redis_backend()
    pol = policy()
    for i in range(50):
        Host(backend, f"h{i}").sync(T0 + i, delta("db", pol))
    hosts_key = backend.keys[7]
    assert hosts_key.endswith(":hosts")
    client = backend._client
    assert client.type(hosts_key) == b"zset"
    assert client.zcard(hosts_key) == 50
    Host(backend, "late").sync(T0 + ACTIVE_HOSTS_KEPT_MS + 10, delta("db", pol))
    assert client.zrange(hosts_key, 0, -1) == [
        f"h{i}".encode() for i in range(10, 50)
    ] + [b"late"]


def test_a_clock_gone_back_gives_no_negative_age(backend: Any) -> None:
    Host(backend, "h1").sync(T0 + 5_000, delta("db", policy()))
    assert backend.overview(1_000, time_ms=T0).active_hosts == (ActiveHost("h1", 0),)


@pytest.mark.parametrize(
    ("within", "error", "match"),
    [
        (0, ValueError, r"active_within_ms must be in \[1, 300000\], got 0"),
        (ACTIVE_HOSTS_KEPT_MS + 1, ValueError, "active_within_ms must be in"),
        ("3000", TypeError, "active_within_ms must be an int"),
        (True, TypeError, "active_within_ms must be an int"),
    ],
)
def test_a_bad_window_is_refused(
    backend: Any, within: object, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        backend.overview(within, time_ms=T0)


@pytest.mark.fleet
def test_status_fleet_prints_the_active_hosts(
    redis_client: Any, make_redis_backend: Any, namespace: str
) -> None:
    backend = make_redis_backend()
    pol = policy()
    now = wall_ms()  # the command line's view uses Redis TIME
    Host(backend, "web-1").sync(now, delta("pay", pol))
    Host(backend, "web-2").sync(now, delta("pay", pol))
    Host(backend, "gone").sync(now - 60_000, delta("pay", pol))
    port = redis_client.connection_pool.connection_kwargs["port"]
    url = f"redis://127.0.0.1:{port}/0"
    done = status_fleet("--url", url, "--namespace", namespace)
    assert done.returncode == 0, done.stderr
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("active hosts")]
    assert line.startswith("active hosts (synced within 3 s): 2: web-1 (")
    assert "web-2 (" in line and "gone" not in line
    done = status_fleet("--url", url, "--namespace", namespace, "--json")
    assert done.returncode == 0, done.stderr
    view = json.loads(done.stdout)
    assert [h["host_id"] for h in view["active_hosts"]] == ["web-1", "web-2"]
    assert all(0 <= h["ms_ago"] < ACTIVE_WITHIN_MS for h in view["active_hosts"])
    assert view["active_within_ms"] == ACTIVE_WITHIN_MS


@pytest.mark.fleet
def test_status_fleet_without_any_host_says_none(
    redis_client: Any, namespace: str
) -> None:
    port = redis_client.connection_pool.connection_kwargs["port"]
    done = status_fleet(
        "--url", f"redis://127.0.0.1:{port}/0", "--namespace", namespace
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "no fleet breakers in this namespace",
        "active hosts (synced within 3 s): 0",
    ]
