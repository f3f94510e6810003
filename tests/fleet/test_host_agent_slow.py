"""The agent sends each breaker's slow calls, so the fleet's slow-call rate
can fire (against the in-memory spec backend, on a real shared cell)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from qbreaker.fleet.spec import MemoryBackend

from .helpers import delta
from .host_helpers import host_dir
from .test_host_agent import Fleet, wall_ms

__all__ = ("host_dir",)  # a fixture

pytestmark = pytest.mark.c_extension


@pytest.fixture
def slow_host(host_dir: str) -> Iterator[Fleet]:
    yield Fleet(
        MemoryBackend(),
        max_failures=None,
        window_size=100,
        minimum_calls=10,
        slow_call_duration=0.5,
        slow_call_rate_threshold=0.5,
    )


def test_slow_calls_are_sent_as_deltas(slow_host: Fleet) -> None:
    b = slow_host.breaker
    agent = slow_host.agent
    agent.refresh_registry()
    for duration in (1.0, 0.1, 2.0, 0.6):
        b.release(b.acquire(), True, duration)
    agent.sync()
    b.release(b.acquire(), False, 3.0)
    agent.sync()
    ring = slow_host.backend._breakers["pay"].ring
    assert sum(bucket[0] for bucket in ring.values()) == 5  # calls
    assert sum(bucket[2] for bucket in ring.values()) == 4  # slow


def test_the_fleets_slow_call_rate_opens_every_host(slow_host: Fleet) -> None:
    b = slow_host.breaker
    agent = slow_host.agent
    pol = slow_host.fleet_policy()
    assert pol.slow_rate == 0.5
    # Another host saw 4 calls, all slow; this one 6, half of them slow:
    # below its own minimum_calls, so it stays closed on its own.
    slow_host.other("h2").sync(wall_ms(), delta("pay", pol, calls=4, slow=4))
    for duration in (1.0, 1.0, 1.0, 0.1, 0.1, 0.1):
        b.release(b.acquire(), True, duration)
    assert str(b.state) == "closed"
    agent.sync()
    state = slow_host.fleet_state()
    assert (state.state, state.reason) == ("open", "slow_rate")
    assert str(b.state) == "open"
    assert slow_host.control.read_status()["breakers"]["pay"]["owned"] is not None
