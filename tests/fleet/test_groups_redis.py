"""fleet_groups=G on real redis-servers: the scripts per group end to end,
the agent over them, the command line, ACLs, and a 3-master cluster where
the G tags land on more than one master (``fleet_heavy``).
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

import qbreaker
from qbreaker import fleet
from qbreaker.fleet._protocol import SyncRequest, group_of, key_prefix
from qbreaker.fleet.agent import Agent
from qbreaker.fleet.control import ControlSegment
from qbreaker.fleet.grouping import FleetGroupsError, GroupedBackend

from .conftest import TEST_TIMEOUT, redis_backend_module
from .helpers import T0, Host, delta, policy
from .host_helpers import host_dir
from .servers import Cluster
from .test_connection import SECRET
from .test_groups import names_per_group
from .test_topologies import cluster

redis = pytest.importorskip("redis")

__all__ = ("cluster", "host_dir")  # fixtures

pytestmark = pytest.mark.fleet

G = 4
grouped_backend = redis_backend_module.grouped_backend


@pytest.fixture
def grouped(redis_client: Any, namespace: str) -> Iterator[Any]:
    """``make(groups)``: the namespace split over ``groups``, in test mode."""
    made: list[Any] = []

    def make(groups: int = G, **options: Any) -> Any:
        options.setdefault("test_clock", True)
        made.append(grouped_backend(redis_client, namespace, groups, **options))
        return made[-1]

    yield make
    for backend in made:
        redis_client.delete(*backend.keys)
    redis_client.delete(key_prefix(namespace) + "meta")


def port_of(client: Any) -> int:
    return int(client.connection_pool.connection_kwargs["port"])


def test_sync_trip_verdict_view_and_events_over_four_groups(
    grouped: Any, redis_client: Any, namespace: str
) -> None:
    backend = grouped()
    assert isinstance(backend, GroupedBackend) and len(backend.parts) == G
    names = names_per_group(G)
    pol = policy(quorum=2)
    h1, h2, h3 = Host(backend, "h1"), Host(backend, "h2"), Host(backend, "h3")
    cursor, _ = backend.events("$", 0)
    h1.sync(T0, *(delta(n, pol, calls=3, failures=1, tripped=True) for n in names))
    h3.sync(T0, delta(names[1], policy(quorum=3)))  # a rolling policy change
    reply = h2.sync(T0 + 1, *(delta(n, pol, tripped=True) for n in names))
    assert [s.name for s in reply.states] == names
    assert {(s.state, s.reason, s.tripped_by) for s in reply.states} == {
        ("open", "quorum", ("h1", "h2"))
    }
    assert reply.epoch.count(";") == G - 1 and reply.version == G
    # Each breaker's keys are in its group's tag, each group in one slot.
    from redis.crc import key_slot

    for name in names:
        prefix = key_prefix(namespace, group_of(name, G), G)
        assert redis_client.hexists(prefix + "st", name)
        assert all(
            not redis_client.hexists(key_prefix(namespace, g, G) + "st", name)
            for g in range(G)
            if prefix != key_prefix(namespace, g, G)
        )
    groups_keys = [
        {
            k.decode()
            for k in redis_client.keys(
                key_prefix(namespace, g, G).replace("{", "\\{").replace("}", "\\}")
                + "*"
            )
        }
        for g in range(G)
    ]
    for g, keys in enumerate(groups_keys):
        assert keys and len({key_slot(k.encode()) for k in keys}) == 1, (g, keys)
    assert len({key_slot(next(iter(k)).encode()) for k in groups_keys}) == G
    # The events of every group, in one read (one server: one XREAD).
    cursor, events = backend.events(cursor, 0)
    assert sorted((s.name, s.reason) for s in events) == sorted(
        (n, "quorum") for n in names
    )
    # Verdicts after the opens expired close them, each in its group.
    verdicts = [
        delta(n, pol, verdict=(s.generation, True)) for n, s in zip(names, reply.states)
    ]
    closed = h1.sync(T0 + 6_000, *verdicts)
    assert {(s.state, s.reason) for s in closed.states} == {("closed", "probe")}
    assert (
        backend.force(names[2], "open", by="ops", time_ms=T0 + 6_001).state
        == "forced_open"
    )
    view = backend.view(time_ms=T0 + 6_002)
    assert [(s.name, s.state) for s in view] == sorted(
        (n, "forced_open" if n == names[2] else "closed") for n in names
    )
    _, later = backend.events(cursor, 0)
    assert [s.reason for s in later if s.name == names[2]] == ["probe", "manual"]
    assert [(c.name, c.host_id) for c in backend.conflicts()] == [(names[1], "h3")]
    # The namespace's G, stored once in the one-group meta.
    assert redis_client.hget(key_prefix(namespace) + "meta", "groups") == b"4"


def test_events_wait_for_an_event_in_any_group(grouped: Any) -> None:
    backend = grouped()
    names = names_per_group(G)
    cursor, _ = backend.events("$", 0)
    other = grouped()
    import threading

    timer = threading.Timer(0.1, lambda: other.force(names[3], "open", by="ops"))
    timer.start()
    started = time.monotonic()
    cursor, states = backend.events(cursor, 2_000)
    waited = time.monotonic() - started
    timer.join()
    assert [s.name for s in states] == [names[3]]
    print(f"event after {waited * 1000:.0f} ms (sent at 100 ms, block 2000 ms)")
    assert waited < 1.5
    assert backend.events(cursor, 0)[1] == ()


def test_hosts_with_another_g_are_refused(grouped: Any, namespace: str) -> None:
    first = grouped()
    Host(first, "h1").sync(T0, delta("pay", policy()))
    for groups in (1, 2):
        other = grouped(groups)
        with pytest.raises(
            FleetGroupsError,
            match=f"namespace {namespace!r} is split over fleet_groups=4",
        ):
            Host(other, "h2").sync(T0, delta("pay", policy()))
        with pytest.raises(FleetGroupsError):
            other.view()
    assert [s.generation for s in first.view()] == [0]


def test_a_namespace_used_before_groups_refuses_a_host_with_groups(
    grouped: Any, make_redis_backend: Any
) -> None:
    # A one-group fleet running: its hosts store G=1 on their first sync.
    one = grouped(1)
    Host(one, "h1").sync(T0, delta("pay", policy()))
    assert repr(one).startswith("RedisBackend(")
    with pytest.raises(FleetGroupsError, match="fleet_groups=1"):
        Host(grouped(G), "h2").sync(T0, delta("pay", policy()))


@pytest.mark.c_extension  # fleet breakers are shared cells
def test_the_agent_over_four_groups_of_redis(
    host_dir: str, redis_client: Any, namespace: str
) -> None:
    url = f"redis://127.0.0.1:{port_of(redis_client)}/0"
    backend = fleet.redis_backend_for(url, namespace, fleet_groups=G)
    assert isinstance(backend, GroupedBackend) and len(backend.parts) == G
    fleet.connect(namespace=namespace, agent="off", backend=backend, fleet_groups=G)
    names = names_per_group(G)
    breakers = [
        qbreaker.CircuitBreaker(2, 0.3, 1, shared=n, fleet=True, fleet_quorum=2)
        for n in names
    ]
    control = ControlSegment()
    assert control.try_lease(1)
    warnings: list[str] = []
    agent = Agent(
        control, backend, "here", info={"namespace": namespace},
        log=lambda message, *args: warnings.append(message % args),
    )  # fmt: skip
    agent.probe_lease = False  # every host probes (the lease: its own tests)
    try:
        agent.step()
        assert sorted(s.name for s in backend.view()) == sorted(names)
        other = Host(backend, "h2")
        other.seq = 0
        other.backend.sync(
            SyncRequest(
                "h2",
                1,
                tuple(delta(n, agent.tracks[n].policy, tripped=True) for n in names),
            )
        )
        for breaker in breakers:
            breaker.record_failure()
            breaker.record_failure()
        agent.step()
        assert {(s.state, s.reason) for s in backend.view()} == {("open", "quorum")}
        time.sleep(0.35)
        agent.sync()  # the fleet's opens expired: each cell may probe
        for breaker in breakers:
            ticket = breaker.acquire()
            assert ticket
            breaker.release(ticket, True)
        agent.step()
        assert {(s.state, s.reason) for s in backend.view()} == {("closed", "probe")}
        assert all(b.state == qbreaker.State.CLOSED for b in breakers)
        assert not warnings, warnings
    finally:
        for part in backend.parts:
            redis_client.delete(*part.keys)
        redis_client.delete(key_prefix(namespace) + "meta")
        backend.close()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QBREAKER_FLEET")}
    return subprocess.run(
        [sys.executable, "-m", "qbreaker", *args],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip


def test_status_fleet_and_fleet_control_cover_every_group(
    grouped: Any, redis_client: Any, namespace: str
) -> None:
    backend = grouped(test_clock=False)
    names = names_per_group(G)
    backend.sync(SyncRequest("h1", 1, tuple(delta(n, policy()) for n in names)))
    where = (
        "--url",
        f"redis://127.0.0.1:{port_of(redis_client)}/0",
        "--namespace",
        namespace,
    )
    done = cli("fleet", "open", names[3], *where, "--fleet-groups", str(G))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{names[3]}: fleet forced_open")
    done = cli("status", "--fleet", *where, "--fleet-groups", str(G))
    assert done.returncode == 0, done.stderr
    # The breakers' rows (then the active hosts' line, h1 among them).
    rows = {
        line.split()[0]: line.split()[1]
        for line in done.stdout.splitlines()[1:]
        if line.split()[0] in names
    }
    assert "h1" in done.stdout.split("active hosts")[1]
    assert rows == {n: ("forced_open" if n == names[3] else "closed") for n in names}
    # Another G is refused with the reason, not taken for an unreachable Redis.
    for args in (("status", "--fleet"), ("fleet", "reset", names[3])):
        done = cli(*args, *where)  # the default: one group
        assert done.returncode == 2, (done.stdout, done.stderr)
        assert "fleet_groups=1 on this host" in done.stderr
        assert "fleet_groups=4" in done.stderr
    done = cli("status", "--fleet", *where, "--fleet-groups", "0")
    assert (
        done.returncode == 2
        and "fleet_groups must be an int in [1, 256]" in done.stderr
    )


def test_acl_rules_fence_a_namespace_split_over_groups(
    redis_backend: Any, redis_client: Any
) -> None:
    from qbreaker.fleet.redis_backend import acl_rules, connect_redis

    port = redis_backend.port
    made = {}
    # "acl-g" split over 4, and namespaces whose names look like its tags.
    for i, (ns, groups) in enumerate((("acl-g", G), ("acl-g:g1", 1), ("acl-h", G))):
        user = f"fleet-groups-{i}"
        redis_client.execute_command(
            "ACL", "SETUSER", user, "on", f">{SECRET}{ns}", *acl_rules(ns, groups)
        )
        client = connect_redis(
            f"redis://{user}:{SECRET}{ns}@127.0.0.1:{port}/0", timeout=TEST_TIMEOUT
        )
        made[ns] = (user, client, grouped_backend(client, ns, groups))
    try:
        names = names_per_group(G)
        for ns, (_, _, backend) in made.items():
            reply = backend.sync(
                SyncRequest(
                    "h1",
                    1,
                    tuple(delta(n, policy(quorum=1), tripped=True) for n in names),
                )
            )
            assert {s.state for s in reply.states} == {"open"}, ns
            assert len(backend.view()) == len(names)
            backend.events("$", 0)
        me = made["acl-g"][1]
        for other in ("acl-g:g1", "acl-h"):
            for key in made[other][2].keys + (key_prefix(other) + "meta",):
                with pytest.raises(redis.exceptions.NoPermissionError):
                    if key.endswith(":ev"):
                        me.xrevrange(key, count=1)
                    else:
                        me.hgetall(key)
            # The other's scripts, run with my credentials (each group's,
            # past the check of G, which is refused as well).
            intruders = grouped_backend(me, other, G if other == "acl-h" else 1)
            with pytest.raises(redis.exceptions.NoPermissionError):
                intruders.view()
            request = SyncRequest("h9", 9, (delta(names[0], policy()),))
            for part in intruders.parts:
                for call in (
                    part.view,
                    functools.partial(part.sync, request),
                    functools.partial(part.force, names[0], "close", by="intruder"),
                    functools.partial(part.events, "0-0", 0),
                ):
                    with pytest.raises(redis.exceptions.NoPermissionError):
                        call()
        with pytest.raises(redis.exceptions.NoPermissionError):
            me.keys("*")
        # Nothing of the attempts landed.
        for ns, (_, _, backend) in made.items():
            assert {(s.state, s.generation) for s in backend.view()} == {("open", 1)}, (
                ns
            )
    finally:
        for ns, (user, client, backend) in made.items():
            client.close()
            redis_client.execute_command("ACL", "DELUSER", user)
            redis_client.delete(*backend.keys, key_prefix(ns) + "meta")


def test_acl_rules_of_one_group_are_todays() -> None:
    from qbreaker.fleet.redis_backend import acl_rules

    assert acl_rules("pay") == acl_rules("pay", 1)
    assert acl_rules("pay")[:2] == ("resetkeys", "~{qb1:pay}:*")
    rules = acl_rules("pay", 3)
    assert rules[:5] == (
        "resetkeys",
        "~{qb1:pay}:*",
        *(f"~{key_prefix('pay', g, 3)}*" for g in range(3)),
    )
    assert rules[2].startswith("~{qb1-g0of3.")
    with pytest.raises(ValueError, match="fleet_groups"):
        acl_rules("pay", 0)


# -- Redis Cluster ------------------------------------------------------------------


@pytest.mark.fleet_heavy
def masters_of(ports: list[int]) -> Any:
    """``where(key)``: the port of the master holding ``key``'s slot."""
    from redis.crc import key_slot

    with redis.Redis(host="127.0.0.1", port=ports[0], socket_timeout=1) as node:
        ranges = [(s, e, int(m[1])) for s, e, m, *_ in node.cluster("slots")]

    def where(key: str) -> int:
        slot = key_slot(key.encode())
        return next(port for s, e, port in ranges if s <= slot <= e)

    return where


@pytest.mark.fleet_heavy
def test_the_group_tags_spread_over_a_clusters_masters(cluster: Cluster) -> None:
    # The slot map read once (Cluster.master_of asks a node per key).
    where = masters_of(cluster.ports)
    spans = Counter(
        len({where(key_prefix(f"ns-{i}", g, G)) for g in range(G)}) for i in range(300)
    )
    one = Counter(where(key_prefix(f"ns-{i}")) for i in range(300))
    print(
        f"{G} tags per namespace on 1/2/3 of 3 masters: {dict(sorted(spans.items()))}"
    )
    # One group: each namespace on one master. Four: the tags' slots are in
    # the four quarters of the slot space, so on two or three masters.
    assert len(one) == 3
    assert spans[1] == 0


@pytest.mark.fleet_heavy
def test_four_groups_on_a_three_master_cluster(
    cluster: Cluster, namespace: str
) -> None:
    from qbreaker.fleet.redis_backend import connect_redis

    where = masters_of(cluster.ports)
    url = cluster.url
    client = connect_redis(url, timeout=TEST_TIMEOUT)
    events_client = connect_redis(url, timeout=TEST_TIMEOUT + 2)
    backend = grouped_backend(
        client, namespace, G, events_client=events_client, test_clock=True
    )
    try:
        masters = {where(key_prefix(namespace, g, G)) for g in range(G)}
        print(f"{G} group tags of {namespace!r} on {len(masters)} of 3 masters")
        names = names_per_group(G)
        pol = policy(quorum=2)
        h1, h2 = Host(backend, "h1"), Host(backend, "h2")
        cursor, _ = backend.events("$", 0)
        h1.sync(T0, *(delta(n, pol, calls=2, failures=2, tripped=True) for n in names))
        reply = h2.sync(T0 + 1, *(delta(n, pol, tripped=True) for n in names))
        assert {(s.state, s.reason) for s in reply.states} == {("open", "quorum")}
        # A cluster: each group's stream read in turn.
        states: list[Any] = []
        deadline = time.monotonic() + 10
        while len(states) < G and time.monotonic() < deadline:
            cursor, got = backend.events(cursor, 200)
            states.extend(got)
        assert sorted(s.name for s in states) == sorted(names)
        verdicts = [
            delta(n, pol, verdict=(s.generation, True))
            for n, s in zip(names, reply.states)
        ]
        assert {s.state for s in h1.sync(T0 + 6_000, *verdicts).states} == {"closed"}
        assert backend.force(names[0], "open", by="ops").state == "forced_open"
        assert sorted(s.name for s in backend.view()) == sorted(names)
        # Each group's keys on the one master of its slot.
        for g in range(G):
            prefix = key_prefix(namespace, g, G)
            port = where(prefix)
            with redis.Redis(host="127.0.0.1", port=port, socket_timeout=1) as node:
                held = {
                    k.decode()
                    for k in node.keys(
                        prefix.replace("{", "\\{").replace("}", "\\}") + "*"
                    )
                }
            assert held and held <= set(backend.parts[g].keys), (g, held)
        # A host with another G is refused on the cluster too.
        with pytest.raises(FleetGroupsError):
            Host(grouped_backend(client, namespace, 2), "h3").sync(
                T0, delta(names[0], pol)
            )
    finally:
        backend.close()


@pytest.mark.c_extension  # the agent's control segment
def test_the_agent_command_takes_fleet_groups(
    host_dir: str, redis_client: Any, namespace: str
) -> None:
    url = f"redis://127.0.0.1:{port_of(redis_client)}/0"
    done = cli("agent", "--url", url, "--namespace", namespace, "--fleet-groups", "0")
    assert done.returncode == 2
    assert "fleet_groups must be an int in [1, 256], got 0" in done.stderr
    # A worker of this host, with a fleet breaker for the sidecar to sync.
    fleet.connect(url, namespace=namespace, agent="sidecar", fleet_groups=G)
    qbreaker.CircuitBreaker(2, 5.0, 1, shared="pay", fleet=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("QBREAKER_FLEET")}
    agent = subprocess.Popen(
        [sys.executable, "-m", "qbreaker", "agent", "--url", url,
         "--namespace", namespace, "--fleet-groups", str(G)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    meta = key_prefix(namespace) + "meta"
    try:
        deadline = time.monotonic() + 30
        while redis_client.hget(meta, "groups") is None:
            assert agent.poll() is None, agent.communicate(timeout=10)
            assert time.monotonic() < deadline, "the agent's first sync"
            time.sleep(0.05)
        # Its first sync stored the namespace's G, and the breaker is in
        # its group's keys.
        assert redis_client.hget(meta, "groups") == b"4"
        where = key_prefix(namespace, group_of("pay", G), G) + "pol"
        while not redis_client.hexists(where, "pay"):
            assert time.monotonic() < deadline, "the breaker in its group's keys"
            time.sleep(0.05)
    finally:
        agent.terminate()
        agent.communicate(timeout=30)
        redis_client.delete(
            meta, *(key_prefix(namespace, g, G) + "seq" for g in range(G))
        )
