"""Integers given from outside: ``int``, or anything with ``__index__``.

Counts, tickets and clock readings accept NumPy's integers and any other
type that says it is an integer through ``__index__``, as ``range()`` does.
A ``bool`` is an ``int`` to Python but never a count here.
"""

from __future__ import annotations

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
