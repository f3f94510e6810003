"""Every invalid argument names the parameter, the value and the range."""

from __future__ import annotations

import copy
import datetime
import math
import re
from types import ModuleType
from typing import Any

import pytest

from qbreaker import State

from ..helpers import TWIN, FakeClock, Impl

MAX_SECONDS = "134217.727"


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        (
            {"max_failures": 0},
            ValueError,
            r"max_failures must be in \[1, 4294967295\], got 0",
        ),
        ({"max_failures": -3}, ValueError, r"max_failures .* got -3"),
        (
            {"max_failures": 1 << 32},
            ValueError,
            r"max_failures must be in \[1, 4294967295\], got 4294967296",
        ),
        (
            {"max_failures": True},
            TypeError,
            r"max_failures must be an int .* got True \(bool\)",
        ),
        (
            {"max_failures": 2.0},
            TypeError,
            r"max_failures must be an int .* got 2.0 \(float\)",
        ),
        ({"max_failures": None}, ValueError, r"max_failures=None .* rate policy"),
        (
            {"half_open_max": 0},
            ValueError,
            r"half_open_max must be in \[1, 255\], got 0",
        ),
        (
            {"half_open_max": 256},
            ValueError,
            r"half_open_max must be in \[1, 255\], got 256",
        ),
        (
            {"half_open_max": False},
            TypeError,
            r"half_open_max must be an int .* \(bool\)",
        ),
        (
            {"success_threshold": 0},
            ValueError,
            r"success_threshold must be in \[1, 255\], got 0",
        ),
        (
            {"success_threshold": 300},
            ValueError,
            r"success_threshold must be in \[1, 255\], got 300",
        ),
        (
            {"success_threshold": "3"},
            TypeError,
            r"success_threshold must be an int .* \(str\)",
        ),
        (
            {"reset_timeout": 0},
            ValueError,
            rf"reset_timeout must be between 0.001 and {MAX_SECONDS} seconds .* got 0",
        ),
        ({"reset_timeout": -1.5}, ValueError, r"reset_timeout .* got -1.5"),
        ({"reset_timeout": math.nan}, ValueError, r"reset_timeout .* got nan"),
        ({"reset_timeout": math.inf}, ValueError, r"reset_timeout .* got inf"),
        ({"reset_timeout": 0.0004}, ValueError, r"reset_timeout .* got 0.0004"),
        (
            {"reset_timeout": 200_000},
            ValueError,
            rf"reset_timeout .* {MAX_SECONDS} .* got 200000",
        ),
        (
            {"reset_timeout": "60"},
            TypeError,
            r"reset_timeout must be seconds .* got '60' \(str\)",
        ),
        ({"reset_timeout": True}, TypeError, r"reset_timeout .* \(bool\)"),
        (
            {"reset_timeout": datetime.timedelta(0)},
            ValueError,
            r"reset_timeout .* got datetime.timedelta\(0\)",
        ),
        (
            {"half_open_timeout": 0},
            ValueError,
            r"half_open_timeout must be between .* got 0",
        ),
        ({"half_open_timeout": "x"}, TypeError, r"half_open_timeout must be seconds"),
        ({"clock": 5}, TypeError, r"clock must be a callable .* got 5"),
    ],
)
def test_constructor_refuses(
    impl: Impl, kwargs: dict[str, Any], error: type, pattern: str
) -> None:
    with pytest.raises(error, match=pattern):
        impl.Breaker(**kwargs)


def test_success_threshold_may_exceed_half_open_max(impl: Impl) -> None:
    assert impl.Breaker(half_open_max=1, success_threshold=7).success_threshold == 7


def test_limits_are_accepted(impl: Impl) -> None:
    b = impl.Breaker(
        (1 << 32) - 1,
        float(MAX_SECONDS),
        255,
        success_threshold=255,
        half_open_timeout=0.001,
    )
    assert b.max_failures == (1 << 32) - 1
    assert b.reset_timeout == float(MAX_SECONDS)


def test_constructor_positional_order(impl: Impl) -> None:
    b = impl.Breaker(7, 2.5, 4)
    assert (b.max_failures, b.reset_timeout, b.half_open_max) == (7, 2.5, 4)
    with pytest.raises(TypeError):
        impl.Breaker(7, 2.5, 4, 4)  # success_threshold is keyword-only


@pytest.mark.parametrize(
    ("ticket", "error", "pattern"),
    [
        (
            "1",
            TypeError,
            r"ticket must be an int returned by acquire\(\), got '1' \(str\)",
        ),
        (True, TypeError, r"ticket must be an int .* \(bool\)"),
        (1.0, TypeError, r"ticket must be an int"),
        (0, ValueError, r"ticket must be a non-zero ticket .* got 0"),
        (-1, ValueError, r"ticket must be .* got -1"),
        (2, ValueError, r"ticket must be .*an odd int .* got 2"),
        (1 << 21, ValueError, r"ticket must be .* got 2097152"),
        (1 << 80, ValueError, r"ticket must be .* got 1208925819614629174706176"),
    ],
)
def test_release_refuses_bad_tickets(
    impl: Impl, ticket: object, error: type, pattern: str
) -> None:
    b = impl.Breaker(1, 1, 1)
    word = b._word
    with pytest.raises(error, match=pattern):
        b.release(ticket, True)
    assert b._word == word
    assert b.totals().successes == 0


@pytest.mark.parametrize("ok", [1, 0, "yes", object()])
def test_release_refuses_bad_outcomes(impl: Impl, ok: object) -> None:
    b = impl.Breaker(1, 1, 1)
    t = b.acquire()
    with pytest.raises(
        TypeError,
        match=r"ok must be True \(success\), False \(failure\) or None \(neutral\)",
    ):
        b.release(t, ok)
    b.release(t, True)
    assert b.state is State.CLOSED


def test_an_int_subclass_ticket_is_accepted(impl: Impl) -> None:
    class MyInt(int):
        pass

    b = impl.Breaker(1, 1, 1)
    b.release(MyInt(b.acquire()), False)
    assert b.state is State.OPEN


@pytest.mark.parametrize(
    ("reading", "error", "pattern"),
    [
        (
            "now",
            TypeError,
            r"clock\(\) must return seconds as an int or float, got 'now'",
        ),
        (
            math.nan,
            ValueError,
            r"clock\(\) must return a finite number of seconds, got nan",
        ),
        (math.inf, ValueError, r"finite .* got inf"),
        (1e306, ValueError, r"finite .* got 1e\+306"),
    ],
)
def test_bad_clock_readings(
    impl: Impl, reading: object, error: type, pattern: str
) -> None:
    with pytest.raises(error, match=pattern):
        impl.Breaker(1, 1, 1, clock=lambda: reading)  # read once at construction
    readings = iter([0.0])
    b = impl.Breaker(1, 1, 1, clock=lambda: next(readings, reading))
    clock = FakeClock()
    ok = impl.Breaker(1, 1, 1, clock=clock)
    with pytest.raises(error, match=pattern):
        b.record_failure()
    assert b.state is State.CLOSED and b.totals().failures == 0
    ok.record_failure()
    assert ok.state is State.OPEN


def test_policy_is_set_once(impl: Impl) -> None:
    b = impl.Breaker(1, 1, 1)
    with pytest.raises(RuntimeError, match="set once"):
        b._configure(b.policy, None)
    with pytest.raises(RuntimeError, match="set once"):
        b.__init__(9, 9, 9)
    assert b.max_failures == 1


def test_error_messages_are_the_same_on_both_cores(core_c: ModuleType) -> None:
    messages = []
    for cls in (core_c.CircuitBreaker, TWIN.Breaker):
        with pytest.raises(ValueError) as info:
            cls(max_failures=0)
        messages.append(str(info.value))
    assert messages[0] == messages[1]
    assert re.search("max_failures", messages[0])


# -- huge numbers, __index__ integers, timedeltas, clocks, copies ------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"reset_timeout": 10**400},
        {"half_open_timeout": 10**400},
        {"window_seconds": 10**400, "failure_rate_threshold": 0.5},
        {
            "slow_call_duration": 10**400,
            "slow_call_rate_threshold": 0.5,
            "window_size": 10,
        },
        {"latency_threshold": 10**400},
    ],
)
def test_an_int_beyond_any_float_names_the_parameter(
    impl: Impl, kwargs: dict[str, Any]
) -> None:
    (name,) = [k for k, v in kwargs.items() if v == 10**400]
    with pytest.raises(ValueError, match=rf"{name} must be .* got 1000000000"):
        impl.Breaker(**kwargs)


class Index:
    """An integer that is not an int, as NumPy's are: it has __index__."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value

    def __repr__(self) -> str:
        return f"Index({self.value})"


def test_index_integers_are_counts_durations_tickets_and_clock_readings(
    impl: Impl,
) -> None:
    now = [Index(1000)]
    b = impl.Breaker(
        Index(2),
        Index(1),
        Index(1),
        success_threshold=Index(1),
        clock=lambda: now[0],
    )
    assert (b.max_failures, b.reset_timeout, b.half_open_max) == (2, 1.0, 1)
    assert b.success_threshold == 1
    b.release(Index(b.acquire()), False)
    b.release(Index(b.acquire()), False)
    assert b.state is State.OPEN and b.retry_after == 1.0
    now[0] = Index(1002)
    assert b.retry_after == 0.0
    w = impl.Breaker(failure_rate_threshold=0.5, window_size=Index(4))
    assert w.policy.window_buckets == 4
    w2 = impl.Breaker(
        failure_rate_threshold=0.5, window_size=10, minimum_calls=Index(3)
    )
    assert w2.policy.minimum_calls == 3


def test_an_index_that_is_a_bool_is_still_refused(impl: Impl) -> None:
    with pytest.raises(TypeError, match=r"max_failures must be an int"):
        impl.Breaker(max_failures=True)
    b = impl.Breaker(1, 1, 1)
    with pytest.raises(TypeError, match=r"ticket must be an int"):
        b.release(True, True)


def test_numpy_integers_are_accepted(impl: Impl) -> None:
    np = pytest.importorskip("numpy")
    b = impl.Breaker(np.int64(3), np.int32(2), np.uint8(2))
    assert (b.max_failures, b.reset_timeout, b.half_open_max) == (3, 2.0, 2)
    b.release(np.int64(b.acquire()), True)
    with pytest.raises(TypeError, match=r"max_failures must be an int"):
        impl.Breaker(max_failures=np.True_)


def test_a_clock_stepping_back_gives_no_negative_time_in_state(
    impl: Impl, clock: FakeClock
) -> None:
    b = impl.Breaker(1, 1, 1, clock=clock)
    clock.advance(5)
    assert b.time_in_state == 5.0
    clock.advance(-60)
    assert b.time_in_state == 0.0
    b.record_failure()  # a transition at the earlier time
    clock.advance(2)
    assert b.time_in_state == 2.0


def test_release_takes_a_timedelta_duration(impl: Impl) -> None:
    b = impl.Breaker(
        max_failures=None,
        slow_call_rate_threshold=0.5,
        slow_call_duration=datetime.timedelta(milliseconds=100),
        window_size=2,
        minimum_calls=2,
    )
    b.release(b.acquire(), True, datetime.timedelta(milliseconds=50))
    assert b.state is State.CLOSED
    b.release(b.acquire(), True, duration=datetime.timedelta(seconds=1))
    assert b.state is State.OPEN
    with pytest.raises(ValueError, match="duration must be a finite number of seconds"):
        b.release(1, True, datetime.timedelta(seconds=-1))


@pytest.mark.parametrize("copier", [copy.copy, copy.deepcopy])
def test_a_breaker_cannot_be_copied(impl: Impl, copier: Any) -> None:
    b = impl.Breaker(1, 1, 1)
    with pytest.raises(TypeError, match=r"cannot be copied"):
        copier(b)
    with pytest.raises(TypeError, match=r"cannot be copied"):
        copy.deepcopy({"breaker": b})
