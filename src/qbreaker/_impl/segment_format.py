"""Shared segments on paper: where they live, their names, their bytes.

Nothing here opens, maps or locks a segment (``qbreaker._impl.segment``
does). A segment holds a 256-byte header, then the cell (and its window),
at an offset that is a multiple of 64::

    offset  field
    0       magic            u64, stored last (release), read first (acquire)
    8       layout version   u32
    12      header size      u32 (256)
    16      total size       u64
    24      the policy       reset, half-open timeout, counts, window (72 B)
    96      name length      u32, then the name, UTF-8, at most 124 bytes
    240     slow             u64: slow outcomes, every process's (atomic
                             adds; zero in a fresh segment)
    248     opens            u64: transitions into open, every process's
                             (atomic adds; zero in a fresh segment)
    256     the cell, then its window
    then    at the next multiple of 64: 128 per-process counter slots,
            64 bytes each (qb_slot in qb_cell.h): owner (pid << 32 |
            nonce), allowed, successes, rejected, PID namespace
"""

from __future__ import annotations

import mmap
import os
import stat
import struct
import sys

from .._errors import SharedStateError
from .._policy import Policy, check_policy

# Where segments live: $QBREAKER_SHM_DIR, else DIRECTORY (see directory()).
DIRECTORY = "/dev/shm"
ENV_DIRECTORY = "QBREAKER_SHM_DIR"
PREFIX = "qbreaker-"

LAYOUT_VERSION = 2
MAGIC = int.from_bytes(b"QBRKSHM1", "little")
HEADER_SIZE = 256
CELL_SIZE = 64
WINDOW_HEADER_SIZE = 64
BUCKET_SIZE = 32
SLOT_SIZE = 64
SLOTS = 128
NAME_LIMIT = 124

# reset, half-open timeout, max_failures, half_open_max, success_threshold,
# window kind, buckets, minimum calls, span, slow ticks, two rate thresholds.
_POLICY = struct.Struct("<QQIIIIIIQQdd")
NAME_LENGTH = struct.Struct("<I")
_FIXED = struct.Struct("<QIIQ")  # magic, version, header size, total size
POLICY_OFFSET = 24
NAME_OFFSET = POLICY_OFFSET + _POLICY.size
#: The opens total: the header's last word, right before the cell (the
#: compiled core finds it there, at the cell's address minus 8).
OPENS_OFFSET = HEADER_SIZE - 8
#: The slow total: the word before the opens total (the compiled core finds
#: it at the cell's address minus 16). Zero bytes in a segment of an older
#: release: its processes just do not count there.
SLOW_OFFSET = HEADER_SIZE - 16


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


def write_header(buffer: mmap.mmap, name: str, policy: Policy, size: int) -> None:
    encoded = name.encode("utf-8", "surrogatepass")
    buffer[POLICY_OFFSET:NAME_OFFSET] = encode_policy(policy)
    offset = NAME_OFFSET
    buffer[offset : offset + 4] = NAME_LENGTH.pack(len(encoded))
    buffer[offset + 4 : offset + 4 + len(encoded)] = encoded
    buffer[8:24] = _FIXED.pack(0, LAYOUT_VERSION, HEADER_SIZE, size)[8:]
    if policy.window_kind:
        _write_window_settings(buffer, policy)


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
    policy = decode_policy(bytes(data[POLICY_OFFSET:NAME_OFFSET]))
    try:
        check_policy(policy)
    except ValueError as exc:
        raise SharedStateError(
            f"bad policy ({exc}): corrupt, or written by something other than qbreaker"
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
    (length,) = NAME_LENGTH.unpack_from(buffer, NAME_OFFSET)
    start = NAME_OFFSET + 4
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


def describe_policy(policy: Policy) -> str:
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


def directory() -> str:
    """Where this process keeps its segments: $QBREAKER_SHM_DIR, else /dev/shm.

    Read on every call, so a test can point each simulated host elsewhere.
    """
    return os.environ.get(ENV_DIRECTORY) or DIRECTORY


def supported() -> bool:
    return sys.platform.startswith("linux") and os.path.isdir(directory())


def path_of(name: str) -> str:
    import hashlib  # only where a segment is named: it loads OpenSSL

    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    filename = f"{PREFIX}v{LAYOUT_VERSION}-{os.geteuid()}-{digest}"
    return os.path.join(directory(), filename)


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
