"""Decorated functions at module level, for the pickling tests: a module of
its own, which a worker process imports by name, as it would user code."""

from __future__ import annotations

import qbreaker
from qbreaker._impl import twin as _core_py

#: One breaker per core (the twin's twice without the compiled core).
breakers = {"c": qbreaker.CircuitBreaker(), "py": _core_py.CircuitBreaker()}


@breakers["c"]
def work_c(x: int) -> int:
    return 2 * x


@breakers["py"]
def work_py(x: int) -> int:
    return 2 * x


def plain(x: int) -> int:
    return x


class Service:
    @breakers["c"]
    def triple_c(self, x: int) -> int:
        return 3 * x

    @breakers["py"]
    def triple_py(self, x: int) -> int:
        return 3 * x
