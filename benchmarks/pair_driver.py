"""Run one protected form N times, for ``callgrind``/``perf`` or a quick timing.

    python benchmarks/pair_driver.py all 200000 [FORM]
        every subject in FORM (default: pair), interleaved in one process:
        best ns per operation over ``empty`` (the same loop, nothing called)
    valgrind --tool=callgrind python benchmarks/pair_driver.py compiled 100000 pair
        one subject; run it at two N and subtract the totals to get
        instructions per operation (start-up cancels out)

Subjects: ``empty``, ``floor`` (``qbreaker._cli.bench._floor.Floor``;
``NullContext`` for ``with``), ``compiled``
(``qbreaker._core_c.CircuitBreaker``), ``twin`` (``qbreaker.PyCircuitBreaker``).
Forms: ``pair`` (``allow()`` + ``record_success()``), ``reject`` (``allow()``
on an open breaker), ``call`` (``b.call(f)``; the floor has none and runs the
pair around ``f``), ``decorator`` (a decorated ``f``; the floor likewise),
``with``. ``f`` is called
in every form except ``pair`` and ``reject``, and in ``empty``'s loop for those
forms, so it cancels out of the differences.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable

from qbreaker._cli.bench import _floor
from qbreaker._cli.bench.subjects import fresh, work

SUBJECTS = ("empty", "floor", "compiled", "twin")
FORMS = ("pair", "reject", "call", "decorator", "with")


def make(name: str, form: str) -> Any:
    if name in ("empty", "floor"):
        if form == "with":
            return _floor.NullContext()
        return _floor.Floor(form != "reject")
    if name == "compiled":
        from qbreaker._core_c import CircuitBreaker
    elif name == "twin":
        from qbreaker import PyCircuitBreaker as CircuitBreaker
    else:
        raise SystemExit(f"unknown subject {name!r}; one of {SUBJECTS} or 'all'")
    if form == "reject":
        b = CircuitBreaker(max_failures=1, reset_timeout=3600)
        b.record_failure()
        return b
    return CircuitBreaker()


def pair(b: Any, n: int) -> None:
    for _ in range(n):
        if b.allow():
            b.record_success()


def pair_f(b: Any, n: int) -> None:
    for _ in range(n):
        if b.allow():
            work()
            b.record_success()


def call(b: Any, n: int) -> None:
    for _ in range(n):
        b.call(work)


def decorated(g: Any, n: int) -> None:
    for _ in range(n):
        g()


def with_(b: Any, n: int) -> None:
    for _ in range(n):
        with b:
            work()


def empty(b: Any, n: int) -> None:
    for _ in range(n):
        pass


def empty_f(b: Any, n: int) -> None:
    for _ in range(n):
        work()


def runner(name: str, form: str, n: int) -> Callable[[], None]:
    b = make(name, form)
    loop: Callable[[Any, int], None]
    if name == "empty":
        loop = empty if form in ("pair", "reject") else empty_f
    elif form in ("pair", "reject"):
        loop = pair
    elif name == "floor" and form != "with":
        loop = pair_f
    elif form == "call":
        loop = call
    elif form == "decorator":
        loop, b = decorated, b(work)
    else:
        loop = with_
    loop = fresh(loop)  # a code object per subject, as in the suite
    loop(b, 1000)  # let CPython specialise the call sites first
    return lambda: loop(b, n)


def ns_per_op(run: Callable[[], None], n: int) -> float:
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) / n * 1e9


if __name__ == "__main__":
    what, n = sys.argv[1], int(sys.argv[2])
    form = sys.argv[3] if len(sys.argv) > 3 else "pair"
    if form not in FORMS:
        raise SystemExit(f"unknown form {form!r}; one of {FORMS}")
    if what != "all":
        runner(what, form, n)()
        sys.exit()
    runs = {name: runner(name, form, n) for name in SUBJECTS}
    best = dict.fromkeys(SUBJECTS, float("inf"))
    for _ in range(40):  # interleaved: noise hits every subject alike
        for name, run in runs.items():
            best[name] = min(best[name], ns_per_op(run, n))
    for name in SUBJECTS[1:]:
        print(f"{name:8s} {form:9s} {best[name] - best['empty']:7.1f} ns per op")
