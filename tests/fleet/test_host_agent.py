"""The host agent against the in-memory spec backend, on real shared cells.

One simulated host per test (its own segment directory); the other hosts of
the fleet are reduced to their syncs (``helpers.Host``). The agent is driven
step by step, except where the election thread itself is under test.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import qbreaker
from qbreaker import fleet
from qbreaker.fleet._protocol import FleetState, SyncReply, SyncRequest
from qbreaker.fleet.agent import Agent
from qbreaker.fleet.control import ControlSegment
from qbreaker.fleet.spec import MemoryBackend

from .helpers import Host, delta
from .host_helpers import host_dir

__all__ = ("host_dir",)  # a fixture

pytestmark = pytest.mark.c_extension


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class Fleet:
    """This host (a fleet breaker, its agent) and the spec backend."""

    def __init__(self, backend: Any, **settings: Any) -> None:
        self.backend = backend
        fleet.connect(namespace="tests", agent="off", backend=backend)
        settings.setdefault("fleet_quorum", 2)
        self.breaker = qbreaker.CircuitBreaker(
            settings.pop("max_failures", 2),
            settings.pop("reset_timeout", 5.0),
            1,
            shared="pay",
            fleet=True,
            **settings,
        )
        self.control = ControlSegment()
        assert self.control.try_lease(1)  # this process is the host's agent
        self.warnings: list[str] = []
        self.agent = self.new_agent()
        self.policy = None

    def new_agent(self, backend: Any = None) -> Agent:
        return Agent(
            self.control,
            self.backend if backend is None else backend,
            "here",
            info={"url": "memory://", "namespace": "tests", "mode": "thread"},
            log=lambda message, *args: self.warnings.append(message % args),
        )

    def other(self, host_id: str) -> Host:
        return Host(self.backend, host_id)

    def trip_elsewhere(self, *host_ids: str) -> None:
        pol = self.fleet_policy()
        for host_id in host_ids:
            self.other(host_id).sync(wall_ms(), delta("pay", pol, tripped=True))

    def fleet_policy(self) -> Any:
        self.agent.refresh_registry()
        return self.agent.tracks["pay"].policy

    def fleet_state(self) -> FleetState:
        (state,) = [s for s in self.backend.view() if s.name == "pay"]
        return state

    def trip_here(self) -> None:
        for _ in range(self.breaker.policy.max_failures):
            self.breaker.record_failure()
        assert self.breaker.state == qbreaker.State.OPEN


@pytest.fixture
def here(host_dir: str) -> Iterator[Fleet]:
    yield Fleet(MemoryBackend())


def test_a_local_trip_is_sent_at_once_and_one_host_leaves_the_fleet_closed(
    here: Fleet,
) -> None:
    here.agent.step()  # the first sync: the breaker is known to the fleet
    assert here.fleet_state().state == "closed"
    here.agent.next_sync = time.monotonic() + 3600  # no tick is due
    here.trip_here()
    here.agent.step()  # the trip is sent in an early tick all the same
    # One bad host: the fleet stays closed, the host stays open locally.
    assert here.fleet_state().state == "closed"
    assert here.breaker.state == qbreaker.State.OPEN
    status = fleet._status_of(here.control)
    assert status.connected
    assert status.breakers["pay"].origin == "local"


def test_a_local_trip_that_completes_the_quorum_opens_the_fleet(here: Fleet) -> None:
    here.trip_elsewhere("h2")
    assert here.fleet_state().state == "closed"
    here.trip_here()
    here.agent.step()
    state = here.fleet_state()
    assert (state.state, state.reason) == ("open", "quorum")
    assert set(state.tripped_by) == {"h2", "here"}
    # This host's own open stands (it opened for local reasons).
    assert here.breaker.state == qbreaker.State.OPEN
    view = here.breaker.metrics().fleet
    assert (view.state, view.origin) == ("open", "local")


def test_a_fleet_open_opens_a_closed_cell_for_the_time_left(here: Fleet) -> None:
    here.trip_elsewhere("h2", "h3")
    assert here.fleet_state().state == "open"
    here.agent.step()
    assert here.breaker.state == qbreaker.State.OPEN
    # The time left, and one hold beyond it: at the fleet's expiry the probe
    # lease decides which host probes (test_host_agent_lease.py).
    hold = 2 * here.agent.hot_interval
    assert 4.0 + hold < here.breaker.retry_after <= 5.0 + hold
    assert not here.breaker.allow()
    view = here.breaker.metrics().fleet
    assert (view.state, view.origin, view.reason) == ("open", "fleet", "quorum")
    assert view.generation == here.fleet_state().generation
    # Applying the same decision again changes nothing.
    generation = here.breaker.generation
    here.agent.sync()
    assert here.breaker.generation == generation


def test_a_fleet_close_closes_only_what_the_fleet_opened(host_dir: str) -> None:
    backend = MemoryBackend()
    here = Fleet(backend)
    here.trip_elsewhere("h2", "h3")
    here.agent.step()
    assert here.breaker.state == qbreaker.State.OPEN  # the fleet's open
    backend.force("pay", "reset", by="ops")
    here.agent.sync()
    assert here.breaker.state == qbreaker.State.CLOSED
    # Now a local open: a fleet reset leaves it open.
    here.trip_here()
    here.agent.step()
    backend.force("pay", "reset", by="ops")
    here.agent.sync()
    assert here.breaker.state == qbreaker.State.OPEN


def test_a_fleet_close_closes_a_local_open_the_fleet_held(here: Fleet) -> None:
    # This host's trip completes the quorum: its own open is held by the
    # fleet's. When the fleet closes (here by a reset; a probe's verdict
    # alike), the cell closes with it: left open, its hold would lapse and
    # it would probe alone under a closed fleet.
    here.trip_elsewhere("h2")
    here.trip_here()
    here.agent.step()
    assert here.fleet_state().state == "open"
    assert here.breaker.metrics().fleet.origin == "local"
    here.backend.force("pay", "reset", by="ops")
    here.agent.sync()
    assert here.fleet_state().state == "closed"
    assert here.breaker.state == qbreaker.State.CLOSED


def test_a_fleet_close_applied_late_leaves_a_newer_local_open(here: Fleet) -> None:
    # The fleet held this host's open, then closed; before the agent hears
    # of it, the cell closed and tripped again on its own: that newer open
    # is this host's evidence, not the fleet's, and stands.
    here.trip_elsewhere("h2")
    here.trip_here()
    here.agent.step()
    assert here.fleet_state().state == "open"
    here.backend.force("pay", "reset", by="ops")
    here.breaker.reset()
    here.trip_here()
    here.agent.sync()
    assert here.fleet_state().state == "closed"
    assert here.breaker.state == qbreaker.State.OPEN
    here.agent.step()
    assert here.breaker.state == qbreaker.State.OPEN


def test_a_closed_reply_before_the_scan_leaves_a_local_trip_to_send(
    here: Fleet,
) -> None:
    # A sync's reply ("closed") lands between a local trip and the scan that
    # would see it: the trip is still sent, and completes the quorum.
    here.agent.step()
    here.trip_elsewhere("h2")
    here.trip_here()
    here.agent.sync()
    assert here.fleet_state().state == "closed"
    here.agent.step()
    state = here.fleet_state()
    assert (state.state, state.reason) == ("open", "quorum")


def test_events_apply_a_decision_without_waiting_for_a_tick(here: Fleet) -> None:
    here.agent.step()
    here.backend.force("pay", "open", by="ops")
    started = time.monotonic()
    cursor = here.agent.pump_events(here.backend, "0-0")
    assert time.monotonic() - started < 0.5
    assert here.breaker.state == qbreaker.State.OPEN
    # forced open is applied as the longest open a cell holds
    assert here.breaker.retry_after > 3600
    here.backend.force("pay", "close", by="ops")
    here.agent.pump_events(here.backend, cursor)
    assert here.breaker.state == qbreaker.State.CLOSED
    assert here.breaker.forced == "closed"
    here.backend.force("pay", "reset", by="ops")
    here.agent.sync()
    assert here.breaker.forced is None
    assert here.breaker.state == qbreaker.State.CLOSED


@pytest.mark.parametrize("ok", [True, False])
def test_a_probe_verdict_after_the_fleet_open_expired(host_dir: str, ok: bool) -> None:
    here = Fleet(MemoryBackend(), reset_timeout=0.2)
    # Every host probes (the probe lease off: test_host_agent_lease.py).
    here.agent.probe_lease = False
    here.trip_elsewhere("h2", "h3")
    opened = here.fleet_state()
    here.agent.step()
    assert here.breaker.state == qbreaker.State.OPEN
    time.sleep(0.25)
    here.agent.sync()  # the fleet's open expired: the cell may probe
    ticket = here.breaker.acquire()
    assert ticket
    assert here.breaker.state == qbreaker.State.HALF_OPEN
    here.breaker.release(ticket, ok)
    here.agent.step()  # the verdict is sent at once
    state = here.fleet_state()
    assert state.generation == opened.generation + 1
    assert state.reason == "probe"
    assert state.state == ("closed" if ok else "open")
    if not ok:
        assert here.breaker.state == qbreaker.State.OPEN
        # The fleet's re-open is the fleet's: its close closes the cell.
        here.backend.force("pay", "reset", by="ops")
        here.agent.sync()
        assert here.breaker.state == qbreaker.State.CLOSED


def test_counts_are_sent_once_even_when_a_reply_is_lost(here: Fleet) -> None:
    class LosesReplies:
        def __init__(self, inner: MemoryBackend) -> None:
            self.inner = inner
            self.lose = 0
            self.seen: list[int] = []

        def sync(self, request: SyncRequest) -> SyncReply:
            self.seen.append(request.seq)
            reply = self.inner.sync(request)
            if self.lose:
                self.lose -= 1
                raise TimeoutError("the reply was lost")
            return reply

    flaky = LosesReplies(here.backend)
    agent = here.agent = here.new_agent(flaky)
    agent.refresh_registry()
    for round_ in range(5):
        for _ in range(7):
            here.breaker.record_success()
        here.breaker.record_failure()
        flaky.lose = 1 if round_ % 2 else 0
        agent.sync()
        agent.sync()
        agent.next_sync = 0
    # Each lost reply was followed by a resend of the same request.
    assert len(flaky.seen) > len(set(flaky.seen))
    ring = here.backend._breakers["pay"].ring
    calls = sum(bucket[0] for bucket in ring.values())
    failures = sum(bucket[1] for bucket in ring.values())
    totals = here.breaker.totals()
    assert (calls, failures) == (totals.successes + totals.failures, totals.failures)
    assert agent.tracks["pay"].sent[:2] == (calls, failures)


def test_a_backend_that_lost_its_data_is_reseeded_and_never_closes_a_cell(
    here: Fleet,
) -> None:
    here.trip_elsewhere("h2", "h3")
    here.agent.step()
    assert here.breaker.state == qbreaker.State.OPEN
    here.backend.lose_data()
    here.agent.sync()  # a new epoch: nothing is closed
    assert here.breaker.state == qbreaker.State.OPEN
    here.agent.sync()  # the re-seed: the fleet is open again
    state = here.fleet_state()
    assert (state.state, state.reason) == ("open", "reseed")
    assert here.breaker.state == qbreaker.State.OPEN


def test_one_warning_per_change_of_connectivity(here: Fleet) -> None:
    class Down:
        def sync(self, request: SyncRequest) -> SyncReply:
            raise ConnectionError("refused")

    up = here.agent.backend
    here.agent.sync()
    here.agent.backend = Down()  # type: ignore[assignment]
    for _ in range(10):
        here.agent.sync()
    status = fleet._status_of(here.control)
    assert not status.connected
    assert status.degraded_since is not None
    assert "ConnectionError: refused" in (status.last_error or "")
    # Calls go on as host-wide calls.
    assert here.breaker.allow()
    here.agent.backend = up
    here.agent.guard.reset()
    here.agent.sync()
    assert fleet._status_of(here.control).connected
    assert len(here.warnings) == 2
    assert "lost memory://" in here.warnings[0]
    assert "again" in here.warnings[1]


def test_a_new_agent_takes_over_where_the_last_one_stopped(here: Fleet) -> None:
    here.trip_elsewhere("h2", "h3")
    here.agent.step()
    for _ in range(3):
        here.breaker.record_success()
    here.agent.sync()
    seq = here.agent.seq
    successor = here.new_agent()
    successor.step()
    assert successor.seq > seq  # never a duplicate of the last request
    track = successor.tracks["pay"]
    assert track.owned == here.agent.tracks["pay"].owned  # the fleet's open
    here.backend.force("pay", "reset", by="ops")
    successor.sync()
    assert here.breaker.state == qbreaker.State.CLOSED
    ring = here.backend._breakers["pay"].ring
    assert sum(bucket[3] for bucket in ring.values()) == 0  # reset clears it


def test_the_elected_thread_applies_an_event_within_milliseconds(host_dir: str) -> None:
    backend = MemoryBackend()
    fleet.connect(namespace="tests", backend=backend, sync_interval=1.0)
    breaker = qbreaker.CircuitBreaker(2, 30.0, shared="pay", fleet=True)
    deadline = time.monotonic() + 5
    while fleet.status().breakers.get("pay") is None and time.monotonic() < deadline:
        time.sleep(0.01)
    current = fleet.status()
    assert current.connected and current.mode == "thread"
    time.sleep(0.1)  # the events thread is waiting
    backend.force("pay", "open", by="ops")
    started = time.monotonic()
    while breaker.state != qbreaker.State.OPEN and time.monotonic() - started < 2:
        time.sleep(0.001)
    assert breaker.state == qbreaker.State.OPEN
    assert time.monotonic() - started < 0.2


def test_a_forked_child_runs_an_election_but_is_not_the_agent(host_dir: str) -> None:
    fleet.connect(namespace="tests", backend=MemoryBackend())
    control = ControlSegment()
    deadline = time.monotonic() + 5
    while not control.agent_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    parent = fleet._runner
    assert control.lease().pid == os.getpid()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        ok = fleet._runner is not None and fleet._runner is not parent
        ok = ok and fleet._runner.nonce != parent.nonce
        time.sleep(0.8)  # longer than an election round
        ok = ok and ControlSegment().lease().pid != os.getpid()
        os._exit(0 if ok else 1)
    _, code = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(code) == 0
    assert control.lease().pid == os.getpid()


def test_a_forced_fleet_open_never_holds_a_local_open(here: Fleet) -> None:
    here.trip_here()
    here.agent.step()
    here.backend.force("pay", "open", by="ops")
    here.agent.sync()
    assert here.breaker.state == qbreaker.State.OPEN
    # Still the local open, with its own reset_timeout: not held for hours.
    assert here.breaker.retry_after <= here.breaker.policy.reset_ticks / 1000
    here.backend.force("pay", "reset", by="ops")
    here.agent.sync()
    assert here.breaker.retry_after <= here.breaker.policy.reset_ticks / 1000


def test_status_command_shows_the_fleet_line_and_columns(
    here: Fleet, host_dir: str
) -> None:
    import json
    import subprocess
    import sys

    here.trip_elsewhere("h2", "h3")
    here.agent.step()

    def status(*args: str) -> str:
        env = {**os.environ, "QBREAKER_SHM_DIR": host_dir}
        # The lease (1.5 s) renewed as a running agent would, however long
        # the command takes to start on a busy machine.
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(0.1):
                here.control.try_lease(1)

        renewer = threading.Thread(target=renew, daemon=True)
        renewer.start()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "qbreaker", "status", *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
        finally:
            stop.set()
            renewer.join(5)
        assert done.returncode == 0, done.stderr
        return done.stdout

    text = status()
    assert text.startswith("fleet  tests  memory://  connected  agent pid")
    header, row = text.splitlines()[1:3]
    assert header.split()[-4:] == ["fleet", "fleet", "gen", "origin"]
    assert row.split()[0] == "pay" and row.split()[-3:] == ["open", "1", "fleet"]
    raw = json.loads(status("--json"))["fleet"]
    assert raw["connected"] and raw["breakers"]["pay"]["origin"] == "fleet"

    class Down:
        def sync(self, request: SyncRequest) -> SyncReply:
            raise ConnectionError("refused")

    here.agent.backend = Down()  # type: ignore[assignment]
    here.agent.sync()
    lines = status().splitlines()
    assert "DEGRADED: host-local since" in lines[0]
    assert "last error ConnectionError: refused" in lines[1]


def test_a_burst_of_failures_opens_the_fleet_before_any_host_trips(
    host_dir: str,
) -> None:
    here = Fleet(MemoryBackend(), max_failures=50, fleet_max_failures=5)
    here.agent.step()
    for _ in range(5):
        here.breaker.record_failure()
    assert here.breaker.state == qbreaker.State.CLOSED  # no local trip
    here.agent.sync()
    state = here.fleet_state()
    assert (state.state, state.reason) == ("open", "burst")
    assert here.breaker.state == qbreaker.State.OPEN
    assert here.breaker.metrics().fleet.origin == "fleet"


def test_a_fresh_agent_behind_the_fleets_record_of_its_host_catches_up(
    here: Fleet,
) -> None:
    # An earlier life of this host (before a reboot wiped its control
    # segment) got as far as seq 50.
    earlier = here.other("here")
    earlier.seq = 49
    earlier.sync(wall_ms(), delta("pay", here.fleet_policy()))
    for _ in range(4):
        here.breaker.record_success()
    here.breaker.record_failure()
    here.agent.step()  # seq 1 or so: a duplicate, nothing counted
    assert here.agent.seq == 51
    here.agent.step()  # the same news again, as seq 51
    ring = here.backend._breakers["pay"].ring
    assert sum(bucket[0] for bucket in ring.values()) == 5
    assert sum(bucket[1] for bucket in ring.values()) == 1


def test_the_fleet_view_carries_the_whole_fleets_window_counts(here: Fleet) -> None:
    agent = here.agent
    agent.refresh_registry()
    # Another host's calls, and this host's own.
    here.other("elsewhere").sync(
        wall_ms(), delta("pay", here.fleet_policy(), calls=10, failures=1, successes=9)
    )
    for _ in range(4):
        here.breaker.record_success()
    here.breaker.record_failure()
    agent.sync()
    agent.publish()
    view = here.breaker.metrics().fleet
    assert (view.sent_calls, view.sent_failures) == (5, 1)
    assert (view.fleet_calls, view.fleet_failures, view.fleet_successes) == (15, 2, 13)


def test_counts_taken_before_the_agent_first_sees_a_new_breaker_are_sent(
    here: Fleet,
) -> None:
    # The breaker made its segment: every count in it is news, including
    # failures recorded before the agent's first scan took it in.
    here.breaker.record_success()
    here.breaker.record_failure()
    agent = here.agent
    agent.refresh_registry()
    agent.sync()
    assert agent.tracks["pay"].sent[:2] == (2, 1)
    # Taken in once: a later agent (a takeover) does not replay them.
    assert not here.control.take_fresh("pay")


def test_a_segment_that_outlived_its_processes_replays_no_old_counts(
    host_dir: str,
) -> None:
    # Counts made before the breaker became a fleet one (here: the same
    # segment used without fleet=) stay out of the fleet's ring.
    old = qbreaker.CircuitBreaker(2, 5.0, 1, shared="pay")
    old.record_success()
    old.record_failure()
    here = Fleet(MemoryBackend())
    here.breaker.record_failure()  # after the agent's first sight: sent
    here.agent.refresh_registry()
    here.breaker.record_failure()
    here.agent.sync()
    assert here.agent.tracks["pay"].sent[:2] == (1, 1)
