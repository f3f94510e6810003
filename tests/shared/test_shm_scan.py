"""Listing, status and prune of shared segments: read-only, never dying.

Every test works in a private directory under /dev/shm (a real tmpfs), so a
prune here never touches segments of other test runs; child processes get
the same directory.
"""

from __future__ import annotations

import fcntl
import json
import mmap
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import qbreaker
from qbreaker import shared as shared_mod
from qbreaker.__main__ import main
from qbreaker._impl import segment_format as _fmt
from qbreaker._impl import shared_scan as _shm_scan

from ..helpers import GIL_BUILD

pytestmark = [
    pytest.mark.c_extension,  # shared segments exist on the compiled core only
    pytest.mark.skipif(not _fmt.supported(), reason="POSIX shared memory in /dev/shm"),
]

# Child processes find the test's directory through the environment; the
# assignment covers a _shm whose directory() does not read it.
PRELUDE = """
import os, sys, time
from qbreaker._impl import segment as _shm
from qbreaker._impl import segment_format as _fmt
_fmt.DIRECTORY = os.environ["QBREAKER_SHM_DIR"]
import qbreaker
from qbreaker import shared
"""
# A child that runs the command line.
CLI = (
    PRELUDE + "from qbreaker.__main__ import main\nraise SystemExit(main(sys.argv[1:]))"
)


@pytest.fixture
def shm_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    where = tempfile.mkdtemp(prefix="qbtest-", dir="/dev/shm")
    monkeypatch.setattr(_fmt, "DIRECTORY", where, raising=False)
    monkeypatch.setenv("QBREAKER_SHM_DIR", where)
    yield where
    shutil.rmtree(where, ignore_errors=True)


@pytest.fixture
def name(shm_dir: str) -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def child(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CLI, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def stop(process: subprocess.Popen[str]) -> None:
    process.kill()
    process.communicate(timeout=30)


def make(name: str, **policy: Any) -> str:
    """A complete segment for ``name``, mapped by no one afterwards."""
    b = qbreaker.CircuitBreaker(2, 30, 1, shared=name, **policy)
    b.record_failure()
    del b
    return _fmt.path_of(name)


# -- listing never creates or changes a segment ----------------------------------


def test_listing_never_recreates_a_segment_unlinked_meanwhile(name: str) -> None:
    # One process creates the name with its own policy and unlinks it, over
    # and over; this one lists meanwhile. A listing that re-opened the name
    # would create it with the default policy, and the next creation fails.
    churn = child(
        """
        name = sys.argv[1]
        deadline = time.monotonic() + 3.0
        made = clashes = 0
        while time.monotonic() < deadline:
            try:
                b = qbreaker.CircuitBreaker(7, 30, 1, shared=name)
            except shared.SharedStateError as exc:
                clashes += 1
                print("clash:", exc, file=sys.stderr)
            else:
                made += 1
                assert b.max_failures == 7
                time.sleep(0.0002)  # long enough for a listing to see it
                del b
            shared.unlink(name)
        print(made, clashes)
        """,
        name,
    )
    listed = seen = 0
    errors: list[str] = []
    try:
        while churn.poll() is None:
            try:
                infos = shared_mod.list()
            except Exception as exc:  # noqa: BLE001 - counted, then asserted on
                errors.append(repr(exc))
                continue
            listed += 1
            seen += sum(i.name == name for i in infos)
            assert all(i.name == name for i in infos)
        out, err = churn.communicate(timeout=60)
    finally:
        if churn.poll() is None:
            stop(churn)
    assert churn.returncode == 0, err
    made, clashes = map(int, out.split())
    assert (clashes, errors[:3]) == (0, []), err[-2000:]
    assert made > 10 and listed > 10 and seen > 0
    assert not shared_mod.exists(name)


def test_listing_and_status_write_nothing(name: str) -> None:
    path = make(name, failure_rate_threshold=0.5, window_size=20)
    before = open(path, "rb").read()
    stamp = os.stat(path).st_mtime_ns
    time.sleep(0.01)  # a write now would show in the mtime
    info = {i.name: i for i in shared_mod.list()}[name]
    assert (info.consecutive_failures, info.failures) == (1, 1)
    assert info.failure_rate == 1.0  # the window, decoded by the twin
    assert open(path, "rb").read() == before
    assert cli("status").returncode == 0
    assert cli("status", "--json").returncode == 0
    assert open(path, "rb").read() == before
    assert os.stat(path).st_mtime_ns == stamp
    assert shared_mod.unusable() == []


def test_listing_maps_nothing(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    make(name)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a listing or prune mapped a segment")

    monkeypatch.setattr(mmap, "mmap", refuse)
    assert [i.name for i in shared_mod.list()] == [name]
    assert [r.name for r in shared_mod.prune(dry_run=True)] == [name]


def test_listing_adds_every_slot_to_the_totals(name: str) -> None:
    worker = child(
        """
        b = qbreaker.CircuitBreaker(2, 30, 1, shared=sys.argv[1])
        for _ in range(50):
            b.allow(); b.record_success()
        print(b._slot, flush=True)
        sys.stdin.read()
        """,
        name,
    )
    try:
        assert worker.stdout is not None
        slot = int(worker.stdout.readline())
        assert slot >= 0 if GIL_BUILD else slot == -1
        mine = qbreaker.CircuitBreaker(2, 30, 1, shared=name)
        for _ in range(30):
            mine.allow()
            mine.record_success()
        info = {i.name: i for i in shared_mod.list()}[name]
        assert (info.allowed, info.successes) == (80, 80)
        assert info.allowed == mine.totals().allowed
    finally:
        stop(worker)


# -- unusable segments: a line with a reason, never an exception ------------------


def _plant(name: str, data: bytes, mode: int = 0o600) -> str:
    path = _fmt.path_of(name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    os.write(fd, data)
    os.close(fd)
    os.chmod(path, mode)
    return path


def _valid(name: str) -> bytearray:
    path = make(name)
    with open(path, "rb") as f:
        data = bytearray(f.read())
    os.unlink(path)
    return data


def _with_name(raw: bytes) -> Callable[[bytearray], None]:
    def damage(data: bytearray) -> None:
        at = _fmt.NAME_OFFSET
        data[at : at + 4 + _fmt.NAME_LIMIT] = bytes(4 + _fmt.NAME_LIMIT)
        data[at : at + 4] = struct.pack("<I", len(raw))
        data[at + 4 : at + 4 + len(raw)] = raw

    return damage


DAMAGES: list[tuple[str, Callable[[bytearray], None], str]] = [
    ("bad magic", lambda d: d.__setitem__(slice(0, 8), b"NOTQBRKR"), "bad magic"),
    ("half-made", lambda d: d.__setitem__(slice(0, 8), bytes(8)), "half-made"),
    ("empty file", lambda d: d.__delitem__(slice(0, None)), "half-made"),
    ("layout", lambda d: d.__setitem__(slice(8, 12), struct.pack("<I", 99)),
     "bad layout: version 99"),
    ("window kind", lambda d: d.__setitem__(slice(52, 56), struct.pack("<I", 9)),
     "window_kind must be 0 (none), 1 (count) or 2 (time), got 9"),
    ("short", lambda d: d.__delitem__(slice(300, None)), "truncated: 300 bytes"),
    ("long", lambda d: d.extend(bytes(64)), "truncated or corrupt"),
    ("header size", lambda d: d.__setitem__(slice(16, 24), struct.pack("<Q", 4096)),
     "its header says 4096"),
    ("bad UTF-8", _with_name(b"\xff\xfe"), "not UTF-8"),
    ("empty name", _with_name(b""), "stored length 0"),
    ("slash", _with_name(b"a/b"), "bad name: 'a/b'"),
    ("other name", _with_name(b"someone-else"), "does not hash"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("damage", "pattern"),
    [pytest.param(d, p, id=i) for i, d, p in DAMAGES],
)
def test_an_unusable_segment_is_listed_with_its_reason(
    name: str, damage: Callable[[bytearray], None], pattern: str
) -> None:
    good = f"{name}-good"
    make(good)
    data = _valid(name)
    damage(data)
    path = _plant(name, bytes(data))
    assert [i.name for i in shared_mod.list()] == [good]
    (bad,) = shared_mod.unusable()
    assert bad.path == path and pattern in bad.reason, bad.reason
    assert bad.half_made == (pattern == "half-made")
    status = cli("status")
    assert status.returncode == 0, status.stderr
    assert good in status.stdout and path in status.stdout
    assert pattern in status.stdout
    assert "Traceback" not in status.stderr
    as_json = json.loads(cli("status", "--json").stdout)
    assert [b["name"] for b in as_json["breakers"]] == [good]
    assert [u["path"] for u in as_json["unusable"]] == [path]
    assert as_json["segments"] == 2


def test_a_half_made_segment_shows_its_age(name: str) -> None:
    data = _valid(name)
    data[0:8] = bytes(8)
    path = _plant(name, bytes(data))
    old = time.time() - 120
    os.utime(path, (old, old))  # ctime stays now: the newer one counts
    (bad,) = shared_mod.unusable()
    assert bad.half_made and bad.age < 60
    status = cli("status")
    assert "s old" in status.stdout and path in status.stdout


def test_mode_symlink_fifo_and_directory_are_unusable(name: str, shm_dir: str) -> None:
    _plant(f"{name}-mode", bytes(_valid(f"{name}-mode")), mode=0o644)
    os.symlink("/etc/hostname", _fmt.path_of(f"{name}-link"))
    os.mkfifo(_fmt.path_of(f"{name}-fifo"), 0o600)  # opening must not block
    os.mkdir(_fmt.path_of(f"{name}-dir"), 0o700)
    reasons = {u.path: u.reason for u in shared_mod.unusable()}
    assert reasons == {
        _fmt.path_of(f"{name}-mode"): "has mode 644; a segment is 0600",
        _fmt.path_of(f"{name}-link"): "is a symbolic link",
        _fmt.path_of(f"{name}-fifo"): "is not a regular file",
        _fmt.path_of(f"{name}-dir"): "is not a regular file",
    }
    status = cli("status")
    assert status.returncode == 0 and status.stdout.count(shm_dir) >= 4
    result = _shm_scan.prune()  # only this user's regular files are removed
    assert [r.path for r in result.removed] == [_fmt.path_of(f"{name}-mode")]
    assert len(result.kept) == 3


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file away")
def test_a_segment_of_another_user_is_unusable_and_kept(name: str) -> None:
    path = _plant(name, bytes(_valid(name)))
    os.chown(path, 65534, 65534)
    (bad,) = shared_mod.unusable()
    assert bad.reason.startswith("belongs to uid 65534")
    result = _shm_scan.prune()
    assert result.removed == [] and os.path.exists(path)


# -- status: counts, bytes and free space -----------------------------------------


def test_status_counts_segments_bytes_and_free_space(name: str) -> None:
    make(name)
    make(f"{name}-2", failure_rate_threshold=0.5, window_size=100)
    found = _shm_scan.listing()
    sizes = [os.stat(_fmt.path_of(n)).st_size for n in (name, f"{name}-2")]
    assert found.segments == 2 and found.size_bytes == sum(sizes)
    assert found.allocated_bytes >= mmap.PAGESIZE
    assert found.free_bytes > 0 and not found.low_space
    assert found.segment_bytes == -(-max(sizes) // mmap.PAGESIZE) * mmap.PAGESIZE
    text = cli("status").stdout
    assert f"2 segments, {sum(sizes)} bytes" in text and "free" in text
    assert "warning" not in text
    as_json = json.loads(cli("status", "--json").stdout)
    assert (as_json["segments"], as_json["size_bytes"]) == (2, sum(sizes))
    assert as_json["low_space"] is False and as_json["free_bytes"] > 0


def test_status_warns_when_less_than_a_segment_is_free(shm_dir: str) -> None:
    # A real tmpfs of two pages: less than one segment (three pages) fits.
    where = os.path.join(shm_dir, "tiny")
    os.mkdir(where, 0o700)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8k,mode=0700", "tmpfs", where],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        env = {**os.environ, "QBREAKER_SHM_DIR": where}
        text = subprocess.run(
            [sys.executable, "-c", CLI, "status"],
            capture_output=True, text=True, timeout=60, env=env,
        ).stdout  # fmt: skip
        assert "0 segments" in text and "8.0 KiB free" in text
        assert "warning: less than one segment (12.0 KiB) free" in text
        out = subprocess.run(
            [sys.executable, "-c", CLI, "status", "--json"],
            capture_output=True, text=True, timeout=60, env=env,
        ).stdout  # fmt: skip
        assert json.loads(out)["low_space"] is True
    finally:
        subprocess.run(["umount", where], check=True, timeout=60)


def test_status_warning_without_a_mount(
    shm_dir: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = os.statvfs(shm_dir)

    class Full:
        f_frsize = real.f_frsize
        f_bavail = 1

    monkeypatch.setattr(_shm_scan.os, "statvfs", lambda path: Full)
    assert main(["status"]) == 0
    assert "warning: less than one segment" in capsys.readouterr().out


# -- open, close, reset: existing segments only -----------------------------------


@pytest.mark.parametrize("command", ["open", "close", "reset"])
def test_ops_on_a_missing_name_create_nothing(name: str, command: str) -> None:
    done = cli(command, name)
    assert done.returncode == 1
    assert f"no shared breaker named {name!r}" in done.stderr
    assert not shared_mod.exists(name) and _fmt.segment_paths() == []


@pytest.mark.parametrize("bad", ["a/b", "", "x" * 125, "tab\there"])
def test_ops_refuse_an_invalid_name_without_a_traceback(shm_dir: str, bad: str) -> None:
    done = cli("open", bad)
    assert done.returncode == 2
    assert done.stderr.startswith("error: shared name must")
    assert "Traceback" not in done.stderr
    assert _fmt.segment_paths() == []


def test_ops_act_on_the_existing_policy(name: str) -> None:
    make(name, failure_rate_threshold=0.5, window_size=20)
    done = cli("open", name)
    assert done.returncode == 0 and "forced open" in done.stdout
    mine = qbreaker.CircuitBreaker(
        2, 30, 1, shared=name, failure_rate_threshold=0.5, window_size=20
    )
    assert mine.forced == "open"
    assert cli("reset", name).returncode == 0 and mine.forced is None


def test_ops_report_an_unusable_segment(name: str) -> None:
    data = _valid(name)
    data[0:8] = b"NOTQBRKR"
    _plant(name, bytes(data))
    done = cli("open", name)
    assert done.returncode == 1 and "bad magic" in done.stderr
    assert "Traceback" not in done.stderr


# -- prune -------------------------------------------------------------------------

HOLDER = """
b = qbreaker.CircuitBreaker(2, 30, 1, shared=sys.argv[1])
print("ready", flush=True)
sys.stdin.read()
"""


def _wait_ready(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line == "ready\n", process.stderr.read() if process.stderr else line


def test_prune_keeps_a_mapped_segment_and_removes_it_once_unused(name: str) -> None:
    holder = child(HOLDER, name)
    try:
        _wait_ready(holder)  # it mapped the segment and never called: no slot
        result = _shm_scan.prune()
        assert result.removed == []
        (kept,) = result.kept
        assert (kept.name, kept.reason) == (name, f"mapped by pid {holder.pid}")
        assert shared_mod.exists(name)
    finally:
        stop(holder)
    (removed,) = shared_mod.prune()
    assert (removed.name, removed.path, removed.reason) == (
        name, _fmt.path_of(name), "unused",
    )  # fmt: skip
    assert not shared_mod.exists(name)


def test_prune_keeps_a_segment_whose_mapping_outlived_an_unlink_elsewhere(
    name: str,
) -> None:
    # Matched by device and inode: a path rewritten in maps (" (deleted)")
    # or another file at the same path does not confuse it.
    mine = qbreaker.CircuitBreaker(2, 30, 1, shared=name)
    result = _shm_scan.prune(dry_run=True)
    assert result.removed == []
    assert result.kept[0].reason == f"mapped by pid {os.getpid()}"
    os.unlink(_fmt.path_of(name))
    make(name)  # the same path, another inode, mapped by no one
    assert [r.name for r in shared_mod.prune()] == [name]
    assert mine.allow()  # still on its own (unlinked) segment


def _write_slot(name: str, index: int, pid: int, namespace: int) -> None:
    # The slot layout of a policy without a window (see _shm's docstring).
    path = _fmt.path_of(name)
    at = _fmt.HEADER_SIZE + _fmt.CELL_SIZE + index * _fmt.SLOT_SIZE
    fd = os.open(path, os.O_WRONLY)
    os.pwrite(fd, struct.pack("<QQQQQ", pid << 32 | 1, 1, 1, 0, namespace), at)
    os.close(fd)


def test_prune_keeps_a_segment_whose_slot_owner_lives(name: str) -> None:
    namespace = os.stat("/proc/self/ns/pid").st_ino
    make(name)
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        _write_slot(name, 3, sleeper.pid, namespace)
        result = _shm_scan.prune()
        assert [k.reason for k in result.kept] == [
            f"a slot held by live pid {sleeper.pid}"
        ]
    finally:
        sleeper.kill()
        sleeper.wait()
    assert [r.name for r in shared_mod.prune()] == [name]


def test_prune_keeps_a_slot_it_cannot_judge_and_drops_a_zombie(name: str) -> None:
    namespace = os.stat("/proc/self/ns/pid").st_ino
    make(name)
    dead = subprocess.Popen(["true"])
    dead.wait()
    _write_slot(name, 0, dead.pid, namespace + 1)  # another PID namespace
    assert [k.reason for k in _shm_scan.prune().kept] == [
        f"a slot held by pid {dead.pid} of another PID namespace"
    ]
    zombie = subprocess.Popen(["true"])
    deadline = time.monotonic() + 30
    while b"Z" not in open(f"/proc/{zombie.pid}/stat", "rb").read().rpartition(b")")[2]:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    try:
        _write_slot(name, 0, zombie.pid, namespace)  # exited, not reaped
        assert [r.name for r in shared_mod.prune()] == [name]
    finally:
        zombie.wait()


def test_prune_dry_run_removes_nothing(name: str) -> None:
    make(name)
    data = _valid(f"{name}-bad")
    data[0:8] = b"NOTQBRKR"
    bad = _plant(f"{name}-bad", bytes(data))
    before = sorted(os.listdir(_fmt.directory()))
    would = shared_mod.prune(dry_run=True)
    assert sorted(r.path for r in would) == sorted([_fmt.path_of(name), bad])
    out = cli("prune", "--dry-run")
    assert out.returncode == 0
    assert f"would remove {_fmt.path_of(name)} ({name!r}): unused" in out.stdout
    assert f"would remove {bad}: bad magic" in out.stdout
    assert "2 would remove, 0 kept" in out.stdout
    assert sorted(os.listdir(_fmt.directory())) == before
    out = cli("prune")
    assert out.returncode == 0 and "2 removed, 0 kept" in out.stdout
    assert _fmt.segment_paths() == []
    with pytest.raises(TypeError, match="dry_run must be True or False, got 'yes'"):
        shared_mod.prune(dry_run="yes")  # type: ignore[arg-type]


def test_prune_skips_a_segment_being_attached(name: str) -> None:
    path = make(name)
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # as an attacher holds it while it maps
        result = _shm_scan.prune()
        assert result.removed == []
        assert [k.reason for k in result.kept] == ["busy: being created or attached to"]
    finally:
        os.close(fd)
    assert [r.name for r in shared_mod.prune()] == [name]


# The attach side of the lock protocol, as _shm follows it: shared lock,
# map, check that the path still names the mapped file, else start over.
ATTACHER = """
import fcntl, mmap
path = _fmt.path_of(sys.argv[1])
deadline = time.monotonic() + float(sys.argv[2])
attached = lost = 0
while time.monotonic() < deadline:
    for _ in range(100):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        for _ in range(1000):
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                time.sleep(0.001)
        else:
            raise SystemExit("the lock stayed busy for a second")
        os.ftruncate(fd, max(os.fstat(fd).st_size, 8512))
        m = mmap.mmap(fd, 8512)
        mine = os.fstat(fd)
        try:
            now = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            now = None
        if now is not None and (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino):
            os.close(fd)
            break
        m.close()
        os.close(fd)
    else:
        raise SystemExit("no attach in 100 tries")
    attached += 1
    time.sleep(0.001)  # hold the mapping while prune runs
    try:
        now = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        now = None
    if now is None or (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino):
        lost += 1
    m.close()
    time.sleep(0.002)  # unmapped: prune may remove it now
print(attached, lost)
"""


def test_an_attach_during_prune_never_lands_on_an_unlinked_file(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Raw files: prune judges them by maps and locks alone (they are unusable
    # segments, so no slot is read), which is the whole protocol. A pruner
    # descheduled between its maps scan and its unlink is the dangerous
    # schedule: make it the common one.
    scan = _shm_scan._mapping_pids

    def slow_scan(keys: set[tuple[int, int, int]]) -> dict[tuple[int, int, int], int]:
        found = scan(keys)
        time.sleep(0.002)
        return found

    monkeypatch.setattr(_shm_scan, "_mapping_pids", slow_scan)
    attacher = child(ATTACHER, name, "3")
    removed = 0
    try:
        while attacher.poll() is None:
            removed += len(shared_mod.prune())
        out, err = attacher.communicate(timeout=60)
    finally:
        if attacher.poll() is None:
            stop(attacher)
    assert attacher.returncode == 0, err
    attached, lost = map(int, out.split())
    assert lost == 0
    assert attached > 20 and removed > 0, (attached, removed)


# -- the twin decodes what the compiled core wrote --------------------------------


def _info(name: str) -> Any:
    return {i.name: i for i in shared_mod.list()}[name]


def test_listing_agrees_with_the_breakers_own_reading(name: str) -> None:
    b = qbreaker.CircuitBreaker(2, 30, 1, shared=name, half_open_timeout=5)
    steps = ("closed", "open", "open_for", "forced open", "forced closed", "reset",
             "open_for closed")  # fmt: skip
    for step in steps:
        if step == "open":
            b.record_failure()
            b.record_failure()
            assert not b.allow()
        elif step == "open_for":
            assert b.open_for(100) == b.generation  # extends: longer than 30 s
        elif step == "open_for closed":
            assert b.open_for(1000)
        elif step == "forced open":
            b.force_open()
        elif step == "forced closed":
            b.force_closed()
        elif step == "reset":
            b.reset()
            assert b.allow()
            b.record_success()
        m, info = b.metrics(), _info(name)
        assert (info.state, info.forced, info.generation) == (
            m.state, m.forced, m.generation,
        ), step  # fmt: skip
        assert info.consecutive_failures == m.consecutive_failures, step
        totals = (info.allowed, info.rejected, info.successes, info.failures,
                  info.neutral, info.transitions, info.opens)  # fmt: skip
        assert totals == tuple(b.totals()), step
        assert info.retry_after == pytest.approx(b.retry_after, abs=0.05), step


def test_a_pure_python_process_lists_and_refuses_to_open(name: str) -> None:
    make(name)
    env = {**os.environ, "QBREAKER_NO_EXTENSIONS": "1"}
    code = PRELUDE + "print(qbreaker.IMPLEMENTATION, [i.name for i in shared.list()])"
    listed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
        env=env,
    )  # fmt: skip
    assert listed.stdout.split() == ["python", f"[{name!r}]"], listed.stderr
    opened = subprocess.run(
        [sys.executable, "-c", CLI, "open", name], capture_output=True, text=True,
        timeout=60, env=env,
    )  # fmt: skip
    assert opened.returncode == 1 and "pure-Python core" in opened.stderr
    assert "Traceback" not in opened.stderr


def test_prune_removes_an_abandoned_half_made_file(name: str) -> None:
    path = _fmt.path_of(name)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    (removed,) = shared_mod.prune()
    assert removed.path == path and removed.reason.startswith("half-made")
    assert not os.path.exists(path)


def test_no_directory_lists_nothing_and_says_why(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = f"/dev/shm/qbtest-missing-{uuid.uuid4().hex}"
    monkeypatch.setattr(_fmt, "DIRECTORY", missing, raising=False)
    monkeypatch.setenv("QBREAKER_SHM_DIR", missing)
    assert shared_mod.list() == [] and shared_mod.unusable() == []
    assert shared_mod.prune() == []
    assert main(["status"]) == 0
    assert "need POSIX shared memory" in capsys.readouterr().out
    assert main(["status", "--json"]) == 0
    as_json = json.loads(capsys.readouterr().out)
    assert (as_json["supported"], as_json["low_space"]) == (False, False)


def test_open_existing_never_creates(name: str) -> None:
    with pytest.raises(FileNotFoundError):
        shared_mod.open_existing(name)
    assert _fmt.segment_paths() == []
    with pytest.raises(ValueError, match="without '/'"):
        shared_mod.open_existing("a/b")
    make(name, failure_rate_threshold=0.5, window_size=20)
    b = shared_mod.open_existing(name)
    assert b.name == name and b.policy.window_kind and b.consecutive_failures == 1
