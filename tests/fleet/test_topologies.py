"""The fleet on Redis Sentinel, with real redis-server processes on 127.0.0.1.

A master, a replica and three Sentinels; the backend finds the master through
a ``redis+sentinel://`` URL, and keeps working, with the fleet's state, after
a ``SENTINEL FAILOVER`` promotes the replica. Marked ``fleet_heavy``: five
processes and a failover take a few seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from qbreaker.fleet._protocol import SyncRequest

from ..redis_server import free_port
from .conftest import TEST_TIMEOUT, RedisBackend
from .helpers import delta, policy
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
