"""Every check of an argument given from outside, one message per mistake.

A leaf: it imports nothing of qbreaker. Each function names the parameter,
the value and what is accepted, so a mistake reads the same wherever it is
made (the constructor, ``Metrics``, ``record_*``, the compat layer).

Integers: ``int``, or anything with ``__index__`` (NumPy's integers), as
``range()`` accepts. A ``bool`` is an ``int`` to Python but never a count here.
"""

from __future__ import annotations

import datetime
import math
import operator
from typing import SupportsIndex


def integer(value: object) -> int | None:
    """``value`` as an int, or None if it is a bool or not an integer."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if not isinstance(value, SupportsIndex):
        return None
    try:
        return operator.index(value)
    except TypeError:  # an __index__ that refuses (NumPy's bool_ does)
        return None


def check_count(name: str, value: object, limit: int) -> int:
    """An int in [1, ``limit``]."""
    count = integer(value)
    if count is None:
        raise TypeError(
            f"{name} must be an int in [1, {limit}], got {value!r} "
            f"({type(value).__name__})"
        )
    if not 1 <= count <= limit:
        raise ValueError(f"{name} must be in [1, {limit}], got {value!r}")
    return count


def check_fraction(name: str, value: object, *, open_low: bool) -> float | None:
    """None, or a float in (0, 1] (``open_low``) or [0, 1]."""
    if value is None:
        return None
    low = "(0" if open_low else "[0"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{name} must be a fraction in {low}, 1] (an int or float), "
            f"got {value!r} ({type(value).__name__})"
        )
    low_ok = value > 0 if open_low else value >= 0
    if not (low_ok and value <= 1):  # also refuses NaN
        hint = (
            f" (a fraction: {value / 100:g} means {value:g}%)"
            if 1 < value <= 100
            else ""
        )
        raise ValueError(f"{name} must be a fraction in {low}, 1], got {value!r}{hint}")
    return float(value)


def seconds_of(name: str, value: object) -> float:
    """Seconds given as an int, a float or a timedelta, as a float."""
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, float):
        return float(value)
    number = integer(value)
    if number is None:
        raise TypeError(
            f"{name} must be seconds as an int or float, or a "
            f"datetime.timedelta, got {value!r} ({type(value).__name__})"
        )
    try:
        return float(number)
    except OverflowError:  # an int beyond any float, such as 10**400
        raise ValueError(
            f"{name} must be a finite number of seconds, got {value!r}"
        ) from None


def check_seconds(name: str, value: object, *, zero_ok: bool) -> float:
    """A finite number of seconds, > 0 (or >= 0 if ``zero_ok``)."""
    seconds = seconds_of(name, value)
    low_ok = seconds >= 0 if zero_ok else seconds > 0
    if not low_ok or math.isinf(seconds):  # the negated form refuses NaN
        bound = ">= 0" if zero_ok else "> 0"
        raise ValueError(
            f"{name} must be a finite number of seconds {bound}, got {value!r}"
        )
    return seconds


def check_callable(name: str, value: object) -> None:
    """None, or a callable."""
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable or None, got {value!r}")


def check_choice(name: str, value: object, choices: dict[str, str]) -> str:
    """One of ``choices`` (each with what it means)."""
    if not isinstance(value, str) or value not in choices:
        accepted = " or ".join(
            f"{key!r} ({meaning})" for key, meaning in choices.items()
        )
        raise ValueError(f"{name} must be {accepted}, got {value!r}")
    return value
