"""Host-wide breakers: one breaker shared by every process of this user.

``CircuitBreaker(..., shared="payments")`` keeps the breaker's cell in a
named shared-memory segment (see ``qbreaker._shm`` for where and how), so
every process that opens the same name shares one state word, one set of
totals and one window. This module lists those segments (read-only, see
``qbreaker._shm_scan``), opens existing ones without ever creating one,
prunes the unused ones and removes them by name.

Segments live in ``/dev/shm`` until unlinked, until reboot, or until
systemd's ``RemoveIPC=yes`` removes a non-system user's segments at logout.
Unlinking a segment that processes still use leaves them sharing the old
one among themselves; a process that opens the name afterwards gets a new,
closed breaker.
"""

from __future__ import annotations

import os
import weakref
from typing import Any

from ._impl import segment as _shm
from ._impl import shared_scan as _shm_scan
from ._impl.segment import SharedSpaceError, SharedStateError
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

# Each shared breaker's mapping lives exactly as long as the breaker.
_segments: weakref.WeakKeyDictionary[Any, _shm.Segment] = weakref.WeakKeyDictionary()

_builtin_list = list


def _after_fork_in_child() -> None:
    # The child inherits the parent's counter slot with the mapping; two
    # processes counting plainly in one slot would lose counts.
    for breaker in _builtin_list(_segments):
        breaker._forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def attach(breaker: Any, name: str, policy: Any, adopt: bool) -> Any:
    """Open the segment for ``breaker`` and return the policy to configure."""
    segment = _shm.open_segment(name, policy, adopt)
    _segments[breaker] = segment
    return segment


def name_of(breaker: Any) -> str | None:
    """The shared name of ``breaker``, or None for a process-local one."""
    segment = _segments.get(breaker)
    return None if segment is None else segment.name


def list() -> _builtin_list[SharedBreakerInfo]:  # noqa: A001 - the issue's name
    """This user's usable shared breakers on this host, read now.

    Read-only: each existing segment is read by path, never mapped, created
    or written. Segments no breaker can use are left out; see unusable().
    """
    return _shm_scan.listing().breakers


def unusable() -> _builtin_list[UnusableSegment]:
    """This user's segment files that no breaker can use, each with why:
    damaged, half-made (with its age), of another owner or mode."""
    return _shm_scan.listing().unusable


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
    return _shm_scan.prune(dry_run).removed


def open_existing(name: str) -> Any:
    """A breaker on the existing segment ``name``, with its policy.

    Never creates one: FileNotFoundError if ``name`` has no segment.
    """
    from ._impl.select import CircuitBreaker
    from ._impl.twin import CoreBreaker
    from ._outcomes import DEFAULT_OPTIONS

    _shm.check_name(name)
    breaker = CircuitBreaker.__new__(CircuitBreaker)
    if isinstance(breaker, CoreBreaker):
        raise SharedStateError(
            "the pure-Python core cannot open a shared breaker; use the "
            "compiled core (unset QBREAKER_NO_EXTENSIONS)"
        )
    segment = _shm.open_segment(name, None, True)
    _segments[breaker] = segment
    breaker._configure(
        segment.policy, None, DEFAULT_OPTIONS, name, shared=segment.buffer
    )
    return breaker


def exists(name: str) -> bool:
    """Whether this user has a segment for ``name`` on this host."""
    _shm.check_name(name)
    return os.path.exists(_shm.path_of(name))


def unlink(name: str) -> bool:
    """Remove the named segment; False if there was none."""
    _shm.check_name(name)
    try:
        os.unlink(_shm.path_of(name))
    except FileNotFoundError:
        return False
    return True
