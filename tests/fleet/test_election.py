"""The host's agent election: a slow step keeps the lease, a hung one loses it.

Two ``Runner``s of one host (one control segment) in this process, as two
workers: the lease is renewed on a thread of its own while the elected
one's loop still passes (a step slower than the lease, such as importing
redis-py on a busy machine, is no reason for a takeover), and no longer
once the loop has not passed for STALL_MS (a hung agent is replaced).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from qbreaker.fleet import agent as agent_mod
from qbreaker.fleet.control import LEASE_MS, ControlSegment
from qbreaker.fleet.spec import MemoryBackend

from .host_helpers import host_dir

__all__ = ("host_dir",)  # a fixture


def wait(condition: Any, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)
    return time.monotonic() - started


@pytest.fixture
def runners(host_dir: str) -> Iterator[list[agent_mod.Runner]]:
    made: list[agent_mod.Runner] = []
    yield made
    for runner in made:
        runner.stop()


def start(made: list[agent_mod.Runner]) -> agent_mod.Runner:
    runner = agent_mod.Runner(MemoryBackend, "h1", info={}, control=ControlSegment())
    made.append(runner)
    runner.start()
    return runner


def test_a_step_slower_than_the_lease_keeps_it(
    runners: list[agent_mod.Runner], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = start(runners)
    wait(lambda: first.agent is not None, 5, "the first runner's election")
    step = agent_mod.Agent.step
    slow = threading.Event()

    def slow_step(self: agent_mod.Agent, now: float | None = None) -> None:
        if threading.current_thread() is first._thread and not slow.is_set():
            slow.set()
            time.sleep(2 * LEASE_MS / 1000)  # the loop makes no pass meanwhile
        step(self, now)

    monkeypatch.setattr(agent_mod.Agent, "step", slow_step)
    wait(slow.is_set, 5, "the slow step")
    second = start(runners)
    time.sleep(2 * LEASE_MS / 1000)
    assert second.agent is None
    assert first.agent is not None
    assert first.control.lease().nonce == first.nonce


def test_a_hung_agent_loses_the_lease(
    runners: list[agent_mod.Runner], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent_mod, "STALL_MS", 300)
    first = start(runners)
    wait(lambda: first.agent is not None, 5, "the first runner's election")
    step = agent_mod.Agent.step
    release = threading.Event()

    def hung_step(self: agent_mod.Agent, now: float | None = None) -> None:
        if threading.current_thread() is first._thread:
            release.wait(20)
        step(self, now)

    monkeypatch.setattr(agent_mod.Agent, "step", hung_step)
    second = start(runners)
    try:
        took = wait(lambda: second.agent is not None, 10, "the takeover")
        # STALL_MS of renewals, then the lease lapses, then the next look.
        assert took <= (300 + LEASE_MS + 2 * agent_mod.LEASE_RENEW_MS) / 1000 + 1
        assert first.control.lease().nonce == second.nonce
    finally:
        release.set()
    # Its loop passes again: it sees the lease lost and steps down.
    wait(lambda: first.agent is None, 5, "the hung runner to step down")
    assert second.agent is not None
