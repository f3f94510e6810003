"""Host-wide breakers: one breaker shared by every process of this user.

``CircuitBreaker(..., shared="payments")`` keeps the breaker's cell in a
named shared-memory segment (see ``qbreaker._shm`` for where and how), so
every process that opens the same name shares one state word, one set of
totals and one window. This module lists and removes those segments.

Segments live in ``/dev/shm`` until unlinked, until reboot, or until
systemd's ``RemoveIPC=yes`` removes a non-system user's segments at logout.
Unlinking a segment that processes still use leaves them sharing the old
one among themselves; a process that opens the name afterwards gets a new,
closed breaker.
"""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass
from typing import Any

from . import _shm
from ._shm import SharedSpaceError, SharedStateError
from ._state import State

__all__ = (
    "SharedBreakerInfo",
    "SharedSpaceError",
    "SharedStateError",
    "exists",
    "list",
    "unlink",
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


@dataclass(frozen=True)
class SharedBreakerInfo:
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


def list() -> _builtin_list[SharedBreakerInfo]:  # noqa: A001 - the issue's name
    """This user's shared breakers on this host, read now."""
    from ._core import CircuitBreaker

    found: _builtin_list[SharedBreakerInfo] = []
    for path in _shm.segment_paths():
        try:
            buffer = _shm.map_existing(path)
            name = _shm.read_name(buffer)
            buffer.close()
            breaker = CircuitBreaker(shared=name, shared_policy="adopt")
        except (OSError, SharedStateError):
            continue  # unreadable or half-made: skipped, never repaired here
        m = breaker.metrics()
        found.append(
            SharedBreakerInfo(
                name,
                path,
                m.state,
                m.forced,
                m.generation,
                m.consecutive_failures,
                m.allowed,
                m.rejected,
                m.successes,
                m.failures,
                m.neutral,
                m.transitions,
                m.failure_rate,
                m.retry_after,
            )  # fmt: skip
        )
    return found


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
