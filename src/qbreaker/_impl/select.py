"""Chooses the core: compiled when available, the pure-Python twin otherwise.

``QBREAKER_NO_EXTENSIONS=1`` or a non-CPython interpreter selects the twin.
``QBREAKER_REQUIRE_EXTENSIONS=1`` turns a missing compiled core into an
ImportError instead (CI and wheel tests set it). A compiled core that is
present but broken always raises: only its absence falls back.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from . import segment


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


NO_EXTENSIONS = _flag("QBREAKER_NO_EXTENSIONS") or sys.implementation.name != "cpython"

# isort: off
if TYPE_CHECKING:
    from .twin import CircuitBreaker

    IMPLEMENTATION = "python"
elif NO_EXTENSIONS:
    from .twin import CircuitBreaker

    IMPLEMENTATION = "python"
else:
    try:
        from .._core_c import CircuitBreaker, u64_load, u64_store

        IMPLEMENTATION = "cython"
        # The segment module sits below the compiled core: it gets the
        # core's atomics from here instead of importing it.
        segment.provide_atomics(segment.Atomics(u64_load, u64_store))
    except ModuleNotFoundError as exc:  # pragma: no cover - pure installs only
        if exc.name != "qbreaker._core_c":
            raise
        if _flag("QBREAKER_REQUIRE_EXTENSIONS"):
            raise ImportError(
                "QBREAKER_REQUIRE_EXTENSIONS is set, but the compiled core "
                "qbreaker._core_c is not installed (built with "
                "QBREAKER_NO_EXTENSIONS=1, or on an interpreter without a "
                "compiler); unset it to use the pure-Python twin"
            ) from exc
        from .twin import CircuitBreaker

        IMPLEMENTATION = "python"
# isort: on

__all__ = ("IMPLEMENTATION", "NO_EXTENSIONS", "CircuitBreaker")
