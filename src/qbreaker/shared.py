"""Host-wide breakers: one breaker shared by every process of this user.

``CircuitBreaker(..., shared="payments")`` keeps the breaker's cell in a
named shared-memory segment (see ``qbreaker._impl.segment`` for where and how), so
every process that opens the same name shares one state word, one set of
totals and one window. This module lists those segments (read-only, see
``qbreaker._impl.shared_scan``), opens existing ones without ever creating one,
prunes the unused ones and removes them by name.

Segments live in ``/dev/shm`` until unlinked, until reboot, or until
systemd's ``RemoveIPC=yes`` removes a non-system user's segments at logout.
Unlinking a segment that processes still use leaves them sharing the old
one among themselves; a process that opens the name afterwards gets a new,
closed breaker.
"""

from __future__ import annotations

import os
from typing import Any

from ._errors import SharedSpaceError, SharedStateError
from ._impl import segment, segment_format, shared_scan
from ._impl.shared_scan import PrunedSegment, SharedBreakerInfo, UnusableSegment

__all__ = (
    "PrunedSegment",
    "SharedBreakerInfo",
    "SharedSpaceError",
    "SharedStateError",
    "UnusableSegment",
    "exists",
    "list",
    "open_existing",
    "prune",
    "unlink",
    "unusable",
)

_builtin_list = list


def list() -> _builtin_list[SharedBreakerInfo]:  # noqa: A001 - the issue's name
    """This user's usable shared breakers on this host, read now.

    Read-only: each existing segment is read by path, never mapped, created
    or written. Segments no breaker can use are left out; see unusable().
    """
    return shared_scan.listing().breakers


def unusable() -> _builtin_list[UnusableSegment]:
    """This user's segment files that no breaker can use, each with why:
    damaged, half-made (with its age), of another owner or mode."""
    return shared_scan.listing().unusable


def prune(dry_run: bool = False) -> _builtin_list[PrunedSegment]:
    """Remove this user's segments that no live process uses; return them.

    In use: a process of this PID namespace maps the file (found by device
    and inode in ``/proc/*/maps``), or a counter slot's owner is alive or
    cannot be judged (another PID namespace). A segment being created or
    attached to holds a lock that makes prune keep it. No minimum age: an
    unused segment goes however new it is; the next process to open its
    name gets a fresh, closed breaker. ``dry_run`` removes nothing and
    returns what would go.
    """
    return shared_scan.prune(dry_run).removed


def open_existing(name: str) -> Any:
    """A breaker on the existing segment ``name``, with its policy.

    Never creates one: FileNotFoundError if ``name`` has no segment.
    """
    from ._impl.select import CircuitBreaker
    from ._impl.twin import CoreBreaker
    from ._outcomes import DEFAULT_OPTIONS

    segment_format.check_name(name)
    breaker = CircuitBreaker.__new__(CircuitBreaker)
    if isinstance(breaker, CoreBreaker):
        raise SharedStateError(
            "the pure-Python core cannot open a shared breaker; use the "
            "compiled core (unset QBREAKER_NO_EXTENSIONS)"
        )
    opened = segment.attach(breaker, name, None, True)
    breaker._configure(opened.policy, None, DEFAULT_OPTIONS, name, shared=opened.buffer)
    return breaker


def exists(name: str) -> bool:
    """Whether this user has a segment for ``name`` on this host."""
    segment_format.check_name(name)
    return os.path.exists(segment_format.path_of(name))


def unlink(name: str) -> bool:
    """Remove the named segment; False if there was none."""
    segment_format.check_name(name)
    try:
        os.unlink(segment_format.path_of(name))
    except FileNotFoundError:
        return False
    return True
