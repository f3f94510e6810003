"""open_for, the opens total and the fleet operations on a host-wide breaker,
across real processes (multiprocessing, forked)."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import qbreaker
from qbreaker import State
from qbreaker import shared as shared_mod
from qbreaker._impl import segment_format as _fmt

pytestmark = [
    pytest.mark.c_extension,
    pytest.mark.skipif(not _fmt.supported(), reason="POSIX shared memory in /dev/shm"),
]

# Forked: the children run this module's functions without re-importing it.
_FORK = multiprocessing.get_context("fork")
TIMEOUT = 60


@pytest.fixture
def name() -> Iterator[str]:
    name = f"test-opens-{uuid.uuid4().hex[:12]}"
    yield name
    shared_mod.unlink(name)


def _breaker(name: str, listener: Any = None) -> Any:
    return qbreaker.CircuitBreaker(1, 60, 1, shared=name, on_state_change=listener)


def _alternate(name: str, me: int, rounds: int, barrier: Any) -> None:
    # Round i belongs to process i % 2: it closes the breaker and opens it,
    # by a trip or (every third round) by open_for; the other one waits.
    b = _breaker(name)
    for i in range(rounds):
        barrier.wait(TIMEOUT)
        if i % 2 == me:
            b.reset()
            if i % 3:
                b.record_failure()
            else:
                assert b.open_for(30)
            assert b.state is State.OPEN
        barrier.wait(TIMEOUT)


def _race(name: str, rounds: int, start: Any, won: Any) -> None:
    # Both processes reset and trip as fast as they can; each counts the
    # transitions into open that it won (a listener runs in the winner only).
    opens = 0

    def listener(breaker: object, old: State, new: State) -> None:
        nonlocal opens
        opens += new is State.OPEN

    b = _breaker(name, listener)
    start.wait(TIMEOUT)
    for i in range(rounds):
        b.reset()
        if i % 5 == 0:
            b.open_for(1)
        else:
            b.record_failure()
    won.put(opens)


def _join(processes: list[Any]) -> None:
    for p in processes:
        p.join(TIMEOUT)
    for p in processes:
        if p.is_alive():
            p.kill()
    assert [p.exitcode for p in processes] == [0] * len(processes)


def test_opens_exact_across_processes_taking_turns(name: str) -> None:
    mine = _breaker(name)
    rounds = 30
    barrier = _FORK.Barrier(2)
    processes = [
        _FORK.Process(target=_alternate, args=(name, me, rounds, barrier))
        for me in (0, 1)
    ]
    for p in processes:
        p.start()
    _join(processes)
    assert mine.totals().opens == rounds == mine.metrics().opens
    assert mine.totals().transitions == 2 * rounds
    assert {i.name: i.opens for i in shared_mod.list()}[name] == rounds


def test_opens_exact_across_racing_processes(name: str) -> None:
    mine = _breaker(name)
    start, won = _FORK.Barrier(3), _FORK.Queue()
    processes = [
        _FORK.Process(target=_race, args=(name, 3000, start, won)) for _ in (0, 1)
    ]
    for p in processes:
        p.start()
    start.wait(TIMEOUT)
    counted = [won.get(timeout=TIMEOUT) for _ in processes]
    _join(processes)
    assert sum(counted) == mine.totals().opens
    assert min(counted) > 0, counted
    # Every reset and every trip or open_for that won is a transition.
    assert mine.totals().transitions >= mine.totals().opens


def _open_for_and_report(name: str, result: Any) -> None:
    b = _breaker(name)
    result.put(b.open_for(500))


def test_open_for_is_seen_by_every_process(name: str) -> None:
    mine = _breaker(name)
    result = _FORK.Queue()
    child = _FORK.Process(target=_open_for_and_report, args=(name, result))
    child.start()
    generation = result.get(timeout=TIMEOUT)
    _join([child])
    assert generation == 1
    state, seen_generation, retry_after = mine._word_view()
    assert (state, seen_generation) == ("open", generation)
    assert 499 < retry_after <= 500 and 499 < mine.retry_after <= 500
    info = {i.name: i for i in shared_mod.list()}[name]
    assert info.state is State.OPEN and 499 < info.retry_after <= 500
    assert info.opens == 1 == mine.totals().opens
    assert not mine.allow()
    # The process that opened it is gone: another closes it by its generation.
    assert mine._extend_open(generation, 900) and 899 < mine.retry_after
    assert mine._close_if(generation) and mine.state is State.CLOSED
    assert mine.totals().opens == 1


def test_a_fresh_segment_counts_no_opens(name: str) -> None:
    b = _breaker(name)
    assert b.totals().opens == 0
    b.force_open()
    assert b.totals().opens == 0
    assert b.open_for(5) == 0, "forced wins"


def test_status_shows_opens_and_the_open_for_retry_after(name: str) -> None:
    b = _breaker(name)
    b.record_failure()  # a trip: 60 s
    b.open_for(3600)  # extended: no second open
    b.reset()
    b.open_for(7200)
    command = [sys.executable, "-m", "qbreaker", "status"]
    found = subprocess.run(command, capture_output=True, text=True, timeout=60)
    header, row = next(
        (lines[0], line)
        for lines in [found.stdout.splitlines()]
        for line in lines
        if line.startswith(name)
    )
    assert header.split()[-3:] == ["opens", "retry", "after"]
    cells = row.split()
    assert cells[-2] == "2" and cells[-1].startswith(("7199.", "7200.")), row
    as_json = subprocess.run(
        [*command, "--json"], capture_output=True, text=True, timeout=60
    )
    (mine,) = [i for i in json.loads(as_json.stdout)["breakers"] if i["name"] == name]
    assert mine["opens"] == 2 and 7199 < mine["retry_after"] <= 7200
