"""``qbreaker.compat.pybreaker`` against pybreaker itself.

Subjects, each on one breaker in the closed state around the same protected
function (``qbreaker._cli.bench.subjects.work``): ``call(f)`` and a decorated
function, for the compat breaker (default memory storage, no listener: the
compiled path) and for pybreaker 1.4.1, with 1 and 2 Python threads.

``compat``: one thread, a round of 100 operations (``measure``).
``compat-threads``: N calls on each of 1 or 2 threads, on one breaker
(``qbreaker._cli.bench.measure.thread_elapsed``); pybreaker's lock serializes the
two threads, the compat breaker holds no lock across the call.

    python -m pytest benchmarks/bench_compat.py          # pytest-benchmark
    python benchmarks/bench_compat.py [--check]          # table and ratios

The script prints ns per operation and pybreaker's time over the compat
breaker's; ``--check`` exits 1 if the ``call(f)`` ratio is below the target
(10x).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from _common import measure
from qbreaker._cli.bench.measure import thread_elapsed
from qbreaker._cli.bench.scenarios import LOOPS
from qbreaker._cli.bench.subjects import Unavailable, fresh, work

TARGET = 10.0
THREAD_CALLS = 50_000  # per thread: about 3-50 ms here, several GIL switches


def _pybreaker() -> Any:
    try:
        import pybreaker
    except ImportError as exc:
        raise Unavailable(
            'pybreaker is not installed (pip install "qbreaker[bench]")'
        ) from exc
    return pybreaker


def _compat() -> Any:
    import qbreaker.compat.pybreaker as compat

    return compat


def _module(family: str) -> Any:
    return _compat() if family == "compat" else _pybreaker()


def _call_loop(b: Any, loops: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(loops):
            b.call(work)

    return fresh(run)


def _decorated_loop(g: Callable[[], Any], loops: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(loops):
            g()

    return fresh(run)


def _check_closed(b: Any) -> None:
    if b.current_state != "closed" or b.fail_counter:
        raise AssertionError(f"{b!r} left the closed state: not the path measured")


# name -> (family, form)
SUBJECTS = {
    "compat call(f)": ("compat", "call"),
    "compat @breaker": ("compat", "decorator"),
    "pybreaker call(f)": ("pybreaker", "call"),
    "pybreaker @breaker": ("pybreaker", "decorator"),
}


def build(name: str, loops: int) -> tuple[Callable[[], None], Any]:
    """(one round of ``loops`` operations, the breaker)."""
    family, form = SUBJECTS[name]
    breaker = _module(family).CircuitBreaker(fail_max=5, reset_timeout=60)
    if form == "call":
        return _call_loop(breaker, loops), breaker
    return _decorated_loop(breaker(work), loops), breaker


def thread_op(name: str) -> tuple[Callable[[int], None], Any]:
    """``op(n)``: n operations; and the breaker."""
    family, form = SUBJECTS[name]
    breaker = _module(family).CircuitBreaker(fail_max=5, reset_timeout=60)
    if form == "call":

        def op(n: int) -> None:
            for _ in range(n):
                breaker.call(work)

    else:
        guarded = breaker(work)

        def op(n: int) -> None:
            for _ in range(n):
                guarded()

    return fresh(op), breaker


# -- pytest-benchmark ----------------------------------------------------------------


@pytest.mark.parametrize("subject", list(SUBJECTS))
def test_compat(benchmark: BenchmarkFixture, subject: str) -> None:
    try:
        run, breaker = build(subject, LOOPS)
    except Unavailable as exc:
        pytest.skip(str(exc))
    measure(benchmark, "compat", subject, run)
    _check_closed(breaker)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("subject", list(SUBJECTS))
def test_compat_threads(
    benchmark: BenchmarkFixture, subject: str, threads: int
) -> None:
    try:
        op, breaker = thread_op(subject)
    except Unavailable as exc:
        pytest.skip(str(exc))
    measure(
        benchmark,
        "compat-threads",
        f"{subject} x{threads}",
        lambda: thread_elapsed(op, threads, THREAD_CALLS),
        setup=lambda: None,
        loops=threads * THREAD_CALLS,
        rounds=10,
    )
    _check_closed(breaker)


# -- the script ------------------------------------------------------------------------


def _best_ns(run: Callable[[], None], loops: int, seconds: float) -> float:
    """Best ns per operation over rounds of ``loops`` operations."""
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(10):
            run()
        best = min(best, (time.perf_counter() - start) / (10 * loops))
    return best * 1e9


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="per subject")
    parser.add_argument("--check", action="store_true", help=f"exit 1 below {TARGET}x")
    args = parser.parse_args(argv)
    import qbreaker

    print(f"qbreaker core: {qbreaker.IMPLEMENTATION}; Python {sys.version.split()[0]}")
    single: dict[str, float] = {}
    for name in SUBJECTS:
        try:
            run, breaker = build(name, LOOPS)
        except Unavailable as exc:
            print(f"{name:24} skipped: {exc}")
            continue
        single[name] = _best_ns(run, LOOPS, args.seconds)
        _check_closed(breaker)
        print(f"{name:24} {single[name]:8.1f} ns/op (1 thread)")
    threaded: dict[tuple[str, int], float] = {}
    for name in SUBJECTS:
        for threads in (1, 2):
            try:
                op, breaker = thread_op(name)
            except Unavailable:
                continue
            elapsed = min(thread_elapsed(op, threads, THREAD_CALLS) for _ in range(5))
            threaded[name, threads] = elapsed / (threads * THREAD_CALLS) * 1e9
            _check_closed(breaker)
            print(
                f"{name:24} {threaded[name, threads]:8.1f} ns/op "
                f"({threads} thread{'s' if threads > 1 else ''}, wall time per call)"
            )
    ratios = []
    for form, label in (("call(f)", "call(f)"), ("@breaker", "decorator")):
        ours, theirs = f"compat {form}", f"pybreaker {form}"
        if ours in single and theirs in single:
            ratio = single[theirs] / single[ours]
            ratios.append((label, ratio))
            print(f"ratio pybreaker/compat, {label}, 1 thread: {ratio:.1f}x")
            for threads in (1, 2):
                if (ours, threads) in threaded and (theirs, threads) in threaded:
                    r = threaded[theirs, threads] / threaded[ours, threads]
                    print(
                        f"ratio pybreaker/compat, {label}, {threads} threads: {r:.1f}x"
                    )
    if args.check:
        call_ratio = dict(ratios).get("call(f)")
        if call_ratio is None:
            print("check: pybreaker is not installed, nothing to compare")
            return 1
        if call_ratio < TARGET:
            print(f"check FAILED: call(f) {call_ratio:.1f}x < {TARGET:.0f}x")
            return 1
        print(f"check passed: call(f) {call_ratio:.1f}x >= {TARGET:.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
