"""A shared segment holds whatever bytes anyone wrote: no value crashes us.

Every value the core reads from a segment is checked before use, or is one
whose every value is safe. Cases that could crash run in a child process,
so a crash is a failed test rather than a dead suite.
"""

from __future__ import annotations

import mmap
import os
import struct
import subprocess
import sys
import sysconfig
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import qbreaker
from qbreaker import shared as shared_mod
from qbreaker._impl import segment_format as _fmt

pytestmark = [
    pytest.mark.c_extension,
    pytest.mark.skipif(not _fmt.supported(), reason="POSIX shared memory in /dev/shm"),
]

WINDOW_AT = _fmt.HEADER_SIZE + _fmt.CELL_SIZE
SPAN_AT = WINDOW_AT + 8  # qb_window: cursor, span, ...
HINT_AT = WINDOW_AT + 48  # ... buckets and minimum calls, then the hint
PID_NAMESPACE = os.stat("/proc/self/ns/pid").st_ino


@pytest.fixture
def name() -> Iterator[str]:
    name = f"test-hostile-{uuid.uuid4().hex[:12]}"
    yield name
    shared_mod.unlink(name)


def run(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def poke(name: str, offset: int, fmt: str, *values: object) -> None:
    with open(_fmt.path_of(name), "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
        struct.pack_into(fmt, m, offset, *values)


def test_a_zero_span_in_the_window_is_refused_at_attach(name: str) -> None:
    creator = qbreaker.CircuitBreaker(
        failure_rate_threshold=0.5, window_seconds=10, shared=name
    )
    poke(name, SPAN_AT, "<Q", 0)
    out = run(f"""
        import qbreaker
        try:
            qbreaker.CircuitBreaker(shared={name!r}, shared_policy="adopt")
        except qbreaker.shared.SharedStateError as exc:
            print("refused:", exc)
    """)
    assert out.returncode == 0, out.stderr
    assert "refused:" in out.stdout and "window_span=0" in out.stdout
    del creator


def test_window_bytes_overwritten_under_a_live_breaker_crash_nothing(
    name: str,
) -> None:
    """Zero span, a hint indexing past the buckets: the breaker keeps working
    (the core takes the window's shape from its own validated policy)."""
    for kwargs in (
        "window_seconds=10",
        "window_size=32",
    ):
        out = run(f"""
            import mmap, struct
            import qbreaker
            from qbreaker._impl import segment as _shm
            from qbreaker._impl import segment_format as _fmt
            b = qbreaker.CircuitBreaker(
                failure_rate_threshold=0.5, minimum_calls=4, {kwargs},
                shared={name!r})
            with open(_fmt.path_of({name!r}), "r+b") as f:
                m = mmap.mmap(f.fileno(), 0)
                struct.pack_into("<Q", m, {SPAN_AT}, 0)
                struct.pack_into("<II", m, {WINDOW_AT + 40}, 0, 0)
                struct.pack_into("<Q", m, {HINT_AT}, 31)
            for _ in range(20):
                if b.allow():
                    b.record_success()
            for _ in range(20):
                if b.allow():
                    b.record_failure()
            print(b.state, b.policy.window_span > 0)
            qbreaker.shared.unlink({name!r})
        """)
        assert out.returncode == 0, f"{kwargs}: exit {out.returncode}\n{out.stderr}"
        # The failures tripped it: its window counted them.
        assert out.stdout.split() == ["open", "True"]


# Slot owners whose pid is no single process's: 0 and negative values (as a
# C int) address process groups, 1 never dies, the rest are out of range.
BAD_OWNER_PIDS = [0, 1, 0xFFFF_FFFF, 0xFFC2_F700, 0x8000_0000, 0x7FFF_FFFF, 1 << 22]


def test_a_slot_owner_that_is_no_process_is_never_taken_over(name: str) -> None:
    qbreaker.CircuitBreaker(shared=name)  # creates the segment; claims nothing
    slots_at = _fmt.HEADER_SIZE + _fmt.CELL_SIZE
    for i in range(_fmt.SLOTS):
        pid = BAD_OWNER_PIDS[i % len(BAD_OWNER_PIDS)]
        poke(
            name,
            slots_at + i * _fmt.SLOT_SIZE,
            "<QQQQQ",
            pid << 32 | 1,
            0,
            0,
            0,
            PID_NAMESPACE,
        )
    b = qbreaker.CircuitBreaker(shared=name)
    for _ in range(10):
        assert b.allow()
        b.record_success()
    assert b._slot == -1, "a slot with an impossible owner was taken over"
    assert b.totals().allowed == 10
    # A dead process's slot is still taken over (by a breaker made after).
    dead = subprocess.Popen(["true"])
    dead.wait()
    poke(name, slots_at + 3 * _fmt.SLOT_SIZE, "<Q", dead.pid << 32 | 1)
    c = qbreaker.CircuitBreaker(shared=name)
    assert c.allow()
    assert c._slot == (3 if GIL_BUILD else -1)


GIL_BUILD = not sysconfig.get_config_var("Py_GIL_DISABLED")


@pytest.mark.parametrize(
    ("field", "offset", "fmt", "value"),
    [
        ("reset_timeout", _fmt.POLICY_OFFSET, "<Q", 0),
        ("half_open_max", _fmt.POLICY_OFFSET + 20, "<I", 0),
        ("success_threshold", _fmt.POLICY_OFFSET + 24, "<I", 1000),
        ("window_kind", _fmt.POLICY_OFFSET + 28, "<I", 7),
        ("failure_rate_threshold", _fmt.POLICY_OFFSET + 56, "<d", float("nan")),
        ("window", _fmt.POLICY_OFFSET + 32, "<I", 0),  # buckets
        ("window", _fmt.POLICY_OFFSET + 40, "<Q", 0),  # span
    ],
)
def test_a_header_policy_no_constructor_makes_is_refused(
    name: str, field: str, offset: int, fmt: str, value: object
) -> None:
    qbreaker.CircuitBreaker(
        3, 30, 2, failure_rate_threshold=0.5, window_size=20, shared=name
    )
    poke(name, offset, fmt, value)
    with pytest.raises(shared_mod.SharedStateError, match=field):
        qbreaker.CircuitBreaker(shared=name, shared_policy="adopt")


def test_the_window_copy_of_the_settings_must_match_the_header(name: str) -> None:
    qbreaker.CircuitBreaker(failure_rate_threshold=0.5, window_size=20, shared=name)
    poke(name, WINDOW_AT + 24, "<d", 0.01)  # the failure-rate threshold
    with pytest.raises(
        shared_mod.SharedStateError, match=r"failure_rate_threshold=0.01"
    ):
        qbreaker.CircuitBreaker(shared=name, shared_policy="adopt")


# -- hostile bytes, property-based -------------------------------------------------

HOSTILE = """
import math, mmap, os, struct, sys, uuid
from hypothesis import HealthCheck, given, settings, strategies as st
import qbreaker
from qbreaker import State, Metrics, CircuitOpenError
from qbreaker._impl import segment as _shm
from qbreaker._impl import segment_format as _fmt
from qbreaker import shared

_shm.ATTACH_WAIT = 0.01  # a zeroed magic is refused at once

POLICIES = [
    dict(max_failures=3, reset_timeout=0.05, half_open_max=2),
    dict(max_failures=None, failure_rate_threshold=0.5, window_size=20,
         minimum_calls=2),
    dict(max_failures=5, failure_rate_threshold=0.5, slow_call_rate_threshold=0.5,
         slow_call_duration=0.01, window_seconds=0.2, minimum_calls=1),
]
REGIONS = ["header", "cell", "window header", "window", "slots", "anywhere"]
OPS = ["allow", "success", "failure", "ticket", "with", "metrics", "trip",
       "force_open", "force_closed", "reset", "renormalize", "observe", "read"]

def region(size, buffer_policy, name):
    window = (_fmt.WINDOW_HEADER_SIZE + buffer_policy.window_buckets * _fmt.BUCKET_SIZE
              if buffer_policy.window_kind else 0)
    slots = size - _fmt.SLOTS * _fmt.SLOT_SIZE
    return {
        "header": (0, _fmt.HEADER_SIZE),
        "cell": (_fmt.HEADER_SIZE, _fmt.HEADER_SIZE + _fmt.CELL_SIZE),
        "window header": (_fmt.HEADER_SIZE + _fmt.CELL_SIZE,
                          _fmt.HEADER_SIZE + _fmt.CELL_SIZE + (64 if window else 1)),
        "window": (_fmt.HEADER_SIZE + _fmt.CELL_SIZE,
                   _fmt.HEADER_SIZE + _fmt.CELL_SIZE + max(window, 1)),
        "slots": (slots, size),
        "anywhere": (0, size),
    }[name]

patch = st.tuples(
    st.booleans(),                       # after the second attach, or before
    st.sampled_from(REGIONS),
    st.integers(0, 2**32),               # where in the region
    st.one_of(st.integers(0, 2**64 - 1), st.integers(0, 64),
              st.sampled_from([0, 2**64 - 1, 2**63, 2**32 - 1, 2**32])
              ).map(lambda v: struct.pack("<Q", v))
    | st.binary(min_size=1, max_size=24),
    st.booleans(),                       # aligned to 8 bytes
)

def use(b):
    t = 0
    for op in ops_now:
        if op == "allow":
            b.allow()
        elif op == "success":
            b.record_success()
        elif op == "failure":
            b.record_failure()
        elif op == "ticket":
            t = b.acquire()
            if t:
                b.release(t, False, 0.5)
        elif op == "with":
            try:
                with b:
                    pass
            except CircuitOpenError:
                pass
        elif op == "metrics":
            b.metrics()
        elif op == "trip":
            b._trip()
        elif op == "force_open":
            b.force_open()
        elif op == "force_closed":
            b.force_closed()
        elif op == "reset":
            b.reset()
        elif op == "renormalize":
            b.renormalize()
        elif op == "observe":
            b.observe(Metrics(error_rate=1.0))
        m = b.metrics()
        assert m.state in (State.CLOSED, State.OPEN, State.HALF_OPEN), m.state
        assert m.forced in (None, "open", "closed")
        assert m.retry_after >= 0 and m.time_in_state >= 0
        assert not math.isnan(m.failure_rate)
    b.totals()
    b.policy

@settings(max_examples=int(sys.argv[1]), deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(st.sampled_from(POLICIES), st.lists(patch, max_size=6),
       st.lists(st.sampled_from(OPS), max_size=12))
def check(policy, patches, ops):
    global ops_now
    ops_now = ops
    name = "test-hostile-" + uuid.uuid4().hex[:12]
    try:
        first = qbreaker.CircuitBreaker(**policy, shared=name)
        first.allow(); first.record_success()  # claims a slot
        with open(_fmt.path_of(name), "r+b") as f:
            m = mmap.mmap(f.fileno(), 0)
        size = len(m)

        def apply(later):
            for after, where, at, data, aligned in patches:
                if after != later:
                    continue
                start, end = region(size, first.policy, where)
                offset = start + at % max(end - start, 1)
                if aligned:
                    offset &= ~7
                data = data[: size - offset]
                m[offset : offset + len(data)] = data

        apply(False)
        try:
            second = qbreaker.CircuitBreaker(shared=name, shared_policy="adopt")
        except shared.SharedStateError:
            second = None
        apply(True)
        use(first)
        if second is not None:
            use(second)
        m.close()
    finally:
        shared.unlink(name)

check()
print("checked")
"""


@pytest.mark.hypothesis
def test_hostile_bytes_give_an_error_or_a_working_breaker(tmp_path: Path) -> None:
    """Random bytes in a real segment's header, cell, window and slots, before
    and after attaching: SharedStateError at attach, or a breaker whose every
    operation works and whose state is a documented one."""
    script = tmp_path / "hostile.py"
    script.write_text(HOSTILE)
    result = subprocess.run(
        [sys.executable, str(script), "200"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, (
        f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    )
    assert result.stdout.strip().endswith("checked")
