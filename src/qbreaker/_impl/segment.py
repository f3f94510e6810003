"""Named shared-memory segments holding one breaker cell each.

One segment per breaker name, per user, per host: a regular file in
``/dev/shm`` (Linux), named ``qbreaker-v<layout>-<uid>-<hash of the name>``
so a rolling deploy that mixes layouts never shares one, and no user-given
text reaches a path. Its bytes are laid out in ``segment_format``.

The directory is $QBREAKER_SHM_DIR if set (see check_directory for which
ones are accepted). Nothing in a segment is a lock: a killed process cannot
leave it held. A fresh segment is all zeros, which is a closed cell, so the
creator reserves its pages (a full tmpfs is an error then, not a SIGBUS on
first touch) and writes only the header (and a window's settings) before
publishing the magic.

Opening and pruning follow one protocol on the file (flock, which the
kernel drops when a process dies): a process that creates or maps a
segment holds a shared lock from open to mmap (a creator until it has
published the magic), then checks the path still names the file it mapped;
a prune removes a file only under an exclusive lock; a half-made segment
(no magic, older than HALF_MADE_GRACE) is removed under an exclusive lock
and created afresh, with O_EXCL deciding who creates.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import stat
import sys
import time
import weakref
from typing import Any, Callable, NamedTuple

from .._errors import SharedSpaceError, SharedStateError
from .._policy import Policy
from .segment_format import (
    CELL_SIZE,
    HEADER_SIZE,
    MAGIC,
    check_directory,
    check_header,
    check_name,
    describe_policy,
    directory,
    path_of,
    total_size,
    write_header,
)

ATTACH_WAIT = 2.0  # seconds an attacher waits for a creator to publish
LOCK_WAIT = 1.0  # seconds to wait for a prune's or a takeover's exclusive lock
# A segment whose magic is still 0 this long after it was last changed, and
# whose creator holds no lock, is taken over (its creator died).
HALF_MADE_GRACE = 10.0
OPEN_ATTEMPTS = 8  # rounds of open_segment / _map before giving up
# fallocate's (and open's, out of inodes) ways of saying the space ran out.
_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.ENOMEM})


class Segment(NamedTuple):
    """An open, validated segment. ``buffer`` must outlive its breaker."""

    name: str
    path: str
    buffer: mmap.mmap
    policy: Policy
    created: bool


class Atomics(NamedTuple):
    """An acquire load and a release store of the aligned 64-bit word at an
    offset of a buffer: the compiled core's (``u64_load``, ``u64_store``).

    The magic is published and read with them, so an attacher that sees it
    also sees the header written before it. This module does not import the
    compiled core (it sits below it): whoever loads the core provides them.
    """

    load: Callable[[Any, int], int]
    store: Callable[[Any, int, int], None]


_atomics: Atomics | None = None


def provide_atomics(atomics: Atomics) -> None:
    """Called once the compiled core is loaded (qbreaker._impl.select)."""
    global _atomics
    _atomics = atomics


def _word_ops() -> Atomics:
    if _atomics is None:
        raise SharedStateError(
            "shared breakers need the compiled core's atomic operations, and "
            "the compiled core is not loaded (QBREAKER_NO_EXTENSIONS is set, "
            "or this is a pure-Python install)"
        )
    return _atomics


# Each shared breaker's mapping lives exactly as long as the breaker.
_segments: weakref.WeakKeyDictionary[Any, Segment] = weakref.WeakKeyDictionary()


def _after_fork_in_child() -> None:
    # The child inherits the parent's counter slot with the mapping; two
    # processes counting plainly in one slot would lose counts.
    for breaker in list(_segments):
        breaker._forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def attach(breaker: Any, name: str, policy: Policy | None, adopt: bool) -> Segment:
    """Open the segment ``name`` for ``breaker`` (see open_segment) and keep
    its mapping for as long as the breaker lives."""
    segment = open_segment(name, policy, adopt)
    _segments[breaker] = segment
    return segment


def name_of(breaker: Any) -> str | None:
    """The shared name of ``breaker``, or None for a process-local one."""
    segment = _segments.get(breaker)
    return None if segment is None else segment.name


def open_segment(name: str, policy: Policy | None, adopt: bool) -> Segment:
    """Create the named segment with ``policy``, or attach to it.

    Attaching with another policy is a SharedStateError unless ``adopt``,
    which takes the segment's policy instead. ``policy`` None means adopt.
    No room for a new segment is a SharedSpaceError.
    """
    if not sys.platform.startswith("linux"):
        raise SharedStateError(
            f"shared breakers need POSIX shared memory in {directory()} (Linux); "
            f"not available on {sys.platform}"
        )
    check_name(name)
    _word_ops()  # refuse before making a file that could not be published
    check_directory(directory())
    path = path_of(name)
    # Each round either returns or saw the file replaced or removed under it
    # (a prune, a takeover of a half-made one): then look again.
    for _ in range(OPEN_ATTEMPTS):
        if policy is not None:
            created = _create(name, path, policy)
            if created is not None:
                return created
        attached = _attach(name, path, policy, adopt or policy is None)
        if attached is not None:
            return attached
    raise SharedStateError(
        f"{path} was replaced or removed {OPEN_ATTEMPTS} times while "
        f"opening it; is something removing segments in a loop?"
    )


def _create(name: str, path: str, policy: Policy) -> Segment | None:
    """The new segment, or None if ``path`` exists (or vanished: attach sees)."""
    size = total_size(policy)
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        return None
    except OSError as exc:
        if exc.errno in _SPACE_ERRNOS:
            raise SharedSpaceError(_no_space(name, size, exc)) from None
        raise SharedStateError(
            f"cannot create the segment {path} for shared breaker {name!r}: "
            f"{exc.strerror}"
        ) from None
    buffer: mmap.mmap | None = None
    try:
        # Held until the magic is published: a half-made takeover (LOCK_EX)
        # never takes a live creator's segment, and a prune skips it.
        _lock_shared(fd, path)
        info = os.fstat(fd)
        _reserve(fd, size, name)
        buffer = mmap.mmap(fd, size)
        if not _still_names(path, info):
            # A prune removed the empty file before this process held the
            # lock: this mapping is nobody's; attaching finds the path gone.
            buffer.close()
            return None
        write_header(buffer, name, policy, size)
        _publish(buffer)
        return Segment(name, path, buffer, policy, True)
    except BaseException:
        if buffer is not None:
            buffer.close()
        with contextlib.suppress(OSError):
            if _still_names(path, os.fstat(fd)):
                os.unlink(path)  # never leave a half-made file behind
        raise
    finally:
        _unlock_and_close(fd)


def _reserve(fd: int, size: int, name: str) -> None:
    # Pages of a file sized by ftruncate alone are allocated on first touch:
    # on a full tmpfs that touch is a SIGBUS that kills the process. Taking
    # them now turns a full directory into an error here.
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno in _SPACE_ERRNOS:
            raise SharedSpaceError(_no_space(name, size, exc)) from None
        if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
            raise
        try:  # a filesystem without fallocate: write the zeros
            os.pwrite(fd, bytes(size), 0)
        except OSError as write_exc:
            if write_exc.errno in _SPACE_ERRNOS:
                raise SharedSpaceError(_no_space(name, size, write_exc)) from None
            raise


def _no_space(name: str, size: int, exc: OSError) -> str:
    where = directory()
    return (
        f"no space left for shared breaker {name!r}: a segment needs {size} "
        f"bytes of memory in {where} ({exc.strerror}). Give it room (Docker: "
        f"--shm-size; Kubernetes: an emptyDir with medium: Memory mounted "
        f"there), set QBREAKER_SHM_DIR to a directory with space, or remove "
        f"unused segments with python -m qbreaker prune"
    )


def _attach(name: str, path: str, policy: Policy | None, adopt: bool) -> Segment | None:
    """The attached segment, or None if ``path`` vanished or was taken over."""
    try:
        buffer, info = _map(path, name)
    except FileNotFoundError:
        if policy is None:
            raise
        return None
    if buffer is None or _wait_for_magic(buffer) == 0:
        if buffer is not None:
            buffer.close()
        if policy is None:
            raise SharedStateError(_half_made(path, info))
        _take_over(path, info)
        return None
    try:
        found = read_header(buffer, path)
        if policy is not None and found != policy and not adopt:
            raise SharedStateError(
                f"shared breaker {name!r} exists with another policy "
                f"({describe_policy(found)}) than this one "
                f"({describe_policy(policy)}); "
                f"pass shared_policy='adopt' to use the existing one, or unlink it"
            )
    except BaseException:
        buffer.close()
        raise
    return Segment(name, path, buffer, found, False)


def map_existing(path: str) -> mmap.mmap:
    """Open and map an existing segment after checking who owns it.

    FileNotFoundError if it is gone, or keeps being replaced.
    """
    buffer, info = _map(path, None)
    if buffer is None:
        raise SharedStateError(_half_made(path, info))
    return buffer


def _map(path: str, name: str | None) -> tuple[mmap.mmap | None, os.stat_result]:
    """The mapped file, or None if it stays empty (a creator died sizing it)."""
    # The attach side of the lock protocol: a shared lock while mapping, so a
    # prune (exclusive lock) never removes a file between open and mmap;
    # then the path must still name the mapped file, or it was removed
    # before this process held the lock, and the mapping is nobody's.
    for _ in range(OPEN_ATTEMPTS):
        fd = _open_existing(path)
        try:
            _lock_shared(fd, path)
            info = _sized(fd)
            if info.st_size == 0:
                _check_owner(path, info)
                return None, info
            _check_file(path, info)
            if name is not None:
                _check_backed(fd, info, path, name)
            buffer = mmap.mmap(fd, info.st_size)
            if _still_names(path, info):
                return buffer, info
            buffer.close()
        finally:
            _unlock_and_close(fd)
    raise FileNotFoundError(errno.ENOENT, "replaced while being opened", path)


def _open_existing(path: str) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except PermissionError:
        try:
            owner = os.stat(path, follow_symlinks=False).st_uid
        except OSError:
            raise SharedStateError(f"{path}: permission denied") from None
        raise SharedStateError(_blocked(path, owner)) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SharedStateError(f"{path} is a symbolic link; refusing it") from None
        raise


def _blocked(path: str, owner: int) -> str:
    return (
        f"{path} belongs to uid {owner}, not to this user ({os.geteuid()}): "
        f"another user created this breaker's segment first, and this user "
        f"cannot use it. Set QBREAKER_SHM_DIR to a private directory (mode "
        f"0700) of this user, or have root remove the file"
    )


def _sized(fd: int) -> os.stat_result:
    # A creator sizes its file just after creating it: wait for that.
    deadline = time.monotonic() + ATTACH_WAIT
    while (info := os.fstat(fd)).st_size == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    return info


def _check_file(path: str, info: os.stat_result) -> None:
    _check_owner(path, info)
    if info.st_size < HEADER_SIZE + CELL_SIZE:
        raise SharedStateError(
            f"{path} is {info.st_size} bytes, too short for a breaker "
            f"(at least {HEADER_SIZE + CELL_SIZE}): truncated?"
        )


def _check_owner(path: str, info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise SharedStateError(f"{path} is not a regular file")
    if info.st_uid != os.geteuid():
        raise SharedStateError(_blocked(path, info.st_uid))
    if info.st_mode & 0o077:
        raise SharedStateError(
            f"{path} has mode {stat.S_IMODE(info.st_mode):o}; a segment must "
            f"be readable and writable by its owner alone (0600)"
        )


def _check_backed(fd: int, info: os.stat_result, path: str, name: str) -> None:
    # A sparse segment (made by ftruncate alone, as older versions did) has
    # pages that are allocated on first touch, a SIGBUS if the directory is
    # full then: reserve them now, or refuse it. Not before its magic is
    # published: its creator may still be at work, and fallocate would make
    # a half-made one look young again (it updates the times).
    if info.st_blocks * 512 >= info.st_size or _unpublished(fd):
        return
    try:
        os.posix_fallocate(fd, 0, info.st_size)
    except OSError as exc:
        if exc.errno in _SPACE_ERRNOS:
            raise SharedSpaceError(
                f"{path} is not fully backed by memory, and there is no room "
                f"to back it: " + _no_space(name, info.st_size, exc)
            ) from None
        if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
            raise


def _lock_shared(fd: int, path: str) -> None:
    # A prune holds its exclusive lock only while it looks at the file.
    if not _lock(fd, exclusive=False):
        raise SharedStateError(
            f"{path} stayed locked for {LOCK_WAIT} s (a prune or a takeover "
            f"that never finished?); try again"
        )


def _lock(fd: int, *, exclusive: bool) -> bool:
    import fcntl  # POSIX only; this module is imported everywhere

    operation = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.002)


def _unlock_and_close(fd: int) -> None:
    # A mapping keeps the open file, and so its flock, alive after close:
    # unlock first, or this process would hold the lock as long as it maps
    # the segment, and prunes and takeovers would find it busy forever.
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def _still_names(path: str, info: os.stat_result) -> bool:
    try:
        now = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return (now.st_dev, now.st_ino) == (info.st_dev, info.st_ino)


def _wait_for_magic(buffer: mmap.mmap) -> int:
    """The magic, once the creator has published it (bounded wait): else 0."""
    deadline = time.monotonic() + ATTACH_WAIT
    while (magic := _magic(buffer)) == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    return magic


def _magic(buffer: mmap.mmap) -> int:
    return int(_word_ops().load(buffer, 0))


def _age(info: os.stat_result) -> float:
    return time.time() - max(info.st_mtime, info.st_ctime)


def _half_made(path: str, info: os.stat_result) -> str:
    due = max(0.0, HALF_MADE_GRACE - _age(info))
    return (
        f"{path} is half-made: its creator has not published its header "
        f"(it died while creating it?); a process that opens it with a policy "
        f"takes it over once it is {HALF_MADE_GRACE:g} s old, in {due:.1f} s"
    )


def _unpublished(fd: int) -> bool:
    return not os.pread(fd, 8, 0).strip(b"\0")


def _take_over(path: str, mapped: os.stat_result) -> None:
    """Remove a half-made segment whose creator is gone, or raise.

    A live creator holds a shared lock until it publishes, so the exclusive
    lock is only ever granted once it is gone. The caller then creates it
    afresh with O_EXCL: of racing attachers, exactly one wins.
    """
    try:
        info = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return  # someone else removed it first
    if (info.st_dev, info.st_ino) != (mapped.st_dev, mapped.st_ino):
        return  # already replaced
    if _age(info) < HALF_MADE_GRACE:
        raise SharedStateError(_half_made(path, info))
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        if not _lock(fd, exclusive=True):
            raise SharedStateError(
                f"{path} is half-made and a process still holds it (its "
                f"creator, stalled?); try again later"
            )
        # Under the lock, nobody can publish or remove it: check again.
        if _still_names(path, mapped) and _unpublished(fd):
            os.unlink(path)
    finally:
        _unlock_and_close(fd)


def read_header(buffer: mmap.mmap, path: str) -> Policy:
    """Wait (bounded) for the creator's magic, then validate the header."""
    deadline = time.monotonic() + ATTACH_WAIT
    while (magic := _magic(buffer)) == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    if magic != MAGIC:
        if magic == 0:
            raise SharedStateError(
                f"{path} was never initialised (its creator died?); "
                f"remove it with qbreaker.shared.unlink(name)"
            )
        raise SharedStateError(f"{path} is not a qbreaker segment (bad magic)")
    try:
        return check_header(buffer, len(buffer))
    except SharedStateError as exc:
        raise SharedStateError(f"{path}: {exc}") from None


def _publish(buffer: mmap.mmap) -> None:
    _word_ops().store(buffer, 0, MAGIC)
