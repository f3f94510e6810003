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
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from qbreaker.fleet._protocol import SyncRequest, key_prefix

from ..redis_server import free_port
from .conftest import TEST_TIMEOUT, RedisBackend, connect_redis
from .helpers import T0, Host, delta, policy
from .servers import log_tail, redis_process, wait_for

redis = pytest.importorskip("redis")

pytestmark = [pytest.mark.fleet, pytest.mark.fleet_heavy]

SERVICE = "qbm"


@dataclass
class SentinelSetup:
    master: int
    replica: int
    sentinels: list[int]
    workdir: Path

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def client(self, port: int) -> Any:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=TEST_TIMEOUT)

    def master_port(self) -> int:
        with self.client(self.sentinels[0]) as sentinel:
            _, port = sentinel.execute_command(
                "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE
            )
        return int(port)


def _sentinel_config(port: int, master: int) -> str:
    return (
        f"port {port}\n"
        f"sentinel monitor {SERVICE} 127.0.0.1 {master} 2\n"
        f"sentinel down-after-milliseconds {SERVICE} 1000\n"
        f"sentinel failover-timeout {SERVICE} 4000\n"
    )


def _replica_ready(sentinel: Any) -> bool:
    """The Sentinel knows the replica as one it may promote: linked, and
    with a fresh INFO (else SENTINEL FAILOVER answers NOGOODSLAVE)."""
    for raw in sentinel.execute_command("SENTINEL", "REPLICAS", SERVICE):
        fields = dict(zip(raw[::2], raw[1::2])) if isinstance(raw, list) else raw
        fields = {
            (k.decode() if isinstance(k, bytes) else k): (
                v.decode() if isinstance(v, bytes) else v
            )
            for k, v in fields.items()
        }
        if (
            fields.get("master-link-status") == "ok"
            and fields.get("flags") == "slave"
            and int(fields.get("info-refresh", 10**9)) < 2000
        ):
            return True
    return False


@pytest.fixture
def sentinel_setup(tmp_path: Path) -> Iterator[SentinelSetup]:
    setup = SentinelSetup(free_port(), free_port(), [], tmp_path)
    with ExitStack() as stack:
        stack.enter_context(
            redis_process(tmp_path, "master", "--port", str(setup.master))
        )
        stack.enter_context(
            redis_process(
                tmp_path,
                "replica",
                "--port",
                str(setup.replica),
                "--replicaof",
                "127.0.0.1",
                str(setup.master),
            )  # fmt: skip
        )
        replica = setup.client(setup.replica)
        wait_for(
            lambda: replica.info("replication").get("master_link_status") == "up",
            f"the replica's link ({log_tail(tmp_path, 'replica')})",
        )
        replica.close()
        for i in range(3):
            port = free_port()
            setup.sentinels.append(port)
            stack.enter_context(
                redis_process(
                    tmp_path,
                    f"sentinel-{i}",
                    "--sentinel",
                    config=_sentinel_config(port, setup.master),
                )  # fmt: skip
            )
        for i, port in enumerate(setup.sentinels):
            sentinel = setup.client(port)
            wait_for(
                lambda s=sentinel: _replica_ready(s),
                f"sentinel {i} to see the replica "
                f"({log_tail(tmp_path, f'sentinel-{i}')})",
            )
            sentinel.close()
        yield setup


def test_sentinel_url_finds_the_master_and_follows_a_failover(
    sentinel_setup: SentinelSetup, namespace: str
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
        with setup.client(setup.master) as master:
            assert master.exists(backend.keys[0])
            assert master.execute_command("WAIT", 1, 5000) == 1
        with setup.client(setup.sentinels[0]) as sentinel:
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
        with setup.client(setup.replica) as promoted:
            assert promoted.info("replication")["role"] == "master"
            assert promoted.exists(backend.keys[0])
    finally:
        backend.close()


# -- Redis Cluster ---------------------------------------------------------------------


def _cluster_port() -> int:
    """A free port whose cluster bus port (+10000, so at most 55535) is free."""
    for _ in range(200):
        port = free_port()
        if port > 55535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise AssertionError("no free port pair for a cluster node")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[int]]:
    """Three masters, no replicas, every slot assigned: the ports."""
    cli = shutil.which("redis-cli")
    if cli is None:
        pytest.skip("redis-cli is needed to create a cluster (scripts/ci_redis.sh)")
    ports = [_cluster_port() for _ in range(3)]
    with ExitStack() as stack:
        for port in ports:
            stack.enter_context(
                redis_process(
                    tmp_path,
                    f"node-{port}",
                    "--port",
                    str(port),
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    f"nodes-{port}.conf",
                    "--cluster-node-timeout",
                    "2000",
                )  # fmt: skip
            )
        for port in ports:
            with redis.Redis(host="127.0.0.1", port=port, socket_timeout=1) as node:
                wait_for(
                    node.ping, f"node {port} ({log_tail(tmp_path, f'node-{port}')})"
                )
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        for port in ports:
            with redis.Redis(host="127.0.0.1", port=port, socket_timeout=1) as node:
                wait_for(
                    lambda n=node: n.cluster("info")["cluster_state"] == "ok",
                    f"node {port} to see the cluster ok",
                )
        yield ports


def _node_of(ports: list[int], key: str) -> int:
    """The port of the master that holds ``key``'s slot."""
    from redis.crc import key_slot

    slot = key_slot(key.encode())
    with redis.Redis(host="127.0.0.1", port=ports[0], socket_timeout=1) as node:
        for start, end, master, *_ in node.cluster("slots"):
            if start <= slot <= end:
                return int(master[1])
    raise AssertionError(f"no node holds slot {slot}")


def test_every_script_runs_on_a_three_master_cluster(
    cluster: list[int], namespace: str
) -> None:
    url = "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in cluster[:2])
    # Namespaces on every master: each script's keys must be in one slot, or
    # the cluster refuses the call (CROSSSLOT) or the script's access.
    namespaces: dict[int, str] = {}
    for i in range(200):
        ns = f"{namespace}-{i}"
        namespaces.setdefault(_node_of(cluster, key_prefix(ns)), ns)
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


def test_the_scripts_agree_with_the_spec_on_a_cluster(cluster: list[int]) -> None:
    """A seeded differential walk (test_scripts) with a Cluster client."""
    from .test_scripts import Pair, walk

    url = "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in cluster)
    client = connect_redis(url, timeout=TEST_TIMEOUT)
    try:
        pair = Pair(client)
        assert len(walk(pair, random.Random(7))) >= 5
    finally:
        client.close()


def test_a_cluster_node_that_lost_its_scripts_and_data(
    cluster: list[int], namespace: str
) -> None:
    """As after a node restart without persistence: the client reloads the
    script once (NOSCRIPT) and finds an empty namespace (a new epoch)."""
    url = "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in cluster)
    backend = RedisBackend.from_url(url, namespace, timeout=TEST_TIMEOUT)
    pol = policy(quorum=1)
    try:
        first = backend.sync(SyncRequest("h1", 1, (delta("db", pol, tripped=True),)))
        assert first.states[0].state == "open"
        port = _node_of(cluster, key_prefix(namespace))
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
