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

Nothing in it is a lock: a killed process cannot leave it held. A fresh
segment is all zeros, which is a closed cell, so the creator writes only the
header (and a window's settings) before publishing the magic.
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

from ._core_py import Policy
from ._settings import check_policy

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


class SharedStateError(ValueError):
    """A segment that cannot be used: wrong owner, mode, layout or policy."""


@dataclass
class Segment:
    """An open, validated segment. ``buffer`` must outlive its breaker."""

    name: str
    path: str
    buffer: mmap.mmap
    policy: Policy
    created: bool


def directory() -> str:
    """Where this process keeps its segments (read on every call)."""
    return DIRECTORY


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
    return os.path.join(directory(), f"{PREFIX}v{LAYOUT_VERSION}-{os.geteuid()}-{digest}")


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
    """
    if not supported():
        raise SharedStateError(
            f"shared breakers need POSIX shared memory in {directory()} (Linux); "
            f"not available on {sys.platform}"
        )
    check_name(name)
    path = path_of(name)
    if policy is not None:
        created = _create(name, path, policy)
        if created is not None:
            return created
    return _attach(name, path, policy, adopt or policy is None)


def _create(name: str, path: str, policy: Policy) -> Segment | None:
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        return None
    try:
        size = total_size(policy)
        os.ftruncate(fd, size)
        buffer = mmap.mmap(fd, size)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    os.close(fd)
    encoded = name.encode("utf-8", "surrogatepass")
    buffer[_POLICY_OFFSET:_NAME_OFFSET] = encode_policy(policy)
    offset = _NAME_OFFSET
    buffer[offset : offset + 4] = _NAME_LENGTH.pack(len(encoded))
    buffer[offset + 4 : offset + 4 + len(encoded)] = encoded
    buffer[8:24] = _FIXED.pack(0, LAYOUT_VERSION, HEADER_SIZE, size)[8:]
    if policy.window_kind:
        _write_window_settings(buffer, policy)
    _publish(buffer)
    return Segment(name, path, buffer, policy, True)


def _attach(name: str, path: str, policy: Policy | None, adopt: bool) -> Segment:
    buffer = map_existing(path)
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
    """Open and map an existing segment after checking who owns it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SharedStateError(f"{path} is a symbolic link; refusing it") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SharedStateError(f"{path} is not a regular file")
        if info.st_uid != os.geteuid():
            raise SharedStateError(
                f"{path} belongs to uid {info.st_uid}, not to this user "
                f"({os.geteuid()}); refusing a segment another user controls"
            )
        if info.st_mode & 0o077:
            raise SharedStateError(
                f"{path} has mode {stat.S_IMODE(info.st_mode):o}; a segment must "
                f"be readable and writable by its owner alone (0600)"
            )
        if info.st_size < HEADER_SIZE + CELL_SIZE:
            raise SharedStateError(
                f"{path} is {info.st_size} bytes, too short for a breaker "
                f"(at least {HEADER_SIZE + CELL_SIZE}): truncated?"
            )
        return mmap.mmap(fd, info.st_size)
    finally:
        os.close(fd)


def read_header(buffer: mmap.mmap, path: str) -> Policy:
    """Wait (bounded) for the creator's magic, then validate the header."""
    from ._core_c import u64_load

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
    _, version, header_size, size = _FIXED.unpack_from(buffer, 0)
    if version != LAYOUT_VERSION or header_size != HEADER_SIZE:
        raise SharedStateError(
            f"{path} has layout {version} (header {header_size} bytes); "
            f"this qbreaker uses layout {LAYOUT_VERSION}"
        )
    policy = decode_policy(buffer[_POLICY_OFFSET:_NAME_OFFSET])
    try:
        check_policy(policy)
    except ValueError as exc:
        raise SharedStateError(
            f"{path} holds an invalid policy ({exc}): corrupt, or written by "
            f"something else than qbreaker"
        ) from None
    if size != len(buffer) or size != total_size(policy):
        raise SharedStateError(
            f"{path} is {len(buffer)} bytes but its header says {size} "
            f"(its policy needs {total_size(policy)}): truncated or corrupt"
        )
    if policy.window_kind:
        _check_window_settings(buffer, policy, path)
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


def _check_window_settings(buffer: mmap.mmap, policy: Policy, path: str) -> None:
    """The window header's copy of the settings must be the header's policy.

    The core takes the window's shape from the validated policy, never from
    this copy, but it does read the thresholds and slow ticks there.
    """
    found = _WINDOW_SETTINGS.unpack_from(buffer, HEADER_SIZE + CELL_SIZE)[1:]
    for field, value in zip(_WINDOW_FIELDS, found):
        expected = getattr(policy, field)
        if value != expected:
            raise SharedStateError(
                f"{path} has {field}={value!r} in its window but "
                f"{expected!r} in its header: corrupt"
            )


def _publish(buffer: mmap.mmap) -> None:
    from ._core_c import u64_store

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
