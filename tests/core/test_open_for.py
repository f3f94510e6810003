"""open_for, the opens total and the fleet agent's operations, on both cores.

Time comes from FakeClock; nothing sleeps.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

import pytest

from qbreaker import State

from ..helpers import FakeClock, Impl


def make(impl: Impl, clock: FakeClock, **kwargs: Any) -> Any:
    kwargs.setdefault("max_failures", 2)
    kwargs.setdefault("reset_timeout", 10)
    kwargs.setdefault("half_open_max", 1)
    return impl.Breaker(clock=clock, **kwargs)


def trip(b: Any) -> None:
    while b.state is State.CLOSED:
        b.record_failure()
    assert b.state is State.OPEN


class Seen:
    """A listener that keeps (old, new) of every transition."""

    def __init__(self) -> None:
        self.events: list[tuple[State, State]] = []

    def __call__(self, breaker: object, old: State, new: State) -> None:
        self.events.append((old, new))


# -- open_for ----------------------------------------------------------------------


def test_from_closed(impl: Impl, clock: FakeClock, caplog: Any) -> None:
    seen = Seen()
    b = make(impl, clock, on_state_change=seen, name="svc")
    with caplog.at_level(logging.INFO, logger="qbreaker"):
        generation = b.open_for(30)
    assert generation == 1 == b.generation
    assert b.state is State.OPEN and b.forced is None
    assert b.retry_after == 30.0  # not reset_timeout: the open's own length
    assert seen.events == [(State.CLOSED, State.OPEN)]
    assert "closed -> open (open_for, generation 1)" in caplog.text
    assert caplog.records[-1].args[-1] == 1, "handlers read the generation last"
    assert b.totals().transitions == 1 and b.totals().opens == 1
    assert not b.allow()
    assert b.metrics().retry_after == 30.0 and b.metrics().opens == 1


@pytest.mark.parametrize("seconds", [0.001, 3, 10, 45.5, 134217.727])
def test_retry_after_is_exact_and_then_it_probes(
    impl: Impl, clock: FakeClock, seconds: float
) -> None:
    b = make(impl, clock)
    b.open_for(seconds)
    clock.advance(0.001)
    assert b.retry_after == pytest.approx(seconds - 0.001, abs=1e-9)
    clock.advance(seconds - 0.002)
    assert b.retry_after == 0.001
    assert not b.allow()
    clock.advance(0.001)
    assert b.retry_after == 0.0
    assert b.allow(), "the first call after the open's end is a probe"
    assert b.state is State.HALF_OPEN
    b.record_success()
    assert b.state is State.CLOSED


def test_from_half_open(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock)
    trip(b)
    clock.advance(10)
    probe = b.acquire()
    assert probe and b.state is State.HALF_OPEN
    generation = b.open_for(5)
    assert generation == 3 and b.state is State.OPEN and b.retry_after == 5.0
    b.release(probe, True)  # stale: the probe's generation ended
    assert b.state is State.OPEN
    assert b.totals().opens == 2


def test_from_open_extends_without_a_transition(impl: Impl, clock: FakeClock) -> None:
    seen = Seen()
    b = make(impl, clock, on_state_change=seen)
    trip(b)
    clock.advance(4)  # 6 s left of the trip's 10
    transitions = b.totals().transitions
    assert b.open_for(20) == 1
    assert b.retry_after == 20.0 and b.generation == 1
    assert b.totals().transitions == transitions and b.totals().opens == 1
    assert seen.events == [(State.CLOSED, State.OPEN)]


def test_from_open_never_shortens(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock)
    assert b.open_for(20) == 1
    word = b._word
    clock.advance(5)
    assert b.open_for(15) == 0, "the same end: no change"
    assert b.open_for(1) == 0
    assert b._word == word and b.retry_after == 15.0
    assert b.open_for(15.001) == 1
    assert b.retry_after == 15.001


def test_an_open_past_its_end_is_extended_not_probed(
    impl: Impl, clock: FakeClock
) -> None:
    b = make(impl, clock)
    trip(b)
    clock.advance(60)  # expired, no call has probed yet
    assert b.open_for(2) == 1
    assert not b.allow() and b.retry_after == 2.0


@pytest.mark.parametrize("force", ["force_open", "force_closed"])
def test_forcing_wins(impl: Impl, clock: FakeClock, force: str) -> None:
    b = make(impl, clock)
    getattr(b, force)()
    word, totals = b._word, b.totals()
    assert b.open_for(30) == 0
    assert b._word == word and b.totals() == totals
    assert b.totals().opens == 0, "forcing open is not an open"


def test_an_open_for_shorter_than_the_reset_timeout(
    impl: Impl, clock: FakeClock
) -> None:
    b = make(impl, clock, reset_timeout=60)
    b.open_for(1.5)
    assert b.retry_after == 1.5
    clock.advance(1.5)
    assert b.allow() and b.state is State.HALF_OPEN
    b.record_failure()  # a failed probe re-opens for the usual reset_timeout
    assert b.state is State.OPEN and b.retry_after == 60.0


def test_clock_origins_near_the_fields_wrap(impl: Impl) -> None:
    # (FakeClock's floats hold whole ms only below 2**53 ms: no 2**64 origin.)
    for origin_ms in (0, (1 << 44) - 3, (1 << 45) - 3, -5):
        clock = FakeClock(origin_ms / 1000)
        b = make(impl, clock, reset_timeout=60)
        assert b.open_for(100) == 1
        assert b.retry_after == 100.0, origin_ms
        clock.advance(99.999)
        assert not b.allow(), origin_ms
        clock.advance(0.001)
        assert b.allow(), origin_ms


# -- the opens total ---------------------------------------------------------------


def test_opens_counts_every_transition_into_open(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock, half_open_timeout=3)
    assert b.totals().opens == 0
    trip(b)  # 1: a trip
    clock.advance(10)
    assert b.allow()
    b.record_failure()  # 2: a failed probe re-opens
    clock.advance(10)
    assert b.allow()
    clock.advance(3)
    assert not b.allow()  # 3: the probe's half-open timed out, re-opened
    assert b.state is State.OPEN
    b.open_for(100)  # an extension: not an open
    b.reset()
    b.open_for(1)  # 4
    b.force_open()  # forcing is not one
    b.reset()
    b._trip()  # 5
    assert b.totals().opens == 5 == b.metrics().opens
    assert b.totals().transitions == 10


def test_opens_by_a_window_policy(impl: Impl, clock: FakeClock) -> None:
    b = impl.Breaker(
        clock=clock, max_failures=None, window_size=4, failure_rate_threshold=0.5
    )
    for ok in (True, False, True, False):
        b.release(b.acquire(), ok)
    assert b.state is State.OPEN and b.totals().opens == 1


# -- the fleet agent's operations --------------------------------------------------


def test_word_view(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock)
    assert b._word_view() == ("closed", 0, 0.0)
    generation = b.open_for(7)
    assert b._word_view() == ("open", generation, 7.0)
    clock.advance(7)
    assert b.allow()
    assert b._word_view() == ("half-open", generation + 1, 0.0)
    b.force_open()
    assert b._word_view() == ("forced-open", generation + 2, float("inf"))
    b.force_closed()
    assert b._word_view() == ("forced-closed", generation + 3, 0.0)


def test_word_view_gives_the_full_generation(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock)
    for _ in range((1 << 18) + 2):  # the word keeps 18 bits of it
        b.reset()
    assert b.generation == 2
    assert b.open_for(1) == (1 << 18) + 3 == b._word_view()[1]
    assert b._close_if(3) is False, "the same 18 bits, another generation"
    assert b._close_if((1 << 18) + 3) is True


def test_extend_open(impl: Impl, clock: FakeClock) -> None:
    seen = Seen()
    b = make(impl, clock, on_state_change=seen)
    generation = b.open_for(5)
    assert b._extend_open(generation, 30) is True
    assert b.retry_after == 30.0
    word = b._word
    assert b._extend_open(generation, 2) is True, "still open until later"
    assert b._word == word
    assert b.totals().transitions == 1 and b.totals().opens == 1
    assert seen.events == [(State.CLOSED, State.OPEN)]


def test_expire_open(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock)
    generation = b.open_for(500)
    clock.advance(1)
    assert b._expire_open(generation) is True
    assert b.state is State.OPEN and b.retry_after == 0.0
    assert b.totals().transitions == 1, "no transition by itself"
    assert b._expire_open(generation) is True  # expired already: no change
    assert b.allow() and b.state is State.HALF_OPEN
    assert b._expire_open(generation) is False


def test_close_if(impl: Impl, clock: FakeClock, caplog: Any) -> None:
    seen = Seen()
    b = make(impl, clock, on_state_change=seen)
    generation = b.open_for(60)
    with caplog.at_level(logging.INFO, logger="qbreaker"):
        assert b._close_if(generation) is True
    assert b.state is State.CLOSED and b.generation == generation + 1
    assert seen.events == [(State.CLOSED, State.OPEN), (State.OPEN, State.CLOSED)]
    assert "open -> closed (fleet, generation 2)" in caplog.text
    assert b._close_if(generation) is False


def test_close_if_closes_the_probe_generation_after_its_open(
    impl: Impl, clock: FakeClock
) -> None:
    b = make(impl, clock)
    generation = b.open_for(1)
    clock.advance(1)
    assert b.allow() and b.state is State.HALF_OPEN
    assert b._close_if(generation) is True
    assert b.state is State.CLOSED


def test_losing_races_change_nothing(impl: Impl, clock: FakeClock) -> None:
    """Each fleet operation names a generation; once the word has moved on
    (a local re-open, a reset, a trip of its own) it answers False and
    leaves the word as it is."""
    b = make(impl, clock)
    generation = b.open_for(1)
    clock.advance(1)
    assert b.allow()
    b.record_failure()  # the probe failed: a local re-open, a later generation
    assert b.state is State.OPEN and b.generation == generation + 2
    word, totals = b._word, b.totals()
    assert b._close_if(generation) is False
    assert b._extend_open(generation, 100) is False
    assert b._expire_open(generation) is False
    assert b._close_if(generation + 1) is False, "not the probe generation of an open"
    assert b._word == word and b.totals() == totals
    b.reset()
    trip(b)  # opened for local reasons
    word = b._word
    assert b._close_if(generation + 2) is False
    assert b._word == word


def test_closed_and_forced_are_left_alone(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock)
    b.reset()  # generation 1: generation 0 is no fleet generation
    for step in ("closed", "force_open", "force_closed"):
        if step != "closed":
            getattr(b, step)()
        word = b._word
        current = b._word_view()[1]
        assert b._extend_open(current, 5) is False, step
        assert b._expire_open(current) is False, step
        assert b._close_if(current) is False, step
        assert b._word == word, step


def test_concurrent_fleet_operations_and_local_traffic(impl: Impl, caplog: Any) -> None:
    """Threads opening, extending, expiring and closing their own opens by
    generation while others call and fail: every operation ends, the totals
    agree with the listeners, and every fleet close closed an open that
    open_for made (or the probe generation right after it)."""
    clock = FakeClock()
    seen = Seen()
    lock = threading.Lock()
    b = impl.Breaker(clock=clock, max_failures=3, reset_timeout=0.001,
                     half_open_max=2, on_state_change=seen)  # fmt: skip
    mine: set[int] = set()

    def fleet() -> None:
        for i in range(300):
            generation = b.open_for(0.002 + (i % 3) / 1000)
            if not generation:
                continue
            with lock:
                mine.add(generation)
            b._extend_open(generation, 0.003)
            if i % 2:
                b._expire_open(generation)
            b._close_if(generation)

    def local() -> None:
        for i in range(1500):
            if b.allow():
                b.record_failure() if i % 3 else b.record_success()
            if i % 7 == 0:
                clock.advance(0.001)

    threads = [threading.Thread(target=f) for f in (fleet, fleet, local, local)]
    with caplog.at_level(logging.INFO, logger="qbreaker"):
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    totals = b.totals()
    assert totals.transitions == len(seen.events)
    assert totals.opens == sum(new is State.OPEN for _, new in seen.events)
    messages = [record.getMessage() for record in caplog.records]
    fleet_closes = [m for m in messages if "(fleet, " in m]
    assert fleet_closes, "no fleet close happened: the test tests nothing"
    for message in fleet_closes:
        match = re.search(r": (open|half-open) -> closed \(fleet, generation (\d+)\)",
                          message)  # fmt: skip
        assert match, message
        closed = int(match.group(2)) - (1 if match.group(1) == "open" else 2)
        assert closed in mine, message
