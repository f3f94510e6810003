"""The fleet on Redis Sentinel and Redis Cluster: real redis-server processes.

Sentinel: a master, a replica and three Sentinels; the backend finds the
master through a ``redis+sentinel://`` URL, and keeps working, with the
fleet's state, after a ``SENTINEL FAILOVER`` promotes the replica.

Cluster: three masters made by ``redis-cli --cluster create``; every script
runs there for namespaces on each master (a script whose keys spanned two
slots would be refused), a differential walk agrees with the spec, and a node
that lost its scripts and data is handled as a plain Redis would be.

Marked ``fleet_heavy``: several processes per test, a few seconds each.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qbreaker.fleet._protocol import SyncRequest, key_prefix

from .conftest import TEST_TIMEOUT, RedisBackend, connect_redis
from .helpers import T0, Host, delta, policy
from .servers import (
    Cluster,
    SentinelGroup,
    log_tail,
    node_client,
    redis_cluster,
    sentinel_group,
    wait_for,
)

redis = pytest.importorskip("redis")

pytestmark = [pytest.mark.fleet, pytest.mark.fleet_heavy]

SERVICE = "qbm"


@pytest.fixture
def sentinel_setup(tmp_path: Path) -> Iterator[SentinelGroup]:
    with sentinel_group(tmp_path, SERVICE) as group:
        yield group


def test_sentinel_url_finds_the_master_and_follows_a_failover(
    sentinel_setup: SentinelGroup, namespace: str
) -> None:
    setup = sentinel_setup
    backend = RedisBackend.from_url(setup.url, namespace, timeout=TEST_TIMEOUT)
    try:
        where = f"server='sentinel service {SERVICE}'"
        assert repr(backend) == f"RedisBackend(namespace={namespace!r}, {where})"
        pol = policy(quorum=1)
        reply = backend.sync(SyncRequest("h1", 1, (delta("db", pol, tripped=True),)))
        assert (reply.states[0].state, reply.states[0].generation) == ("open", 1)
        epoch = reply.epoch
        # The keys are on the master Sentinel named, and on its replica.
        with node_client(setup.master, TEST_TIMEOUT) as master:
            assert master.exists(backend.keys[0])
            assert master.execute_command("WAIT", 1, 5000) == 1
        with node_client(setup.sentinels[0], TEST_TIMEOUT) as sentinel:
            assert sentinel.execute_command("SENTINEL", "FAILOVER", SERVICE)
        wait_for(
            lambda: setup.master_port() == setup.replica,
            f"the failover ({log_tail(setup.workdir, 'sentinel-0')})",
            timeout=20,
        )

        def view_on_the_new_master() -> Any:
            try:
                return backend.view()
            except (redis.exceptions.ConnectionError, redis.exceptions.ReadOnlyError):
                return None

        states = wait_for(view_on_the_new_master, "a view after the failover", 20)
        # The replicated state survived: still open, same generation.
        assert [(s.state, s.generation) for s in states] == [("open", 1)]
        # Writes go to the promoted replica, with the same epoch.
        reply = wait_for(
            lambda: backend.sync(SyncRequest("h1", 2, (delta("db", pol),))),
            "a sync on the new master",
            20,
        )
        assert reply.epoch == epoch and not reply.duplicate
        assert backend.force("db", "reset", by="ops").state == "closed"
        with node_client(setup.replica, TEST_TIMEOUT) as promoted:
            assert promoted.info("replication")["role"] == "master"
            assert promoted.exists(backend.keys[0])
    finally:
        backend.close()


# -- Redis Cluster ---------------------------------------------------------------------


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Three masters, no replicas, every slot assigned."""
    with redis_cluster(tmp_path, 3) as made:
        yield made


def test_every_script_runs_on_a_three_master_cluster(
    cluster: Cluster, namespace: str
) -> None:
    url = "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in cluster.ports[:2])
    # Namespaces on every master: each script's keys must be in one slot, or
    # the cluster refuses the call (CROSSSLOT) or the script's access.
    namespaces: dict[int, str] = {}
    for i in range(200):
        ns = f"{namespace}-{i}"
        namespaces.setdefault(cluster.master_of(key_prefix(ns)), ns)
        if len(namespaces) == 3:
            break
    assert len(namespaces) == 3
    for port, ns in sorted(namespaces.items()):
        backend = RedisBackend.from_url(url, ns, timeout=TEST_TIMEOUT)
        try:
            backend.enable_test_clock()
            pol = policy(quorum=2)
            hosts = [Host(backend, f"h{i}") for i in range(2)]
            cursor, _ = backend.events("$", 0)
            hosts[0].sync(T0, delta("db", pol, calls=2, failures=2, tripped=True))
            hosts[1].sync(T0, delta("db", policy(quorum=3)))  # a conflict
            state = hosts[1].sync(T0 + 1, delta("db", pol, tripped=True)).states[0]
            assert (state.state, state.tripped_by) == ("open", ("h0", "h1"))
            # Recovery: the open expires, a probe's success closes the fleet.
            verdict = delta("db", pol, verdict=(state.generation, True))
            assert hosts[0].sync(T0 + 6_000, verdict).states[0].state == "closed"
            assert backend.force("db", "open", by="ops").state == "forced_open"
            _, events = backend.events(cursor, 0)
            assert [s.reason for s in events] == ["quorum", "probe", "manual"]
            assert [s.state for s in backend.view()] == ["forced_open"]
            assert len(backend.conflicts()) == 1
            # Every key of the namespace is on the one master of its slot.
            with redis.Redis(host="127.0.0.1", port=port, socket_timeout=1) as node:
                held = {k.decode() for k in node.keys(key_prefix(ns) + "*")}
            assert held and held <= set(backend.keys)
        finally:
            backend.close()


def test_the_scripts_agree_with_the_spec_on_a_cluster(cluster: Cluster) -> None:
    """A seeded differential walk (test_scripts) with a Cluster client."""
    from .test_scripts import Pair, walk

    url = cluster.url
    client = connect_redis(url, timeout=TEST_TIMEOUT)
    try:
        pair = Pair(client)
        assert len(walk(pair, random.Random(7))) >= 5
    finally:
        client.close()


def test_a_cluster_node_that_lost_its_scripts_and_data(
    cluster: Cluster, namespace: str
) -> None:
    """As after a node restart without persistence: the client reloads the
    script once (NOSCRIPT) and finds an empty namespace (a new epoch)."""
    url = cluster.url
    backend = RedisBackend.from_url(url, namespace, timeout=TEST_TIMEOUT)
    pol = policy(quorum=1)
    try:
        first = backend.sync(SyncRequest("h1", 1, (delta("db", pol, tripped=True),)))
        assert first.states[0].state == "open"
        port = cluster.master_of(key_prefix(namespace))
        with redis.Redis(host="127.0.0.1", port=port, socket_timeout=1) as node:
            node.script_flush()
            node.flushall()
            loads = node.info("commandstats").get("cmdstat_script|load", {})
        again = backend.sync(SyncRequest("h1", 2, (delta("db", pol),)))
        assert again.epoch != first.epoch
        assert again.states[0].state == "closed"
        with redis.Redis(host="127.0.0.1", port=port, socket_timeout=1) as node:
            after = node.info("commandstats").get("cmdstat_script|load", {})
        assert after.get("calls", 0) == loads.get("calls", 0) + 1
    finally:
        backend.close()
