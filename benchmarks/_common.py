"""The one way a subject is timed under pytest-benchmark.

The subjects, their loops and the protected functions live in
``qbreaker._cli.bench.scenarios`` (and threads, memory and BreakerGroup lookup in
``qbreaker._cli.bench.measure``), shared with ``python -m qbreaker bench``: this
suite and the command time exactly the same code.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from qbreaker._cli.bench.scenarios import LOOPS, SCENARIOS
from qbreaker._cli.bench.subjects import Scenario, Subject, Unavailable

# Rounds for scenarios that restore state before every round (pedantic mode,
# where pytest-benchmark does no calibration of its own).
SETUP_ROUNDS = 1000


def scenario(group: str) -> Scenario:
    return next(s for s in SCENARIOS if s.group == group)


def measure(
    benchmark: BenchmarkFixture,
    group: str,
    subject: str,
    fn: Callable[[], Any],
    setup: Callable[[], Any] | None = None,
    loops: int = LOOPS,
    rounds: int = SETUP_ROUNDS,
) -> None:
    """Time ``fn`` (one round of ``loops`` operations) under ``group``.

    With ``setup``, every round starts from the state ``setup`` restores, so
    every subject of that group (baselines too) goes through the same pedantic
    path and pays the same timer overhead.
    """
    benchmark.group = group
    benchmark.extra_info["subject"] = subject
    benchmark.extra_info["loops"] = loops
    if setup is None:
        benchmark(fn)
    else:
        # Honour a larger --benchmark-min-rounds (pytest-benchmark keeps it
        # on the fixture; pedantic mode ignores it otherwise).
        rounds = max(rounds, getattr(benchmark, "_min_rounds", 0))
        benchmark.pedantic(fn, setup=setup, rounds=rounds, warmup_rounds=10)


def scenario_test(group: str) -> Callable[..., None]:
    """A test parametrized over every subject of ``group``'s scenario.

    A subject that cannot run here (a peer not installed) is skipped with the
    reason; its ``check`` runs after the timing, so a subject that measured
    the wrong path (a breaker that tripped in a success benchmark) fails.
    """
    sc = scenario(group)

    @pytest.mark.parametrize("subject", sc.subjects, ids=lambda s: s.name)
    def test(benchmark: BenchmarkFixture, subject: Subject) -> None:
        try:
            timed = subject.build(LOOPS)
        except Unavailable as exc:
            pytest.skip(str(exc))
        setup = timed.setup
        if sc.per_round_setup and setup is None:
            setup = _nothing
        measure(benchmark, group, subject.name, timed.run, setup)
        if timed.check is not None:
            timed.check()

    return test


def _nothing() -> None:
    pass
