"""The host control segment: who is this host's fleet agent, which breakers
are fleet breakers, and what the agent last saw.

One file per user in the segment directory ($QBREAKER_SHM_DIR, else
/dev/shm), beside the breakers' segments and under the same rules (see
``qbreaker._impl.segment``): a regular file of this user, mode 0600, never
followed through a symbolic link, its pages reserved when it is made::

    offset  field
    0       magic              u64, written last when the file is made
    8       layout version     u32
    12      size               u32
    16      lease owner        u64: pid << 32 | nonce (0: nobody)
    24      lease namespace    u64: the owner's PID namespace inode
    32      lease expiry       u64: CLOCK_MONOTONIC ms
    64      status sequence    u64: odd while the agent writes the status
    72      status length      u32
    128     status             JSON, written by the agent (see AgentStatus)
    65536   registry           REGISTRY_SLOTS entries of 256 bytes: a fleet
                               breaker's name and its fleet options (the
                               name length's top bit: "fresh", see
                               ControlSegment.take_fresh)

Every change (the lease, a registration, the status) is made under an
exclusive ``flock`` of a descriptor opened for that change alone, held for
microseconds and never on a protected call: a killed process cannot leave it
held, and a forked child never shares its parent's. ``status()`` and the
command line read the status without the lock (the sequence number tells a
torn read, which is retried). Fleet decisions never use a host wall clock;
the status carries wall times only for people to read.
"""

from __future__ import annotations

import contextlib
import errno
import json
import mmap
import os
import stat
import struct
import time
from collections.abc import Iterator
from typing import Any, NamedTuple

from .._errors import SharedStateError
from .._impl import segment, segment_format
from .._impl.methods import FleetOptions

MAGIC = int.from_bytes(b"QBFLEET1", "little")
LAYOUT_VERSION = 1
SIZE = 131072
FILE_PREFIX = "qbreaker-fleet-v1-"
LEASE_OFFSET = 16
STATUS_SEQ_OFFSET = 64
STATUS_OFFSET = 128
STATUS_LIMIT = 65536 - STATUS_OFFSET
REGISTRY_OFFSET = 65536
REGISTRY_ENTRY = 256
REGISTRY_SLOTS = (SIZE - REGISTRY_OFFSET) // REGISTRY_ENTRY
#: How long the agent lease lasts unless renewed: 1.5 ticks (the agent's
#: quiet sync interval, 1 s by default). A frozen agent is replaced within
#: LEASE_MS + LEASE_CHECK_MS of its last renewal, and then the new agent
#: syncs at once: under 2 ticks, inside the fleet's bound of 3 ticks without
#: a leader. Its holder must miss renewals for 1.25 s (LEASE_MS less one
#: check period) to lose it, far beyond a GC pause or a busy core's wait.
LEASE_MS = 1500
#: How often the holder renews the lease and every other process of the
#: host looks whether it lapsed (a dead holder is replaced at the next look).
LEASE_CHECK_MS = LEASE_MS // 6

_HEADER = struct.Struct("<QII")
_LEASE = struct.Struct("<QQQ")
_STATUS_HEAD = struct.Struct("<QI")
# name length, quorum, burst (0: off), window ms; then the name.
_ENTRY = struct.Struct("<HIII")
_NAME_LIMIT = REGISTRY_ENTRY - _ENTRY.size
# Set in the name length of an entry whose registering process created the
# breaker's segment (all its counts are news to the fleet), until the agent
# has taken the breaker in (see take_fresh).
_FRESH = 0x8000


class Lease(NamedTuple):
    pid: int
    nonce: int
    namespace: int
    expiry_ms: int


def monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


def pid_namespace() -> int:
    """This process's PID namespace inode (0 where /proc does not say)."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def path() -> str:
    return os.path.join(segment_format.directory(), f"{FILE_PREFIX}{os.geteuid()}")


class ControlSegment:
    """This host's control segment, mapped (made on first use)."""

    def __init__(self, where: str | None = None) -> None:
        self.path = where if where is not None else path()
        segment_format.check_directory(os.path.dirname(self.path))
        self._buffer = self._map()

    # -- the file ---------------------------------------------------------

    def _map(self) -> mmap.mmap:
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise SharedStateError(
                    f"{self.path} is a symbolic link; refusing it"
                ) from None
            raise
        try:
            with _flocked(fd, self.path):
                info = os.fstat(fd)
                _check_file(self.path, info)
                if info.st_size == 0:
                    os.posix_fallocate(fd, 0, SIZE)
                    buffer = mmap.mmap(fd, SIZE)
                    _HEADER.pack_into(buffer, 0, 0, LAYOUT_VERSION, SIZE)
                    buffer[0:8] = MAGIC.to_bytes(8, "little")
                    return buffer
                if info.st_size != SIZE:
                    raise SharedStateError(
                        f"{self.path} is {info.st_size} bytes, not a fleet "
                        f"control segment ({SIZE}); remove it"
                    )
                buffer = mmap.mmap(fd, SIZE)
                magic, version, size = _HEADER.unpack_from(buffer, 0)
                if (magic, version, size) != (MAGIC, LAYOUT_VERSION, SIZE):
                    buffer.close()
                    raise SharedStateError(
                        f"{self.path} is not a fleet control segment of this "
                        f"version (magic {magic:#x}, layout {version}); remove it"
                    )
                return buffer
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # A descriptor of its own: a flock belongs to the open file, which a
        # forked child would otherwise share with its parent.
        fd = os.open(self.path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            with _flocked(fd, self.path):
                yield
        finally:
            os.close(fd)

    def close(self) -> None:
        self._buffer.close()

    # -- the lease --------------------------------------------------------

    def lease(self) -> Lease:
        owner, namespace, expiry = _LEASE.unpack_from(self._buffer, LEASE_OFFSET)
        return Lease(owner >> 32, owner & 0xFFFFFFFF, namespace, expiry)

    def try_lease(self, nonce: int, *, now_ms: int | None = None) -> bool:
        """Take or renew the agent lease for this process; True if it holds it.

        Taken when nobody holds it, when it lapsed, or when its owner is dead
        (same PID namespace, no such process). ``nonce`` tells this process
        from an earlier one with the same pid, and a forked child from its
        parent.
        """
        pid = os.getpid()
        mine = pid << 32 | nonce
        with self._locked():
            now = monotonic_ms() if now_ms is None else now_ms
            current = self.lease()
            owner = current.pid << 32 | current.nonce
            if owner not in (0, mine) and current.expiry_ms > now:
                if _alive(current.pid, current.namespace):
                    return False
            _LEASE.pack_into(
                self._buffer, LEASE_OFFSET, mine, pid_namespace(), now + LEASE_MS
            )
            return True

    def release_lease(self, nonce: int) -> None:
        with self._locked():
            current = self.lease()
            if (current.pid, current.nonce) == (os.getpid(), nonce):
                _LEASE.pack_into(self._buffer, LEASE_OFFSET, 0, 0, 0)

    def agent_alive(self, *, now_ms: int | None = None) -> bool:
        current = self.lease()
        now = monotonic_ms() if now_ms is None else now_ms
        if current.pid == 0 or current.expiry_ms <= now:
            return False
        return _alive(current.pid, current.namespace)

    # -- the registry -----------------------------------------------------

    def register(
        self, name: str, options: FleetOptions, *, fresh: bool = False
    ) -> None:
        """Record ``name`` as a fleet breaker of this host with ``options``;
        ``fresh``: the caller created its segment, so every count the cell
        holds is still to be sent (see ``take_fresh``).

        The first registration of a name wins; another with different options
        is refused (a clear ValueError), as a shared segment refuses another
        policy.
        """
        encoded = name.encode("utf-8", "surrogatepass")
        if len(encoded) > _NAME_LIMIT:  # segment names are shorter still
            raise ValueError(f"fleet breaker name too long: {name!r}")
        with self._locked():
            slot = 0
            for known, known_options in self._entries():
                if known == name:
                    if known_options != options:
                        raise ValueError(
                            f"fleet breaker {name!r} is registered on this host "
                            f"with {_describe(known_options)}; this one has "
                            f"{_describe(options)}: use the same fleet settings "
                            f"in every process"
                        )
                    return
                slot += 1
            if slot >= REGISTRY_SLOTS:
                raise SharedStateError(
                    f"this host's fleet control segment holds at most "
                    f"{REGISTRY_SLOTS} fleet breakers; {name!r} is one too many"
                )
            offset = REGISTRY_OFFSET + slot * REGISTRY_ENTRY
            self._buffer[offset + _ENTRY.size : offset + _ENTRY.size + len(encoded)] = (
                encoded
            )
            _ENTRY.pack_into(
                self._buffer,
                offset,
                len(encoded) | (_FRESH if fresh else 0),
                options.quorum,
                options.max_failures or 0,
                options.window_ms,
            )

    def registered(self) -> list[tuple[str, FleetOptions]]:
        """Every fleet breaker of this host, in registration order."""
        with self._locked():
            return list(self._entries())

    def take_fresh(self, name: str) -> bool:
        """Whether ``name`` was registered by the process that created its
        segment and no agent has taken it in since; clears that mark.

        The agent counts such a breaker from zero, so the calls it took
        before the agent first saw it reach the fleet. Any other breaker is
        counted from what its cell holds at first sight: a segment that
        outlived its processes must not replay old counts.
        """
        with self._locked():
            for slot, (known, _) in enumerate(self._entries()):
                if known != name:
                    continue
                offset = REGISTRY_OFFSET + slot * REGISTRY_ENTRY
                length = struct.unpack_from("<H", self._buffer, offset)[0]
                if not length & _FRESH:
                    return False
                struct.pack_into("<H", self._buffer, offset, length & ~_FRESH)
                return True
        return False

    def _entries(self) -> Iterator[tuple[str, FleetOptions]]:
        for slot in range(REGISTRY_SLOTS):
            offset = REGISTRY_OFFSET + slot * REGISTRY_ENTRY
            length, quorum, burst, window = _ENTRY.unpack_from(self._buffer, offset)
            length &= ~_FRESH
            if length == 0 or length > _NAME_LIMIT or quorum == 0 or window == 0:
                return  # entries are written length last: this one is not yet
            start = offset + _ENTRY.size
            raw = bytes(self._buffer[start : start + length])
            yield (
                raw.decode("utf-8", "surrogatepass"),
                FleetOptions(quorum, burst or None, window),
            )

    # -- the agent's status -----------------------------------------------

    def write_status(self, status: dict[str, Any]) -> None:
        """Publish the agent's status (only the lease holder calls this)."""
        raw = json.dumps(status, separators=(",", ":")).encode()
        if len(raw) > STATUS_LIMIT:
            # Too many breakers to describe: keep the host-wide fields.
            status = {**status, "breakers": {}, "truncated": True}
            raw = json.dumps(status, separators=(",", ":")).encode()[:STATUS_LIMIT]
        with self._locked():
            seq = _STATUS_HEAD.unpack_from(self._buffer, STATUS_SEQ_OFFSET)[0]
            _STATUS_HEAD.pack_into(self._buffer, STATUS_SEQ_OFFSET, seq + 1, 0)
            self._buffer[STATUS_OFFSET : STATUS_OFFSET + len(raw)] = raw
            _STATUS_HEAD.pack_into(self._buffer, STATUS_SEQ_OFFSET, seq + 2, len(raw))

    def read_status(self) -> dict[str, Any]:
        """The agent's last status ({} if none was ever written)."""
        for _ in range(100):
            before, length = _STATUS_HEAD.unpack_from(self._buffer, STATUS_SEQ_OFFSET)
            if before & 1:
                time.sleep(0.0005)
                continue
            raw = bytes(self._buffer[STATUS_OFFSET : STATUS_OFFSET + length])
            after = _STATUS_HEAD.unpack_from(self._buffer, STATUS_SEQ_OFFSET)[0]
            if before == after:
                if not raw:
                    return {}
                try:
                    value = json.loads(raw)
                except ValueError:
                    return {}
                return value if isinstance(value, dict) else {}
        return {}


def exists() -> bool:
    return os.path.exists(path())


def _check_file(where: str, info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise SharedStateError(f"{where} is not a regular file")
    if info.st_uid != os.geteuid():
        raise SharedStateError(
            f"{where} belongs to uid {info.st_uid}, not to this user "
            f"({os.geteuid()}); set QBREAKER_SHM_DIR to a private directory"
        )
    if info.st_mode & 0o077:
        raise SharedStateError(
            f"{where} has mode {stat.S_IMODE(info.st_mode):o}; the fleet control "
            f"segment must be readable and writable by its owner alone (0600)"
        )


@contextlib.contextmanager
def _flocked(fd: int, where: str) -> Iterator[None]:
    import fcntl

    # segment._lock: bounded, never blocks for long.
    if not segment._lock(fd, exclusive=True):
        raise SharedStateError(f"{where} stayed locked for {segment.LOCK_WAIT} s")
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _alive(pid: int, namespace: int) -> bool:
    """Whether the lease owner may be alive: only a process of this PID
    namespace can be judged dead; another's lease lapses by its expiry."""
    if namespace != pid_namespace():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return bool(fields) and fields[0] == b"Z"


def _describe(options: FleetOptions) -> str:
    burst = options.max_failures
    return (
        f"fleet_quorum={options.quorum}, fleet_max_failures={burst}, "
        f"fleet_window={options.window_ms / 1000:g}"
    )
