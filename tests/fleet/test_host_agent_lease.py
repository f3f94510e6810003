"""The agent's side of the probe lease, on real shared cells.

Once the fleet's open has expired, a host's cell half-opens only while its
agent holds the fleet's probe lease; it asks for it only when its cell
rejected calls (demand), renews it while it has traffic and releases it
without. Every other host's cell is held open by short holds that lapse, if
the agent stops, into the host's own half-open. The other hosts are reduced
to their syncs (helpers.Host); the backend is the spec.
"""

from __future__ import annotations

import dataclasses
import time

import pytest

import qbreaker
from qbreaker.fleet._protocol import PROBE_LEASE_MS, FleetState, LeaseRequest
from qbreaker.fleet.spec import MemoryBackend

from .helpers import Host, delta
from .host_helpers import host_dir
from .test_host_agent import Fleet, wall_ms

__all__ = ("host_dir",)  # a fixture

pytestmark = pytest.mark.c_extension

RESET = 0.3  # the breaker's reset_timeout: the fleet opens for as long


def expired_fleet_open() -> Fleet:
    """Two other hosts opened the fleet; its open has expired since."""
    here = Fleet(MemoryBackend(), reset_timeout=RESET)
    here.trip_elsewhere("h2", "h3")
    here.agent.sync()
    assert here.breaker.state == qbreaker.State.OPEN
    time.sleep(RESET + 0.05)
    assert here.fleet_state().remaining_ms <= 0
    return here


def lease_sync(host: Host, here: Fleet, take: bool) -> FleetState:
    pol = here.fleet_policy()
    generation = here.fleet_state().generation
    request = dataclasses.replace(
        delta("pay", pol), lease=LeaseRequest(generation, take)
    )
    return host.sync(wall_ms(), request).states[0]


def test_a_host_with_demand_takes_the_lease_and_probes_for_the_fleet(
    host_dir: str,
) -> None:
    here = expired_fleet_open()
    here.agent.sync()  # no call was rejected: no demand, the cell is held
    assert here.fleet_state().lease_holder == ""
    assert not here.breaker.acquire()  # rejected: demand
    assert here.breaker.state == qbreaker.State.OPEN
    here.agent.sync()  # takes the lease; the reply says so: the cell may probe
    assert here.fleet_state().lease_holder == "here"
    view = here.breaker.metrics().fleet
    assert view is not None and view.lease_holder == "here"
    ticket = here.breaker.acquire()
    assert ticket
    assert here.breaker.state == qbreaker.State.HALF_OPEN
    here.breaker.release(ticket, True)
    here.agent.step()  # the verdict goes at once
    state = here.fleet_state()
    assert (state.state, state.reason, state.tripped_by) == (
        "closed",
        "probe",
        ("here",),
    )
    assert here.breaker.state == qbreaker.State.CLOSED


def test_while_another_host_holds_the_lease_the_cell_stays_open(host_dir: str) -> None:
    here = expired_fleet_open()
    h4 = here.other("h4")  # a host that did not trip, with demand
    assert lease_sync(h4, here, take=True).lease_holder == "h4"
    for _ in range(3):
        # Demand here too, but the lease is taken: no probe from this host.
        assert not here.breaker.acquire()
        here.agent.sync()
        assert here.breaker.state == qbreaker.State.OPEN
        assert here.fleet_state().lease_holder == "h4"
    # h4 has no traffic left and releases it: this host, with demand, takes it.
    assert lease_sync(h4, here, take=False).lease_holder == ""
    assert not here.breaker.acquire()
    here.agent.sync()
    assert here.fleet_state().lease_holder == "here"
    assert here.breaker.acquire()
    assert here.breaker.state == qbreaker.State.HALF_OPEN


def test_a_holder_without_traffic_releases_the_lease(host_dir: str) -> None:
    here = expired_fleet_open()
    assert not here.breaker.acquire()
    here.agent.sync()
    assert here.fleet_state().lease_holder == "here"
    # No call in the next tick: the lease goes back, and the cell is held
    # open again (another host may probe now).
    here.agent.sync()
    assert here.fleet_state().lease_holder == ""
    assert not here.breaker.acquire()
    assert here.breaker.state == qbreaker.State.OPEN


def test_the_holder_renews_the_lease_while_it_has_traffic(host_dir: str) -> None:
    here = expired_fleet_open()
    assert not here.breaker.acquire()
    here.agent.sync()
    first = here.fleet_state()
    assert first.lease_holder == "here"
    ticket = here.breaker.acquire()  # the probe, in flight
    assert ticket
    time.sleep(0.1)
    assert not here.breaker.acquire()  # more traffic, over half_open_max
    before = here.fleet_state().lease_remaining_ms
    assert before <= PROBE_LEASE_MS - 100
    here.agent.sync()
    renewed = here.fleet_state()
    assert renewed.lease_holder == "here"
    assert renewed.lease_remaining_ms > before
    here.breaker.release(ticket, False)
    here.agent.step()
    state = here.fleet_state()
    assert (state.state, state.reason, state.lease_holder) == ("open", "probe", "")
    assert state.generation == first.generation + 1


def test_holds_lapse_into_a_local_half_open_when_the_agent_stops(
    host_dir: str,
) -> None:
    here = expired_fleet_open()
    here.agent.sync()  # a hold of two ticks
    assert not here.breaker.acquire()
    # The agent stops syncing (dead, or Redis gone): within two ticks the
    # cell half-opens on its own, as a host-wide breaker.
    deadline = time.monotonic() + 4 * here.agent.hot_interval
    ticket = 0
    while not ticket and time.monotonic() < deadline:
        ticket = here.breaker.acquire()
        time.sleep(0.02)
    assert ticket
    assert here.breaker.state == qbreaker.State.HALF_OPEN


def test_without_the_lease_every_host_probes_at_the_expiry(host_dir: str) -> None:
    here = Fleet(MemoryBackend(), reset_timeout=RESET)
    here.agent.probe_lease = False
    here.trip_elsewhere("h2", "h3")
    here.agent.sync()
    time.sleep(RESET + 0.05)
    here.agent.sync()
    assert here.breaker.acquire()
    assert here.fleet_state().lease_holder == ""
