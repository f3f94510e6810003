"""Every transition and edge of the state machine, on both cores.

Time comes from FakeClock; nothing sleeps.
"""

from __future__ import annotations

import datetime

from qbreaker import State, Totals

from ..helpers import FakeClock, Impl


def make(impl: Impl, clock: FakeClock, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
    return impl.Breaker(*args, clock=clock, **kwargs)


def trip(b) -> None:  # type: ignore[no-untyped-def]
    for _ in range(b.max_failures):
        assert b.allow()
        b.record_failure()
    assert b.state is State.OPEN


# -- the seed's usage ----------------------------------------------------------


def test_seed_scenario(impl: Impl, clock: FakeClock) -> None:
    """QPool's NewCircuitBreaker(5, time.Minute, 3), as its README uses it."""
    b = make(impl, clock, 5, 60, 3)
    assert b.state is State.CLOSED
    for i in range(4):
        assert b.allow()
        b.record_failure()
        assert b.state is State.CLOSED
        assert b.consecutive_failures == i + 1
    assert b.allow()
    b.record_failure()
    assert b.state is State.OPEN
    assert not b.allow()
    clock.advance(59.999)
    assert not b.allow()
    clock.advance(0.001)
    # The call that performs the transition is itself the first probe.
    assert b.allow()
    assert b.state is State.HALF_OPEN
    assert b.allow() and b.allow()
    assert not b.allow(), "a fourth concurrent probe must be rejected"
    b.record_success()
    b.record_success()
    assert b.state is State.HALF_OPEN
    b.record_success()
    assert b.state is State.CLOSED
    assert b.consecutive_failures == 0
    assert b.totals() == Totals(
        allowed=8,
        rejected=3,
        successes=3,
        failures=5,
        neutral=0,
        transitions=3,
        opens=1,
    )


def test_success_resets_consecutive_failures(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock, 3, 10, 1)
    for _ in range(10):
        b.record_failure()
        b.record_failure()
        b.record_success()
    assert b.state is State.CLOSED
    assert b.consecutive_failures == 0
    b.record_failure()
    b.record_failure()
    b.record_failure()
    assert b.state is State.OPEN


def test_max_failures_one(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock, 1, 1, 1)
    b.record_failure()
    assert b.state is State.OPEN
    assert b.generation == 1


def test_defaults(impl: Impl) -> None:
    b = impl.Breaker()
    assert (b.max_failures, b.reset_timeout, b.half_open_max) == (5, 60.0, 3)
    assert b.success_threshold == 3
    assert b.half_open_timeout == 60.0


def test_timedelta_and_int_timeouts(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock, 1, datetime.timedelta(milliseconds=1500), 1)
    assert b.reset_timeout == 1.5
    b.record_failure()
    clock.advance(1.499)
    assert not b.allow()
    clock.advance(0.001)
    assert b.allow()
    assert make(impl, clock, 1, 2, 1).reset_timeout == 2.0


# -- open ----------------------------------------------------------------------


def test_open_admits_exactly_at_the_timeout(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock, 1, 0.25, 1)
    b.record_failure()
    clock.advance(0.249)
    assert not b.allow()
    assert b.state is State.OPEN
    clock.advance(0.001)
    assert b.allow()
    assert b.state is State.HALF_OPEN


def test_records_while_open_change_nothing(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock, 2, 10, 1)
    trip(b)
    word = b._word
    b.record_failure()
    b.record_success()
    assert b._word == word
    assert b.totals().successes == 1 and b.totals().failures == 3


# -- half-open -----------------------------------------------------------------


def test_probe_limit_of_one(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock, 1, 1, 1, success_threshold=2)
    b.record_failure()
    clock.advance(1)
    assert b.allow()
    assert not b.allow()
    b.record_success()  # frees the slot, one success of two
    assert b.state is State.HALF_OPEN
    assert b.allow()
    assert not b.allow()
    b.record_success()
    assert b.state is State.CLOSED


def test_success_threshold_above_probe_limit(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock, 1, 1, 2, success_threshold=5)
    b.record_failure()
    clock.advance(1)
    for _ in range(2):
        assert b.allow() and b.allow()
        assert not b.allow()
        b.record_success()
        b.record_success()
    assert b.state is State.HALF_OPEN
    assert b.allow()
    b.record_success()
    assert b.state is State.CLOSED
    assert b.totals().successes == 5


def test_half_open_failure_reopens_with_fresh_timeout(
    impl: Impl, clock: FakeClock
) -> None:
    b = make(impl, clock, 1, 10, 3)
    b.record_failure()
    clock.advance(10)
    assert b.allow()
    clock.advance(4)
    b.record_failure()
    assert b.state is State.OPEN
    clock.advance(9.999)
    assert not b.allow()
    clock.advance(0.001)
    assert b.allow()


def test_seed_record_frees_slot_never_below_zero(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock, 1, 1, 2, success_threshold=10)
    b.record_failure()
    clock.advance(1)
    b.renormalize()  # half-open, nothing admitted
    assert b.state is State.HALF_OPEN
    b.record_success()  # no slot to free: in-flight stays 0
    b.record_success()
    assert b.allow() and b.allow()
    assert not b.allow()


def test_half_open_timeout_reclaims_a_lost_probe(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock, 1, 10, 1, half_open_timeout=5)
    b.record_failure()
    clock.advance(10)
    assert b.allow()  # this probe's caller crashes and never reports
    assert not b.allow()
    clock.advance(4.999)
    assert not b.allow()
    gen = b.generation
    clock.advance(0.001)
    # Expired at t=15: re-opened as of 15, so the next probe is due at 25.
    assert not b.allow()
    assert b.state is State.OPEN
    assert b.generation == gen + 1
    clock.advance(9.999)
    assert not b.allow()
    clock.advance(0.001)
    assert b.allow()
    assert b.state is State.HALF_OPEN


def test_idle_expired_half_open_admits_at_expiry_plus_reset(
    impl: Impl, clock: FakeClock
) -> None:
    b = make(impl, clock, 1, 10, 1, half_open_timeout=5)
    b.record_failure()
    clock.advance(10)
    assert b.allow()
    gen = b.generation
    clock.advance(5 + 10)  # no traffic in between
    assert b.allow(), "the first call at expiry + reset_timeout is a probe"
    assert b.state is State.HALF_OPEN
    assert b.generation == gen + 2  # half-open -> open -> half-open


def test_half_open_timeout_defaults_to_reset_timeout(
    impl: Impl, clock: FakeClock
) -> None:
    b = make(impl, clock, 1, 3, 1)
    b.record_failure()
    clock.advance(3)
    assert b.allow()
    clock.advance(2.999)
    assert not b.allow()
    assert b.state is State.HALF_OPEN
    clock.advance(0.001)
    assert not b.allow()
    assert b.state is State.OPEN


# -- renormalize and reset -------------------------------------------------------


def test_renormalize(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock, 1, 10, 1)
    b.renormalize()
    assert b.state is State.CLOSED and b.generation == 0
    b.record_failure()
    clock.advance(9)
    b.renormalize()
    assert b.state is State.OPEN
    clock.advance(1)
    b.renormalize()
    assert b.state is State.HALF_OPEN
    assert b.totals().allowed == 0, "renormalize admits nothing"
    word = b._word
    b.renormalize()
    assert b._word == word
    assert b.allow()


def test_renormalize_applies_half_open_expiry(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock, 1, 10, 1, half_open_timeout=2)
    b.record_failure()
    clock.advance(10)
    b.renormalize()
    clock.advance(2)
    b.renormalize()
    assert b.state is State.OPEN
    clock.advance(10)
    b.renormalize()
    assert b.state is State.HALF_OPEN


def test_reset_is_always_a_new_generation(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock, 2, 10, 1)
    b.reset()
    assert b.generation == 1 and b.state is State.CLOSED
    b.record_failure()
    assert b.consecutive_failures == 1
    b.reset()
    assert b.consecutive_failures == 0 and b.generation == 2
    trip(b)
    b.reset()
    assert b.state is State.CLOSED and b.allow()


def test_reading_state_never_changes_it(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock, 1, 1, 1)
    b.record_failure()
    clock.advance(100)
    for _ in range(3):
        assert b.state is State.OPEN
        _ = (b.generation, b.consecutive_failures, b.forced, b.totals())
    assert b.generation == 1


# -- tickets ---------------------------------------------------------------------


def test_tickets_are_never_falsy(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock, 1, 1, 1)
    t = b.acquire()
    assert t and isinstance(t, int)
    assert b.generation == 0
    b.release(t, True)
    b.record_failure()
    assert b.acquire() == 0  # the only falsy result is a rejection


def test_stale_ticket_changes_nothing(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock, 2, 10, 1)
    old = b.acquire()
    b.reset()
    b.record_failure()
    assert b.consecutive_failures == 1
    b.release(old, True)  # would reset the failures if it counted
    assert b.consecutive_failures == 1
    b.release(old, False)  # would trip if it counted
    assert b.state is State.CLOSED
    t = b.totals()
    assert (t.successes, t.failures) == (1, 2)


def test_late_failure_from_before_a_trip_is_ignored(
    impl: Impl, clock: FakeClock
) -> None:
    """The bug class every breaker's tracker is full of."""
    b = make(impl, clock, 1, 10, 1)
    slow = b.acquire()
    b.record_failure()
    clock.advance(10)
    probe = b.acquire()
    assert b.state is State.HALF_OPEN
    b.release(slow, False)  # admitted while closed, reports now: ignored
    assert b.state is State.HALF_OPEN
    b.release(probe, True)
    assert b.state is State.CLOSED


def test_neutral_release_gives_the_slot_back(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock, 1, 1, 1)
    b.record_failure()
    clock.advance(1)
    t = b.acquire()
    assert b.acquire() == 0
    b.release(t, None)
    assert b.state is State.HALF_OPEN
    t2 = b.acquire()
    assert t2
    b.release(t2, True)
    assert b.state is State.CLOSED
    assert b.totals().neutral == 1


def test_neutral_in_closed_keeps_failures(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock, 3, 1, 1)
    b.record_failure()
    b.release(b.acquire(), None)
    assert b.consecutive_failures == 1


def test_ticket_form_trip(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock, 3, 1, 1)
    tickets = [b.acquire() for _ in range(3)]
    for t in tickets:
        b.release(t, False)
    assert b.state is State.OPEN


# -- forced states ---------------------------------------------------------------


def test_force_open_and_closed(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock, 1, 1, 1)
    b.force_open()
    assert b.state is State.OPEN and b.forced == "open"
    clock.advance(1000)
    assert not b.allow()
    b.renormalize()
    assert b.forced == "open"
    b.force_closed()
    assert b.state is State.CLOSED and b.forced == "closed"
    for _ in range(10):
        assert b.allow()
        b.record_failure()
    assert b.state is State.CLOSED and b.consecutive_failures == 10
    b.reset()
    assert b.forced is None and b.consecutive_failures == 0


# -- wrap-around -----------------------------------------------------------------


def test_open_time_wraps(impl: Impl) -> None:
    clock = FakeClock(start=((1 << 44) - 500) / 1000)
    b = impl.Breaker(1, 1, 1, clock=clock)
    b.record_failure()
    clock.advance(0.999)  # crosses the 44-bit boundary
    assert not b.allow()
    clock.advance(0.001)
    assert b.allow()


def test_half_open_time_wraps(impl: Impl) -> None:
    clock = FakeClock(start=((1 << 28) - 500) / 1000)
    b = impl.Breaker(1, 0.1, 1, half_open_timeout=2, clock=clock)
    b.record_failure()
    clock.advance(0.1)
    assert b.allow()
    clock.advance(1.999)  # entered_at wraps its 28 bits meanwhile
    assert not b.allow() and b.state is State.HALF_OPEN
    clock.advance(0.001)
    assert not b.allow() and b.state is State.OPEN


def test_negative_clock_values(impl: Impl) -> None:
    clock = FakeClock(start=-5)
    b = impl.Breaker(1, 2, 1, clock=clock)
    b.record_failure()
    clock.advance(1.999)
    assert not b.allow()
    clock.advance(0.001)
    assert b.allow()


def test_generation_wraps(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock, 1, 1, 1)
    for _ in range((1 << 18) - 1):
        b.reset()
    assert b.generation == (1 << 18) - 1
    old = b.acquire()
    b.reset()
    assert b.generation == 0
    new = b.acquire()
    assert old and new and old != new
    b.record_failure()
    b.release(old, True)
    assert b.state is State.OPEN


def test_real_monotonic_clock(impl: Impl) -> None:
    """The default clock path: no clock= at all."""
    # A long half-open timeout: a descheduled test must not see the probe
    # phase expire between allow() and the state check.
    b = impl.Breaker(1, 0.001, 1, half_open_timeout=60)
    b.record_failure()
    assert b.state is State.OPEN
    import time

    deadline = time.monotonic() + 5
    while not b.allow():
        assert time.monotonic() < deadline, "never became half-open"
    assert b.state is State.HALF_OPEN
    b.record_success()
    assert b.state is State.CLOSED
