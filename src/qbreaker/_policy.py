"""The breaker's policy: its settings validated, in the core's units.

Both cores take their policy from :func:`make_policy`, so a value is accepted
or refused, and rounded, in exactly one place. The limits come from the widths
of the packed word's fields (see ``qbreaker._word``).
"""

from __future__ import annotations

import datetime
import math
from typing import NamedTuple, Union

from . import _word as L
from ._validate import check_count, check_fraction, check_seconds, integer, seconds_of

Seconds = Union[int, float, datetime.timedelta]


class Policy(NamedTuple):
    """A validated policy in the core's units (ms ticks, plain counts).

    ``max_failures`` 0 means the consecutive-failure trip is off.
    """

    max_failures: int
    reset_ticks: int
    half_open_max: int
    success_threshold: int
    half_open_timeout_ticks: int
    # The window (issue: rate policies). Kind 0 means none and the rest is 0.
    window_kind: int = 0  # WINDOW_NONE, WINDOW_COUNT or WINDOW_TIME
    window_buckets: int = 0  # buckets summed for a decision
    window_span: int = 0  # outcomes (count) or ticks (time) per bucket
    minimum_calls: int = 0
    failure_rate_threshold: float = 0.0  # 0.0: off
    slow_rate_threshold: float = 0.0  # 0.0: off
    slow_ticks: int = 0  # slow_call_duration; 0: no slow-call policy


DEFAULT_POLICY = Policy(5, 60_000, 3, 3, 60_000)

TICKS_PER_SECOND = 1000
MAX_FAILURES_LIMIT = L.FAIL_MAX
HALF_OPEN_MAX_LIMIT = L.INFLIGHT_MAX
SUCCESS_THRESHOLD_LIMIT = L.HSUCC_MAX
# Time fields are compared modulo their width; a duration must stay below half
# of the narrowest one (the half-open entry time) for that to be exact.
MAX_DURATION_TICKS = (1 << (L.ENTERED_BITS - 1)) - 1
MIN_DURATION_SECONDS = 1 / TICKS_PER_SECOND
MAX_DURATION_SECONDS = MAX_DURATION_TICKS / TICKS_PER_SECOND


def make_policy(
    max_failures: int | None,
    reset_timeout: Seconds,
    half_open_max: int,
    success_threshold: int | None,
    half_open_timeout: Seconds | None,
    failure_rate_threshold: float | None = None,
    slow_call_rate_threshold: float | None = None,
    slow_call_duration: Seconds | None = None,
    window_size: int | None = None,
    window_seconds: Seconds | None = None,
    minimum_calls: int | None = None,
) -> Policy:
    window = _window(
        failure_rate_threshold,
        slow_call_rate_threshold,
        slow_call_duration,
        window_size,
        window_seconds,
        minimum_calls,
    )
    if max_failures is None:
        if not (window.failure_rate_threshold or window.slow_rate_threshold):
            raise ValueError(
                "max_failures=None turns off the consecutive-failure trip, which "
                "leaves nothing to trip the breaker without a rate policy: pass an "
                f"int in [1, {MAX_FAILURES_LIMIT}], or failure_rate_threshold= or "
                "slow_call_rate_threshold= with a window"
            )
        failures = 0
    else:
        failures = check_count("max_failures", max_failures, MAX_FAILURES_LIMIT)
    probes = check_count("half_open_max", half_open_max, HALF_OPEN_MAX_LIMIT)
    if success_threshold is None:
        threshold = probes
    else:
        threshold = check_count(
            "success_threshold", success_threshold, SUCCESS_THRESHOLD_LIMIT
        )
    reset_ticks = duration_ticks("reset_timeout", reset_timeout)
    if half_open_timeout is None:
        half_open_ticks = reset_ticks
    else:
        half_open_ticks = duration_ticks("half_open_timeout", half_open_timeout)
    return window._replace(
        max_failures=failures,
        reset_ticks=reset_ticks,
        half_open_max=probes,
        success_threshold=threshold,
        half_open_timeout_ticks=half_open_ticks,
    )


# A window is cut into at most this many buckets (see qbreaker._impl.twin.Window).
WINDOW_BUCKETS = 16
WINDOW_SIZE_LIMIT = 1_000_000


def _window(
    failure_rate_threshold: float | None,
    slow_call_rate_threshold: float | None,
    slow_call_duration: Seconds | None,
    window_size: int | None,
    window_seconds: Seconds | None,
    minimum_calls: int | None,
) -> Policy:
    """The window part of a policy (the rest left at 0)."""
    failure_rate = check_fraction(
        "failure_rate_threshold", failure_rate_threshold, open_low=True
    )
    slow_rate = check_fraction(
        "slow_call_rate_threshold", slow_call_rate_threshold, open_low=True
    )
    if (slow_rate is None) != (slow_call_duration is None):
        given, missing = (
            ("slow_call_rate_threshold", "slow_call_duration")
            if slow_call_duration is None
            else ("slow_call_duration", "slow_call_rate_threshold")
        )
        raise ValueError(f"{given} needs {missing}: a slow-call policy takes both")
    slow_ticks = (
        0
        if slow_call_duration is None
        else duration_ticks("slow_call_duration", slow_call_duration)
    )
    if window_size is not None and window_seconds is not None:
        raise ValueError(
            "window_size and window_seconds are exclusive: a window counts "
            f"outcomes or seconds, got window_size={window_size!r} and "
            f"window_seconds={window_seconds!r}"
        )
    rates = failure_rate is not None or slow_rate is not None
    if window_size is None and window_seconds is None:
        if rates:
            raise ValueError(
                "failure_rate_threshold and slow_call_rate_threshold need a "
                "window: window_size=N (the last N outcomes) or "
                "window_seconds=T (the last T seconds)"
            )
        if minimum_calls is not None:
            raise ValueError(
                "minimum_calls needs a window (window_size or window_seconds)"
            )
        return Policy(0, 0, 0, 0, 0)
    if window_size is not None:
        size = check_count("window_size", window_size, WINDOW_SIZE_LIMIT)
        span = -(-size // WINDOW_BUCKETS)
        kind, buckets, default_minimum = L.WINDOW_COUNT, -(-size // span), min(size, 10)
        minimum_limit = size
    else:
        ticks = duration_ticks("window_seconds", window_seconds)
        buckets = min(WINDOW_BUCKETS, ticks)
        kind, span, default_minimum = L.WINDOW_TIME, -(-ticks // buckets), 10
        minimum_limit = MAX_FAILURES_LIMIT
    if minimum_calls is None:
        minimum = default_minimum
    else:
        minimum = check_count("minimum_calls", minimum_calls, minimum_limit)
    return Policy(
        0,
        0,
        0,
        0,
        0,
        window_kind=kind,
        window_buckets=buckets,
        window_span=span,
        minimum_calls=minimum,
        failure_rate_threshold=failure_rate or 0.0,
        slow_rate_threshold=slow_rate or 0.0,
        slow_ticks=slow_ticks,
    )


def duration_ticks(name: str, value: object) -> int:
    """Seconds (int, float or timedelta) to whole milliseconds, validated."""
    seconds = seconds_of(name, value)
    if not (MIN_DURATION_SECONDS <= seconds <= MAX_DURATION_SECONDS):
        # The negated form also refuses NaN.
        raise ValueError(
            f"{name} must be between {MIN_DURATION_SECONDS} and "
            f"{MAX_DURATION_SECONDS} seconds (1 ms resolution), got {value!r}"
        )
    return round(seconds * TICKS_PER_SECOND)


def check_policy(policy: Policy) -> None:
    """Refuse a policy that ``make_policy`` could not have made.

    For policies read from elsewhere (a shared segment's header): the
    constructor's arguments are rebuilt from it and validated again, so it
    passes exactly the checks a constructor's policy passes. ValueError
    names the field and its value.
    """
    if policy.window_kind not in (L.WINDOW_NONE, L.WINDOW_COUNT, L.WINDOW_TIME):
        raise ValueError(
            f"window_kind must be {L.WINDOW_NONE} (none), {L.WINDOW_COUNT} "
            f"(count) or {L.WINDOW_TIME} (time), got {policy.window_kind}"
        )
    if policy.window_kind and not (
        1 <= policy.window_buckets <= WINDOW_BUCKETS and policy.window_span >= 1
    ):
        raise ValueError(
            f"a window needs window_buckets in [1, {WINDOW_BUCKETS}] and "
            f"window_span >= 1, got window_buckets={policy.window_buckets} and "
            f"window_span={policy.window_span}"
        )
    window_size = window_seconds = None
    extent = policy.window_span * policy.window_buckets
    if policy.window_kind == L.WINDOW_COUNT:
        window_size = extent
    elif policy.window_kind == L.WINDOW_TIME:
        # The buckets may cover a little more than the window asked for.
        window_seconds = min(extent, MAX_DURATION_TICKS) / TICKS_PER_SECOND
    rebuilt = make_policy(
        policy.max_failures or None,
        policy.reset_ticks / TICKS_PER_SECOND,
        policy.half_open_max,
        policy.success_threshold,
        policy.half_open_timeout_ticks / TICKS_PER_SECOND,
        policy.failure_rate_threshold or None,
        policy.slow_rate_threshold or None,
        policy.slow_ticks / TICKS_PER_SECOND if policy.slow_ticks else None,
        window_size,
        window_seconds,
        policy.minimum_calls if policy.window_kind else None,
    )
    for field, given, valid in zip(policy._fields, policy, rebuilt):
        if given != valid:
            raise ValueError(
                f"{field} is {given!r}, which no valid policy with the other "
                f"fields has (expected {valid!r})"
            )


def is_slow(policy: Policy, duration: object) -> bool:
    """Whether a call that took ``duration`` seconds is slow under ``policy``."""
    seconds = check_seconds("duration", duration, zero_ok=True)
    return bool(policy.slow_ticks) and seconds * TICKS_PER_SECOND >= policy.slow_ticks


def clock_ticks(value: object) -> int:
    """A user clock's reading in seconds to ticks on the word's timeline."""
    number = value if isinstance(value, float) else integer(value)
    if number is None:
        raise TypeError(
            f"clock() must return seconds as an int or float, got {value!r} "
            f"({type(value).__name__})"
        )
    scaled = number * TICKS_PER_SECOND
    if isinstance(scaled, float) and not math.isfinite(scaled):
        raise ValueError(
            f"clock() must return a finite number of seconds, got {value!r}"
        )
    # Nearest, not floor: a test clock stepping in exact milliseconds must
    # land on them despite binary floats. Modulo 2**64 like the C core's
    # uint64_t; the time fields are narrower still, compared modulo their width.
    return round(scaled) & 0xFFFF_FFFF_FFFF_FFFF
