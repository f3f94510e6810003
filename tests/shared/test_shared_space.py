"""Host-wide breakers when the segment directory runs out of space.

Each scenario runs for real in a child process with a 40 KiB tmpfs mounted
in a private mount namespace (``unshare -m``, so root only): on /dev/shm
itself, or on a directory named by QBREAKER_SHM_DIR. A segment of the
default policy takes three pages, so three fit.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

import qbreaker
from qbreaker import shared as shared_mod
from qbreaker._impl import segment_format as _fmt

pytestmark = [
    pytest.mark.c_extension,
    pytest.mark.skipif(not _fmt.supported(), reason="POSIX shared memory in /dev/shm"),
]


def _namespaces() -> str | None:
    """Why a private mount namespace with a tmpfs is unavailable, or None."""
    if os.geteuid() != 0:
        return "mounting a tmpfs in a private mount namespace needs root"
    if shutil.which("unshare") is None:
        return "no unshare(1)"
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=40k tmpfs /mnt"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if probe.returncode != 0:
        return f"unshare -m / mount -t tmpfs failed: {probe.stderr.strip()}"
    return None


needs_namespace = pytest.mark.skipif(
    (reason := _namespaces()) is not None, reason=reason or ""
)


def _in_small_tmpfs(mountpoint: str, code: str, env: dict[str, str]) -> dict:
    """Run ``code`` with a 40 KiB tmpfs on ``mountpoint``; its JSON result."""
    script = (
        f"mount -t tmpfs -o size=40k,mode=1777 tmpfs {mountpoint} && "
        f'exec "$0" -c "$1"'
    )
    result = subprocess.run(
        ["unshare", "-m", "sh", "-c", script, sys.executable, textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )
    # A SIGBUS would show as -7 here: the process must exit normally.
    assert result.returncode == 0, (result.returncode, result.stderr)
    return json.loads(result.stdout.strip().splitlines()[-1])


FILL_UP = """
    import json, logging, os
    import qbreaker
    from qbreaker import shared
    from qbreaker._impl import segment_format as _fmt

    where = _fmt.directory()
    warnings = []

    class Collect(logging.Handler):
        def emit(self, record):
            if record.levelno == logging.WARNING:
                warnings.append(record.getMessage())

    logging.getLogger("qbreaker").addHandler(Collect())

    # Standalone breakers until the space runs out: an error, not a SIGBUS.
    standalone, error = [], None
    for i in range(40):
        try:
            b = qbreaker.CircuitBreaker(3, 30, 1, shared=f"solo-{i}")
        except shared.SharedStateError as exc:
            error = (type(exc).__name__, str(exc))
            break
        b.record_failure()  # touch the cell and a counter slot
        b.allow()
        standalone.append(b)
    files_when_full = sorted(os.listdir(where))

    # A shared group keeps serving every name, with process-local fallbacks.
    group = qbreaker.BreakerGroup(shared=True, max_failures=2, reset_timeout=30)
    served = 0
    for i in range(12):
        name = f"group-{i}"
        if group.allow(name):
            group.record_failure(name)
            served += 1
    local = [n for n, m in group.metrics().items() if m.shared is None]
    warnings_full = len(warnings)

    # Room again: a new name is shared again; then full again, warned again.
    for i in range(len(standalone)):
        shared.unlink(f"solo-{i}")
    standalone.clear()
    again = group["after-room"].metrics().shared
    for i in range(12):
        group.allow(f"later-{i}")
    print(json.dumps({
        "where": where,
        "standalone": len(files_when_full),
        "error": error,
        "files_when_full": files_when_full,
        "served": served,
        "local": len(local),
        "warnings_full": warnings_full,
        "warnings": warnings,
        "again": again,
        "size": _fmt.total_size(b.policy),
    }))
"""


@needs_namespace
@pytest.mark.parametrize("place", ["dev-shm", "QBREAKER_SHM_DIR"])
def test_a_full_directory_is_an_error_and_a_group_falls_back(
    place: str, tmp_path: Path
) -> None:
    if place == "dev-shm":
        mountpoint, env = "/dev/shm", {"QBREAKER_SHM_DIR": ""}
    else:
        mountpoint = str(tmp_path / "segments")
        os.mkdir(mountpoint)
        env = {"QBREAKER_SHM_DIR": mountpoint}
    out = _in_small_tmpfs(mountpoint, FILL_UP, env)
    assert out["where"] == mountpoint
    assert out["standalone"] == 3  # 12 KiB each in 40 KiB
    kind, message = out["error"]
    assert kind == "SharedSpaceError"
    for part in (mountpoint, f"{out['size']} bytes", "--shm-size", "emptyDir",
                 "QBREAKER_SHM_DIR", "python -m qbreaker prune"):  # fmt: skip
        assert part in message, (part, message)
    # No half-made file left behind by the creation that failed.
    assert len(out["files_when_full"]) == 3
    assert out["served"] == 12 and out["local"] == 12
    assert out["warnings_full"] == 1, out["warnings"]
    assert "no room for shared breaker" in out["warnings"][0]
    assert out["again"] == "after-room"
    assert len(out["warnings"]) == 2, out["warnings"]


SPARSE = """
    import json, os
    import qbreaker
    from qbreaker import shared
    from qbreaker._impl import segment_format as _fmt

    # A segment whose tail was never backed (as ftruncate alone leaves it),
    # then a directory filled up: attaching must refuse it, not die later.
    model = qbreaker.CircuitBreaker(3, 30, 1, shared="sparse")
    path = _fmt.path_of("sparse")
    with open(path, "rb") as f:
        header = f.read(4096)
    size = os.path.getsize(path)
    del model
    shared.unlink("sparse")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, header)
    os.ftruncate(fd, size)
    os.close(fd)
    blocks = os.stat(path).st_blocks
    filler = os.open("/dev/shm/filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(filler, bytes(4096))
    except OSError:
        os.close(filler)
    try:
        b = qbreaker.CircuitBreaker(3, 30, 1, shared="sparse")
        outcome = ["attached", None]
        for _ in range(3):
            b.record_failure()
    except shared.SharedStateError as exc:
        outcome = [type(exc).__name__, str(exc)]
    print(json.dumps({"blocks": blocks, "size": size, "outcome": outcome}))
"""


@needs_namespace
def test_a_sparse_segment_in_a_full_directory_is_refused() -> None:
    out = _in_small_tmpfs("/dev/shm", SPARSE, {"QBREAKER_SHM_DIR": ""})
    assert out["blocks"] * 512 < out["size"]  # really sparse
    kind, message = out["outcome"]
    assert kind == "SharedSpaceError", out
    assert "not fully backed" in message


def test_a_sparse_segment_is_backed_when_attached() -> None:
    name = f"test-{uuid.uuid4().hex[:12]}"
    try:
        qbreaker.CircuitBreaker(3, 30, 1, shared=name)
        path = _fmt.path_of(name)
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            header = f.read(4096)
        shared_mod.unlink(name)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, header)
        os.ftruncate(fd, size)
        os.close(fd)
        assert os.stat(path).st_blocks * 512 < size
        b = qbreaker.CircuitBreaker(3, 30, 1, shared=name)
        assert os.stat(path).st_blocks * 512 >= size
        b.record_failure()
        assert b.consecutive_failures == 1
    finally:
        shared_mod.unlink(name)


def test_a_group_warns_once_per_episode(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The same episode logic as the tmpfs scenarios above, for runs without
    # root: here the directory "fills" by fallocate failing as a full tmpfs
    # does (a real ENOSPC from the kernel is covered above).
    real = os.posix_fallocate
    full = True

    def fallocate(fd: int, offset: int, length: int) -> None:
        if full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd, offset, length)

    monkeypatch.setattr(os, "posix_fallocate", fallocate)

    def warnings() -> int:
        return sum("no room" in r.getMessage() for r in caplog.records)

    prefix = f"test-{uuid.uuid4().hex[:8]}"
    group = qbreaker.BreakerGroup(shared=True, max_failures=2, reset_timeout=30)
    names = [f"{prefix}-{i}" for i in range(6)]
    try:
        with caplog.at_level(logging.WARNING, logger="qbreaker"):
            for n in names[:3]:
                assert group.allow(n)
                group.record_failure(n)
                group.record_failure(n)
                assert group[n].state is qbreaker.State.OPEN
                assert group[n].metrics().shared is None
                assert not shared_mod.exists(n)  # nothing half-made left
            assert warnings() == 1
            full = False
            assert group[names[3]].metrics().shared == names[3]
            full = True
            for n in names[4:]:
                assert group[n].metrics().shared is None
            assert warnings() == 2
        with pytest.raises(shared_mod.SharedSpaceError, match="--shm-size"):
            qbreaker.CircuitBreaker(2, 30, 1, shared=names[5])
    finally:
        for n in names:
            shared_mod.unlink(n)
