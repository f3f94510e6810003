"""Threads: two Python threads on one breaker, and native nogil threads.

``threads``: each subject (``qbreaker._cli.bench.measure.THREAD_SUBJECTS``)
runs N protected calls on 1 thread, and N on each of 2 threads, all on one
breaker; ``report.py`` divides the throughputs. With the GIL the best possible
is 1.0.

``native-threads``: ``qbreaker._cli.bench._floor.hammer`` drives the compiled
breaker through the cimport API (``qb_admit``/``qb_settle``) with the GIL released:
1 thread, 2 threads on one shared breaker, 2 threads on separate breakers.
"""

from __future__ import annotations

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from _common import measure
from qbreaker._cli.bench.measure import (
    THREAD_SUBJECTS,
    ThreadSubject,
    native_elapsed,
    native_op,
    thread_elapsed,
    thread_workload,
)
from qbreaker._cli.bench.subjects import Unavailable

ROUNDS = 10
NATIVE_N = 2_000_000  # about 25 ms of one thread here


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("subject", THREAD_SUBJECTS, ids=lambda s: s.name)
def test_python_threads(
    benchmark: BenchmarkFixture, subject: ThreadSubject, threads: int
) -> None:
    try:
        op = subject.make()
    except Unavailable as exc:
        pytest.skip(str(exc))
    n = thread_workload(subject.family)
    measure(
        benchmark,
        "threads",
        f"{subject.name} x{threads}",
        lambda: thread_elapsed(op, threads, n),
        setup=lambda: None,
        loops=threads * n,
        rounds=ROUNDS,
    )


NATIVE = {
    "1 thread": (True, 1),
    "2 threads, one shared breaker": (True, 2),
    "2 threads, separate breakers": (False, 2),
}


@pytest.mark.parametrize("config", list(NATIVE))
def test_native_threads(benchmark: BenchmarkFixture, config: str) -> None:
    shared, threads = NATIVE[config]
    ops = native_op(shared, threads)
    measure(
        benchmark,
        "native-threads",
        config,
        lambda: native_elapsed(ops, NATIVE_N),
        setup=lambda: None,
        loops=threads * NATIVE_N,
        rounds=ROUNDS,
    )
    benchmark.extra_info["threads"] = threads
