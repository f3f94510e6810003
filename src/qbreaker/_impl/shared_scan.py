"""Reading shared-breaker segments without changing them, and pruning unused ones.

Listing (``status``, ``qbreaker.shared.list()``) never maps a segment and
never goes through the breaker constructor: it opens each existing file by
path with ``O_RDONLY | O_NOFOLLOW`` (never ``O_CREAT``) and reads it with
``os.pread``, so a segment unlinked meanwhile is simply gone from the list,
never re-created, and nothing in a segment is written. The cell is decoded
by the pure-Python twin, which is the specification of its word.

Pruning removes this user's segments that no live process uses. A segment
is in use when a process of this PID namespace maps it (its device and
inode appear in ``/proc/<pid>/maps``: matched by file, never by path), or
when a counter slot's owner is alive (``kill(pid, 0)``, zombies excepted) or
cannot be judged (another PID namespace, or unknown). The pruner holds each
candidate's exclusive ``flock`` while it looks: an attacher takes a shared
one while it opens and maps the file, then checks that the path still names
the file it mapped, so an attach either shows up in the maps scan or starts
over on a fresh segment. A segment whose lock is busy is being created or
attached to, and is kept. Processes whose maps cannot be read (other users,
non-dumpable ones) are not seen; the slots still show any that has made a
call through the breaker.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
import stat
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from .._errors import SharedStateError
from .._metrics import BreakerSnapshot
from .._policy import DEFAULT_POLICY, Policy
from .._state import State
from . import methods, segment_format, twin

# qb_cell in qb_cell.h: the word, then allowed, rejected, successes,
# failures, neutral, transitions, changed_at.
_CELL = struct.Struct("<8Q")
# qb_window: its cursor first; its buckets follow its 64-byte header, each
# a key, calls, failures and slow.
_CURSOR = struct.Struct("<Q")
# The header's opens and slow totals (segment_format.OPENS_OFFSET, SLOW_OFFSET).
_OPENS = struct.Struct("<Q")
_BUCKET = struct.Struct("<4Q")
# qb_slot: owner, allowed, successes, rejected, PID namespace, 3 reserved.
_SLOT = struct.Struct("<5Q24x")
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
# What _inspect's reader makes of a usable segment.
_Read = TypeVar("_Read")
# Segments locked at once while prune scans /proc (each holds a descriptor).
_PRUNE_BATCH = 256


@dataclass(frozen=True)
class SharedBreakerInfo:
    """One usable segment's breaker, read at one moment (not atomically)."""

    name: str
    path: str
    state: State
    forced: str | None
    generation: int
    consecutive_failures: int
    allowed: int
    rejected: int
    successes: int
    failures: int
    neutral: int
    transitions: int
    failure_rate: float
    retry_after: float
    opens: int = 0


@dataclass(frozen=True)
class SharedReading:
    """A usable segment's breaker in full, read at one moment (not
    atomically): its snapshot as ``metrics()`` gives it, and its policy."""

    snapshot: BreakerSnapshot
    policy: Policy


@dataclass(frozen=True)
class UnusableSegment:
    """A file named like a segment of this user that no breaker can use.

    ``half_made``: its creator has not published it yet (or died before
    it did); an attacher takes such a file over once it is older than a
    grace period. ``age``: seconds since the file last changed.
    """

    path: str
    reason: str
    size: int
    age: float
    half_made: bool = False


@dataclass(frozen=True)
class Listing:
    """Every segment of this user in ``directory``, and the room left there."""

    breakers: list[SharedBreakerInfo]
    unusable: list[UnusableSegment]
    directory: str
    size_bytes: int  # the files' sizes added up
    allocated_bytes: int  # the memory they hold (tmpfs allocates by page)
    free_bytes: int  # available to this user in the directory's file system
    segment_bytes: int  # what one more segment of the largest kind here needs
    supported: bool  # False: no such directory, or not Linux

    @property
    def segments(self) -> int:
        return len(self.breakers) + len(self.unusable)

    @property
    def low_space(self) -> bool:
        return self.supported and self.free_bytes < self.segment_bytes


@dataclass(frozen=True)
class PrunedSegment:
    """A segment prune removed (or, in a dry run, would remove)."""

    path: str
    name: str | None  # None: unusable, see reason
    size: int
    reason: str


@dataclass(frozen=True)
class KeptSegment:
    """A segment prune left in place, and why."""

    path: str
    name: str | None
    reason: str


@dataclass(frozen=True)
class PruneResult:
    removed: list[PrunedSegment]
    kept: list[KeptSegment]
    dry_run: bool


class _Unusable(Exception):
    def __init__(self, reason: str, half_made: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.half_made = half_made


@dataclass(frozen=True)
class _Header:
    policy: Policy
    name: str
    size: int


# -- reading -------------------------------------------------------------------


def listing() -> Listing:
    """Read every segment of this user; never raises for a bad one."""
    where = segment_format.directory()
    breakers: list[SharedBreakerInfo] = []
    unusable: list[UnusableSegment] = []
    size_bytes = allocated = 0
    largest = segment_format.total_size(DEFAULT_POLICY)
    for path in segment_format.segment_paths():
        found = inspect(path)
        if found is None:
            continue  # unlinked since the directory was read
        entry, info = found
        size_bytes += info.st_size
        allocated += info.st_blocks * 512
        if isinstance(entry, SharedBreakerInfo):
            breakers.append(entry)
            largest = max(largest, info.st_size)
        else:
            unusable.append(entry)
    try:
        fs = os.statvfs(where)
        free = fs.f_bavail * fs.f_frsize
    except OSError:
        free = 0
    page = mmap.PAGESIZE
    return Listing(
        breakers, unusable, where, size_bytes, allocated, free,
        -(-largest // page) * page, segment_format.supported(),
    )  # fmt: skip


def readings() -> list[SharedReading]:
    """Every usable segment's full snapshot and policy; never raises for a
    bad segment (it is left out: listing() says why it is unusable)."""
    found: list[SharedReading] = []
    for path in segment_format.segment_paths():
        entry = _inspect(path, _read_full)
        if entry is not None and isinstance(entry[0], SharedReading):
            found.append(entry[0])
    return found


def inspect(
    path: str,
) -> tuple[SharedBreakerInfo | UnusableSegment, os.stat_result] | None:
    """The breaker in the segment at ``path``, or why it is unusable; None if
    there is no file there (any more)."""
    return _inspect(path, _read_breaker)


def _inspect(
    path: str, read: Callable[[int, str, _Header], _Read]
) -> tuple[_Read | UnusableSegment, os.stat_result] | None:
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as exc:
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return None
        if exc.errno == errno.ELOOP:
            reason = "is a symbolic link"
        else:
            reason = f"cannot be opened: {exc.strerror}"
        return _unusable(path, info, _Unusable(reason)), info
    try:
        info = os.fstat(fd)
        try:
            header = _check(fd, path, info)
            return read(fd, path, header), info
        except _Unusable as problem:
            return _unusable(path, info, problem), info
        except OSError as exc:
            unreadable = _Unusable(f"cannot be read: {exc.strerror}")
            return _unusable(path, info, unreadable), info
    finally:
        os.close(fd)


def _unusable(path: str, info: os.stat_result, problem: _Unusable) -> UnusableSegment:
    age = max(time.time() - max(info.st_mtime, info.st_ctime), 0.0)
    return UnusableSegment(path, problem.reason, info.st_size, age, problem.half_made)


def _check(fd: int, path: str, info: os.stat_result) -> _Header:
    """The header of the segment open at ``fd``, or _Unusable saying why not."""
    if not stat.S_ISREG(info.st_mode):
        raise _Unusable("is not a regular file")
    if info.st_uid != os.geteuid():
        raise _Unusable(
            f"belongs to uid {info.st_uid}, not to this user ({os.geteuid()})"
        )
    if info.st_mode & 0o077:
        raise _Unusable(f"has mode {stat.S_IMODE(info.st_mode):o}; a segment is 0600")
    # The header, and a window's header after the cell if there is one.
    head = (
        segment_format.HEADER_SIZE
        + segment_format.CELL_SIZE
        + segment_format.WINDOW_HEADER_SIZE
    )
    raw = os.pread(fd, head, 0)
    magic = int.from_bytes(raw[:8], "little") if len(raw) >= 8 else 0
    if magic == 0:
        raise _Unusable(
            "half-made: its creator has not published it (or died first)",
            half_made=True,
        )
    if magic != segment_format.MAGIC:
        raise _Unusable("bad magic: not a qbreaker segment")
    if len(raw) < segment_format.HEADER_SIZE + segment_format.CELL_SIZE:
        raise _Unusable(f"truncated: {info.st_size} bytes")
    try:
        policy = segment_format.check_header(raw, info.st_size)
    except SharedStateError as exc:
        raise _Unusable(str(exc)) from None
    size = info.st_size
    return _Header(policy, _stored_name(raw, path), size)


def _stored_name(raw: bytes, path: str) -> str:
    (length,) = segment_format.NAME_LENGTH.unpack_from(raw, segment_format.NAME_OFFSET)
    if not 0 < length <= segment_format.NAME_LIMIT:
        raise _Unusable(f"bad name: stored length {length}")
    start = segment_format.NAME_OFFSET + 4
    encoded = raw[start : start + length]
    try:
        name = encoded.decode("utf-8")
        segment_format.check_name(name)
    except UnicodeDecodeError:
        raise _Unusable(f"bad name: not UTF-8 ({encoded!r})") from None
    except ValueError:
        raise _Unusable(f"bad name: {encoded.decode('utf-8')!r}") from None
    if os.path.basename(segment_format.path_of(name)) != os.path.basename(path):
        raise _Unusable(f"bad name: {name!r} does not hash to this file's name")
    return name


def _read_breaker(fd: int, path: str, header: _Header) -> SharedBreakerInfo:
    m = methods.metrics(_decode(fd, header))
    return SharedBreakerInfo(
        header.name, path, m.state, m.forced, m.generation,
        m.consecutive_failures, m.allowed, m.rejected, m.successes, m.failures,
        m.neutral, m.transitions, m.failure_rate, m.retry_after, m.opens,
    )  # fmt: skip


def _read_full(fd: int, path: str, header: _Header) -> SharedReading:
    return SharedReading(methods.metrics(_decode(fd, header)), header.policy)


def _decode(fd: int, header: _Header) -> twin.CoreBreaker:
    """Decode the cell with the twin: one read of the file, nothing mapped."""
    policy = header.policy
    data = os.pread(fd, header.size, 0)
    if len(data) != header.size:
        raise _Unusable(f"truncated: {len(data)} bytes read of {header.size}")
    cell = _CELL.unpack_from(data, segment_format.HEADER_SIZE)
    allowed, rejected, successes = cell[1], cell[2], cell[3]
    for _, slot_allowed, slot_successes, slot_rejected, _ in _slots(data, header.size):
        allowed += slot_allowed
        successes += slot_successes
        rejected += slot_rejected
    decoder = twin.CoreBreaker.__new__(twin.CoreBreaker)
    decoder._configure(policy, None, name=header.name)
    decoder._cell.word = _stable_word(fd, cell[0])
    (opens,) = _OPENS.unpack_from(data, segment_format.OPENS_OFFSET)
    (slow,) = _OPENS.unpack_from(data, segment_format.SLOW_OFFSET)
    decoder._cell.totals = [
        allowed, rejected, successes, cell[4], cell[5], cell[6], opens, slow
    ]  # fmt: skip
    decoder._cell.changed_at = cell[7]
    if decoder._cell.window is not None:
        _read_window(data, decoder._cell.window)
    return decoder


def _stable_word(fd: int, word: int) -> int:
    # A read() of a page being written is not one atomic load: re-read the
    # word until two reads agree (bounded), so a torn word is never decoded.
    for _ in range(8):
        again = int.from_bytes(os.pread(fd, 8, segment_format.HEADER_SIZE), "little")
        if again == word:
            break
        word = again
    return word


def _read_window(data: bytes, window: twin.Window) -> None:
    window_at = segment_format.HEADER_SIZE + segment_format.CELL_SIZE
    (window.cursor,) = _CURSOR.unpack_from(data, window_at)
    bucket_at = window_at + segment_format.WINDOW_HEADER_SIZE
    for i in range(len(window.keys)):
        key, calls, failures, slow = _BUCKET.unpack_from(
            data, bucket_at + i * segment_format.BUCKET_SIZE
        )
        window.keys[i], window.calls[i] = key, calls
        window.failures[i], window.slow[i] = failures, slow


def _slots(data: bytes, size: int) -> Iterator[tuple[int, int, int, int, int]]:
    """(owner, allowed, successes, rejected, PID namespace) of each slot: the
    slots end the segment (see segment_format.total_size)."""
    first = size - segment_format.SLOTS * segment_format.SLOT_SIZE
    for i in range(segment_format.SLOTS):
        yield _SLOT.unpack_from(data, first + i * segment_format.SLOT_SIZE)


# -- pruning -------------------------------------------------------------------


def prune(dry_run: bool = False) -> PruneResult:
    """Remove this user's segments that no live process uses (see the module
    docstring for how that is decided); a dry run only reports them."""
    if not isinstance(dry_run, bool):
        raise TypeError(f"dry_run must be True or False, got {dry_run!r}")
    result = PruneResult([], [], dry_run)
    paths = segment_format.segment_paths()
    for start in range(0, len(paths), _PRUNE_BATCH):
        _prune_batch(paths[start : start + _PRUNE_BATCH], result)
    return result


@dataclass
class _Candidate:
    path: str
    fd: int
    info: os.stat_result
    name: str | None
    reason: str
    owners: list[tuple[int, int]]  # (owner, PID namespace) of each held slot

    @property
    def key(self) -> tuple[int, int, int]:
        dev = self.info.st_dev
        return os.major(dev), os.minor(dev), self.info.st_ino


def _prune_batch(paths: list[str], result: PruneResult) -> None:
    candidates: list[_Candidate] = []
    try:
        for path in paths:
            candidate = _lock(path, result)
            if candidate is not None:
                candidates.append(candidate)
        # Every candidate is locked: an attach that finished before now is in
        # the maps; one that comes later waits, then sees the file gone.
        mapped = _mapping_pids({c.key for c in candidates})
        namespace = _pid_namespace()
        for c in candidates:
            why = _in_use(c, mapped, namespace)
            if why is not None:
                result.kept.append(KeptSegment(c.path, c.name, why))
            elif result.dry_run or _unlink_if_same(c):
                result.removed.append(
                    PrunedSegment(c.path, c.name, c.info.st_size, c.reason)
                )
            else:
                result.kept.append(
                    KeptSegment(c.path, c.name, "unlinked or replaced while prune ran")
                )
    finally:
        for c in candidates:
            os.close(c.fd)


def _lock(path: str, result: PruneResult) -> _Candidate | None:
    """Open ``path`` and take its exclusive lock; None (and noted in
    ``result.kept``) if it is gone, busy, or not this user's file."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as exc:
        result.kept.append(KeptSegment(path, None, f"cannot be opened: {exc.strerror}"))
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            result.kept.append(
                KeptSegment(path, None, "not a regular file of this user")
            )
            os.close(fd)
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            result.kept.append(
                KeptSegment(path, None, "busy: being created or attached to")
            )
            os.close(fd)
            return None
        return _candidate(path, fd, info)
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise


def _candidate(path: str, fd: int, info: os.stat_result) -> _Candidate:
    try:
        header = _check(fd, path, info)
    except _Unusable as problem:
        return _Candidate(path, fd, info, None, problem.reason, [])
    data = os.pread(fd, header.size, 0)
    owners = [
        (owner, namespace)
        for owner, _, _, _, namespace in _slots(data, len(data))
        if owner
    ] if len(data) == header.size else []  # fmt: skip
    return _Candidate(path, fd, info, header.name, "unused", owners)


def _in_use(
    c: _Candidate, mapped: dict[tuple[int, int, int], int], namespace: int
) -> str | None:
    if c.key in mapped:
        return f"mapped by pid {mapped[c.key]}"
    for owner, owner_namespace in c.owners:
        pid = owner >> 32
        if not namespace:
            return f"a slot held by pid {pid}, unknown here (no /proc/self/ns/pid)"
        if owner_namespace != namespace:
            return f"a slot held by pid {pid} of another PID namespace"
        if _alive(pid):
            return f"a slot held by live pid {pid}"
    return None


def _mapping_pids(keys: set[tuple[int, int, int]]) -> dict[tuple[int, int, int], int]:
    """For each (major, minor, inode) in ``keys`` that a process of this
    PID namespace maps, one such pid."""
    found: dict[tuple[int, int, int], int] = {}
    if not keys:
        return found
    inodes = {str(inode).encode() for _, _, inode in keys}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/maps", "rb") as f:
                maps = f.read()
        except OSError:
            continue  # exited, or not ours to read
        for line in maps.splitlines():
            # address, perms, offset, major:minor (hex), inode, path
            fields = line.split(None, 5)
            if len(fields) < 5 or fields[4] not in inodes:
                continue
            major, _, minor = fields[3].partition(b":")
            key = (int(major, 16), int(minor, 16), int(fields[4]))
            if key in keys:
                found.setdefault(key, int(entry))
    return found


def _pid_namespace() -> int:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0  # unknown: no slot owner can be judged


def _alive(pid: int) -> bool:
    if not 0 < pid < 2**31:
        return False  # not a pid: a damaged slot
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rpartition(b")")[2].split()[:1]
    except OSError:
        return True
    return state not in ([b"Z"], [b"X"])  # exited, not yet reaped


def _unlink_if_same(c: _Candidate) -> bool:
    """Unlink ``c.path`` if it still names the locked file."""
    try:
        now = os.stat(c.path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if (now.st_dev, now.st_ino) != (c.info.st_dev, c.info.st_ino):
        return False
    try:
        os.unlink(c.path)
    except FileNotFoundError:
        return False
    return True
