"""Named shared-memory segments holding one breaker cell each.

One segment per breaker name, per user, per host: a regular file in
``/dev/shm`` (Linux), named ``qbreaker-v<layout>-<uid>-<hash of the name>``
so a rolling deploy that mixes layouts never shares one, and no user-given
text reaches a path. It holds a 256-byte header, then the cell (and its
window), at an offset that is a multiple of 64::

    offset  field
    0       magic            u64, stored last (release), read first (acquire)
    8       layout version   u32
    12      header size      u32 (256)
    16      total size       u64
    24      the policy       reset, half-open timeout, counts, window (72 B)
    96      name length      u32, then the name, UTF-8, at most 124 bytes
    256     the cell, then its window
    then    at the next multiple of 64: 128 per-process counter slots,
            64 bytes each (qb_slot in qb_cell.h): owner (pid << 32 |
            nonce), allowed, successes, rejected, PID namespace

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
import hashlib
import mmap
import os
import stat
import struct
import sys
import time
from dataclasses import dataclass

from .._policy import check_policy
from .twin import Policy

LAYOUT_VERSION = 2
MAGIC = int.from_bytes(b"QBRKSHM1", "little")
HEADER_SIZE = 256
CELL_SIZE = 64
WINDOW_HEADER_SIZE = 64
BUCKET_SIZE = 32
SLOT_SIZE = 64
SLOTS = 128
NAME_LIMIT = 124
DIRECTORY = "/dev/shm"
PREFIX = "qbreaker-"

# reset, half-open timeout, max_failures, half_open_max, success_threshold,
# window kind, buckets, minimum calls, span, slow ticks, two rate thresholds.
_POLICY = struct.Struct("<QQIIIIIIQQdd")
_NAME_LENGTH = struct.Struct("<I")
_FIXED = struct.Struct("<QIIQ")  # magic, version, header size, total size
_POLICY_OFFSET = 24
_NAME_OFFSET = _POLICY_OFFSET + _POLICY.size
ATTACH_WAIT = 2.0  # seconds an attacher waits for a creator to publish
LOCK_WAIT = 1.0  # seconds to wait for a prune's or a takeover's exclusive lock
# A segment whose magic is still 0 this long after it was last changed, and
# whose creator holds no lock, is taken over (its creator died).
HALF_MADE_GRACE = 10.0
OPEN_ATTEMPTS = 8  # rounds of open_segment / _map before giving up
ENV_DIRECTORY = "QBREAKER_SHM_DIR"
# fallocate's (and open's, out of inodes) ways of saying the space ran out.
_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.ENOMEM})


class SharedStateError(ValueError):
    """A segment that cannot be used: wrong owner, mode, layout or policy."""


class SharedSpaceError(SharedStateError):
    """No room for a new segment (or to back an existing one) in the directory."""


@dataclass
class Segment:
    """An open, validated segment. ``buffer`` must outlive its breaker."""

    name: str
    path: str
    buffer: mmap.mmap
    policy: Policy
    created: bool


def directory() -> str:
    """Where this process keeps its segments: $QBREAKER_SHM_DIR, else /dev/shm.

    Read on every call, so a test can point each simulated host elsewhere.
    """
    return os.environ.get(ENV_DIRECTORY) or DIRECTORY


def supported() -> bool:
    return sys.platform.startswith("linux") and os.path.isdir(directory())


def check_name(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(f"shared must be a breaker name (str), got {name!r}")
    encoded = name.encode("utf-8", "surrogatepass")
    if not name or len(encoded) > NAME_LIMIT:
        raise ValueError(
            f"shared name must be 1 to {NAME_LIMIT} UTF-8 bytes, got {name!r}"
        )
    if "/" in name or "\\" in name or "\0" in name or not name.isprintable():
        raise ValueError(
            f"shared name must be printable, without '/', '\\\\' or NUL, got {name!r}"
        )
    return name


def path_of(name: str) -> str:
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    filename = f"{PREFIX}v{LAYOUT_VERSION}-{os.geteuid()}-{digest}"
    return os.path.join(directory(), filename)


def total_size(policy: Policy) -> int:
    window = 0
    if policy.window_kind:
        window = WINDOW_HEADER_SIZE + policy.window_buckets * BUCKET_SIZE
    cell = -(-(CELL_SIZE + window) // SLOT_SIZE) * SLOT_SIZE  # slots are 64-aligned
    return HEADER_SIZE + cell + SLOTS * SLOT_SIZE


def encode_policy(policy: Policy) -> bytes:
    return _POLICY.pack(
        policy.reset_ticks,
        policy.half_open_timeout_ticks,
        policy.max_failures,
        policy.half_open_max,
        policy.success_threshold,
        policy.window_kind,
        policy.window_buckets,
        policy.minimum_calls,
        policy.window_span,
        policy.slow_ticks,
        policy.failure_rate_threshold,
        policy.slow_rate_threshold,
    )


def decode_policy(raw: bytes) -> Policy:
    (reset, half_open, failures, probes, threshold, kind, buckets, minimum, span,
     slow, rate, slow_rate) = _POLICY.unpack(raw)  # fmt: skip
    return Policy(
        failures, reset, probes, threshold, half_open, kind, buckets, span,
        minimum, rate, slow_rate, slow,
    )  # fmt: skip


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


def check_directory(where: str) -> None:
    """Refuse a segment directory that another user could tamper with.

    It must belong to this user and not be writable by group or others, or
    be sticky like /dev/shm (1777), where others may create names but never
    remove or replace this user's files.
    """
    source = f"QBREAKER_SHM_DIR={where!r}" if os.environ.get(ENV_DIRECTORY) else where
    if not os.path.isabs(where):
        raise SharedStateError(
            f"the segment directory must be an absolute path, got {source}"
        )
    try:
        info = os.stat(where)
    except FileNotFoundError:
        raise SharedStateError(
            f"the segment directory {source} does not exist; create it "
            f"(mode 0700) or set QBREAKER_SHM_DIR to one that does"
        ) from None
    except OSError as exc:
        raise SharedStateError(
            f"cannot use the segment directory {source}: {exc.strerror}"
        ) from None
    if not stat.S_ISDIR(info.st_mode):
        raise SharedStateError(f"the segment directory {source} is not a directory")
    mode = stat.S_IMODE(info.st_mode)
    if mode & stat.S_ISVTX:
        return
    if info.st_uid != os.geteuid() or mode & 0o022:
        raise SharedStateError(
            f"refusing the segment directory {source} (owner uid {info.st_uid}, "
            f"mode {mode:o}): it must belong to this user (uid {os.geteuid()}) "
            f"and not be writable by group or others, or be sticky like "
            f"/dev/shm (mode 1777)"
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
        _write_header(buffer, name, policy, size)
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


def _write_header(buffer: mmap.mmap, name: str, policy: Policy, size: int) -> None:
    encoded = name.encode("utf-8", "surrogatepass")
    buffer[_POLICY_OFFSET:_NAME_OFFSET] = encode_policy(policy)
    offset = _NAME_OFFSET
    buffer[offset : offset + 4] = _NAME_LENGTH.pack(len(encoded))
    buffer[offset + 4 : offset + 4 + len(encoded)] = encoded
    buffer[8:24] = _FIXED.pack(0, LAYOUT_VERSION, HEADER_SIZE, size)[8:]
    if policy.window_kind:
        _write_window_settings(buffer, policy)


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


def _attach(
    name: str, path: str, policy: Policy | None, adopt: bool
) -> Segment | None:
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
                f"({_describe(found)}) than this one ({_describe(policy)}); "
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
    from .._core_c import u64_load

    return int(u64_load(buffer, 0))


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
    from .._core_c import u64_load

    deadline = time.monotonic() + ATTACH_WAIT
    while (magic := u64_load(buffer, 0)) == 0 and time.monotonic() < deadline:
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


def check_header(data: bytes | mmap.mmap, file_size: int) -> Policy:
    """The policy of a published segment's header, validated; else a
    SharedStateError saying what is wrong (without the path).

    ``data`` holds at least the header and, for a policy with a window, the
    window's header; attaching and the read-only listing both use this, so
    they refuse exactly the same segments.
    """
    _, version, header_size, size = _FIXED.unpack_from(data, 0)
    if version != LAYOUT_VERSION or header_size != HEADER_SIZE:
        raise SharedStateError(
            f"bad layout: version {version}, header {header_size} bytes "
            f"(this qbreaker: version {LAYOUT_VERSION}, {HEADER_SIZE})"
        )
    policy = decode_policy(bytes(data[_POLICY_OFFSET:_NAME_OFFSET]))
    try:
        check_policy(policy)
    except ValueError as exc:
        raise SharedStateError(
            f"bad policy ({exc}): corrupt, or written by something other "
            f"than qbreaker"
        ) from None
    need = total_size(policy)
    if not size == need == file_size:
        raise SharedStateError(
            f"truncated or corrupt: {file_size} bytes, its header says "
            f"{size}, its policy needs {need}"
        )
    if policy.window_kind:
        _check_window_settings(data, policy)
    return policy


def read_name(buffer: mmap.mmap) -> str:
    (length,) = _NAME_LENGTH.unpack_from(buffer, _NAME_OFFSET)
    start = _NAME_OFFSET + 4
    raw = buffer[start : start + min(length, NAME_LIMIT)]
    return raw.decode("utf-8", "surrogatepass")


# qb_window in qb_cell.h: cursor, span, slow ticks, two thresholds, buckets,
# minimum calls; never written after the creator's first write.
_WINDOW_SETTINGS = struct.Struct("<QQQddII")
_WINDOW_FIELDS = (
    "window_span",
    "slow_ticks",
    "failure_rate_threshold",
    "slow_rate_threshold",
    "window_buckets",
    "minimum_calls",
)


def _write_window_settings(buffer: mmap.mmap, policy: Policy) -> None:
    _WINDOW_SETTINGS.pack_into(
        buffer,
        HEADER_SIZE + CELL_SIZE,
        0,
        *(getattr(policy, field) for field in _WINDOW_FIELDS),
    )


def _check_window_settings(data: bytes | mmap.mmap, policy: Policy) -> None:
    """The window header's copy of the settings must be the header's policy.

    The core takes the window's shape from the validated policy, never from
    this copy, but it does read the thresholds and slow ticks there.
    """
    found = _WINDOW_SETTINGS.unpack_from(data, HEADER_SIZE + CELL_SIZE)[1:]
    for field, value in zip(_WINDOW_FIELDS, found):
        expected = getattr(policy, field)
        if value != expected:
            raise SharedStateError(
                f"corrupt window: {field}={value!r} in its window but "
                f"{expected!r} in its header"
            )


def _publish(buffer: mmap.mmap) -> None:
    from .._core_c import u64_store

    u64_store(buffer, 0, MAGIC)


def _describe(policy: Policy) -> str:
    fields = [
        f"max_failures={policy.max_failures}",
        f"reset_timeout={policy.reset_ticks / 1000}",
        f"half_open_max={policy.half_open_max}",
        f"success_threshold={policy.success_threshold}",
        f"half_open_timeout={policy.half_open_timeout_ticks / 1000}",
    ]
    if policy.window_kind:
        fields.append(f"window={policy.window_kind}/{policy.window_span}x"
                      f"{policy.window_buckets}")  # fmt: skip
    return ", ".join(fields)


def segment_paths() -> list[str]:
    """This user's segments of this layout, by path."""
    if not supported():
        return []
    prefix = f"{PREFIX}v{LAYOUT_VERSION}-{os.geteuid()}-"
    where = directory()
    return sorted(
        os.path.join(where, entry)
        for entry in os.listdir(where)
        if entry.startswith(prefix)
    )
