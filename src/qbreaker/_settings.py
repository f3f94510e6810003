"""Validation of breaker settings, shared by both cores.

Both twins take their policy from :func:`make_policy`, so a value is accepted
or refused, and rounded, in exactly one place. The limits come from the widths
of the packed word's fields (see ``_core_py``).
"""

from __future__ import annotations

import datetime
from typing import Union

from . import _core_py as L
from ._core_py import Policy

Seconds = Union[int, float, datetime.timedelta]

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
) -> Policy:
    if max_failures is None:
        raise ValueError(
            "max_failures=None turns off the consecutive-failure trip, which "
            "leaves nothing to trip the breaker: it needs a window policy, and "
            "none is configured; pass an int in [1, "
            f"{MAX_FAILURES_LIMIT}]"
        )
    failures = _count("max_failures", max_failures, MAX_FAILURES_LIMIT)
    probes = _count("half_open_max", half_open_max, HALF_OPEN_MAX_LIMIT)
    if success_threshold is None:
        threshold = probes
    else:
        threshold = _count(
            "success_threshold", success_threshold, SUCCESS_THRESHOLD_LIMIT
        )
    reset_ticks = duration_ticks("reset_timeout", reset_timeout)
    if half_open_timeout is None:
        half_open_ticks = reset_ticks
    else:
        half_open_ticks = duration_ticks("half_open_timeout", half_open_timeout)
    return Policy(failures, reset_ticks, probes, threshold, half_open_ticks)


def _count(name: str, value: object, limit: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"{name} must be an int in [1, {limit}], got {value!r} "
            f"({type(value).__name__})"
        )
    if not 1 <= value <= limit:
        raise ValueError(f"{name} must be in [1, {limit}], got {value!r}")
    return value


def duration_ticks(name: str, value: object) -> int:
    """Seconds (int, float or timedelta) to whole milliseconds, validated."""
    if isinstance(value, datetime.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise TypeError(
            f"{name} must be seconds as an int or float, or a "
            f"datetime.timedelta, got {value!r} ({type(value).__name__})"
        )
    if not (MIN_DURATION_SECONDS <= seconds <= MAX_DURATION_SECONDS):
        # The negated form also refuses NaN.
        raise ValueError(
            f"{name} must be between {MIN_DURATION_SECONDS} and "
            f"{MAX_DURATION_SECONDS} seconds (1 ms resolution), got {value!r}"
        )
    return round(seconds * TICKS_PER_SECOND)
