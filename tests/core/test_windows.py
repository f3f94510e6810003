"""Rate policies: failure rate and slow calls over count and time windows."""

from __future__ import annotations

import datetime
import math
from typing import Any

import pytest

from qbreaker import Metrics, State

from ..helpers import FakeClock, Impl


def alternate(b: Any, calls: int) -> None:
    """A dependency that fails every other call."""
    for i in range(calls):
        if b.allow():
            (b.record_failure if i % 2 else b.record_success)()


def test_half_failing_trips_a_rate_breaker_not_a_consecutive_one(
    impl: Impl, clock: FakeClock
) -> None:
    rate = impl.Breaker(
        5, 10, 1, failure_rate_threshold=0.5, window_size=20, clock=clock
    )
    consecutive = impl.Breaker(5, 10, 1, clock=clock)
    alternate(rate, 100)
    alternate(consecutive, 100)
    assert rate.state is State.OPEN
    assert consecutive.state is State.CLOSED
    # minimum_calls defaults to min(20, 10): the 10th outcome decides.
    assert rate.totals().allowed == 10


def test_count_window_is_exact_up_to_sixteen(impl: Impl, clock: FakeClock) -> None:
    b = impl.Breaker(
        None,
        10,
        1,
        failure_rate_threshold=0.5,
        window_size=4,
        minimum_calls=4,
        clock=clock,
    )
    for ok in (False, True, True, True, True, True):  # the failure slides out
        b.record_success() if ok else b.record_failure()
    assert b.metrics().calls_in_window == 4
    assert b.metrics().failure_rate == 0.0
    b.record_failure()
    assert b.state is State.CLOSED  # 1 of 4
    b.record_failure()
    assert b.state is State.OPEN  # 2 of 4: the rate reached 0.5


def test_minimum_calls_defers_the_decision(impl: Impl, clock: FakeClock) -> None:
    b = impl.Breaker(
        None,
        10,
        1,
        failure_rate_threshold=0.5,
        window_size=50,
        minimum_calls=8,
        clock=clock,
    )
    for _ in range(7):
        b.record_failure()
    assert b.state is State.CLOSED and b.metrics().failure_rate == 1.0
    b.record_failure()
    assert b.state is State.OPEN


def test_time_window_forgets_old_outcomes(impl: Impl, clock: FakeClock) -> None:
    b = impl.Breaker(
        None,
        10,
        1,
        failure_rate_threshold=0.5,
        window_seconds=1.6,
        minimum_calls=4,
        clock=clock,
    )
    for _ in range(3):
        b.record_failure()
    clock.advance(2.0)  # a whole window later: those failures are gone
    assert b.metrics().calls_in_window == 0
    b.record_success()
    b.record_success()
    b.record_failure()
    assert b.state is State.CLOSED  # 1 of 3, below minimum_calls
    b.record_failure()
    assert b.state is State.OPEN  # 2 of 4


def test_a_failure_counted_in_a_newer_bucket_is_still_judged(
    impl: Impl, clock: FakeClock
) -> None:
    # A stale time (here a clock stepped back a whole window; concurrently,
    # a descheduled caller) counts a failure in a bucket that already holds
    # a later epoch. The later success that rotates the next bucket must
    # still judge the window that holds that failure: 1 failure in 3 calls.
    b = impl.Breaker(
        100,
        10,
        1,
        failure_rate_threshold=0.3,
        window_seconds=4.0,
        minimum_calls=2,
        clock=clock,
    )
    clock.ms = 116 * 250
    b.record_success()
    clock.ms = 100 * 250
    b.record_failure()
    assert b.state is State.CLOSED  # judged at its own, older epoch
    clock.ms = 117 * 250
    b.record_success()
    assert b.state is State.OPEN


def test_window_is_cleared_when_the_breaker_closes(
    impl: Impl, clock: FakeClock
) -> None:
    b = impl.Breaker(
        None,
        1,
        1,
        failure_rate_threshold=0.5,
        window_size=10,
        minimum_calls=2,
        clock=clock,
    )
    b.record_success()
    b.record_failure()
    assert b.state is State.OPEN
    clock.advance(1)
    assert b.allow()
    b.record_success()
    assert b.state is State.CLOSED
    m = b.metrics()
    assert (m.calls_in_window, m.failure_rate) == (0, 0.0)
    b.record_failure()  # 1 of 1 but below minimum_calls
    assert b.state is State.CLOSED


def test_neutral_and_stale_outcomes_never_enter(impl: Impl, clock: FakeClock) -> None:
    b = impl.Breaker(
        5,
        10,
        1,
        failure_rate_threshold=0.5,
        window_size=10,
        minimum_calls=1,
        clock=clock,
    )
    stale = b.acquire()
    b.reset()
    b.release(stale, False)
    b.release(b.acquire(), None)
    assert b.metrics().calls_in_window == 0
    assert b.state is State.CLOSED


def test_consecutive_failures_still_trip_with_a_window(
    impl: Impl, clock: FakeClock
) -> None:
    b = impl.Breaker(
        3,
        10,
        1,
        failure_rate_threshold=0.9,
        window_size=100,
        minimum_calls=100,
        clock=clock,
    )
    for _ in range(3):
        b.record_failure()
    assert b.state is State.OPEN


# -- slow calls ------------------------------------------------------------------


def slow_breaker(impl: Impl, clock: FakeClock, **kw: Any) -> Any:
    return impl.Breaker(
        None,
        10,
        1,
        slow_call_rate_threshold=0.5,
        slow_call_duration=0.2,
        window_size=10,
        minimum_calls=2,
        clock=clock,
        **kw,
    )


def test_slow_calls_trip_through_every_form(impl: Impl, clock: FakeClock) -> None:
    def slow_ok() -> str:
        clock.advance(0.2)  # exactly slow_call_duration: slow
        return "ok"

    for form in ("with", "call", "decorator"):
        b = slow_breaker(impl, clock)
        for _ in range(2):
            if form == "with":
                with b:
                    slow_ok()
            elif form == "call":
                assert b.call(slow_ok) == "ok"
            else:
                assert b(slow_ok)() == "ok"
        assert b.state is State.OPEN, form
        assert b.totals().successes == 2  # slow successes are still successes


def test_fast_calls_are_not_slow(impl: Impl, clock: FakeClock) -> None:
    b = slow_breaker(impl, clock)
    for _ in range(5):
        with b:
            clock.advance(0.199)
    assert b.state is State.CLOSED
    assert b.metrics().slow_call_rate == 0.0 and b.metrics().calls_in_window == 5


def test_slow_failures_count_as_slow(impl: Impl, clock: FakeClock) -> None:
    b = slow_breaker(impl, clock)

    def slow_fail() -> None:
        clock.advance(0.3)
        raise OSError("slow and broken")

    for _ in range(2):
        with pytest.raises(OSError):
            b.call(slow_fail)
    assert b.state is State.OPEN


def test_two_step_form_takes_a_duration(impl: Impl, clock: FakeClock) -> None:
    b = slow_breaker(impl, clock)
    b.release(b.acquire(), True)  # no duration: never slow
    b.release(b.acquire(), True, duration=0.05)
    assert b.state is State.CLOSED
    b.release(
        b.acquire(), True, duration=datetime.timedelta(seconds=0.2).total_seconds()
    )
    assert b.state is State.CLOSED  # 1 of 3 slow
    b.release(b.acquire(), False, duration=1.0)
    assert b.state is State.OPEN  # 2 of 4
    with pytest.raises(ValueError, match="duration must be a finite number of seconds"):
        b.release(1, True, duration=-1)
    with pytest.raises(TypeError, match="duration must be seconds"):
        b.release(1, True, duration="1s")


def test_a_slow_probe_is_a_failed_probe(impl: Impl, clock: FakeClock) -> None:
    b = impl.Breaker(
        1,
        1,
        1,
        slow_call_rate_threshold=1.0,
        slow_call_duration=0.1,
        window_size=5,
        clock=clock,
    )
    b.record_failure()
    clock.advance(1)
    with b:
        clock.advance(0.1)
    assert b.state is State.OPEN  # the probe succeeded, but slowly


def test_no_window_pays_nothing_and_reports_zeros(impl: Impl) -> None:
    m = impl.Breaker().metrics()
    assert (m.failure_rate, m.slow_call_rate, m.calls_in_window) == (0.0, 0.0, 0)


def test_observe_borrows_the_window_thresholds(impl: Impl, clock: FakeClock) -> None:
    b = impl.Breaker(
        5,
        10,
        1,
        failure_rate_threshold=0.4,
        window_size=10,
        slow_call_rate_threshold=0.5,
        slow_call_duration=2,
        clock=clock,
    )
    assert not b.observe(Metrics(error_rate=0.39, latency=1.9))
    assert b.observe(Metrics(error_rate=0.4))
    b.reset()
    assert b.observe(Metrics(latency=2.0))
    own = impl.Breaker(
        5,
        10,
        1,
        failure_rate_threshold=0.4,
        window_size=10,
        error_rate_threshold=0.9,
        clock=clock,
    )
    assert not own.observe(Metrics(error_rate=0.5))  # its own threshold wins


# -- bad input ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        (
            {"failure_rate_threshold": 0, "window_size": 10},
            ValueError,
            r"failure_rate_threshold must be a fraction in \(0, 1\], got 0",
        ),
        (
            {"failure_rate_threshold": 1.5, "window_size": 10},
            ValueError,
            r"failure_rate_threshold .* got 1.5",
        ),
        (
            {"failure_rate_threshold": math.nan, "window_size": 10},
            ValueError,
            r"failure_rate_threshold .* got nan",
        ),
        (
            {"failure_rate_threshold": 50, "window_size": 10},
            ValueError,
            r"got 50 \(a fraction: 0.5 means 50%\)",
        ),
        (
            {"failure_rate_threshold": "0.5", "window_size": 10},
            TypeError,
            r"failure_rate_threshold must be a fraction",
        ),
        (
            {"slow_call_rate_threshold": 2, "slow_call_duration": 1, "window_size": 5},
            ValueError,
            r"slow_call_rate_threshold must be a fraction in \(0, 1\]",
        ),
        ({"failure_rate_threshold": 0.5}, ValueError, r"need a window"),
        (
            {"window_size": 0, "failure_rate_threshold": 0.5},
            ValueError,
            r"window_size must be in \[1, 1000000\], got 0",
        ),
        (
            {"window_size": 10**7, "failure_rate_threshold": 0.5},
            ValueError,
            r"window_size must be in \[1, 1000000\]",
        ),
        (
            {"window_size": True, "failure_rate_threshold": 0.5},
            TypeError,
            r"window_size must be an int",
        ),
        (
            {"window_seconds": 0, "failure_rate_threshold": 0.5},
            ValueError,
            r"window_seconds must be between 0.001 and",
        ),
        (
            {"window_seconds": -1, "failure_rate_threshold": 0.5},
            ValueError,
            r"window_seconds .* got -1",
        ),
        (
            {"window_size": 5, "window_seconds": 5, "failure_rate_threshold": 0.5},
            ValueError,
            r"window_size and window_seconds are exclusive",
        ),
        (
            {"window_size": 10, "minimum_calls": 11, "failure_rate_threshold": 0.5},
            ValueError,
            r"minimum_calls must be in \[1, 10\], got 11",
        ),
        (
            {"window_size": 10, "minimum_calls": 0, "failure_rate_threshold": 0.5},
            ValueError,
            r"minimum_calls must be in \[1, 10\], got 0",
        ),
        ({"minimum_calls": 3}, ValueError, r"minimum_calls needs a window"),
        (
            {"slow_call_rate_threshold": 0.5, "window_size": 10},
            ValueError,
            r"slow_call_rate_threshold needs slow_call_duration",
        ),
        (
            {"slow_call_duration": 1, "window_size": 10},
            ValueError,
            r"slow_call_duration needs slow_call_rate_threshold",
        ),
        (
            {
                "slow_call_duration": 0,
                "slow_call_rate_threshold": 0.5,
                "window_size": 9,
            },
            ValueError,
            r"slow_call_duration must be between 0.001 and",
        ),
    ],
)
def test_window_settings_refused(
    impl: Impl, kwargs: dict[str, Any], error: type, pattern: str
) -> None:
    with pytest.raises(error, match=pattern):
        impl.Breaker(**kwargs)


def test_window_breakers_are_freed(impl: Impl) -> None:
    """Windows live in their own allocation: build and drop many."""
    import gc
    import tracemalloc

    tracemalloc.start()
    for _ in range(2000):
        impl.Breaker(failure_rate_threshold=0.5, window_size=1000).record_failure()
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(2000):
        impl.Breaker(failure_rate_threshold=0.5, window_size=1000).record_failure()
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert grown < 100_000


def test_async_forms_are_timed(impl: Impl, clock: FakeClock) -> None:
    import asyncio

    b = slow_breaker(impl, clock)

    @b
    async def slow() -> int:
        clock.advance(0.25)
        return 1

    async def main() -> None:
        assert await slow() == 1
        assert await b.call_async(slow.__wrapped__) == 1  # type: ignore[attr-defined]

    asyncio.run(main())
    assert b.state is State.OPEN
