"""A rolling policy change: hosts that disagree on a breaker's policy are
found by the agent and reported once, in the log and in ``fleet.status()``;
against the spec and against a real redis-server."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from qbreaker import fleet
from qbreaker.fleet.agent import CONFLICT_INTERVAL
from qbreaker.fleet.control import ControlSegment

from .helpers import delta
from .host_helpers import host_dir
from .test_host_agent import Fleet, wall_ms

__all__ = ("host_dir",)  # a fixture

pytestmark = pytest.mark.c_extension


def roll_out(here: Fleet, *hosts: str, extra: int = 3) -> str:
    """``hosts`` sync the breaker with another reset timeout; its digest."""
    pol = here.fleet_policy()
    changed = dataclasses.replace(
        pol, reset_timeout_ms=pol.reset_timeout_ms + extra * 1000
    )
    for host in hosts:
        here.other(host).sync(wall_ms(), delta("pay", changed))
    return changed.digest()


def test_a_rolling_policy_change_is_warned_of_once_per_digest(
    host_dir: str, backend: Any
) -> None:
    here = Fleet(backend)
    here.agent.step()  # this host's policy is the fleet's (the first stored)
    stored = here.fleet_policy().digest()
    assert here.agent.conflicts == ()
    new = roll_out(here, "h2", "h3")
    for _ in range(3):
        here.agent.check_conflicts()
    assert len(here.warnings) == 1, here.warnings
    assert "'pay'" in here.warnings[0] and new in here.warnings[0]
    assert stored in here.warnings[0]
    status = fleet._status_of(here.control)
    assert [(c.name, c.host_id, c.digest, c.stored_digest)
            for c in status.policy_conflicts] == [
        ("pay", "h2", new, stored), ("pay", "h3", new, stored)
    ]  # fmt: skip
    # A third host on the same new policy: no new line; another policy: one.
    roll_out(here, "h4")
    here.agent.check_conflicts()
    assert len(here.warnings) == 1
    other = roll_out(here, "h5", extra=7)
    here.agent.check_conflicts()
    assert len(here.warnings) == 2 and other in here.warnings[1]
    assert len(fleet._status_of(here.control).policy_conflicts) == 4


def test_a_new_agent_of_the_host_does_not_warn_again(
    host_dir: str, backend: Any
) -> None:
    here = Fleet(backend)
    here.agent.step()
    roll_out(here, "h2")
    here.agent.check_conflicts()
    assert len(here.warnings) == 1
    successor = here.new_agent()  # a takeover: it reads the status left
    successor.refresh_registry()
    successor.check_conflicts()
    assert len(here.warnings) == 1
    assert len(successor.conflicts) == 1


def test_the_agent_loop_reads_conflicts_after_a_sync_at_its_own_pace(
    host_dir: str, backend: Any
) -> None:
    here = Fleet(backend)
    here.agent.step()  # the first sync, then the first read: none yet
    roll_out(here, "h2")
    here.agent.step(1.0)
    assert here.warnings == []  # not due yet
    here.agent.step(1.0 + CONFLICT_INTERVAL + here.agent._conflicts_read)
    assert len(here.warnings) == 1
    assert ControlSegment().read_status()["conflicts"][0][:2] == ["pay", "h2"]
