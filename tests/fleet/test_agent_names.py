"""The agent's connection names (``CLIENT SETNAME``), and what they show.

Every connection a host's agent opens is named
``qbreaker-agent:<namespace>:<host id>:<pid>``, on every topology (plain,
TLS, unix, Sentinel, Cluster), each checked on real redis-server processes.
Counted by ``CLIENT LIST`` on a real redis-server, with several simulated
hosts of several worker processes: at most one agent per host at any time,
across an election change (the elected worker killed with SIGKILL), with
the time without a leader held to 3 ticks, and the leader changes of a
loaded run counted (a busy 2-core machine must not flap the election).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qbreaker.fleet._protocol import SyncRequest
from qbreaker.fleet.connection import (
    agent_client_name,
    connect_redis,
    parse_agent_client_name,
)

from .conftest import TEST_TIMEOUT, RedisBackend
from .e2e_support import (
    Host,
    RedisProcess,
    wait_for,
    wait_for_takeover,
    wait_synced,
    world_fixture,
)
from .helpers import delta, policy
from .servers import Cluster, SentinelGroup, log_tail, redis_process
from .servers import wait_for as wait_until
from .test_connection import tls_server, tls_url
from .test_topologies import cluster, sentinel_setup

redis = pytest.importorskip("redis", reason="the fleet extra (redis-py) is missing")

__all__ = ("cluster", "sentinel_setup", "tls_server", "world_fixture")  # fixtures

#: The agents' quiet tick (qbreaker.fleet.agent's default sync interval).
TICK = 1.0


# -- the names -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host_id", "encoded"),
    [
        ("web-1", "web-1"),
        ("rack 7/web 1", "rack%207/web%201"),  # Redis refuses spaces in a name
        ("db:primary", "db:primary"),
        ("100%", "100%25"),
        ("hôte-é", "h%C3%B4te-%C3%A9"),  # and any byte outside ASCII
    ],
)
def test_a_name_per_agent_that_redis_accepts_and_that_parses_back(
    host_id: str, encoded: str
) -> None:
    name = agent_client_name("payments", host_id, 4242)
    assert name == f"qbreaker-agent:payments:{encoded}:4242"
    assert all("!" <= c <= "~" for c in name)
    assert parse_agent_client_name(name) == ("payments", host_id, 4242)


@pytest.mark.parametrize(
    "name",
    ["", "x", "qbreaker-agent:", "qbreaker-agent:ns:h:pid", "qbreaker-agent:ns:9"],
)
def test_other_names_are_not_agents(name: str) -> None:
    assert parse_agent_client_name(name) is None


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        ("with space", ValueError, "without spaces"),
        ("", ValueError, "without spaces"),
        ("tab\there", ValueError, "without spaces"),
        (7, TypeError, "client_name must be a str"),
    ],
)
def test_a_bad_client_name_is_refused_before_connecting(
    bad: object, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        connect_redis("redis://127.0.0.1:1/0", client_name=bad)  # type: ignore[arg-type]


# -- every topology names its connections --------------------------------------


def names_on(port: int, **options: Any) -> list[str]:
    """The connection names a redis-server (or Sentinel) on ``port`` lists."""
    with redis.Redis(
        host="127.0.0.1", port=port, socket_timeout=TEST_TIMEOUT, **options
    ) as client:
        return [entry.get("name", "") for entry in client.client_list()]


def exercise_named(url: str, namespace: str, **options: Any) -> tuple[str, Any]:
    """A backend with an agent's name that syncs and reads events (both of
    its clients connect); the name and the backend, still open."""
    name = agent_client_name(namespace, "host one", os.getpid())
    backend = RedisBackend.from_url(
        url, namespace, timeout=TEST_TIMEOUT, client_name=name, **options
    )
    reply = backend.sync(SyncRequest("host one", 1, (delta("db", policy()),)))
    assert reply.states[0].state == "closed"
    backend.events("$", 1)
    return name, backend


@pytest.mark.fleet
def test_plain_connections_are_named(redis_client: Any, namespace: str) -> None:
    port = redis_client.connection_pool.connection_kwargs["port"]
    name, backend = exercise_named(f"redis://127.0.0.1:{port}/0", namespace)
    try:
        # The sync client's connection and the events client's.
        assert names_on(port).count(name) == 2
    finally:
        backend.close()
    wait_until(lambda: name not in names_on(port), "the named connections to close")


@pytest.mark.fleet
def test_tls_connections_are_named(
    tls_server: tuple[Path, int], namespace: str
) -> None:
    certs, port = tls_server
    files = {
        "ssl_certfile": str(certs / "client.crt"),
        "ssl_keyfile": str(certs / "client.key"),
    }
    name, backend = exercise_named(
        tls_url(certs, "localhost", port, **files), namespace
    )
    try:
        listed = names_on(
            port, ssl=True, ssl_ca_certs=str(certs / "ca.crt"),
            ssl_check_hostname=False, **files,
        )  # fmt: skip
        assert listed.count(name) == 2
    finally:
        backend.close()


@pytest.mark.fleet
def test_unix_socket_connections_are_named(tmp_path: Path, namespace: str) -> None:
    sock = Path(f"/tmp/qb-n-{os.getpid()}-{namespace[-6:]}.sock")
    try:
        with redis_process(
            tmp_path, "unix", "--port", "0", "--unixsocket", str(sock),
            "--unixsocketperm", "700",
        ):  # fmt: skip
            wait_until(sock.exists, f"the unix socket ({log_tail(tmp_path, 'unix')})")
            name, backend = exercise_named(f"unix://{sock}", namespace)
            try:
                with redis.Redis(unix_socket_path=str(sock)) as client:
                    listed = [e.get("name", "") for e in client.client_list()]
                assert listed.count(name) == 2
            finally:
                backend.close()
    finally:
        sock.unlink(missing_ok=True)


@pytest.mark.fleet
@pytest.mark.fleet_heavy
def test_sentinel_connections_are_named_on_the_master_and_the_sentinels(
    sentinel_setup: SentinelGroup, namespace: str
) -> None:
    setup = sentinel_setup
    name, backend = exercise_named(setup.url, namespace)
    try:
        assert names_on(setup.master).count(name) == 2
        # Each client asked a Sentinel for the master, over a named connection.
        asked = sum(names_on(port).count(name) for port in setup.sentinels)
        assert asked >= 1
    finally:
        backend.close()


@pytest.mark.fleet
@pytest.mark.fleet_heavy
def test_cluster_connections_are_named_on_every_node_reached(
    cluster: Cluster, namespace: str
) -> None:
    name, backend = exercise_named(cluster.url, namespace)
    try:
        listed = [names_on(port) for port in cluster.ports]
        assert sum(names.count(name) for names in listed) >= 2
    finally:
        backend.close()


# -- at most one agent per host, counted by CLIENT LIST ----------------------------

HOSTS = int(os.environ.get("QBREAKER_NAMES_HOSTS", "3"))
WORKERS = int(os.environ.get("QBREAKER_NAMES_WORKERS", "3"))
#: How long the loaded run lasts before and after the kill.
LOADED = 6.0


class AgentCounter:
    """Samples ``CLIENT LIST`` every few ms on a thread: the agents (distinct
    pids by connection name) of each host of ``namespace`` at each sample,
    and each host's lease holder (its control segment) for leader changes."""

    def __init__(self, port: int, namespace: str, hosts: list[Host]) -> None:
        self.client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
        self.namespace = namespace
        self.hosts = hosts
        self.most: dict[str, int] = defaultdict(int)
        self.samples = 0
        # host -> [(monotonic, frozenset of pids named)]
        self.seen: dict[str, list[tuple[float, frozenset[int]]]] = defaultdict(list)
        self.holders: dict[str, list[int]] = defaultdict(list)
        self.stopped: set[int] = set()  # pids frozen on purpose (SIGSTOP)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def agents(self) -> dict[str, frozenset[int]]:
        found: dict[str, set[int]] = defaultdict(set)
        for entry in self.client.client_list():
            parsed = parse_agent_client_name(entry.get("name", ""))
            if parsed is not None and parsed[0] == self.namespace:
                found[parsed[1]].add(parsed[2])
        return {host: frozenset(pids) for host, pids in found.items()}

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            now = time.monotonic()
            # The frozen pids as they were before the listing: the test drops
            # a thawed one from ``stopped`` once a listing of its own shows its
            # connections gone, which may be after this listing was taken.
            stopped = set(self.stopped)
            for host, pids in self.agents().items():
                self.seen[host].append((now, pids))
                running = len(pids - stopped)
                self.most[host] = max(self.most[host], running)
            for host in self.hosts:
                assert host._control is not None
                pid = host._control.lease().pid
                changes = self.holders[host.host_id]
                if pid and (not changes or changes[-1] != pid):
                    changes.append(pid)
            self.samples += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.client.close()


@pytest.fixture
def cpu_load() -> Iterator[None]:
    """Two busy processes beside the test's: a loaded 2-core machine."""
    burners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)
    ]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait(10)


@pytest.mark.fleet
@pytest.mark.fleet_matrix
@pytest.mark.c_extension
def test_one_agent_per_host_by_client_list_across_a_kill_and_a_freeze(
    world: dict[str, Any], cpu_load: None
) -> None:
    redis_proc: RedisProcess = world["redis"]
    namespace = world["namespace"]
    hosts = []
    for index in range(1, HOSTS + 1):
        host = Host(
            f"host{index}",
            world["base"],
            redis_proc.url,
            namespace,
            world["backend"].port,
        )
        world["hosts"].append(host)
        hosts.append(host)
        host.start(WORKERS)
    wait_synced(hosts)
    counter = AgentCounter(redis_proc.port, namespace, hosts)
    figures: dict[str, str] = {}
    try:
        wait_for(lambda: counter.samples > 10, 10, "CLIENT LIST samples")
        agents = counter.agents()
        assert {h.host_id for h in hosts} <= set(agents), agents
        for host in hosts:
            assert agents[host.host_id] == {host.status().agent_pid}
        time.sleep(LOADED)

        # -- the elected worker of one host killed (SIGKILL) --------------------
        killed_host, frozen_host = hosts[0], hosts[1]
        victim = killed_host.status().agent_pid
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        took = wait_for(
            lambda: (
                killed_host.status().agent_pid not in (None, victim)
                and killed_host.status().connected
            ),
            10,
            "another worker to take over from the killed agent",
        )
        successor = killed_host.status().agent_pid
        named = (
            wait_for(
                lambda: successor in counter.agents().get(killed_host.host_id, ()),
                10,
                "the successor's named connections",
            )
            + took
        )
        figures[
            f"elected agent killed (SIGKILL) -> another agent syncing "
            f"(bound 3 ticks: {3 * TICK:g} s)"
        ] = f"{took * 1000:.0f} ms; its connections listed after {named * 1000:.0f} ms"
        assert took <= 3 * TICK
        # The killed worker's connections are gone: the kernel closed them.
        wait_for(
            lambda: victim not in counter.agents().get(killed_host.host_id, ()),
            2 * TICK,
            "the killed agent's connections to go",
        )

        # -- the elected worker of another host frozen (SIGSTOP), then thawed -----
        frozen = frozen_host.status().agent_pid
        assert frozen is not None
        counter.stopped.add(frozen)
        os.kill(frozen, signal.SIGSTOP)
        try:
            took = wait_for_takeover(
                frozen_host, frozen, "another worker to take over from the frozen agent"
            )
            thawed_successor = frozen_host.status().agent_pid
            listed = counter.agents().get(frozen_host.host_id, frozenset())
        finally:
            os.kill(frozen, signal.SIGCONT)
        figures[
            f"elected agent frozen (SIGSTOP) -> another agent syncing "
            f"(bound 3 ticks: {3 * TICK:g} s)"
        ] = (
            f"{took * 1000:.0f} ms; CLIENT LIST while frozen: pids "
            f"{sorted(listed)} (the frozen {frozen}'s connections stay open)"
        )
        assert took <= 3 * TICK
        # Thawed, the frozen worker steps down and closes its connections.
        gone = wait_for(
            lambda: counter.agents().get(frozen_host.host_id) == {thawed_successor},
            2 * TICK,
            "the thawed agent's connections to go",
        )
        # Left out of the count until now: frozen, then stepping down.
        counter.stopped.discard(frozen)
        figures["thawed -> its named connections gone (bound 2 ticks)"] = (
            f"{gone * 1000:.0f} ms"
        )
        time.sleep(LOADED)
    finally:
        counter.close()
    final = counter.agents()
    for host in hosts:
        assert final.get(host.host_id) == {host.status().agent_pid}, final
    changes = {h.host_id: len(counter.holders[h.host_id]) - 1 for h in hosts}
    figures[
        f"agents per host by CLIENT LIST, most at any sample, the frozen one "
        f"left out while stopped ({counter.samples} samples; bound 1)"
    ] = str(dict(counter.most))
    figures[
        f"leader changes per host over {2 * LOADED:g} s and more of a loaded run "
        f"(2 busy processes, load {os.getloadavg()[0]:.1f}; bound: the kill's and "
        f"the freeze's only)"
    ] = str(changes)
    print(
        f"\nagents by CLIENT LIST ({HOSTS} hosts x {WORKERS} workers, "
        f"{time.strftime('%Y-%m-%d')}):"
    )
    for what, value in figures.items():
        print(f"  {what}: {value}")
    assert max(counter.most.values()) == 1, dict(counter.most)
    expected = {h.host_id: 0 for h in hosts}
    expected[killed_host.host_id] = expected[frozen_host.host_id] = 1
    assert changes == expected
