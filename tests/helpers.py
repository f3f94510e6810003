"""Plain helpers the tests import; the fixtures built on them live in conftest.py."""

from __future__ import annotations

import importlib
import sysconfig
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from qbreaker._impl import twin as _core_py


@dataclass(frozen=True)
class Impl:
    """One core, and the public breaker class built on it."""

    name: str
    core: Any
    Breaker: type

    def __str__(self) -> str:
        return self.name


def compiled_core() -> ModuleType:
    """The compiled core; only tests marked ``c_extension`` may call this."""
    return importlib.import_module("qbreaker._core_c")


def compiled() -> Impl:
    core_c = compiled_core()
    return Impl("c", core_c, core_c.CircuitBreaker)


TWIN = Impl("py", _core_py, _core_py.CircuitBreaker)

# Free-threaded builds count a shared breaker in its cell with atomics and
# claim no per-process slot (only the GIL makes a slot's plain stores safe);
# totals are exact either way.
GIL_BUILD = not sysconfig.get_config_var("Py_GIL_DISABLED")


class FakeClock:
    """A clock that only moves when told to; nothing in the suite sleeps."""

    def __init__(self, start: float = 1000.0) -> None:
        # Whole milliseconds, so repeated advances never drift.
        self.ms = round(start * 1000)

    def __call__(self) -> float:
        return self.ms / 1000

    def advance(self, seconds: float) -> None:
        self.ms += round(seconds * 1000)
