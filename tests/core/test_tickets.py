"""Tickets stay stale across generation wraps, and a probe reports once.

The word's generation has 18 bits; a ticket carries the generation in full
(see _core_py's "Tickets"). Each wrap test runs its 2**18 (or k * 2**18)
transitions for real. A half-open ticket is unique per probe (qbreaker._impl.probes),
so releasing it twice frees one slot, not two.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from qbreaker import State, _word
from qbreaker._impl import probes as _probes

from ..helpers import FakeClock

WRAP = 1 << _word.GEN_BITS


def _transitions(b: Any, count: int) -> None:
    for _ in range(count):
        b.reset()


def _in_flight(b: Any) -> int:
    return (b._word >> _word.INFLIGHT_SHIFT) & _word.INFLIGHT_MAX


def _open_then_half_open(b: Any, clock: FakeClock) -> None:
    b._trip()
    clock.advance(b.reset_timeout)


# -- stale tickets across wraps of the word's generation ---------------------------


@pytest.mark.parametrize("wraps", [1, 2, 3])
def test_a_ticket_held_across_whole_wraps_stays_stale(impl: Any, wraps: int) -> None:
    b = impl.Breaker(1, 60.0, 1)
    held = b.acquire()
    _transitions(b, wraps * WRAP)
    assert b.generation == 0  # the word's generation is where it was
    b.release(held, False)
    assert b.state is State.CLOSED and b.consecutive_failures == 0
    totals = b.totals()
    assert totals.failures == 1 and totals.transitions == wraps * WRAP
    # A current ticket still counts.
    b.release(b.acquire(), False)
    assert b.state is State.OPEN


def test_a_stale_probe_cannot_free_a_current_probes_slot(impl: Any) -> None:
    clock = FakeClock()
    b = impl.Breaker(1, 1.0, 1, clock=clock)
    _open_then_half_open(b, clock)
    old = b.acquire()
    assert old and b.state is State.HALF_OPEN
    # Back to half-open exactly 2**18 transitions later: reset() up to the
    # last two, then trip (open) and the probe's admission (half-open).
    _transitions(b, WRAP - 2)
    _open_then_half_open(b, clock)
    new = b.acquire()
    assert new and b.state is State.HALF_OPEN and b.generation == 2
    b.release(old, None)  # would give the current probe's slot back
    assert not b.acquire()
    b.release(old, False)  # would re-open the breaker
    assert b.state is State.HALF_OPEN and _in_flight(b) == 1
    b.release(new, True)
    assert b.state is State.CLOSED


def test_a_stale_ticket_stays_out_of_the_window(impl: Any) -> None:
    b = impl.Breaker(
        100, 60.0, 1, window_size=10, failure_rate_threshold=0.5, minimum_calls=1
    )
    failing, succeeding = b.acquire(), b.acquire()
    _transitions(b, WRAP)
    b.release(succeeding, True)
    b.release(failing, False)
    assert b._window_sums() == (0, 0, 0)
    assert b.state is State.CLOSED
    b.release(b.acquire(), False)
    assert b.state is State.OPEN


def test_with_and_call_report_a_wrapped_generation_as_stale(impl: Any) -> None:
    b = impl.Breaker(1, 60.0, 1)

    def flapping() -> None:
        _transitions(b, WRAP)
        raise RuntimeError("late failure")

    with pytest.raises(RuntimeError):
        with b:
            flapping()
    with pytest.raises(RuntimeError):
        b.call(flapping)
    with pytest.raises(RuntimeError):
        b(flapping)()
    assert b.state is State.CLOSED and b.consecutive_failures == 0
    assert b.totals().failures == 3


def test_tickets_carry_the_full_generation(impl: Any) -> None:
    b = impl.Breaker(1, 60.0, 1)
    _transitions(b, WRAP + 5)
    ticket = b.acquire()
    assert (
        ticket & ((1 << (_word.HEAD_BITS + 1)) - 1)
        == (b._word & _word.HEAD_FIELD) << 1 | 1
    )
    assert ticket >> (_word.STATE_BITS + 1) == WRAP + 5
    assert ticket == _word.ticket_of(WRAP + 5, b._word)


@pytest.mark.parametrize(
    ("transitions", "generation"),
    [
        (0, 0),
        (5, 5),  # the total caught up
        (3, 5),  # two transitions' counts still pending
        (7, 5),  # counted after the word was read
        (WRAP + 3, WRAP + 5),
        (WRAP - 2, WRAP + 1),  # across a wrap of the word's field
        (WRAP + 2, WRAP - 1),
        ((1 << 60) + 7, (1 << 60) + 9),
    ],
)
def test_the_full_generation_is_the_nearest_to_the_total(
    transitions: int, generation: int
) -> None:
    word = _word.closed_word(generation & _word.GEN_FIELD)
    ticket = _word.ticket_of(transitions, word)
    assert ticket >> (_word.STATE_BITS + 1) == generation & _word.TICKET_GEN_FIELD


def test_the_core_ignores_the_bits_above_the_base(impl: Any) -> None:
    # The Python API's probe bookkeeping lives there; the cimport API's
    # tickets have none, and both settle alike.
    b = impl.Breaker(2, 60.0, 1)
    ticket = b.acquire()
    b.release(ticket | 0x5A5A << _probes.PROBE_SHIFT, False)
    assert b.consecutive_failures == 1


# -- a half-open ticket released twice ----------------------------------------------


def _half_open(impl: Any, half_open_max: int, success_threshold: int) -> Any:
    clock = FakeClock()
    b = impl.Breaker(
        1, 1.0, half_open_max, success_threshold=success_threshold, clock=clock
    )
    _open_then_half_open(b, clock)
    return b


@pytest.mark.parametrize("ok", [None, True])
def test_a_second_release_frees_no_other_probes_slot(impl: Any, ok: Any) -> None:
    b = _half_open(impl, 2, 3)
    first, second = b.acquire(), b.acquire()
    assert first and second and first != second
    assert not b.acquire()
    b.release(first, ok)
    b.release(first, ok)
    assert _in_flight(b) == 1
    third = b.acquire()
    assert third and third not in (first, second)
    assert not b.acquire()  # second and third are out
    assert b.state is State.HALF_OPEN


def test_a_second_success_is_not_counted_towards_closing(impl: Any) -> None:
    b = _half_open(impl, 2, 2)
    first, second = b.acquire(), b.acquire()
    b.release(first, True)
    b.release(first, True)
    assert b.state is State.HALF_OPEN
    assert b.totals().successes == 1
    b.release(second, True)
    assert b.state is State.CLOSED


def test_a_second_release_after_the_generation_ended_is_stale(impl: Any) -> None:
    b = _half_open(impl, 2, 3)
    first = b.acquire()
    b.release(first, False)
    assert b.state is State.OPEN
    b.release(first, True)
    assert b.state is State.OPEN
    assert b.totals().successes == 1  # counted like any stale outcome


def test_with_and_call_probes_report_once_each(impl: Any) -> None:
    b = _half_open(impl, 2, 2)
    with b:
        b.call(lambda: None)
    assert b.state is State.CLOSED


def test_concurrent_second_releases_free_one_slot_each(impl: Any) -> None:
    # Free-threaded builds run these releases in parallel: the bookkeeping
    # must let exactly one release of each ticket through.
    b = _half_open(impl, 8, 100)
    probes = [b.acquire() for _ in range(8)]
    assert all(probes) and not b.acquire()
    released, kept = probes[:4], probes[4:]
    start = threading.Barrier(2 * len(released))

    def release(ticket: int) -> None:
        start.wait(timeout=10)
        b.release(ticket, None)

    threads = [threading.Thread(target=release, args=(t,)) for t in released + released]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert _in_flight(b) == len(kept)
    assert b.totals().neutral == len(released)
    for ticket in kept:
        b.release(ticket, None)
    assert _in_flight(b) == 0


def test_allow_leaves_no_ticket_to_track(impl: Any) -> None:
    b = _half_open(impl, 2, 3)
    assert b.allow()
    b.record_success()
    assert _in_flight(b) == 0 and b.totals().successes == 1


# -- the bookkeeping itself -----------------------------------------------------


def test_probes_forget_ended_generations_past_a_bound() -> None:
    probes = _probes.Probes()
    for generation in range(3 * _probes.FORGET_AT):
        probes.issue(_word.ticket_of(generation, 2 | generation << 2))
    assert len(probes) <= _probes.FORGET_AT


def test_a_probe_number_in_use_is_skipped() -> None:
    probes = _probes.Probes()
    base = _word.ticket_of(7, 2 | 7 << 2)
    held = probes.issue(base)
    for _ in range(_probes.PROBE_FIELD):
        assert probes.release(probes.issue(base))
    again = probes.issue(base)
    assert again != held
    assert probes.release(held) and probes.release(again)
    assert not probes.release(held)


def test_a_probe_number_in_use_is_skipped_by_the_breaker(impl: Any) -> None:
    b = _half_open(impl, 2, 100)
    held = b.acquire()
    for _ in range(_probes.PROBE_FIELD):
        b.release(b.acquire(), None)
    again = b.acquire()
    assert again and again != held
    b.release(held, None)
    b.release(again, None)
    assert _in_flight(b) == 0


def test_probes_never_released_are_forgotten_past_a_bound(impl: Any) -> None:
    clock = FakeClock()
    b = impl.Breaker(1, 1.0, 1, clock=clock)
    leaked = []
    for _ in range(_probes.FORGET_AT + 10):
        b.reset()
        _open_then_half_open(b, clock)
        leaked.append(b.acquire())
    if impl.name == "py":
        assert len(b._probes) <= _probes.FORGET_AT
    b.release(leaked[0], False)  # stale: counted, changes nothing
    assert b.state is State.HALF_OPEN and b.totals().failures == 1
    b.release(leaked[-1], True)
    assert b.state is State.CLOSED
