"""The documented cimport API compiles in another extension and works nogil."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import qbreaker
from qbreaker import State, _word

pytestmark = pytest.mark.c_extension

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def nogil_user(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    build = tmp_path_factory.mktemp("cimport")
    (build / "nogil_user.pyx").write_text(
        (HERE / "cimport" / "nogil_user.pyx").read_text()
    )
    (build / "setup.py").write_text(
        textwrap.dedent(f"""
        from setuptools import Extension, setup
        from Cython.Build import cythonize
        setup(ext_modules=cythonize(
            [Extension("nogil_user", ["nogil_user.pyx"],
                       include_dirs=[{qbreaker.get_include()!r}])],
            quiet=True))
    """)
    )
    result = subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--inplace"],
        cwd=build,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (so,) = [*build.glob("nogil_user*.so"), *build.glob("nogil_user*.pyd")]
    spec = importlib.util.spec_from_file_location("nogil_user", so)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_nogil_calls_drive_a_public_breaker(nogil_user) -> None:  # type: ignore[no-untyped-def]
    b = qbreaker.CircuitBreaker(3, 60, 1)
    assert nogil_user.hammer(b, 1000, 0) == (1000, 0)
    assert b.totals().successes == 1000 and b.state is State.CLOSED
    admitted, stale = nogil_user.hammer(b, 10, 1)  # every call fails
    assert (admitted, stale) == (3, 0)
    assert b.state is State.OPEN
    t = b.totals()
    assert (t.allowed, t.rejected, t.failures, t.transitions) == (1003, 7, 3, 1)


def test_explicit_ticks_drive_time(nogil_user) -> None:  # type: ignore[no-untyped-def]
    b = qbreaker.CircuitBreaker(1, 1, 1)
    nogil_user.hammer(b, 1, 1, 5_000)
    assert b.state is State.OPEN
    assert nogil_user.hammer(b, 1, 0, 5_999) == (0, 0)
    assert nogil_user.hammer(b, 1, 0, 6_000) == (1, 0)
    assert b.state is State.CLOSED


def test_taking_the_cell_makes_a_windows_python_path_atomic(nogil_user) -> None:  # type: ignore[no-untyped-def]
    # A private window counts its Python-path successes with plain adds; once
    # qb_nogil_cell hands the cell out, nogil writers run beside them, and no
    # outcome may be lost to a plain read-modify-write.
    b = qbreaker.CircuitBreaker(
        failure_rate_threshold=0.99, window_seconds=600.0, max_failures=None
    )
    python_calls = 200_000
    started = threading.Event()
    hammered: list[tuple[int, int]] = []

    def native() -> None:
        started.set()
        hammered.append(nogil_user.hammer(b, 2_000_000, 0))

    worker = threading.Thread(target=native)
    worker.start()
    started.wait()
    for _ in range(python_calls):
        if b.allow():
            b.record_success()
    worker.join()
    ((admitted, stale),) = hammered
    assert (admitted, stale) == (2_000_000, 0)
    m = b.metrics()
    assert m.calls_in_window == python_calls + admitted
    assert b.totals().successes == python_calls + admitted
    assert m.state is State.CLOSED


# Run in a child process: a crash there is a failed test, not a dead suite.
ARBITRARY_WORDS = """
import importlib.util, sys
from hypothesis import HealthCheck, given, settings, strategies as st
import qbreaker
from qbreaker import State
from qbreaker._core_c import describe_word

spec = importlib.util.spec_from_file_location("nogil_user", sys.argv[1])
user = importlib.util.module_from_spec(spec)
spec.loader.exec_module(user)

POLICIES = [
    dict(max_failures=2, reset_timeout=1, half_open_max=2, success_threshold=3),
    dict(max_failures=None, failure_rate_threshold=0.5, window_size=20,
         minimum_calls=2),
    dict(max_failures=3, failure_rate_threshold=0.5, slow_call_rate_threshold=0.5,
         slow_call_duration=0.01, window_seconds=2.0),
]

@settings(max_examples=int(sys.argv[2]), deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(st.sampled_from(POLICIES), st.integers(0, 2**64 - 1),
       st.binary(max_size=40), st.integers(0, 2**64 - 1))
def check(policy, word, ops, now):
    b = qbreaker.CircuitBreaker(**policy)
    final = user.drive(b, word, ops, now)
    state, generation = describe_word(final)
    assert state in (State.CLOSED, State.OPEN, State.HALF_OPEN)
    assert b.state is state and b.generation == generation
    assert b.forced in (None, "open", "closed")
    # The Python-facing methods on the same word, then a way back.
    b.allow(); b.record_failure(); b.record_success()
    m = b.metrics()
    assert m.retry_after >= 0 and m.time_in_state >= 0
    b.reset()
    assert b.state is State.CLOSED and b.forced is None and b.allow()
    assert user.hammer(b, 3, 0) == (3, 0)

check()
print("checked")
"""


@pytest.mark.hypothesis
def test_any_word_is_a_working_breaker(nogil_user, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Any 64 bits in the cell's word, then admits, settles and transitions
    through the cimport API: no crash, and every word decodes to a state."""
    script = tmp_path / "arbitrary_words.py"
    script.write_text(ARBITRARY_WORDS)
    result = subprocess.run(
        [sys.executable, str(script), nogil_user.__file__, "200"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, (
        f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    )
    assert result.stdout.strip().endswith("checked")


def test_a_nogil_ticket_stays_stale_across_a_generation_wrap(nogil_user) -> None:  # type: ignore[no-untyped-def]
    failure = _word.OUTCOME_FAILURE
    b = qbreaker.CircuitBreaker(1, 60, 1)
    held = nogil_user.admit(b)
    for _ in range(1 << _word.GEN_BITS):
        b.reset()
    assert nogil_user.settle(b, held, failure) is False
    assert b.state is State.CLOSED
    assert nogil_user.settle(b, nogil_user.admit(b), failure) is True
    assert b.state is State.OPEN


def test_either_api_settles_the_others_tickets(nogil_user) -> None:  # type: ignore[no-untyped-def]
    b = qbreaker.CircuitBreaker(1, 1, 2, success_threshold=2, clock=lambda: 50.0)
    b._trip()
    now = 52_000  # ms, past the reset timeout on the breaker's clock
    native = nogil_user.admit(b, now)
    python = b.acquire()
    assert native and python and b.state is State.HALF_OPEN
    b.release(native, True)
    assert nogil_user.settle(b, python, _word.OUTCOME_SUCCESS, now) is True
    assert b.state is State.CLOSED
