"""Host-wide breakers: one cell in shared memory, for every process."""

from __future__ import annotations

import json
import mmap
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import qbreaker
from qbreaker import State
from qbreaker import shared as shared_mod
from qbreaker._impl import segment as _shm
from qbreaker._impl import segment_format as _fmt

from ..helpers import GIL_BUILD

pytestmark = [
    pytest.mark.c_extension,
    pytest.mark.skipif(not _fmt.supported(), reason="POSIX shared memory in /dev/shm"),
]


@pytest.fixture
def name() -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    shared_mod.unlink(name)


def python(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_two_handles_share_one_cell(name: str) -> None:
    a = qbreaker.CircuitBreaker(2, 30, 1, shared=name)
    b = qbreaker.CircuitBreaker(2, 30, 1, shared=name)
    assert a.name == name
    a.record_failure()
    b.record_failure()
    assert a.state is State.OPEN and b.state is State.OPEN
    assert not b.allow()
    assert a.totals() == b.totals()
    assert a.totals().failures == 2 and a.totals().rejected == 1


def test_one_process_trips_all_of_them(name: str) -> None:
    mine = qbreaker.CircuitBreaker(3, 30, 1, shared=name)
    result = python(f"""
        import qbreaker
        b = qbreaker.CircuitBreaker(3, 30, 1, shared={name!r})
        for _ in range(3):
            b.record_failure()
        print(b.state)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "open"
    assert mine.state is State.OPEN and not mine.allow()


def test_half_open_probes_are_limited_host_wide(name: str) -> None:
    b = qbreaker.CircuitBreaker(1, 0.05, 2, half_open_timeout=30, shared=name)
    b.record_failure()
    deadline = time.monotonic() + 5
    while not b.allow():  # the first probe, here
        assert time.monotonic() < deadline
    result = python(f"""
        import qbreaker
        b = qbreaker.CircuitBreaker(1, 0.05, 2, half_open_timeout=30, shared={name!r})
        print([b.allow() for _ in range(3)])
    """)
    assert result.stdout.strip() == "[True, False, False]", result.stderr


def test_a_killed_probe_is_reclaimed(name: str) -> None:
    """A worker killed mid-probe never wedges the breaker."""
    b = qbreaker.CircuitBreaker(1, 0.05, 1, half_open_timeout=0.2, shared=name)
    b.record_failure()
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import sys, time, qbreaker
            b = qbreaker.CircuitBreaker(1, 0.05, 1, half_open_timeout=0.2,
                                        shared={name!r})
            while not b.allow():
                time.sleep(0.005)
            print("probing", flush=True)
            time.sleep(60)
        """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "probing"
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        assert not b.allow()  # the dead worker's probe holds the only slot
        deadline = time.monotonic() + 5
        while not b.allow():
            assert time.monotonic() < deadline, "the probe slot was never reclaimed"
            time.sleep(0.005)
        b.record_success()
        assert b.state is State.CLOSED
    finally:
        child.kill()
        child.wait(10)


def test_policy_mismatch_and_adopt(name: str) -> None:
    qbreaker.CircuitBreaker(2, 30, 1, shared=name)
    with pytest.raises(shared_mod.SharedStateError, match="another policy"):
        qbreaker.CircuitBreaker(3, 30, 1, shared=name)
    adopted = qbreaker.CircuitBreaker(3, 30, 1, shared=name, shared_policy="adopt")
    assert adopted.max_failures == 2
    with pytest.raises(ValueError, match="shared_policy must be 'match'"):
        qbreaker.CircuitBreaker(shared=name, shared_policy="mine")


def test_windows_are_shared_too(name: str) -> None:
    kw: dict[str, Any] = dict(
        failure_rate_threshold=0.5, window_size=10, minimum_calls=4
    )
    a = qbreaker.CircuitBreaker(None, 30, 1, shared=name, **kw)
    b = qbreaker.CircuitBreaker(None, 30, 1, shared=name, **kw)
    a.record_success()
    b.record_success()
    a.record_failure()
    assert a.metrics().calls_in_window == 3
    b.record_failure()
    assert a.state is State.OPEN


def test_the_twin_refuses_shared(name: str) -> None:
    with pytest.raises(shared_mod.SharedStateError, match="pure-Python core cannot"):
        qbreaker.PyCircuitBreaker(shared=name)
    assert not shared_mod.exists(name)


def test_group_shares_each_breaker_by_name(name: str) -> None:
    group = qbreaker.BreakerGroup(shared=True, max_failures=1)
    group.record_failure(name)
    assert qbreaker.CircuitBreaker(1, 60, 3, shared=name).state is State.OPEN
    with pytest.raises(TypeError, match="shared=True"):
        qbreaker.BreakerGroup(shared_policy="adopt")


def test_list_unlink_exists(name: str) -> None:
    b = qbreaker.CircuitBreaker(2, 30, 1, shared=name)
    b.record_failure()
    info = {i.name: i for i in shared_mod.list()}[name]
    assert (info.state, info.consecutive_failures, info.failures) == (
        State.CLOSED,
        1,
        1,
    )
    assert info.path == _fmt.path_of(name)
    assert shared_mod.exists(name)
    assert shared_mod.unlink(name)
    assert not shared_mod.exists(name) and not shared_mod.unlink(name)
    fresh = qbreaker.CircuitBreaker(2, 30, 1, shared=name)
    assert fresh.totals().failures == 0  # a new segment: b keeps the old one
    assert b.consecutive_failures == 1


def test_segment_file_is_private(name: str) -> None:
    qbreaker.CircuitBreaker(shared=name)
    info = os.stat(_fmt.path_of(name))
    assert info.st_mode & 0o777 == 0o600 and info.st_uid == os.geteuid()
    assert f"-v{_fmt.LAYOUT_VERSION}-{os.geteuid()}-" in _fmt.path_of(name)
    assert name not in _fmt.path_of(name)  # hashed, never a path component


def test_ops_cli(name: str) -> None:
    qbreaker.CircuitBreaker(2, 30, 1, shared=name).record_failure()
    run = [sys.executable, "-m", "qbreaker"]
    status = subprocess.run(
        [*run, "status"], capture_output=True, text=True, timeout=60
    )
    assert name in status.stdout and "closed" in status.stdout
    opened = subprocess.run(
        [*run, "open", name], capture_output=True, text=True, timeout=60
    )
    assert opened.returncode == 0 and "forced open" in opened.stdout
    mine = qbreaker.CircuitBreaker(2, 30, 1, shared=name)
    assert not mine.allow() and mine.forced == "open"
    as_json = subprocess.run(
        [*run, "status", "--json"], capture_output=True, text=True, timeout=60
    )
    row = {r["name"]: r for r in json.loads(as_json.stdout)["breakers"]}[name]
    assert (
        row["state"] == "open"
        and row["forced"] == "open"
        and row["retry_after"] is None
    )
    subprocess.run([*run, "close", name], check=True, capture_output=True, timeout=60)
    assert mine.forced == "closed"
    subprocess.run([*run, "reset", name], check=True, capture_output=True, timeout=60)
    assert mine.forced is None and mine.allow()
    missing = subprocess.run([*run, "open", name + "-none"], capture_output=True,
                             text=True, timeout=60)  # fmt: skip
    assert missing.returncode == 1 and "no shared breaker" in missing.stderr


# -- bad segments, each built for real ---------------------------------------------


@pytest.fixture
def quick_attach(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_shm, "ATTACH_WAIT", 0.05)


def _plant(name: str, data: bytes, mode: int = 0o600) -> str:
    path = _fmt.path_of(name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    os.write(fd, data)
    os.close(fd)
    os.chmod(path, mode)
    return path


def _valid_header(name: str) -> bytearray:
    qbreaker.CircuitBreaker(2, 30, 1, shared=name)
    with open(_fmt.path_of(name), "rb") as f:
        data = bytearray(f.read())
    shared_mod.unlink(name)
    return data


@pytest.mark.parametrize(
    ("damage", "pattern"),
    [
        (lambda d: d.__setitem__(slice(0, 8), b"NOTQBRKR"), "bad magic"),
        (
            lambda d: d.__setitem__(slice(8, 12), (99).to_bytes(4, "little")),
            "version 99",
        ),
        (
            lambda d: d.__setitem__(slice(16, 24), (4096).to_bytes(8, "little")),
            "header says 4096",
        ),
        (lambda d: d.__setitem__(slice(0, 8), bytes(8)), "half-made"),
        (lambda d: d.__delitem__(slice(300, None)), "too short"),
        (lambda d: d.extend(bytes(64)), "truncated or corrupt"),
    ],
)
def test_damaged_segments_are_refused(
    name: str, quick_attach: None, damage: Any, pattern: str
) -> None:
    data = _valid_header(name)
    damage(data)
    _plant(name, bytes(data))
    with pytest.raises(shared_mod.SharedStateError, match=pattern):
        qbreaker.CircuitBreaker(2, 30, 1, shared=name)


def test_a_segment_readable_by_others_is_refused(name: str) -> None:
    _plant(name, bytes(_valid_header(name)), mode=0o644)
    with pytest.raises(shared_mod.SharedStateError, match="mode 644"):
        qbreaker.CircuitBreaker(2, 30, 1, shared=name)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file away")
def test_a_segment_of_another_user_is_refused(name: str) -> None:
    path = _plant(name, bytes(_valid_header(name)))
    os.chown(path, 65534, 65534)
    with pytest.raises(shared_mod.SharedStateError, match="belongs to uid 65534"):
        qbreaker.CircuitBreaker(2, 30, 1, shared=name)


def test_a_symlink_is_refused(name: str, tmp_path: Any) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(bytes(_valid_header(name)))
    os.symlink(target, _fmt.path_of(name))
    with pytest.raises(shared_mod.SharedStateError, match="symbolic link"):
        qbreaker.CircuitBreaker(2, 30, 1, shared=name)


@pytest.mark.parametrize(
    ("bad", "error", "pattern"),
    [
        ("", ValueError, "1 to 124 UTF-8 bytes"),
        ("x" * 125, ValueError, "1 to 124 UTF-8 bytes"),
        ("a/b", ValueError, "without '/'"),
        ("a\0b", ValueError, "without"),
        ("tab\there", ValueError, "printable"),
        (42, TypeError, "shared must be a breaker name"),
    ],
)
def test_invalid_names(bad: Any, error: type, pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        qbreaker.CircuitBreaker(shared=bad)


# -- many processes --------------------------------------------------------------------

WORKER = """
import sys, qbreaker
name, seed, ops = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
b = qbreaker.CircuitBreaker(3, 0.002, 2, half_open_timeout=0.01, shared=name)
x = seed * 2654435761 % 2**32 or 1
admits = rejected = ok = bad = 0
for _ in range(ops):
    x ^= (x << 13) & 0xFFFFFFFF; x ^= x >> 17; x ^= (x << 5) & 0xFFFFFFFF
    t = b.acquire()
    if not t:
        rejected += 1
        continue
    admits += 1
    if x % 4 == 0:
        b.release(t, False); bad += 1
    else:
        b.release(t, True); ok += 1
print(admits, rejected, ok, bad)
"""


def test_eight_processes_keep_exact_totals(name: str) -> None:
    ops = 20_000
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, name, str(i + 1), str(ops)],
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for i in range(8)
    ]
    sums = [0, 0, 0, 0]
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0
        for k, v in enumerate(map(int, out.split())):
            sums[k] += v
    admits, rejected, ok, bad = sums
    b = qbreaker.CircuitBreaker(3, 0.002, 2, half_open_timeout=0.01, shared=name)
    t = b.totals()
    assert admits + rejected == 8 * ops
    assert (t.allowed, t.rejected, t.successes, t.failures) == (
        admits,
        rejected,
        ok,
        bad,
    )
    assert t.transitions % (1 << 18) == b.generation
    assert t.transitions > 0, "the failure pattern should have tripped it"
    w = b._word
    if w & 3 == 2:  # every probe reported: no slot left in flight
        assert (w >> 20) & 0xFF == 0


# -- per-process counter slots -----------------------------------------------------


def _slot_offset(index: int) -> int:
    # A policy without a window: header, cell, then the slots.
    return _fmt.HEADER_SIZE + _fmt.CELL_SIZE + index * _fmt.SLOT_SIZE


# This process's PID namespace, as the core records it beside a slot's owner.
PID_NAMESPACE = os.stat("/proc/self/ns/pid").st_ino


def _write_slot(
    name: str, index: int, pid: int, count: int, namespace: int = PID_NAMESPACE
) -> None:
    # owner = pid << 32 | nonce, then allowed, successes, rejected, namespace.
    with open(_fmt.path_of(name), "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
        owner = pid << 32 | 1
        struct.pack_into(
            "<QQQQQ", m, _slot_offset(index), owner, count, count, 0, namespace
        )


def test_the_slot_layout_matches_the_core() -> None:
    from qbreaker import _core_c

    assert _core_c.SHARED_SLOTS == (_fmt.SLOTS, _fmt.SLOT_SIZE)


def test_a_process_counts_in_one_slot_for_all_its_handles(name: str) -> None:
    a = qbreaker.CircuitBreaker(shared=name)
    b = qbreaker.CircuitBreaker(shared=name)
    assert a._slot == -1, "a slot is claimed by the first closed-path call, not before"
    for _ in range(1000):
        assert a.allow() and b.allow()
        a.record_success()
        b.record_success()
    assert a._slot == b._slot
    assert (a._slot >= 0) is GIL_BUILD
    assert a.totals() == b.totals()
    assert (a.totals().allowed, a.totals().successes) == (2000, 2000)


def test_a_forked_child_counts_in_a_slot_of_its_own(name: str) -> None:
    b = qbreaker.CircuitBreaker(shared=name)
    b.allow()
    b.record_success()
    parent_slot = b._slot
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: count beside the parent, report its slot
        try:
            for _ in range(200_000):
                b.allow()
                b.record_success()
            os.write(write, str(b._slot).encode())
        finally:
            os._exit(0)
    os.close(write)
    for _ in range(200_000):
        b.allow()
        b.record_success()
    _, status = os.waitpid(pid, 0)
    child_slot = int(os.read(read, 64))
    os.close(read)
    assert os.waitstatus_to_exitcode(status) == 0
    if GIL_BUILD:
        assert parent_slot >= 0 and child_slot >= 0 and child_slot != parent_slot
    else:
        assert parent_slot == child_slot == -1
    assert b._slot == parent_slot
    assert (b.totals().allowed, b.totals().successes) == (400_001, 400_001)


def test_a_dead_owners_slot_is_taken_over_with_its_counts(name: str) -> None:
    qbreaker.CircuitBreaker(shared=name)  # creates the segment; claims nothing
    dead = subprocess.Popen(["true"])
    dead.wait()
    alive = subprocess.Popen(["sleep", "60"])
    try:
        for i in range(_fmt.SLOTS):
            _write_slot(name, i, alive.pid, 1)
        _write_slot(name, 5, dead.pid, 7)
        b = qbreaker.CircuitBreaker(shared=name)
        before = b.totals()
        assert (before.allowed, before.successes) == (_fmt.SLOTS + 6, _fmt.SLOTS + 6)
        assert b.allow()
        b.record_success()
        assert b._slot == (5 if GIL_BUILD else -1)
        after = b.totals()
        assert (after.allowed, after.successes) == (_fmt.SLOTS + 7, _fmt.SLOTS + 7)
        # Every slot taken by a live process: count in the cell, atomically.
        out = python(f"""
            import qbreaker
            b = qbreaker.CircuitBreaker(shared={name!r})
            for _ in range(100):
                b.allow(); b.record_success()
            print(b._slot, b.totals().allowed, b.totals().successes)
        """)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == [
            "-1",
            str(_fmt.SLOTS + 107),
            str(_fmt.SLOTS + 107),
        ]
    finally:
        alive.kill()
        alive.wait()


@pytest.mark.skipif(not GIL_BUILD, reason="free-threaded builds claim no slot")
def test_a_pid_from_another_namespace_is_neither_shared_nor_taken_over(
    name: str,
) -> None:
    # Containers sharing /dev/shm can reuse this very pid, and kill() cannot
    # judge their pids: a slot whose owner has this pid but another nonce is
    # not ours, and a dead-looking owner of another namespace is left alone.
    qbreaker.CircuitBreaker(shared=name)
    dead = subprocess.Popen(["true"])
    dead.wait()
    _write_slot(name, 0, os.getpid(), 3)
    b = qbreaker.CircuitBreaker(shared=name)
    b.allow()
    assert b._slot == 1
    for i in range(_fmt.SLOTS):
        _write_slot(name, i, dead.pid, 1, namespace=PID_NAMESPACE + 1)
    out = python(f"""
        import qbreaker
        b = qbreaker.CircuitBreaker(shared={name!r})
        b.allow(); b.record_success()
        print(b._slot, b.totals().allowed)
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["-1", str(_fmt.SLOTS + 2)]  # + two in the cell


def test_slots_follow_a_window_at_a_cache_line(name: str) -> None:
    # 15 buckets end the window 32 bytes into a cache line: the slots start
    # at the next one, and each process's counts land in its own.
    b = qbreaker.CircuitBreaker(
        shared=name, failure_rate_threshold=0.5, window_size=100
    )
    policy = b.policy
    assert policy.window_buckets == 15
    window_end = _fmt.CELL_SIZE + _fmt.WINDOW_HEADER_SIZE + 15 * _fmt.BUCKET_SIZE
    assert window_end % 64 == 32
    for _ in range(10):
        b.allow()
        b.record_success()
    first_slot = _fmt.HEADER_SIZE + window_end + 32
    with open(_fmt.path_of(name), "rb") as f:
        f.seek(first_slot + _fmt.SLOT_SIZE * b._slot + 8)
        allowed, successes = struct.unpack("<QQ", f.read(16))
    assert (b.totals().allowed, b.totals().successes) == (10, 10)
    if GIL_BUILD:  # the admit that claimed the slot counted in the cell
        assert (allowed, successes) == (9, 10)
