"""Host-wide segments' life: where they live, who may block them, the lock
protocol with prune, half-made segments, and the state's age.

Everything here uses real files and real processes (os.fork, subprocess).
"""

from __future__ import annotations

import fcntl  # imported before any fork that drops privileges
import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import qbreaker
from qbreaker import State
from qbreaker import shared as shared_mod
from qbreaker._impl import segment as _shm
from qbreaker._impl import segment_format as _fmt

pytestmark = pytest.mark.skipif(
    not _fmt.supported(), reason="POSIX shared memory in /dev/shm"
)
compiled = pytest.mark.c_extension
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as others")


@pytest.fixture
def name() -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    shared_mod.unlink(name)


@pytest.fixture
def private_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    where = tmp_path / "segments"
    where.mkdir(mode=0o700)
    monkeypatch.setenv("QBREAKER_SHM_DIR", str(where))
    return where


def in_child(work: Callable[[], object], timeout: float = 30) -> tuple[int, object]:
    """Fork; run ``work`` in the child; its exit status and JSON result."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            os.close(read)
            result = work()
            os.write(write, json.dumps(result).encode())
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            os.write(write, json.dumps([type(exc).__name__, str(exc)]).encode())
            code = 1
        finally:
            os._exit(code)
    os.close(write)
    deadline = time.monotonic() + timeout
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("child timed out")
        time.sleep(0.01)
    with os.fdopen(read, "rb") as f:
        raw = f.read()
    return done[1], json.loads(raw) if raw else None


# -- BreakerSnapshot.shared --------------------------------------------------------


def test_a_local_breaker_has_no_shared_name(impl: object) -> None:
    assert impl.Breaker(name="local").metrics().shared is None  # type: ignore[attr-defined]


@compiled
def test_a_shared_breaker_reports_its_name(name: str) -> None:
    b = qbreaker.CircuitBreaker(2, 30, 1, name="x", shared=name)
    assert b.metrics().shared == name


# -- QBREAKER_SHM_DIR --------------------------------------------------------------


@compiled
def test_segments_go_to_the_named_directory(name: str, private_dir: Path) -> None:
    b = qbreaker.CircuitBreaker(2, 30, 1, shared=name)
    path = Path(_fmt.path_of(name))
    assert path.parent == private_dir and path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not os.path.exists(os.path.join("/dev/shm", path.name))
    other = qbreaker.CircuitBreaker(2, 30, 1, shared=name)
    b.record_failure()
    other.record_failure()
    assert b.state is State.OPEN
    assert shared_mod.exists(name) and shared_mod.unlink(name)


@compiled
def test_a_sticky_directory_is_accepted(name: str, private_dir: Path) -> None:
    private_dir.chmod(0o1777)
    qbreaker.CircuitBreaker(2, 30, 1, shared=name)
    assert Path(_fmt.path_of(name)).parent == private_dir


@compiled
@pytest.mark.parametrize("mode", [0o777, 0o770, 0o720, 0o702])
def test_a_directory_others_can_write_is_refused(
    name: str, private_dir: Path, mode: int
) -> None:
    private_dir.chmod(mode)
    with pytest.raises(shared_mod.SharedStateError, match=f"mode {mode:o}") as info:
        qbreaker.CircuitBreaker(2, 30, 1, shared=name)
    assert str(private_dir) in str(info.value) and "sticky" in str(info.value)
    assert os.listdir(private_dir) == []


@compiled
@as_root
def test_a_directory_of_another_user_is_refused(name: str, private_dir: Path) -> None:
    os.chown(private_dir, 65534, 65534)
    with pytest.raises(shared_mod.SharedStateError, match="owner uid 65534"):
        qbreaker.CircuitBreaker(2, 30, 1, shared=name)


@compiled
@pytest.mark.parametrize(
    ("setting", "pattern"),
    [
        ("missing", "does not exist"),
        ("file", "is not a directory"),
        ("relative", "must be an absolute path"),
    ],
)
def test_a_directory_that_is_not_one_is_refused(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str,
    pattern: str,
) -> None:  # fmt: skip
    where = {
        "missing": str(tmp_path / "nowhere"),
        "file": str(tmp_path / "a-file"),
        "relative": "segments",
    }[setting]
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("QBREAKER_SHM_DIR", where)
    with pytest.raises(shared_mod.SharedStateError, match=pattern) as info:
        qbreaker.CircuitBreaker(2, 30, 1, shared=name)
    assert f"QBREAKER_SHM_DIR={where!r}" in str(info.value)


# -- another user blocking a name --------------------------------------------------


@compiled
@as_root
def test_a_name_another_user_created_first_is_a_clear_error(name: str) -> None:
    # The victim is an unprivileged user (a forked child that dropped root);
    # the attacker (root here) pre-created the victim's predictable path in a
    # shared sticky directory.
    where = tempfile.mkdtemp(prefix="qbreaker-sticky-")
    try:
        os.chmod(where, 0o1777)
        victim = 65534
        path = os.path.join(
            where, os.path.basename(_fmt.path_of(name)).replace(
                f"-{os.geteuid()}-", f"-{victim}-")
        )  # fmt: skip
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))

        def attempt() -> object:
            os.setgid(victim)
            os.setuid(victim)
            os.environ["QBREAKER_SHM_DIR"] = where
            qbreaker.CircuitBreaker(2, 30, 1, shared=name)
            return "attached"

        status, result = in_child(attempt)
        assert status != 0 and isinstance(result, list), result
        kind, message = result
        assert kind == "SharedStateError", result
        for part in (path, "uid 0", "QBREAKER_SHM_DIR", "root remove"):
            assert part in message, (part, message)
    finally:
        for entry in os.listdir(where):
            os.unlink(os.path.join(where, entry))
        os.rmdir(where)


@compiled
@as_root
def test_root_refuses_a_segment_another_user_planted(name: str) -> None:
    qbreaker.CircuitBreaker(2, 30, 1, shared=name)
    os.chown(_fmt.path_of(name), 65534, 65534)
    with pytest.raises(shared_mod.SharedStateError, match="uid 65534") as info:
        qbreaker.CircuitBreaker(2, 30, 1, shared=name)
    assert "QBREAKER_SHM_DIR" in str(info.value)


# -- the lock protocol (attach side) -----------------------------------------------


def _hold_exclusive(path: str) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


@compiled
def test_an_attacher_never_maps_a_file_a_prune_removes(name: str) -> None:
    tripped = qbreaker.CircuitBreaker(1, 30, 1, shared=name)
    tripped.record_failure()
    path = _fmt.path_of(name)
    fd = _hold_exclusive(path)  # a prune, looking at it
    got: list[object] = []
    opener = threading.Thread(
        target=lambda: got.append(qbreaker.CircuitBreaker(1, 30, 1, shared=name))
    )
    opener.start()
    time.sleep(0.2)
    assert not got  # waiting for the prune
    os.unlink(path)  # the prune found it unused
    os.close(fd)
    opener.join(10)
    (fresh,) = got
    assert fresh.state is State.CLOSED and tripped.state is State.OPEN
    fresh.record_failure()
    assert tripped.state is State.OPEN and fresh.state is State.OPEN
    assert fresh.totals().failures == 1 and tripped.totals().failures == 1


@compiled
def test_a_lock_held_too_long_is_an_error(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    qbreaker.CircuitBreaker(1, 30, 1, shared=name)
    monkeypatch.setattr(_shm, "LOCK_WAIT", 0.1)
    fd = _hold_exclusive(_fmt.path_of(name))
    try:
        with pytest.raises(shared_mod.SharedStateError, match="stayed locked"):
            qbreaker.CircuitBreaker(1, 30, 1, shared=name)
    finally:
        os.close(fd)
    qbreaker.CircuitBreaker(1, 30, 1, shared=name)  # free again


# -- half-made segments ------------------------------------------------------------


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    # Forked children inherit these.
    monkeypatch.setattr(_shm, "ATTACH_WAIT", 0.05)
    monkeypatch.setattr(_shm, "HALF_MADE_GRACE", 0.5)
    monkeypatch.setattr(_shm, "LOCK_WAIT", 0.2)


def _die_while_creating(name: str, step: str, how: str) -> Callable[[], object]:
    """A creator that dies at ``step`` (_reserve or _publish) of _create."""

    def create() -> object:
        def die(*args: object) -> None:
            if how == "SIGKILL":
                os.kill(os.getpid(), signal.SIGKILL)
            os._exit(3)

        setattr(_shm, step, die)
        qbreaker.CircuitBreaker(2, 30, 1, shared=name)
        return "published?"

    return create


def _write_as_an_old_creator(name: str) -> None:
    # What a creator of the previous release left when it died before
    # publishing: ftruncate'd (sparse), the header written, no magic.
    qbreaker.CircuitBreaker(2, 30, 1, shared=name)
    path = _fmt.path_of(name)
    with open(path, "rb") as f:
        header = bytearray(f.read(_fmt.HEADER_SIZE))
    size = os.path.getsize(path)
    shared_mod.unlink(name)
    header[0:8] = bytes(8)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    os.ftruncate(fd, size)
    os.pwrite(fd, bytes(header), 0)
    os.close(fd)


@compiled
@pytest.mark.parametrize(
    ("step", "how"),
    [
        ("_publish", "SIGKILL"),
        ("_publish", "_exit"),
        ("_reserve", "SIGKILL"),  # leaves an empty file
        ("old release", ""),
    ],
)
def test_a_half_made_segment_is_taken_over_after_the_grace(
    name: str, quick: None, step: str, how: str
) -> None:
    if step == "old release":
        _write_as_an_old_creator(name)
    else:
        status, _ = in_child(_die_while_creating(name, step, how))
        assert (
            os.WIFSIGNALED(status) if how == "SIGKILL" else os.WEXITSTATUS(status) == 3
        )
    path = _fmt.path_of(name)
    half_made = os.stat(path)
    assert (half_made.st_size == 0) == (step == "_reserve")
    for _ in range(2):  # trying again does not make it look younger
        with pytest.raises(shared_mod.SharedStateError, match="half-made") as info:
            qbreaker.CircuitBreaker(2, 30, 1, shared=name)
        assert "takes it over" in str(info.value) and " in 0." in str(info.value)
    assert os.stat(path).st_ctime == half_made.st_ctime
    time.sleep(0.6)
    b = qbreaker.CircuitBreaker(2, 30, 1, shared=name)
    assert _shm._segments[b].created
    b.record_failure()
    b.record_failure()
    assert qbreaker.CircuitBreaker(2, 30, 1, shared=name).state is State.OPEN


@compiled
def test_a_live_creator_is_never_taken_over(name: str, quick: None) -> None:
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()

    def stalled_creator() -> object:
        publish = _shm._publish

        def stall(buffer: object) -> None:
            os.write(ready_w, b"x")
            os.read(go_r, 1)  # stalled, holding its shared lock
            publish(buffer)  # type: ignore[arg-type]

        _shm._publish = stall  # type: ignore[assignment]
        b = qbreaker.CircuitBreaker(2, 30, 1, shared=name)
        b.record_failure()
        b.record_failure()
        return str(b.state)

    result: list[tuple[int, object]] = []
    child = threading.Thread(target=lambda: result.append(in_child(stalled_creator)))
    child.start()
    try:
        assert os.read(ready_r, 1) == b"x"
        time.sleep(0.6)  # past the grace: only the lock protects it now
        with pytest.raises(shared_mod.SharedStateError, match="still holds it"):
            qbreaker.CircuitBreaker(2, 30, 1, shared=name)
    finally:
        os.write(go_w, b"x")
        child.join(30)
    assert result == [(0, "open")]
    assert qbreaker.CircuitBreaker(2, 30, 1, shared=name).state is State.OPEN


@compiled
def test_racing_attachers_take_over_once(name: str, quick: None) -> None:
    status, _ = in_child(_die_while_creating(name, "_publish", "SIGKILL"))
    assert os.WIFSIGNALED(status)
    time.sleep(0.6)
    start_r, start_w = os.pipe()
    racers = 6

    def race() -> object:
        os.read(start_r, 1)
        b = qbreaker.CircuitBreaker(100, 30, 1, shared=name)
        b.record_failure()
        return _shm._segments[b].created

    results: list[tuple[int, object]] = []
    threads = [
        threading.Thread(target=lambda: results.append(in_child(race)))
        for _ in range(racers)
    ]
    for t in threads:
        t.start()
    time.sleep(0.3)  # every racer forked and waiting
    os.write(start_w, b"x" * racers)
    for t in threads:
        t.join(60)
    assert sorted(results, key=str) == sorted(
        [(0, True)] + [(0, False)] * (racers - 1), key=str
    ), results
    # They all share the one new segment.
    b = qbreaker.CircuitBreaker(100, 30, 1, shared=name)
    assert b.consecutive_failures == racers


# -- time_in_state -----------------------------------------------------------------


@compiled
def test_attaching_keeps_the_time_in_state(name: str) -> None:
    first = qbreaker.CircuitBreaker(1, 60, 1, shared=name)
    assert first.time_in_state < 1  # creation dates it
    first.record_failure()
    time.sleep(0.3)
    second = qbreaker.CircuitBreaker(1, 60, 1, shared=name)
    assert second.time_in_state >= 0.25 and first.time_in_state >= 0.25
    # As status and list() open it: adopting whatever policy it has.
    adopted = qbreaker.CircuitBreaker(shared=name, shared_policy="adopt")
    assert adopted.time_in_state >= 0.25 and first.time_in_state >= 0.25
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(f"""
            import qbreaker
            b = qbreaker.CircuitBreaker(1, 60, 1, shared={name!r})
            print(b.state, b.time_in_state)
        """)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    state, age = result.stdout.split()
    assert state == "open" and float(age) >= 0.25, result.stderr
    assert first.time_in_state >= float(age)
    first.reset()  # a transition dates it again
    assert second.time_in_state < 0.25
