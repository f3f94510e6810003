"""A sync leaves out the breakers with nothing to say.

A breaker that is closed on this host and in the fleet, with no counts, no
trip, no verdict and no lease request, is left out of the agent's syncs
(Redis does no work for it) but for every ``FULL_SYNC_TICKS``-th quiet tick
and the first sync after any trouble; fleet decisions reach it through the
events stream meanwhile. Anything not closed is in every sync: the replies
renew the holds of an open cell.
"""

from __future__ import annotations

from typing import Any

import pytest

import qbreaker
from qbreaker import fleet
from qbreaker.fleet._protocol import FleetState
from qbreaker.fleet.agent import FULL_SYNC_TICKS, Runner
from qbreaker.fleet.control import ControlSegment
from qbreaker.fleet.spec import MemoryBackend

from .conftest import TEST_TIMEOUT
from .helpers import Host, delta
from .host_helpers import host_dir
from .servers import wait_for
from .test_host_agent import Fleet, wall_ms

__all__ = ("host_dir",)  # a fixture

pytestmark = pytest.mark.c_extension


class Recording(MemoryBackend):
    """The spec backend, keeping the names each sync carried; it can refuse."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[list[str]] = []
        self.refuse = False

    def sync(self, request: Any) -> Any:
        if self.refuse:
            raise ConnectionError("refused (test)")
        self.sent.append([d.name for d in request.deltas])
        return super().sync(request)


class TwoBreakers(Fleet):
    """This host with "pay" and a second fleet breaker, "idle", both known to
    its agent (as its loop's first step makes them)."""

    backend: Recording

    def __init__(self) -> None:
        super().__init__(Recording())
        self.idle = qbreaker.CircuitBreaker(2, 5.0, 1, shared="idle", fleet=True)
        self.agent.refresh_registry()


@pytest.fixture
def here(host_dir: str) -> TwoBreakers:
    return TwoBreakers()


def test_a_closed_idle_breaker_is_left_out_and_a_busy_one_is_sent(
    here: TwoBreakers,
) -> None:
    idle = here.idle
    sent = here.backend.sent
    here.agent.step()  # the first sync carries every breaker
    assert sorted(sent[-1]) == ["idle", "pay"]
    assert here.agent.sync(now=1.0)
    assert sent[-1] == []  # nothing to say: a sync all the same (seq, epoch)
    here.breaker.record_success()
    assert here.agent.sync(now=2.0)
    assert sent[-1] == ["pay"]
    # Both counted in the fleet: what was left out lost nothing.
    idle.record_failure()
    assert here.agent.sync(now=3.0)
    assert sent[-1] == ["idle"]
    counts = {s.name: (s.calls, s.failures) for s in here.backend.view()}
    assert counts == {"pay": (1, 0), "idle": (1, 1)}


def test_every_breaker_is_sent_every_full_sync_ticks(here: TwoBreakers) -> None:
    sent = here.backend.sent
    tick = here.agent.sync_interval
    assert here.agent.sync(now=0.0)
    assert len(sent[-1]) == 2
    for n in range(1, FULL_SYNC_TICKS):
        assert here.agent.sync(now=n * tick)
        assert sent[-1] == [], n
    assert here.agent.sync(now=FULL_SYNC_TICKS * tick)
    assert sorted(sent[-1]) == ["idle", "pay"]


def test_after_a_failed_sync_the_next_one_carries_every_breaker(
    here: TwoBreakers,
) -> None:
    sent = here.backend.sent
    assert here.agent.sync(now=0.0)
    assert here.agent.sync(now=1.0) and sent[-1] == []
    here.backend.refuse = True
    assert not here.agent.sync(now=2.0)
    here.backend.refuse = False
    assert here.agent.sync(now=3.0)
    assert sent[-1] == []  # the request that failed, resent unchanged
    assert here.agent.next_sync == 3.0  # and at once, the full one
    assert here.agent.sync(now=3.0)
    assert sorted(sent[-1]) == ["idle", "pay"]
    # Trouble on the events connection counts too: events may be missed.
    assert here.agent.sync(now=4.0) and sent[-1] == []
    here.agent.set_connected(False, ConnectionError("events (test)"))
    assert here.agent.sync(now=5.0)
    assert sorted(sent[-1]) == ["idle", "pay"]


def test_an_open_cell_is_in_every_sync(here: TwoBreakers) -> None:
    sent = here.backend.sent
    assert here.agent.sync(now=0.0)
    here.trip_elsewhere("h2", "h3")
    # Quiet and closed, "pay" learns of the fleet's open from the stream.
    here.agent.pump_events(here.backend, "0-0")
    assert here.breaker.state == qbreaker.State.OPEN
    for n in range(1, 4):
        assert here.agent.sync(now=float(n))
        assert sent[-1] == ["pay"], n  # its replies renew the fleet's hold


def test_a_quiet_breaker_that_missed_an_event_learns_at_the_full_sync(
    here: TwoBreakers,
) -> None:
    tick = here.agent.sync_interval
    assert here.agent.sync(now=0.0)
    here.trip_elsewhere("h2", "h3")  # its event is never read here
    assert here.agent.sync(now=tick)
    assert here.breaker.state == qbreaker.State.CLOSED
    assert here.agent.sync(now=FULL_SYNC_TICKS * tick)
    assert here.breaker.state == qbreaker.State.OPEN
    assert here.agent.full_sync_at == 2 * FULL_SYNC_TICKS * tick


def test_a_new_agent_sends_every_breaker_at_once(here: TwoBreakers) -> None:
    assert here.agent.sync(now=0.0)
    assert here.agent.sync(now=1.0) and here.backend.sent[-1] == []
    here.agent.publish()
    taking_over = here.new_agent()
    taking_over.refresh_registry()
    assert taking_over.sync(now=2.0)
    assert sorted(here.backend.sent[-1]) == ["idle", "pay"]


def test_a_new_breaker_is_sent_though_an_event_told_it_closed_first(
    here: TwoBreakers,
) -> None:
    assert here.agent.sync(now=0.0)
    late = qbreaker.CircuitBreaker(2, 5.0, 1, shared="late", fleet=True)
    here.agent.refresh_registry()
    # Another host's sync made "late" known to the fleet, closed, and its
    # event arrives before this host's first sync of it.
    Host(here.backend, "h2").sync(
        wall_ms(), delta("late", here.agent.tracks["late"].policy)
    )
    here.agent.apply_event(FleetState("late", "closed", 0, 0, (), ""))
    assert here.agent.sync(now=1.0)
    assert here.backend.sent[-1] == ["late"]  # its policy is stored: quiet since
    assert here.agent.sync(now=2.0) and here.backend.sent[-1] == []
    assert late.state == qbreaker.State.CLOSED


class GapBackend(Recording):
    """Makes the fleet open "pay" (two other hosts trip) just before the
    agent's first events read starts from "now": the decision falls between
    the first sync's reply and the stream's cursor."""

    def __init__(self) -> None:
        super().__init__()
        self.tripped = False
        self.policies: dict[str, Any] = {}

    def sync(self, request: Any) -> Any:
        self.policies.update((d.name, d.policy) for d in request.deltas)
        return super().sync(request)

    def events(self, cursor: str, block_ms: int) -> Any:
        if cursor == "$" and self.sent and not self.tripped:
            self.tripped = True
            for host_id in ("h2", "h3"):
                Host(self, host_id).sync(
                    wall_ms(),
                    delta("pay", self.policies["pay"], tripped=True),
                )
        return super().events(cursor, block_ms)


def test_a_decision_made_before_the_first_event_read_reaches_a_quiet_breaker(
    host_dir: str,
) -> None:
    backend = GapBackend()
    fleet.connect(namespace="tests", agent="off", backend=backend)
    breaker = qbreaker.CircuitBreaker(
        2, 5.0, 1, shared="pay", fleet=True, fleet_quorum=2
    )
    runner = Runner(lambda: backend, "here", info={}, control=ControlSegment())
    runner.start()
    try:
        wait_for(lambda: backend.tripped, "the agent's first events read", TEST_TIMEOUT)
        # The sync after the events thread's first read carries every
        # breaker: within a tick or two, long before the full sync due
        # FULL_SYNC_TICKS ticks after the first.
        wait_for(
            lambda: breaker.state == qbreaker.State.OPEN,
            "the quiet breaker to hear of the fleet's open",
            FULL_SYNC_TICKS * runner.sync_interval / 2,
        )
    finally:
        runner.stop()
