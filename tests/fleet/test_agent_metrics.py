"""``qbreaker.fleet.metrics()``: the agent's counters, on real shared cells,
against the spec and against a real redis-server."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

import qbreaker
from qbreaker import fleet
from qbreaker.fleet.counters import RTT_WINDOW, AgentCounters
from qbreaker.fleet.spec import MemoryBackend

from .conftest import TEST_TIMEOUT, RedisBackend, connect_redis
from .host_helpers import host_dir
from .test_host_agent import Fleet
from .test_host_agent_lease import expired_fleet_open

__all__ = ("host_dir",)  # a fixture

pytestmark = pytest.mark.c_extension


def test_syncs_round_trips_and_applied_decisions_are_counted(
    host_dir: str, backend: Any
) -> None:
    here = Fleet(backend)
    assert here.agent.counters.read().syncs == 0
    here.agent.step()
    here.agent.sync()
    read = here.agent.counters.read()
    assert read.syncs == 2
    assert 0 < read.rtt_p50 <= read.rtt_max < TEST_TIMEOUT
    assert 0 < read.rtt_last <= read.rtt_max
    assert read.events_applied == 0
    here.trip_elsewhere("h2", "h3")
    # The fleet's open, as the events thread reads it (the syncs since the
    # first leave the quiet, closed breaker out): the cell is opened.
    here.agent.pump_events(here.backend, "0-0")
    assert here.breaker.state == qbreaker.State.OPEN
    read = here.agent.counters.read()
    assert read.events_applied == 1
    assert read.errors == {"unreachable": 0, "backend": 0, "guard_open": 0}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_redis_counts_unreachable_then_guard_open(
    host_dir: str, redis_client: Any
) -> None:
    client = connect_redis(f"redis://127.0.0.1:{_closed_port()}/0", timeout=0.5)
    here = Fleet(RedisBackend(client, "metrics"))
    for _ in range(5):
        assert not here.agent.sync()
    errors = here.agent.counters.read().errors
    # The agent's guard opens after 3 failures and lets none through within
    # its reset time, so the last two are its own rejections.
    assert errors == {"unreachable": 3, "backend": 0, "guard_open": 2}
    assert here.agent.counters.read().syncs == 0


class _Refusing(MemoryBackend):
    """A backend that answers every sync with an error (as Redis out of memory)."""

    def sync(self, request: Any) -> Any:
        raise RuntimeError("OOM command not allowed")


def test_a_backend_that_answers_with_an_error_counts_as_backend(host_dir: str) -> None:
    here = Fleet(_Refusing())
    assert not here.agent.sync()
    assert here.agent.counters.read().errors["backend"] == 1


def test_a_probe_lease_granted_to_this_host_is_counted_once(host_dir: str) -> None:
    here = expired_fleet_open()
    assert not here.breaker.acquire()  # demand
    here.agent.sync()
    assert here.fleet_state().lease_holder == "here"
    here.agent.sync()  # the lease renewed: the same grant
    assert here.agent.counters.read().lease_grants == 1


def test_round_trips_are_kept_over_a_bounded_window() -> None:
    counters = AgentCounters()
    for rtt in [5.0] + [0.001] * RTT_WINDOW:
        counters.synced(rtt)
    read = counters.read()
    assert read.syncs == RTT_WINDOW + 1
    assert read.rtt_max == pytest.approx(0.001)  # the 5 s one left the window
    counters.synced(0.003)
    read = counters.read()
    assert (read.rtt_last, read.rtt_p50, read.rtt_max) == (0.003, 0.001, 0.003)


def test_an_unknown_error_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="kind must be one of .*'nope'"):
        AgentCounters().failed("nope")


def test_metrics_follow_the_elected_agent_thread(
    host_dir: str, redis_client: Any, namespace: str
) -> None:
    assert fleet.metrics().agent is False
    port = redis_client.connection_pool.connection_kwargs["port"]
    fleet.connect(
        f"redis://127.0.0.1:{port}/0",
        namespace=namespace,
        agent="auto",
        sync_interval=0.05,
    )
    breaker = qbreaker.CircuitBreaker(2, 5.0, 1, shared="pay", fleet=True)
    deadline = time.monotonic() + 10
    while fleet.metrics().syncs < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    read = fleet.metrics()
    assert read.agent and read.leader_changes == 1 and read.syncs >= 2
    assert breaker.state == qbreaker.State.CLOSED
    fleet.disconnect()
    assert fleet.metrics() == AgentCounters().read()  # no runner any more
