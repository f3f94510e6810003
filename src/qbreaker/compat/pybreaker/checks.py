"""The drop-in's settings, checked as pybreaker's own values allow.

pybreaker checks nothing; the drop-in accepts every value that works there
(``fail_max=0``, ``reset_timeout=0``, a float threshold) and refuses, by
name, the ones that cannot: wrong types, negative, NaN or infinite numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from ..._validate import integer


def count(name: str, value: object, *, infinite: bool = False) -> Any:
    """A number >= 0, as given; finite (beyond any float is not), unless
    ``infinite``, which lets +inf and huge ints mean "never"."""
    number = value if isinstance(value, float) else integer(value)
    if number is None:
        raise TypeError(
            f"{name} must be a number >= 0, got {value!r} ({type(value).__name__})"
        )
    if not number >= 0 or not (infinite or _finite(number)):  # refuses NaN
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


def _finite(number: int | float) -> bool:
    try:
        return math.isfinite(number)
    except OverflowError:  # an int beyond any float
        return False


def entries(name: str, value: object, *, callables: bool) -> list[Any]:
    """None or an iterable (of callables, if ``callables``), as a list."""
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"{name} must be an iterable or None, got {value!r}")
    found = list(value)
    for entry in found if callables else ():
        if not callable(entry):
            raise TypeError(
                f"{name} entries must be exception classes or callables, "
                f"got {entry!r}"
            )
    return found


# What the drop-in's engine reads and writes on a storage.
_STORAGE_INTERFACE = (
    "state",
    "counter",
    "success_counter",
    "opened_at",
    "increment_counter",
    "reset_counter",
    "increment_success_counter",
    "reset_success_counter",
)


def settings(
    fail_max: object,
    reset_timeout: object,
    success_threshold: object,
    state_storage: object,
    name: object,
) -> None:
    """Refuse what the drop-in cannot run; ``throw_new_error_on_trip`` is
    not checked: pybreaker takes any value for its truth."""
    count("fail_max", fail_max, infinite=True)
    count("reset_timeout", reset_timeout)
    count("success_threshold", success_threshold)
    # pybreaker duck-types its storage (and takes any false value for the
    # memory one); so does the drop-in, but a value without a storage's
    # interface fails here rather than mid-call.
    missing = [
        attribute
        for attribute in _STORAGE_INTERFACE
        if state_storage and not hasattr(state_storage, attribute)
    ]
    if missing:
        raise TypeError(
            f"state_storage must be a CircuitBreakerStorage (or have its "
            f"interface: {', '.join(missing)} missing) or None, "
            f"got {state_storage!r}"
        )
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a str or None, got {name!r}")
