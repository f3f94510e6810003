"""Run the closed-path pair N times, for ``callgrind`` or a quick timing.

    python benchmarks/pair_driver.py all 200000
        every subject, interleaved in one process: best ns per pair over
        ``empty`` (the same loop with the calls removed)
    valgrind --tool=callgrind python benchmarks/pair_driver.py core 100000
        one subject; run it at two N and subtract to get instructions per pair

Subjects: ``empty``, ``floor``, ``core`` (``qbreaker._core_c.CoreBreaker``
itself), ``public`` (``qbreaker.CircuitBreaker``), ``twin``
(``PyCircuitBreaker``). No ``f()`` inside: this isolates the two calls.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable

import build_floor
from _common import fresh

SUBJECTS = ("empty", "floor", "core", "public", "twin")


def make(name: str) -> Any:
    if name in ("empty", "floor"):
        return build_floor.load().Floor()
    if name == "core":
        from qbreaker._core_c import CircuitBreaker as CoreBreaker

        return CoreBreaker()
    if name == "public":
        from qbreaker import CircuitBreaker

        return CircuitBreaker()
    if name == "twin":
        from qbreaker import PyCircuitBreaker

        return PyCircuitBreaker()
    raise SystemExit(f"unknown subject {name!r}; one of {SUBJECTS} or 'all'")


def pair(b: Any, n: int) -> None:
    for _ in range(n):
        if b.allow():
            b.record_success()


def empty(b: Any, n: int) -> None:
    for _ in range(n):
        pass


def runner(name: str, n: int) -> Callable[[], None]:
    # A code object per subject, as in the suite (see _common.fresh).
    loop, b = fresh(empty if name == "empty" else pair), make(name)
    loop(b, 1000)  # let CPython specialise the call sites first
    return lambda: loop(b, n)


def ns_per_pair(run: Callable[[], None], n: int) -> float:
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) / n * 1e9


if __name__ == "__main__":
    what, n = sys.argv[1], int(sys.argv[2])
    if what != "all":
        runner(what, n)()
        sys.exit()
    runs = {name: runner(name, n) for name in SUBJECTS}
    best = dict.fromkeys(SUBJECTS, float("inf"))
    for _ in range(40):  # interleaved: noise hits every subject alike
        for name, run in runs.items():
            best[name] = min(best[name], ns_per_pair(run, n))
    for name in SUBJECTS[1:]:
        print(f"{name:7s} {best[name] - best['empty']:7.1f} ns per pair")
