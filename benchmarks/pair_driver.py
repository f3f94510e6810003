"""Run one closed-path pair N times, for ``perf stat`` or ``callgrind``.

    perf stat -e instructions,cycles python benchmarks/pair_driver.py core 10000000
    valgrind --tool=callgrind python benchmarks/pair_driver.py core 200000

Subtract the ``empty`` run (same loop, no calls) to get the cost per pair;
it prints the wall time per iteration too. Subjects: ``empty``, ``floor``,
``core`` (``qbreaker._core_c.CoreBreaker`` itself), ``public``
(``qbreaker.CircuitBreaker``), ``twin`` (``PyCircuitBreaker``).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import build_floor


def subject(name: str) -> Any:
    if name == "floor":
        return build_floor.load().Floor()
    if name == "core":
        from qbreaker._core_c import CoreBreaker

        return CoreBreaker()
    if name == "public":
        from qbreaker import CircuitBreaker

        return CircuitBreaker()
    if name == "twin":
        from qbreaker import PyCircuitBreaker

        return PyCircuitBreaker()
    raise SystemExit(f"unknown subject {name!r}")


def pair(b: Any, n: int) -> None:
    for _ in range(n):
        if b.allow():
            b.record_success()


def empty(n: int) -> None:
    # The same loop with the calls removed: what pair() costs around them.
    for _ in range(n):
        if True:
            pass


def main() -> None:
    name, n = sys.argv[1], int(sys.argv[2])
    if name == "empty":
        start = time.perf_counter()
        empty(n)
    else:
        b = subject(name)
        pair(b, 1000)  # let CPython specialise the call sites first
        start = time.perf_counter()
        pair(b, n)
    elapsed = time.perf_counter() - start
    print(f"{name}: {elapsed / n * 1e9:.1f} ns per iteration")


if __name__ == "__main__":
    main()
