"""The probe lease rules, on both backends: the spec, then the Lua scripts.

One host at a time probes a fleet whose open has expired: the lease holder.
tests/fleet/test_scripts.py compares the backends on random sequences with
lease requests in them; these check each rule by name.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from qbreaker.fleet._protocol import PROBE_LEASE_MS, FleetState, LeaseRequest

from .helpers import T0, Host, delta, policy

POL = policy(quorum=1, reset_timeout_ms=5_000)
EXPIRED = T0 + 5_000  # the fleet open of a trip at T0 has expired


def open_fleet(backend: Any) -> tuple[Host, Host, Host, int]:
    """Three hosts; h1's trip at T0 opens the fleet. Returns the generation."""
    hosts = Host(backend, "h1"), Host(backend, "h2"), Host(backend, "h3")
    state = hosts[0].sync(T0, delta("db", POL, tripped=True)).states[0]
    assert state.state == "open"
    return (*hosts, state.generation)


def lease(
    host: Host, now: int, generation: int, take: bool = True, **kw: Any
) -> FleetState:
    request = dataclasses.replace(
        delta("db", POL, **kw), lease=LeaseRequest(generation, take)
    )
    return host.sync(now, request).states[0]


def test_one_host_holds_the_lease_of_an_expired_open(backend: Any) -> None:
    h1, h2, h3, gen = open_fleet(backend)
    # Before the open expires, nobody gets it.
    assert lease(h2, EXPIRED - 1, gen).lease_holder == ""
    state = lease(h2, EXPIRED, gen)
    assert (state.state, state.generation) == ("open", gen)
    assert (state.lease_holder, state.lease_remaining_ms) == ("h2", PROBE_LEASE_MS)
    # A second host asks: the lease stays with the first. No transition.
    state = lease(h3, EXPIRED + 10, gen)
    assert (state.lease_holder, state.lease_remaining_ms) == ("h2", PROBE_LEASE_MS - 10)
    assert state.generation == gen
    assert [s.reason for s in backend.events("0-0", 0)[1]] == ["quorum"]
    # A request of another generation is ignored.
    assert lease(h3, EXPIRED + 20, gen + 1, take=False).lease_holder == "h2"


def test_only_the_holders_verdict_counts(backend: Any) -> None:
    h1, h2, h3, gen = open_fleet(backend)
    lease(h2, EXPIRED, gen)
    # Another host's probe (its agent has no lease): changes nothing.
    state = h3.sync(EXPIRED + 5, delta("db", POL, verdict=(gen, True))).states[0]
    assert (state.state, state.generation, state.lease_holder) == ("open", gen, "h2")
    state = h2.sync(EXPIRED + 6, delta("db", POL, verdict=(gen, True))).states[0]
    assert (state.state, state.reason, state.tripped_by) == ("closed", "probe", ("h2",))
    assert (state.lease_holder, state.lease_remaining_ms) == ("", 0)


def test_the_holders_failed_probe_reopens_for_reset_timeout(backend: Any) -> None:
    h1, h2, h3, gen = open_fleet(backend)
    lease(h2, EXPIRED, gen)
    state = h2.sync(EXPIRED + 6, delta("db", POL, verdict=(gen, False))).states[0]
    assert (state.state, state.generation, state.remaining_ms) == (
        "open",
        gen + 1,
        5_000,
    )
    assert state.lease_holder == ""


def test_renew_and_release_hand_the_lease_over(backend: Any) -> None:
    h1, h2, h3, gen = open_fleet(backend)
    lease(h2, EXPIRED, gen)
    # The holder renews before it runs out: another full lease.
    state = lease(h2, EXPIRED + 1_500, gen)
    assert (state.lease_holder, state.lease_remaining_ms) == ("h2", PROBE_LEASE_MS)
    # No traffic to probe with: it releases, and a host with demand takes it.
    assert lease(h2, EXPIRED + 1_600, gen, take=False).lease_holder == ""
    state = lease(h3, EXPIRED + 1_700, gen)
    assert (state.lease_holder, state.generation) == ("h3", gen)
    # A release by a host that does not hold it changes nothing.
    assert lease(h2, EXPIRED + 1_800, gen, take=False).lease_holder == "h3"


def test_an_expired_lease_reopens_the_fleet_from_its_expiry(backend: Any) -> None:
    h1, h2, h3, gen = open_fleet(backend)
    lease(h2, EXPIRED, gen)
    lease_end = EXPIRED + PROBE_LEASE_MS
    # The holder died: the next sync that names the breaker, after the
    # expiry, re-opens the fleet for reset_timeout counted from the expiry.
    state = h3.state(lease_end + 300, "db", POL)
    assert (state.state, state.generation, state.reason) == (
        "open", gen + 1, "lease_expired",
    )  # fmt: skip
    assert state.tripped_by == ("h2",)
    assert state.remaining_ms == lease_end + 5_000 - (lease_end + 300)
    assert state.lease_holder == ""
    # The late verdict of the expired holder is fenced by the generation.
    late = h2.sync(lease_end + 400, delta("db", POL, verdict=(gen, True))).states[0]
    assert (late.state, late.generation) == ("open", gen + 1)


def test_an_expired_holders_own_verdict_comes_too_late(backend: Any) -> None:
    h1, h2, h3, gen = open_fleet(backend)
    lease(h2, EXPIRED, gen)
    lease_end = EXPIRED + PROBE_LEASE_MS
    state = h2.sync(lease_end, delta("db", POL, verdict=(gen, True))).states[0]
    assert (state.state, state.reason, state.generation) == (
        "open", "lease_expired", gen + 1,
    )  # fmt: skip


def test_without_a_holder_any_hosts_verdict_counts(backend: Any) -> None:
    # Agents that never ask for the lease: every host half-opens, and the
    # first verdict decides, as before the lease existed.
    h1, h2, h3, gen = open_fleet(backend)
    state = h3.sync(EXPIRED, delta("db", POL, verdict=(gen, True))).states[0]
    assert (state.state, state.reason) == ("closed", "probe")


def test_a_reseed_that_reopens_drops_the_lease(backend: Any) -> None:
    h1, h2, h3, gen = open_fleet(backend)
    lease(h2, EXPIRED, gen)
    state = h3.sync(EXPIRED + 10, delta("db", POL, reseed_ms=3_000)).states[0]
    assert (state.state, state.generation, state.remaining_ms) == ("open", gen, 3_000)
    assert (state.lease_holder, state.lease_remaining_ms) == ("", 0)
