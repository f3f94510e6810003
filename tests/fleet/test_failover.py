"""Failovers: lost writes, and a script cache that lost the scripts.

A replica promoted before it received the last transitions has the old epoch
(it was replicated long ago) but older fleet states. The agent must treat
that like an empty Redis (re-seed from its cells, never close one), even
when other transitions since the failover brought the namespace's version
back up, so that the version alone does not show the loss.

``NOSCRIPT`` (after a restart, a failover or ``SCRIPT FLUSH``) loads the
script once and sends the call once more; a second ``NOSCRIPT`` is an error
for the agent, which backs off.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

import qbreaker
from qbreaker.fleet.spec import MemoryBackend

from .conftest import RedisBackend
from .host_helpers import host_dir
from .test_host_agent import Fleet

__all__ = ("host_dir",)  # a fixture

redis = pytest.importorskip("redis")

pytestmark = pytest.mark.c_extension


def snapshot(backend: MemoryBackend) -> dict[str, Any]:
    """What a replica holds: everything the backend knows now."""
    with backend._lock:
        return {k: copy.deepcopy(v) for k, v in vars(backend).items() if k != "_lock"}


def fail_over_to(backend: MemoryBackend, replica: dict[str, Any]) -> None:
    """The replica becomes the backend: every write since it was taken is lost."""
    with backend._lock:
        vars(backend).update(copy.deepcopy(replica))


def test_a_fleet_generation_that_went_back_is_reseeded_and_never_closes_a_cell(
    host_dir: str,
) -> None:
    here = Fleet(MemoryBackend())
    here.agent.step()  # the breaker is known to the fleet, closed
    replica = snapshot(here.backend)
    here.trip_elsewhere("h2", "h3")
    here.agent.pump_events(here.backend, "0-0")  # the cell opens
    here.agent.sync()  # an open cell is in every sync: the reply says generation 1
    assert here.agent.tracks["pay"].replied_generation == 1
    assert here.fleet_state().generation == 1
    assert here.breaker.state == qbreaker.State.OPEN
    epoch, version = here.agent.epoch, here.agent.version

    fail_over_to(here.backend, replica)
    # Transitions of another breaker after the failover: the namespace's
    # version is back where this agent last saw it, the epoch never changed.
    here.backend.force("other", "open", by="ops")
    here.backend.force("other", "close", by="ops")
    assert here.fleet_state().state == "closed"

    here.agent.sync()  # the fleet says "closed", generation 0: nothing closes
    assert here.agent.epoch == epoch and here.agent.version >= version
    assert here.breaker.state == qbreaker.State.OPEN
    here.agent.sync()  # the re-seed: the fleet is open again
    state = here.fleet_state()
    assert (state.state, state.reason) == ("open", "reseed")
    assert here.breaker.state == qbreaker.State.OPEN


def test_a_generation_known_only_from_an_event_that_went_back_is_reseeded(
    host_dir: str,
) -> None:
    # The agent hears of the fleet's open from the event stream alone (no
    # sync reply carried that generation), then a failover loses it: the
    # next reply's lower generation is a loss all the same.
    here = Fleet(MemoryBackend())
    here.agent.step()
    replica = snapshot(here.backend)
    here.trip_elsewhere("h2", "h3")
    (opened,) = [s for s in here.backend.view() if s.name == "pay"]
    here.agent.apply_event(opened)
    assert here.breaker.state == qbreaker.State.OPEN
    assert here.agent.tracks["pay"].replied_generation == 0

    fail_over_to(here.backend, replica)
    here.agent.sync()  # "closed", generation 0, below the event's 1
    assert here.breaker.state == qbreaker.State.OPEN
    here.agent.sync()  # the re-seed
    state = here.fleet_state()
    assert (state.state, state.reason) == ("open", "reseed")
    assert here.breaker.state == qbreaker.State.OPEN


class AlwaysNoScript:
    """A client whose script cache never keeps a script (a proxy in front
    of nodes that lost theirs, say): it counts the loads."""

    def __init__(self) -> None:
        self.loads = 0
        self.calls = 0

    def evalsha(self, *args: Any) -> Any:
        self.calls += 1
        raise redis.exceptions.NoScriptError("NOSCRIPT No matching script.")

    def script_load(self, text: str) -> str:
        self.loads += 1
        return "sha"


def test_noscript_reloads_once_per_call_then_leaves_the_backoff_to_the_agent(
    host_dir: str,
) -> None:
    client = AlwaysNoScript()
    backend = RedisBackend(client, "n")
    with pytest.raises(redis.exceptions.NoScriptError):
        backend.view()
    assert (client.loads, client.calls) == (1, 2)
    # In the agent: the failed sync is an error like any other, so the
    # next one waits for the backoff instead of loading again at once.
    here = Fleet(backend)
    assert here.agent.sync(now=100.0) is False
    assert (client.loads, client.calls) == (2, 4)
    assert here.agent.next_sync > 100.0
    assert here.agent.errors == 1
