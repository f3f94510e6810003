"""The fleet's fault matrix, Redis faults: one run, faults one after another.

HOSTS simulated hosts of WORKERS worker processes each (e2e_support, with
matrix_worker.py: a credential provider reading each host's password file),
every host talking to a real redis-server through its own FaultProxy. In
order:

- manual fleet control with the real CLI (``python -m qbreaker fleet
  open|reset``) with Redis up: applied on every host within 2 ticks;
- a fleet open whose event is trimmed from the stream (``XTRIM MAXLEN 0`` in
  the same transaction) before any host reads it: the sync replies carry it;
- Redis out of memory (``maxmemory`` 1 byte, ``noeviction``): hosts degrade,
  calls go on; memory restored, they reconverge;
- a trip, then Redis killed (the CLI's ``fleet reset`` meanwhile: exit 1,
  nothing changed) and restarted empty: no cell closes, the fleet re-seeds;
- 2 hosts partitioned (their proxies blackhole) during a trip: they fall back
  to host-local, the others keep the fleet, healed they converge;
- the elected agent of a host killed with kill -9: a new one syncs;
- a rolling policy change (half the hosts restart their workers with another
  max_failures);
- the Redis password changed under running agents (``requirepass`` and the
  clients killed), then given to the hosts' credential providers.

Every figure is printed with its bound (run with ``-s``); the breaker
operations of the workers in each fault are compared with a baseline.
``QBREAKER_MATRIX_HOSTS`` / ``QBREAKER_MATRIX_WORKERS`` size the run (about
70 s at 6 x 3 here). Marked ``fleet_heavy`` besides: Redis out of memory for
30 s (the issue's outage length), its WARNING lines per host. Last, the
matrix's findings checked on the agent alone (no Redis, no timing): the
backoff after errors Redis answers, the refused password named, and a
rolling change of max_failures alone (a conflict).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qbreaker import CircuitBreaker, State, shared
from qbreaker._impl.methods import FleetOptions
from qbreaker.fleet import agent as fleet_agent
from qbreaker.fleet.redis_backend import EVENTS_KEPT, RedisBackend, _script
from qbreaker.fleet.spec import MemoryBackend

from . import e2e_worker, matrix_worker
from .e2e_support import (
    NAME,
    CountingBackend,
    Host,
    RedisProcess,
    percentile,
    wait_for,
    world_fixture,  # noqa: F401 - the ``world`` fixture
)
from .fault_proxy import FaultProxy
from .host_helpers import host_dir
from .test_host_agent import Fleet

__all__ = ("host_dir",)  # a fixture

pytestmark = [pytest.mark.fleet, pytest.mark.c_extension]
redis = pytest.importorskip("redis", reason="the fleet extra (redis-py) is missing")

HOSTS = int(os.environ.get("QBREAKER_MATRIX_HOSTS", "6"))
WORKERS = int(os.environ.get("QBREAKER_MATRIX_WORKERS", "3"))
#: The agents' quiet tick (qbreaker.fleet.agent): the issue's "tick".
TICK = 1.0
#: The issue's bounds.
CONVERGE = 2 * TICK
ADDED_MS = 1.0
#: How long each Redis fault lasts, and the baseline stretch.
FAULT = 2.0
WORKER = Path(__file__).with_name("matrix_worker.py")
#: The password the matrix's last fault sets.
NEW_PASSWORD = "matrix-rotated-secret"  # noqa: S105 - a test's own server


class Matrix:
    """The run's hosts, proxies, Redis and figures, and what each phase uses."""

    def __init__(
        self, world: dict[str, Any], hosts: int = HOSTS, workers: int = WORKERS
    ) -> None:
        self.workers = workers
        self.redis: RedisProcess = world["redis"]
        self.backend: CountingBackend = world["backend"]
        self.namespace: str = world["namespace"]
        self.figures: dict[str, str] = {}
        self.phases: dict[str, tuple[float, float, list[Host]]] = {}
        self.proxies: dict[str, FaultProxy] = {}
        self.hosts: list[Host] = []
        self.summaries: list[dict[str, Any]] = []
        #: Seconds from the backend's return to every cell closed.
        self.recoveries: list[float] = []
        for index in range(1, hosts + 1):
            host_id = f"host{index}"
            proxy = FaultProxy(self.redis.port)
            self.proxies[host_id] = proxy
            host = Host(host_id, world["base"], proxy.url, self.namespace,
                        self.backend.port)  # fmt: skip
            host.worker = WORKER
            password = host.directory / "redis-password"
            password.write_text("")
            host.env[matrix_worker.PASSWORD_ENV] = str(password)
            world["hosts"].append(host)
            self.hosts.append(host)
        self.connect(None)

    def connect(self, password: str | None) -> None:
        self.client = redis.Redis(
            host="127.0.0.1", port=self.redis.port, socket_timeout=5, password=password
        )
        self.fleet = RedisBackend(self.client, self.namespace)

    def start(self) -> None:
        for host in self.hosts:
            host.start(self.workers, log_stderr=True)
        for host in self.hosts:
            wait_for(
                lambda h=host: h.fleet_state() == "closed" and h.status().connected,
                60,
                f"{host.host_id}'s agent to sync",
            )

    def close(self) -> None:
        for proxy in self.proxies.values():
            proxy.close()

    # -- what the test reads ---------------------------------------------------
    def fleet_now(self) -> Any:
        (state,) = [s for s in self.fleet.view() if s.name == NAME]
        return state

    def all_connected(self, of: list[Host] | None = None) -> bool:
        return all(h.status().connected for h in (of or self.hosts))

    def cells(self, state: State, of: list[Host] | None = None) -> bool:
        return all(h.cell.state == state for h in (of or self.hosts))

    def figure(self, what: str, bound: float, took: float) -> bool:
        """Print ``took`` seconds against ``bound``; whether it is within."""
        within = took <= bound
        self.figures[f"{what} (bound {bound:g} s)"] = (
            f"{took * 1000:.0f} ms ({'within' if within else 'OVER'})"
        )
        return within

    @contextlib.contextmanager
    def timed(self, name: str, of: list[Host] | None = None) -> Iterator[None]:
        """A stretch of the run whose breaker operations (of ``of``'s
        workers) are compared with the baseline's at the end."""
        started = time.monotonic()
        try:
            yield
        finally:
            self.phases[name] = (started, time.monotonic(), of or self.hosts)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The real command line, run as on a host of the fleet."""
        env = {
            **self.hosts[0].env,
            "QBREAKER_FLEET_URL": self.redis.url,
            "QBREAKER_FLEET_NAMESPACE": self.namespace,
        }
        return subprocess.run(
            [sys.executable, "-m", "qbreaker", *args],
            env=env,
            text=True,
            capture_output=True,
            timeout=60,
        )

    def print(self, title: str) -> None:
        """Every figure, with the run's size, date and load."""
        print(
            f"\n{title} ({len(self.hosts)} hosts x {self.workers} workers, "
            f"{time.strftime('%Y-%m-%d')}, load {_load()}):"
        )
        if self.recoveries:
            self.figures[
                "backend back after each outage -> every cell closed (reset_timeout "
                f"{e2e_worker.RESET_TIMEOUT:g} s)"
            ] = ", ".join(f"{took:.1f} s" for took in self.recoveries)
        for what, value in self.figures.items():
            print(f"  {what}: {value}")

    def recover(self) -> None:
        """The backend back: a probe closes the fleet, every cell closes."""
        self.backend.fail_all = False
        self.backend.failing = set()
        started = time.monotonic()
        wait_for(lambda: self.fleet_now().state == "closed", 30, "the fleet to close")
        wait_for(lambda: self.cells(State.CLOSED), 30, "every host to close")
        self.recoveries.append(time.monotonic() - started)


def _logged(host: Host) -> dict[str, list[str]]:
    """The WARNING lines of each of the host's stderr files so far."""
    return {
        path.name: [
            line
            for line in path.read_text(errors="replace").splitlines()
            if line.startswith("WARNING")
        ]
        for path in host.directory.glob("stderr-*.log")
    }


def _warned_since(host: Host, before: dict[str, list[str]]) -> list[str]:
    """The host's WARNING lines logged after ``before`` (``_logged``)."""
    return [
        line
        for name, lines in _logged(host).items()
        for line in lines[len(before.get(name, ())) :]
    ]


@pytest.mark.fleet_matrix
def test_redis_fault_matrix(world: dict[str, Any]) -> None:
    assert HOSTS >= 3, "2 hosts partitioned (1 of 3), and at least two others"
    matrix = Matrix(world)
    try:
        matrix.start()
        _baseline(matrix)
        _manual_control_up(matrix)
        _stream_trimmed(matrix)
        _out_of_memory(matrix)
        _killed_and_restarted_empty(matrix)
        _partitioned(matrix)
        _agent_killed(matrix)
        _rolling_policy_change(matrix)
        _password_changed(matrix)
        _calls(matrix)
    finally:
        matrix.close()
        matrix.print("fleet fault matrix, Redis faults")


#: The issue's Redis outage for the WARNING count (fleet_heavy: 30 s).
LONG_FAULT = 30.0


@pytest.mark.fleet_heavy
@pytest.mark.fleet_matrix
def test_redis_out_of_memory_for_30_s_logs_at_most_two_warnings_per_host(
    world: dict[str, Any],
) -> None:
    matrix = Matrix(world, hosts=2, workers=1)
    try:
        matrix.start()
        _out_of_memory(matrix, LONG_FAULT)
    finally:
        matrix.close()
        matrix.print(f"Redis out of memory for {LONG_FAULT:g} s")


def _load() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def _baseline(m: Matrix) -> None:
    with m.timed("baseline"):
        time.sleep(FAULT)


def _manual_control_up(m: Matrix) -> None:
    """``python -m qbreaker fleet open|reset`` with Redis up."""
    for action, state in (("open", State.OPEN), ("reset", State.CLOSED)):
        started = time.monotonic()
        done = m.cli("fleet", action, NAME)
        assert done.returncode == 0, done.stderr
        answered = time.monotonic()
        took = wait_for(lambda s=state: m.cells(s), 10, f"every host to {action}")
        m.figure(
            f"CLI `fleet {action}` with Redis up -> applied on every host, after "
            f"the command returned ({time.monotonic() - started:.1f} s with it)",
            CONVERGE,
            took,
        )
        assert took <= CONVERGE, (action, answered - started)


def _stream_trimmed(m: Matrix) -> None:
    """A fleet decision whose event is gone from the stream before any host
    reads it: in one transaction, a fleet open and ``XTRIM MAXLEN 0``."""
    stream = m.fleet.keys[-1]
    last = m.client.xrevrange(stream, count=1)
    cursor = last[0][0] if last else b"0-0"
    seen: list[Any] = []
    # A reader blocked as the agents' events threads are: it sees nothing.
    reader = redis.Redis(host="127.0.0.1", port=m.redis.port, socket_timeout=5)
    watching = threading.Thread(
        target=lambda: seen.append(reader.xread({stream: cursor}, block=1500)),
        daemon=True,
    )
    watching.start()
    time.sleep(0.2)  # the reader is blocked
    script = _script("force")
    m.client.script_load(script.text)  # EVALSHA in MULTI cannot load it
    transaction = m.client.pipeline(transaction=True)
    # The force script's arguments, as RedisBackend._run sends them.
    transaction.evalsha(script.sha, len(m.fleet.keys), *m.fleet.keys,
                        os.urandom(8).hex(), "", str(EVENTS_KEPT), NAME, "open",
                        "matrix")  # fmt: skip
    transaction.xtrim(stream, maxlen=0, approximate=False)
    transaction.execute()
    took = wait_for(lambda: m.cells(State.OPEN), 10, "every host to open")
    watching.join(5)
    reader.close()
    delivered = sum(len(entries) for _, entries in (seen[0] or ())) if seen else -1
    assert m.client.xlen(stream) == 0 and delivered == 0, seen
    within = m.figure(
        "fleet open trimmed from the stream before delivery (a blocked XREAD got "
        f"{delivered} entries) -> every host open via sync replies",
        CONVERGE,
        took,
    )
    assert within
    m.fleet.force(NAME, "reset", by="matrix")
    wait_for(lambda: m.cells(State.CLOSED), 10, "every host to close")


def _out_of_memory(m: Matrix, lasting: float = FAULT) -> None:
    m.client.config_set("maxmemory-policy", "noeviction")
    before = {h.host_id: _logged(h) for h in m.hosts}
    with m.timed("out of memory"):
        m.client.config_set("maxmemory", "1")
        seen = wait_for(
            lambda: not any(h.status().connected for h in m.hosts),
            10,
            "every host to show degraded while Redis is out of memory",
        )
        time.sleep(max(0.0, lasting - seen))
        alive = all(w.poll() is None for h in m.hosts for w in h.workers)
        errors = {h.host_id: h.status().last_error for h in m.hosts}
        m.client.config_set("maxmemory", "0")
    assert alive, "a worker died while Redis was out of memory"
    assert all(e and "OutOfMemoryError" in e for e in errors.values()), errors
    m.figures["Redis out of memory -> every host degraded (its last error)"] = (
        f"{seen * 1000:.0f} ms ({next(iter(errors.values()))})"
    )
    took = wait_for(m.all_connected, 30, "every host to sync after memory is back")
    within = m.figure(
        "Redis out of memory for "
        f"{lasting:g} s, memory restored -> every host syncing (the agent backs off "
        "up to a quiet tick after errors Redis answers)",
        CONVERGE,
        took,
    )
    assert m.cells(State.CLOSED)
    assert within
    _held_to_warnings(m, "Redis out of memory", before, m.hosts)


def _held_to_warnings(
    m: Matrix,
    fault: str,
    before: dict[str, dict[str, list[str]]],
    of: list[Host],
    bound: int = 2,
) -> None:
    """At most ``bound`` WARNING lines per host (``of``) since ``before``: the
    loss and the return (and, for a changed password, the refusal named
    once). The protected breaker's own transitions (a failing backend's, not
    Redis's) are counted apart."""
    own = f"circuit breaker '{NAME}':"
    lines, transitions = {}, 0
    for h in of:
        found = _warned_since(h, before[h.host_id])
        lines[h.host_id] = [line for line in found if own not in line]
        transitions += len(found) - len(lines[h.host_id])
    counts = {host: len(found) for host, found in lines.items()}
    label = f"{fault}: WARNING lines per host, the fault and its end (bound {bound})"
    m.figures[label] = f"{counts} (and {transitions} of the breaker's own transitions)"
    assert all(n <= bound for n in counts.values()), lines


def _killed_and_restarted_empty(m: Matrix) -> None:
    """A trip, then Redis killed and restarted empty during the open fleet."""
    m.backend.fail_all = True
    wait_for(lambda: m.fleet_now().state == "open", 20, "the fleet to trip")
    wait_for(lambda: m.cells(State.OPEN), 10, "every host to open")
    epochs = {h.status().epoch for h in m.hosts}
    before = {h.host_id: _logged(h) for h in m.hosts}
    closed: list[str] = []
    watching = threading.Event()

    def watch() -> None:
        # Every cell, every few ms, until reconverged: none may close.
        while not watching.is_set():
            closed.extend(h.host_id for h in m.hosts if h.cell.state == State.CLOSED)
            time.sleep(0.002)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with m.timed("Redis down"):
            m.redis.kill()
            wait_for(lambda: not any(h.status().connected for h in m.hosts), 5,
                     "every host to show degraded")  # fmt: skip
            down = m.cli("fleet", "reset", NAME)
        assert down.returncode == 1, (down.returncode, down.stdout, down.stderr)
        assert "unreachable" in down.stderr and "nothing changed" in down.stderr
        m.figures[
            "CLI `fleet reset` with Redis down (bound: exit 1, nothing changed)"
        ] = f"exit {down.returncode}: {down.stderr.strip()[:120]}..."
        m.redis.start()
        restarted = time.monotonic()

        def reconverged() -> bool:
            views = [h.status() for h in m.hosts]
            if not all(v.connected and v.epoch not in epochs for v in views):
                return False
            return m.fleet_now().state == "open" and all(
                v.breakers[NAME].state == "open" for v in views
            )

        wait_for(reconverged, 15, "every host to reconverge after the restart")
        took = time.monotonic() - restarted
        time.sleep(TICK)  # and a tick more with nobody closing
    finally:
        watching.set()
        watcher.join(5)
    reason = m.fleet_now().reason
    _held_to_warnings(m, "Redis killed and restarted", before, m.hosts)
    within = m.figure(
        "Redis killed during an open fleet and restarted empty -> every host "
        f"synced the new epoch, the fleet open again ({reason}); cells closed "
        f"meanwhile: {len(closed)}",
        CONVERGE,
        took,
    )
    assert not closed, closed
    assert reason in ("reseed", "quorum", "probe")
    assert within
    m.recover()


def _partitioned(m: Matrix) -> None:
    """2 hosts cut off (their proxies blackhole) during a trip."""
    count = min(2, HOSTS - 2)
    cut, others = m.hosts[-count:], m.hosts[:-count]
    before = {h.host_id: _logged(h) for h in cut}
    with m.timed("partitioned", cut):
        for h in cut:
            m.proxies[h.host_id].blackhole()
        wait_for(lambda: not any(h.status().connected for h in cut), 5,
                 "the partitioned hosts to show degraded")  # fmt: skip
        m.backend.fail_all = True
        wait_for(lambda: m.fleet_now().state == "open", 20, "the others to trip")
        wait_for(lambda: m.cells(State.OPEN, others), 10, "the others to open")
        wait_for(lambda: m.cells(State.OPEN, cut), 10, "the cut hosts to trip alone")
        time.sleep(TICK)
        assert m.all_connected(others)
        assert not any(h.status().connected for h in cut)
        # Host-local: the fleet's open never reached them.
        assert all(h.status().breakers[NAME].origin != "fleet" for h in cut)
        for h in cut:
            m.proxies[h.host_id].heal()
    healed = time.monotonic()

    def converged() -> bool:
        fleet = m.fleet_now()
        return all(
            h.status().connected
            and h.status().breakers[NAME].generation == fleet.generation
            for h in cut
        )

    wait_for(converged, 15, "the healed hosts to converge")
    took = time.monotonic() - healed
    _held_to_warnings(m, f"{count} host(s) partitioned", before, cut)
    within = m.figure(
        f"{count} host(s) partitioned during a trip, healed -> they hold the "
        "fleet's generation",
        CONVERGE,
        took,
    )
    assert within
    m.recover()


def _agent_killed(m: Matrix) -> None:
    host = m.hosts[0]
    victim = host.status().agent_pid
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    killed = time.monotonic()

    def taken_over() -> bool:
        now = host.status()
        return now.agent_pid not in (None, victim) and now.connected

    wait_for(taken_over, 15, "another worker to take over")
    within = m.figure(
        f"elected agent killed (kill -9) at {HOSTS} x {WORKERS} -> a new agent syncing",
        3 * TICK,
        time.monotonic() - killed,
    )
    assert within


def _rolling_policy_change(m: Matrix) -> None:
    """Half the hosts restart their workers with another policy."""
    rolled = m.hosts[len(m.hosts) - len(m.hosts) // 2 :]
    for h in rolled:
        m.summaries.extend(h.stop())
        h.workers = []
        # The new workers' logs start afresh (Host.start names them by index).
        for log in h.directory.glob("stderr-[0-9]*.log"):
            log.rename(log.with_name(f"stderr-before-{log.name[7:]}"))
        saved = os.environ.get("QBREAKER_SHM_DIR")
        os.environ["QBREAKER_SHM_DIR"] = str(h.directory)
        try:
            shared.unlink(NAME)  # a new policy needs a new segment
        finally:
            if saved is None:
                del os.environ["QBREAKER_SHM_DIR"]
            else:
                os.environ["QBREAKER_SHM_DIR"] = saved
        h._cell = None
    before = {h.host_id: _logged(h) for h in m.hosts}
    for h in rolled:
        h.env[matrix_worker.MAX_FAILURES_ENV] = "5"
        h.start(m.workers, log_stderr=True)
    started = time.monotonic()
    for h in rolled:
        wait_for(lambda h=h: h.status().connected and h.fleet_state() == "closed",
                 30, f"{h.host_id}'s new workers to sync")  # fmt: skip
    bound = fleet_agent.CONFLICT_INTERVAL + 2 * TICK
    wait_for(
        lambda: all(_conflicts(_warned_since(h, before[h.host_id])) for h in m.hosts),
        bound + 10,
        "every host to warn of the policy conflict",
    )
    took = time.monotonic() - started
    time.sleep(TICK)
    warned = {
        h.host_id: len(_conflicts(_warned_since(h, before[h.host_id]))) for h in m.hosts
    }
    fleet_status = m.cli("status", "--fleet")
    assert fleet_status.returncode == 0, fleet_status.stderr
    listed = [h.host_id for h in rolled if h.host_id in fleet_status.stdout]
    m.figures[
        f"rolling policy change ({len(rolled)} hosts restarted with max_failures 5): "
        "WARNING lines per host (bound 1), `status --fleet` names the hosts"
    ] = (
        f"{warned} after {took:.1f} s (conflicts read every "
        f"{fleet_agent.CONFLICT_INTERVAL:g} s); listed {listed}"
    )
    assert all(n == 1 for n in warned.values()), warned
    assert listed == [h.host_id for h in rolled], fleet_status.stdout


def _conflicts(lines: list[str]) -> list[str]:
    return [line for line in lines if "two policies" in line]


def _password_changed(m: Matrix) -> None:
    """``requirepass`` set and every client connection killed (a rotation),
    then the new password in each host's file (its credential provider)."""
    before = {h.host_id: _logged(h) for h in m.hosts}
    with m.timed("password changed"):
        m.client.config_set("requirepass", NEW_PASSWORD)
        m.client.client_kill_filter(_type="normal", skipme=True)
        m.connect(NEW_PASSWORD)
        seen = wait_for(
            lambda: not any(h.status().connected for h in m.hosts),
            10,
            "every host to show degraded with the old password",
        )
        time.sleep(max(0.0, FAULT - seen))
        for h in m.hosts:
            (h.directory / "redis-password").write_text(NEW_PASSWORD)
    given = time.monotonic()
    errors = {h.host_id: h.status().last_error or "" for h in m.hosts}
    took = wait_for(m.all_connected, 30, "every host to sync with the new password")
    time.sleep(TICK)
    lines = {h.host_id: _warned_since(h, before[h.host_id]) for h in m.hosts}
    # The connections' loss, Redis refusing the old password (a new cause,
    # named once), the return.
    _held_to_warnings(m, "Redis password changed", before, m.hosts, bound=3)
    assert all(
        any("AuthenticationError" in line for line in found) for found in lines.values()
    ), lines
    m.figures["Redis password changed: the first host's first WARNING line"] = (
        f"{lines[m.hosts[0].host_id][:1]}"
    )
    within = m.figure(
        "new password given to the hosts' credential providers -> every host "
        f"syncing (after {given - m.phases['password changed'][0]:.1f} s degraded)",
        CONVERGE,
        took,
    )
    assert all("Authentication" in e for e in errors.values()), errors
    assert all(any("lost" in line for line in found) for found in lines.values()), lines
    assert within
    assert m.fleet_now().state == "closed"


def _calls(m: Matrix) -> None:
    """What the workers saw: nothing raised, and each fault's operations."""
    for h in m.hosts:
        m.summaries.extend(h.stop())
        h.workers = []
    rolled = len(m.hosts) // 2
    # One worker was killed; the rolled hosts' first workers reported too.
    assert len(m.summaries) == (HOSTS + rolled) * WORKERS - 1
    assert all(not s["unexpected"] for s in m.summaries), m.summaries
    ops = {h.host_id: h.ops() for h in m.hosts}

    def during(phase: str) -> list[float]:
        start, end, of = m.phases[phase]
        return [took for h in of for at, took in ops[h.host_id] if start <= at < end]

    base = during("baseline")
    assert base
    for phase in ("out of memory", "Redis down", "partitioned", "password changed"):
        found = during(phase)
        assert found, phase
        over = (max(found) - max(base)) * 1000
        m.figures[
            f"breaker operations while {phase} (bound: at most {ADDED_MS:g} ms "
            "added, nothing raised)"
        ] = (
            f"{len(found)} operations, p99 {percentile(found, 0.99) * 1000:.3f} ms "
            f"(baseline {percentile(base, 0.99) * 1000:.3f}), slowest "
            f"{max(found) * 1000:.3f} ms (baseline {max(base) * 1000:.3f}: "
            f"{over:+.3f} ms, {'within' if over <= ADDED_MS else 'OVER'}), "
            "nothing raised"
        )
        # No call waits for Redis (its timeout is 250 ms); held loosely here:
        # this machine's scheduler, not Redis, sets the tails when loaded.
        assert over < 50


# -- findings of the matrix, held by the agent alone (no Redis, no timing) ------


class _Switched:
    """The spec backend behind a switch: while ``error`` is set, every call
    raises it (what a Redis out of memory, or refusing a password, answers)."""

    def __init__(self) -> None:
        self.inner = MemoryBackend()
        self.error: Exception | None = None

    def _check(self) -> None:
        if self.error is not None:
            raise self.error

    def sync(self, request: Any) -> Any:
        self._check()
        return self.inner.sync(request)

    def force(self, name: str, action: str, *, by: str, time_ms: Any = None) -> Any:
        self._check()
        return self.inner.force(name, action, by=by, time_ms=time_ms)

    def events(self, cursor: str, block_ms: int) -> Any:
        self._check()
        return self.inner.events(cursor, block_ms)

    def view(self, *, time_ms: Any = None) -> Any:
        self._check()
        return self.inner.view(time_ms=time_ms)


def test_after_redis_ran_out_of_memory_the_next_sync_is_within_two_ticks(
    host_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The jitter's worst case, so that the test does not depend on a draw.
    monkeypatch.setattr(fleet_agent.random, "uniform", lambda low, high: high)
    backend = _Switched()
    here = Fleet(backend)
    now = time.monotonic()
    assert here.agent.sync(now)
    backend.error = redis.exceptions.OutOfMemoryError(
        "command not allowed when used memory > 'maxmemory'."
    )
    for _ in range(6):  # a few seconds out of memory: a try a tick or less
        assert not here.agent.sync(now)
    assert here.agent.next_sync - now <= CONVERGE


def test_a_changed_password_is_named_in_the_hosts_warning(host_dir: str) -> None:
    backend = _Switched()
    here = Fleet(backend)
    now = time.monotonic()
    assert here.agent.sync(now)
    backend.error = redis.exceptions.ConnectionError("Connection closed by server.")
    assert not here.agent.sync(now)
    backend.error = redis.exceptions.AuthenticationError(
        "invalid username-password pair or user is disabled."
    )
    for _ in range(3):
        assert not here.agent.sync(now)
    assert "AuthenticationError" in str(here.agent.last_error)
    assert len(here.warnings) <= 2, here.warnings
    assert any("AuthenticationError" in line for line in here.warnings), here.warnings


def test_hosts_that_disagree_on_max_failures_are_a_policy_conflict() -> None:
    options = FleetOptions(quorum=2, max_failures=None, window_ms=10_000)
    before = fleet_agent.fleet_policy(options, CircuitBreaker(3, 3.0, 1).policy)
    after = fleet_agent.fleet_policy(options, CircuitBreaker(5, 3.0, 1).policy)
    assert before.digest() != after.digest()
