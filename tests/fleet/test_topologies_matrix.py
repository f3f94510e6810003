"""The fleet on Redis Cluster and Sentinel with agents running: outages, failovers.

Simulated hosts (e2e_support: each its own segment directory and host id,
HOSTS x WORKERS worker processes calling a counting backend through a fleet
breaker: max_failures 3, reset_timeout 3 s, half_open_max 1, fleet quorum 2)
against real redis-server processes on 127.0.0.1 (servers.py):

- a 3-master Cluster: a fleet trip applied on every host, recovery through
  one probe host, and a restart (empty) of the master holding the
  namespace's slot during an open fleet;
- a 6-node Cluster (3 masters, 3 replicas): ``CLUSTER FAILOVER`` on the
  replica of the namespace's slot master during an open fleet;
- Sentinel (the master killed, then ``SENTINEL FAILOVER``): during an
  outage (fleet open), the replica's link cut first, so that the failover
  loses the trip (a lower fleet generation than the agents applied, some
  of them from the event stream only: they re-seed); and
  during recovery, while a host holds the probe lease with its probe in
  flight, so that its verdict arrives at the new master after the lease
  expired there.

Every figure is printed with its bound (run with ``-s``). A tick is the
agents' quiet sync interval, 1 s.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qbreaker import State
from qbreaker.fleet._protocol import (
    BreakerDelta,
    FleetPolicy,
    SyncRequest,
    key_prefix,
)

from .e2e_support import NAME, CountingBackend, Host, percentile
from .fault_proxy import FaultProxy
from .servers import (
    Cluster,
    SentinelGroup,
    log_tail,
    node_client,
    redis_cluster,
    sentinel_group,
    wait_for,
)

pytestmark = [
    pytest.mark.fleet,
    pytest.mark.fleet_heavy,
    pytest.mark.fleet_matrix,
    pytest.mark.c_extension,
]
redis = pytest.importorskip("redis", reason="the fleet extra (redis-py) is missing")

HOSTS = int(os.environ.get("QBREAKER_TOPOLOGY_HOSTS", "3"))
WORKERS = int(os.environ.get("QBREAKER_TOPOLOGY_WORKERS", "2"))
TICK = 1.0
#: How long a gated backend call may wait: under the workers' 2 s timeout.
GATE_LIMIT = 1.5
#: The issue's bound on what a protected call may add during a Redis fault.
ADDED_MS = 1.0
SERVICE = "qbm"
#: The Sentinels' down-after: long enough that a stall of this loaded
#: machine is not taken for a dead master before the test kills it.
DOWN_AFTER_MS = 2000


class GatedBackend(CountingBackend):
    """The counting backend, whose calls wait at ``gate`` while it is clear
    (at most GATE_LIMIT): a probe held in flight. ``waiting`` records who
    arrived at the gate, and when."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()
        self.waiting: list[tuple[str, float]] = []
        outer = self
        handler = self.server.RequestHandlerClass

        class Gated(handler):  # type: ignore[misc, valid-type]
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                outer.waiting.append((self.path.strip("/"), time.monotonic()))
                outer.gate.wait(GATE_LIMIT)
                super().do_GET()

        self.server.RequestHandlerClass = Gated


class CloseWatch:
    """Polls every host's cell from a thread; ``closed`` lists each host
    seen CLOSED (and when) while it ran."""

    def __init__(self, hosts: list[Host]) -> None:
        self.hosts = hosts
        self.closed: list[tuple[str, float]] = []
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CloseWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            self.polls += 1
            for host in self.hosts:
                if host.cell.state == State.CLOSED:
                    self.closed.append((host.host_id, time.monotonic()))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A base directory for the hosts' segments, a gated counting backend,
    a namespace, the figures (printed at the end, whatever happened); the
    hosts the test adds to ``hosts`` are stopped at the end."""
    base = Path(tempfile.mkdtemp(prefix="qbreaker-topo-", dir=_tmp_base()))
    os.chmod(base, 0o700)
    made: dict[str, Any] = {
        "hosts": [],
        "base": base,
        "tmp": tmp_path,
        "backend": GatedBackend(),
        "namespace": f"topo-{os.getpid()}-{time.monotonic_ns() % 10**6}",
        "figures": {},
    }
    try:
        yield made
    finally:
        for host in made["hosts"]:
            host.stop()
        made["backend"].gate.set()
        made["backend"].close()
        shutil.rmtree(base, ignore_errors=True)
        print(f"\n{made.get('title', 'figures')} ({time.strftime('%Y-%m-%d')}):")
        for what, value in made["figures"].items():
            print(f"  {what}: {value}")
        print(f"  load average: {Path('/proc/loadavg').read_text().strip()}")


def wait_until(
    condition: Any, timeout: float, what: str, hosts: list[Host] | None = None
) -> float:
    """Poll ``condition`` every 10 ms until true; the seconds it took. On a
    timeout the message says what the ``hosts`` agents published."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            pytest.fail(
                f"timed out after {timeout} s waiting for {what}: "
                f"{_describe(hosts or [])}"
            )
        time.sleep(0.01)
    return time.monotonic() - started


def _describe(hosts: list[Host]) -> str:
    now = time.time()
    described = []
    for host in hosts:
        status = host.status()
        view = status.breakers.get(NAME)
        synced = status.last_good_sync
        control = host._control  # mapped by status()
        published = (
            {}
            if control is None
            else control.read_status().get("breakers", {}).get(NAME, {})
        )
        described.append(
            f"{host.host_id}: connected {status.connected}, cell "
            f"{host.cell.state.name}, fleet "
            f"{None if view is None else (view.state, view.generation)}, last "
            f"sync {None if synced is None else round(now - synced, 2)} s ago, "
            f"owned {published.get('owned')}, error {status.last_error!r}"
        )
    return "; ".join(described)


def _tmp_base() -> str:
    return "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()


def start_hosts(world: dict[str, Any], url: str) -> list[Host]:
    hosts = []
    for index in range(1, HOSTS + 1):
        host = Host(
            f"host{index}",
            world["base"],
            url,
            world["namespace"],
            world["backend"].port,
        )
        world["hosts"].append(host)
        hosts.append(host)
        host.start(WORKERS)
    for host in hosts:
        wait_until(
            lambda h=host: h.fleet_state() == "closed" and h.status().connected,
            60,
            f"{host.host_id}'s agent to sync",
        )
    return hosts


def fleet_state(backend: Any) -> Any:
    """The fleet's state of the breaker, as ``backend`` reads it."""
    (state,) = [s for s in backend.view() if s.name == NAME]
    return state


def trip_everywhere(hosts: list[Host], world: dict[str, Any]) -> float:
    """Fail the backend for every host; the seconds from the quorum's second
    local trip until every cell is open and every agent has the fleet open."""
    backend: GatedBackend = world["backend"]
    backend.fail_all = True
    wait_until(
        lambda: sum(h.cell.state == State.OPEN for h in hosts) >= 2,
        15,
        "two hosts to trip",
    )
    return wait_until(
        lambda: all(
            h.cell.state == State.OPEN and h.fleet_state() == "open" for h in hosts
        ),
        15,
        "the fleet's open on every host",
    )


def added_ms(
    hosts: list[Host], phases: dict[str, tuple[float, float]], figures: dict[str, str]
) -> dict[str, float]:
    """After the hosts stopped: each phase's breaker operations against the
    baseline's; the p99 each phase added, in ms (printed with the slowest)."""

    def during(phase: str) -> list[float]:
        start, end = phases[phase]
        return [took for h in hosts for at, took in h.ops() if start <= at < end]

    base = during("baseline")
    added = {}
    for phase in phases:
        if phase == "baseline":
            continue
        ops = during(phase)
        if not base or not ops:
            pytest.fail(f"no breaker operations in {phase} or the baseline")
        p99, base_p99 = percentile(ops, 0.99) * 1000, percentile(base, 0.99) * 1000
        added[phase] = p99 - base_p99
        figures[
            f"breaker operations during {phase} (bound: p99 adds at most "
            f"{ADDED_MS:g} ms to the baseline's; nothing raised)"
        ] = (
            f"{len(ops)} operations, p99 {p99:.3f} ms (baseline {base_p99:.3f}, "
            f"{added[phase]:+.3f}), slowest {max(ops) * 1000:.3f} ms "
            f"(baseline {max(base) * 1000:.3f})"
        )
    return added


def require(condition: object, what: str) -> None:
    """A step's precondition: it fails the test as an error of the run, never
    as an AssertionError of a bound."""
    if not condition:
        pytest.fail(what)


def stop_all(hosts: list[Host]) -> None:
    """Stop the workers: every one reports, and none saw qbreaker raise."""
    summaries = [s for h in hosts for s in h.stop()]
    require(len(summaries) == len(hosts) * WORKERS, f"workers lost: {summaries}")
    require(all(not s["unexpected"] for s in summaries), f"raised: {summaries}")


# -- a 3-master Cluster ----------------------------------------------------------------


def test_three_master_cluster_trip_recovery_and_restart(
    world: dict[str, Any],
) -> None:
    from qbreaker.fleet.redis_backend import RedisBackend

    world["title"] = f"3-master Cluster, {HOSTS} hosts x {WORKERS} workers"
    figures: dict[str, str] = world["figures"]
    backend: GatedBackend = world["backend"]
    namespace = world["namespace"]
    with redis_cluster(world["tmp"], 3) as cluster:
        hosts = start_hosts(world, cluster.url)
        view = RedisBackend.from_url(cluster.url, namespace, timeout=5)
        try:
            _cluster_trip_and_recovery(hosts, world, view, figures)
            _cluster_restart(hosts, cluster, backend, view, namespace, figures)
        finally:
            view.close()
        stop_all(hosts)


def _cluster_trip_and_recovery(
    hosts: list[Host], world: dict[str, Any], view: Any, figures: dict[str, str]
) -> None:
    backend: GatedBackend = world["backend"]
    # A trip by a quorum (two hosts fail; the others' backends answer).
    backend.failing = {h.host_id for h in hosts[:2]}
    wait_until(
        lambda: all(h.cell.state == State.OPEN for h in hosts[:2]),
        15,
        "two hosts to trip",
    )
    took = wait_until(
        lambda: all(
            h.cell.state == State.OPEN and h.fleet_state() == "open" for h in hosts
        ),
        15,
        "the fleet's open on every host",
    )
    figures[f"trip by 2 of {len(hosts)} hosts -> open on every host (bound 1 tick)"] = (
        f"{took * 1000:.0f} ms"
    )
    assert took <= TICK
    state = fleet_state(view)
    assert (state.state, set(state.tripped_by)) == (
        "open",
        {h.host_id for h in hosts[:2]},
    )
    # Recovery: the backend answers again; one host probes for the fleet.
    all_open = time.monotonic()
    wall_offset = time.time() - all_open
    backend.failing = set()
    took = wait_until(
        lambda: all(
            h.fleet_state() == "closed" and h.cell.state == State.CLOSED for h in hosts
        ),
        20,
        "the fleet to close after recovery",
    )
    closed = fleet_state(view)
    assert (closed.state, closed.reason) == ("closed", "probe")
    (prober,) = closed.tripped_by
    # The close's stream entry: its id is Redis's time, this machine's clock.
    entries = view._client.xrevrange(view.keys[-1], count=20)
    close_ms = next(
        int(entry_id.decode().split("-")[0])
        for entry_id, fields in entries
        if fields[b"s"] == b"closed"
    )
    closed_at = close_ms / 1000 - wall_offset
    reached = {
        h.host_id: backend.calls_from(h.host_id, all_open, closed_at) for h in hosts
    }
    since = f"{int((all_open + wall_offset) * 1000)}-0"
    transitions = [
        _transition(fields)
        for _, fields in view._client.xrange(view.keys[-1], min=since)
    ]
    figures[
        "recovery: calls that reached the backend until the fleet closed, by host "
        "(bound: only the lease holder's)"
    ] = (
        f"{reached} (the holder: {prober}); every host closed {took:.2f} s after; "
        f"the fleet's transitions: {transitions}"
    )
    assert [h for h, n in reached.items() if n] == [prober]


def _cluster_restart(
    hosts: list[Host],
    cluster: Cluster,
    backend: GatedBackend,
    view: Any,
    namespace: str,
    figures: dict[str, str],
) -> None:
    meta = key_prefix(namespace) + "meta"
    port = cluster.master_of(meta)
    old_epoch = hosts[0].status().epoch
    # The fleet open (every call fails, so only an agent can close a cell).
    backend.fail_all = True
    wait_until(
        lambda: all(
            h.cell.state == State.OPEN and h.fleet_state() == "open" for h in hosts
        ),
        15,
        "the fleet's open on every host",
    )
    before = fleet_state(view)
    with CloseWatch(hosts) as watch:
        cluster.restart_empty(port)
        killed = time.monotonic()
        wait_for(lambda: cluster.state_ok(port), f"node {port} back in the cluster")
        answering = time.monotonic()

        def reconverged() -> bool:
            with node_client(port) as node:
                epoch = node.hget(meta, "epoch")
            return epoch is not None and all(
                h.status().connected
                and h.status().epoch == epoch.decode()
                and h.fleet_state() == "open"
                for h in hosts
            )

        took = wait_until(reconverged, 15, "every agent on the restarted node")
        time.sleep(TICK)
    after = fleet_state(view)
    figures[
        f"slot master {port} restarted empty ({answering - killed:.2f} s down) "
        f"-> every agent synced there with the fleet open (bound 2 ticks of it "
        f"answering)"
    ] = f"{took * 1000:.0f} ms; the fleet {after.state} ({after.reason})"
    figures[
        f"cells seen closed from the restart to 1 tick after reconverging "
        f"({watch.polls} polls; bound 0)"
    ] = str(watch.closed)
    assert hosts[0].status().epoch != old_epoch
    assert before.state == "open" and after.state == "open"
    assert not watch.closed
    assert took <= 2 * TICK
    backend.fail_all = False


# -- a 6-node Cluster: CLUSTER FAILOVER during an open fleet ---------------------------


def test_six_node_cluster_failover_during_an_open_fleet(
    world: dict[str, Any],
) -> None:
    from qbreaker.fleet.redis_backend import RedisBackend

    world["title"] = f"6-node Cluster, {HOSTS} hosts x {WORKERS} workers"
    figures: dict[str, str] = world["figures"]
    namespace = world["namespace"]
    phases: dict[str, tuple[float, float]] = {}
    with redis_cluster(world["tmp"], 3, replicas=1) as cluster:
        hosts = start_hosts(world, cluster.url)
        view = RedisBackend.from_url(cluster.url, namespace, timeout=5)
        try:
            started = time.monotonic()
            time.sleep(1.5)
            phases["baseline"] = (started, time.monotonic())
            trip_everywhere(hosts, world)
            before = fleet_state(view)
            master = cluster.master_of(view.keys[0])
            replica = cluster.replica_of(master)
            with node_client(replica) as node:
                syncs = node.info("commandstats").get("cmdstat_evalsha", {})
            with CloseWatch(hosts) as watch:
                started = time.monotonic()
                with node_client(replica, timeout=5) as node:
                    assert node.execute_command("CLUSTER", "FAILOVER")
                wait_for(
                    lambda: (
                        cluster.role(replica) == "master"
                        and cluster.master_of(view.keys[0]) == replica
                    ),
                    "the replica promoted",
                )
                promoted, promoted_wall = time.monotonic(), time.time()
                took = wait_until(
                    lambda: all(
                        h.status().connected
                        and (h.status().last_good_sync or 0) > promoted_wall
                        for h in hosts
                    ),
                    15,
                    "every agent to sync after the failover",
                )
                time.sleep(TICK)
                # The failover and the tick after it.
                phases["CLUSTER FAILOVER"] = (started, time.monotonic())
            with node_client(replica) as node:
                now = node.info("commandstats").get("cmdstat_evalsha", {})
            with node_client(master) as node:
                moved = node.info("errorstats").get("errorstat_MOVED", {})
            after = fleet_state(view)
        finally:
            view.close()
        stop_all(hosts)
    added = added_ms(hosts, phases, figures)
    figures[
        f"CLUSTER FAILOVER of slot master {master} to {replica} "
        f"({promoted - started:.2f} s) -> every agent synced on the new master "
        f"(bound 2 ticks of the promotion)"
    ] = (
        f"{took * 1000:.0f} ms; scripts run there since: "
        f"{now.get('calls', 0) - syncs.get('calls', 0)}; MOVED replies of the "
        f"old master: {moved.get('count', 0)}"
    )
    figures["the fleet across the failover (bound: the same state and generation)"] = (
        f"{before.state} g{before.generation} -> {after.state} g{after.generation}"
    )
    figures[f"cells seen closed ({watch.polls} polls; bound 0)"] = str(watch.closed)
    assert now.get("calls", 0) > syncs.get("calls", 0)
    assert (after.state, after.generation) == (before.state, before.generation)
    assert not watch.closed
    assert took <= 2 * TICK
    assert added["CLUSTER FAILOVER"] <= ADDED_MS


# -- Sentinel ------------------------------------------------------------------------


def _fail_over(group: SentinelGroup) -> float:
    """Once the master is killed: ``SENTINEL FAILOVER`` (three Sentinels that
    see it down at once may split their votes, and then wait twice the
    failover-timeout), then wait for the Sentinels to name the replica; the
    seconds it took."""
    started = time.monotonic()

    def ask() -> Any:
        try:
            with node_client(group.sentinels[0], 5) as sentinel:
                return sentinel.execute_command("SENTINEL", "FAILOVER", SERVICE)
        except redis.exceptions.ResponseError as exc:
            if "INPROG" in str(exc):
                return True  # one is under way already
            raise

    wait_for(ask, f"SENTINEL FAILOVER ({log_tail(group.workdir, 'sentinel-0')})")
    wait_until(
        lambda: _quiet(group.master_port) == group.replica,
        20,
        f"the failover to {group.replica}",
    )
    return time.monotonic() - started


def _still_the_master(group: SentinelGroup) -> None:
    """No failover before the test's own (a stall the Sentinels took for a
    dead master would change what the test stages)."""
    require(
        group.master_port() == group.master,
        f"the Sentinels failed over before the test killed the master "
        f"(load: {Path('/proc/loadavg').read_text().strip()})",
    )


def _quiet(read: Any) -> Any:
    try:
        return read()
    except redis.exceptions.RedisError:
        return None


def _transition(fields: dict[bytes, bytes]) -> str:
    """A stream entry, short: state, generation, reason, by."""
    return "{} g{} {} by {}".format(
        *(fields[k].decode().replace("\n", ",") for k in (b"s", b"g", b"w", b"b"))
    )


def _view(backend: Any) -> Any:
    """The fleet's state through a Sentinel client, retried over a failover."""
    return wait_for(lambda: fleet_state(backend), "a view from the new master", 20)


def _stored_policy(backend: Any) -> FleetPolicy:
    """The breaker's policy as the fleet stored it (the first host's)."""
    raw = backend._client.hget(backend.keys[1], NAME).decode()
    _, quorum, most, window, reset, rate, slow, least, local = raw.split("|")
    return FleetPolicy(
        int(quorum),
        int(most) if most else None,
        int(window),
        int(reset),
        float(rate) if rate else None,
        float(slow) if slow else None,
        int(least),
        int(local) if local else None,
    )


def _seconds_until(condition: Any, timeout: float) -> float | None:
    """Poll ``condition`` every 50 ms: the seconds until it held, or None."""
    started = time.monotonic()
    while time.monotonic() - started <= timeout:
        if _quiet(condition):
            return time.monotonic() - started
        time.sleep(0.05)
    return None


def test_sentinel_failover_that_loses_the_trip_during_an_outage(
    world: dict[str, Any],
) -> None:
    """The replica's link is cut; the fleet trips on the master (host1's
    trip, then a second one by the test, as host "ops"), whose writes are
    paused at once, so that every agent learns of the open from the event
    stream only; the master is killed. The promoted replica has the fleet
    closed, a lower generation than the agents applied: they must re-seed
    (the fleet open again there within 2 ticks) and close no cell."""
    from qbreaker.fleet.redis_backend import RedisBackend

    world["title"] = f"Sentinel, outage, {HOSTS} hosts x {WORKERS} workers"
    figures: dict[str, str] = world["figures"]
    backend: GatedBackend = world["backend"]
    namespace = world["namespace"]
    proxies: list[FaultProxy] = []

    def link(port: int) -> FaultProxy:
        proxies.append(FaultProxy(port))
        return proxies[-1]

    try:
        # Sentinel re-points a replica that replicates through another
        # address only after failover-timeout: longer than this test.
        with sentinel_group(
            world["tmp"],
            SERVICE,
            link=link,
            failover_timeout_ms=120_000,
            down_after_ms=DOWN_AFTER_MS,
        ) as group:
            hosts = start_hosts(world, group.url)
            h1, *others = hosts
            master = RedisBackend(node_client(group.master, 5), namespace)
            backend.failing = {h1.host_id}
            wait_until(
                lambda: (
                    h1.cell.state == State.OPEN
                    and master._client.hget(master.keys[4], NAME)
                ),
                15,
                "host1's trip reported",
                hosts,
            )
            with node_client(group.master, 5) as node:
                replicated = node.execute_command("WAIT", 1, 5000)
            require(replicated == 1, "host1's trip replicated")
            group.link.blackhole()
            trip = BreakerDelta(NAME, _stored_policy(master), 0, 0, 0, 0, True, None)
            (tripped,) = master.sync(SyncRequest("ops", 1, (trip,))).states
            with node_client(group.master, 5) as node:
                node.execute_command("CLIENT", "PAUSE", "20000", "WRITE")
            ((trip_id, _),) = master._client.xrevrange(master.keys[-1], count=1)
            opened_wall = int(trip_id.decode().split("-")[0]) / 1000
            heard = wait_until(
                lambda: all(
                    h.fleet_state() == "open" and h.cell.state == State.OPEN
                    for h in hosts
                ),
                5,
                "the fleet's open on every host, from the event stream",
                hosts,
            )
            for host in others:
                host.pause(
                    True
                )  # their cells are the fleet's: only an agent closes them
            replied = [
                h.host_id
                for h in hosts
                if (h.status().last_good_sync or 0) >= opened_wall
            ]
            require(not replied, f"{replied} had a sync reply after the trip")
            _still_the_master(group)
            with CloseWatch(hosts) as watch:
                group.processes["master"].kill()
                failover = _fail_over(group)
                promoted_wall = time.time()
                promoted = RedisBackend(node_client(group.replica, 5), namespace)
                took = _seconds_until(
                    lambda: (
                        fleet_state(promoted).state == "open"
                        and all(
                            h.status().connected
                            and (h.status().last_good_sync or 0) > promoted_wall
                            and h.fleet_state() == "open"
                            for h in hosts
                        )
                    ),
                    6,
                )
                time.sleep(TICK)
            after = fleet_state(promoted)
            stream = promoted._client.xrange(promoted.keys[-1])
            agents = _describe(hosts)
            for host in others:
                host.pause(False)
            stop_all(hosts)
    finally:
        for proxy in proxies:
            proxy.close()
    figures[
        "the trip (host1's and the test's, on the master only, its replica cut "
        "off; the master's writes paused at once) -> open on every host by event"
    ] = f"{heard * 1000:.0f} ms: g{tripped.generation} by {tripped.tripped_by}"
    figures["master killed, SENTINEL FAILOVER -> the Sentinels name the replica"] = (
        f"{failover:.2f} s"
    )
    figures[
        "-> the fleet open again on the new master, every agent synced there "
        "(bound 2 ticks of the promotion)"
    ] = (
        f"{'never (6 s)' if took is None else f'{took * 1000:.0f} ms'}; the new "
        f"master's fleet {after.state} g{after.generation}, its transitions "
        f"{[_transition(f) for _, f in stream]}; the agents: {agents}"
    )
    figures[f"cells seen closed ({watch.polls} polls; bound 0)"] = str(watch.closed)
    assert not watch.closed
    # The trip was lost; the agents re-seed the fleet open on the new master.
    assert trip_id not in [entry_id for entry_id, _ in stream]
    assert after.state == "open"
    assert took is not None and took <= 2 * TICK


def test_sentinel_failover_while_a_host_holds_the_probe_lease(
    world: dict[str, Any],
) -> None:
    """The fleet's open expires and a host takes the probe lease; its probe
    is held in flight, and the master is killed. The new master accepts no
    script until the lease (replicated) has expired there (``CLIENT PAUSE
    WRITE``), so the holder's verdict, a success, arrives after the fleet
    re-opened from the lease's expiry: it changes nothing."""
    from qbreaker.fleet.redis_backend import RedisBackend

    world["title"] = f"Sentinel, recovery, {HOSTS} hosts x {WORKERS} workers"
    figures: dict[str, str] = world["figures"]
    backend: GatedBackend = world["backend"]
    namespace = world["namespace"]
    # The promotion waits for the replica's CLIENT PAUSE (3 s): a longer
    # failover-timeout than that.
    with sentinel_group(
        world["tmp"],
        SERVICE,
        failover_timeout_ms=20_000,
        down_after_ms=DOWN_AFTER_MS,
    ) as group:
        hosts = start_hosts(world, group.url)
        master = RedisBackend(node_client(group.master, 5), namespace)
        trip_everywhere(hosts, world)
        opened = fleet_state(master)
        # Just before the open expires, calls start waiting at the gate, and
        # will succeed: the first is the lease holder's probe.
        time.sleep(max(0.0, opened.remaining_ms / 1000 - 0.3))
        backend.gate.clear()
        backend.fail_all = False
        wait_until(lambda: fleet_state(master).lease_holder, 10, "a lease holder")
        leased = fleet_state(master)
        holder = next(h for h in hosts if h.host_id == leased.lease_holder)
        others = [h for h in hosts if h is not holder]
        for host in others:
            host.pause(True)  # no calls: no probes of their own, no demand
        wait_until(
            lambda: any(h == holder.host_id for h, _ in backend.waiting),
            5,
            "the holder's probe at the backend",
        )
        with node_client(group.master, 5) as node:
            assert node.execute_command("WAIT", 1, 5000) == 1  # the lease too
        with node_client(group.replica, 5) as node:
            # Longer than the lease (2 s from its last renewal, all before
            # the kill): no script runs there until it has expired.
            node.execute_command("CLIENT", "PAUSE", "3000", "WRITE")
        _still_the_master(group)
        with CloseWatch(others) as watch:
            group.processes["master"].kill()
            killed = time.monotonic()
            time.sleep(0.5)
            backend.gate.set()  # the probe succeeds: the verdict waits in the agent
            wait_until(
                lambda: holder.cell.state == State.CLOSED, 5, "the holder's probe"
            )
            holder.pause(True)
            failover = _fail_over(group)
            wait_until(
                lambda: holder.status().connected and holder.synced(),
                15,
                "the holder's verdict sent to the new master",
            )
            delivered = time.monotonic() - killed
            time.sleep(TICK)
        promoted = RedisBackend.from_url(group.url, namespace, timeout=5)
        try:
            after = _view(promoted)
            stream = promoted._client.xrange(promoted.keys[-1])
        finally:
            promoted.close()
        for host in hosts:
            host.pause(False)
        stop_all(hosts)
    reasons = [_transition(f) for _, f in stream]
    figures[
        f"lease held by {holder.host_id} (g{leased.generation}), its probe in "
        f"flight; master killed, SENTINEL FAILOVER -> replica promoted"
    ] = f"{failover:.2f} s"
    figures[
        "the holder's verdict (a success) delivered after the lease expired "
        "(bound: changes nothing: the fleet re-opens from the lease's expiry)"
    ] = (
        f"{delivered:.2f} s after the kill; the fleet {after.state} "
        f"g{after.generation} ({after.reason}, by {after.tripped_by}); "
        f"transitions there: {reasons}"
    )
    figures[f"the other hosts' cells seen closed ({watch.polls} polls; bound 0)"] = str(
        watch.closed
    )
    assert (after.state, after.reason) == ("open", "lease_expired")
    assert after.generation == leased.generation + 1
    assert not watch.closed
