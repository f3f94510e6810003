"""One namespace split over G hash tags (``fleet_groups``): G backends as one.

On Redis Cluster every script touches the keys of one hash tag, so one
namespace's load lands on one slot, on one master. ``fleet_groups=G`` splits
a namespace's breakers over G groups, each with its own tag (see
``key_prefix``) and so its own keys, scripts' runs and events stream; the
tags spread over the cluster's slots. A breaker's group is ``group_of(name,
G)``, the same on every host.

``GroupedBackend`` makes the G per-group backends (each a whole
``FleetBackend`` of one tag: the Lua scripts or the spec) one backend with
the protocol's semantics, so the agent, the command line and the tests see
one namespace:

- ``sync`` sends one call per group that has breakers in the request, or
  that had some in an earlier request of the same host (with no breaker:
  the agent leaves quiet breakers out, and a group that lost its data must
  still be found out at the next sync), all with the request's seq (each
  group is idempotent by it on its own, so a resend after a partial failure
  counts nothing twice). The reply's states
  are in the request's order; ``duplicate`` when no group counted anything;
  ``last_seq`` the highest. With G > 1 the epoch text carries each group's
  epoch and version (``data_lost`` compares them group by group) and
  ``version`` is their sum. A host whose record is ahead of its agent in
  some groups only (a wiped control segment, and a new breaker in a group
  it never synced) gets those groups' parts sent again past the highest
  seq, so nothing is dropped and nothing counted twice.
- ``events``: a cluster cannot read streams of different slots in one call,
  so unless the backend can read them all at once (``read_all``: one
  ``XREAD`` on a single server), each call reads every group's stream
  without waiting, then, if nothing came, waits on one of them (in turn)
  for ``block_ms / G``, at least MIN_WAIT_MS: an event waits at most about
  that long.
- ``view``, ``force`` and ``conflicts`` cover all groups.

Hosts that disagree on G would split a breaker's state silently, so G is
stored once per namespace (in the one-group namespace's meta, which every
G's hosts can find) by the first host, and a host with another G is refused:
its syncs, views and forces raise ``FleetGroupsError`` (the agent reports it
as backend trouble and the host stays host-wide), until the stored record is
removed. The check runs on the first call and every ``CHECK_INTERVAL`` after.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ._protocol import (
    ActiveHost,
    BreakerDelta,
    FleetBackend,
    FleetOverview,
    FleetState,
    PolicyConflict,
    SyncReply,
    SyncRequest,
    check_block,
    check_groups,
    group_of,
)

__all__ = ("CHECK_INTERVAL", "FleetGroupsError", "GroupedBackend", "GroupsRecord")

#: Seconds between checks of the namespace's stored ``fleet_groups``.
CHECK_INTERVAL = 10.0

#: The shortest wait on one group's stream (ms) when they are read in turn:
#: each read goes over every stream first, so this bounds an idle agent's
#: reads to about G + 1 per MIN_WAIT_MS.
MIN_WAIT_MS = 100

#: Reads every group's stream at once: (cursors, block_ms) -> (cursors, states).
ReadAll = Callable[[Sequence[str], int], tuple[Sequence[str], tuple[FleetState, ...]]]


class FleetGroupsError(ValueError):
    """This host's ``fleet_groups`` differs from the namespace's stored one."""


class GroupsRecord(Protocol):
    """Where a namespace's ``fleet_groups`` is stored, once, by the first host."""

    def claim_groups(self, groups: int) -> int:
        """Store ``groups`` unless a value is stored; return the stored one."""
        ...


class GroupedBackend:
    """``parts[g]`` serves group g; ``record`` holds the namespace's G."""

    def __init__(
        self,
        parts: Sequence[FleetBackend],
        record: GroupsRecord,
        *,
        namespace: str = "",
        read_all: ReadAll | None = None,
    ) -> None:
        self.groups = check_groups(len(parts))
        self.parts = tuple(parts)
        self.namespace = namespace
        self._record = record
        self._read_all = read_all
        self._checked = -CHECK_INTERVAL
        # The groups each host (one per backend, but for tests that play
        # several) has sent a breaker to: each of its syncs asks every one of
        # them, with no breaker if none has news, so a group that lost its
        # data is found out at the next sync (its epoch).
        self._used: dict[str, set[int]] = {}
        self._turn = 0

    @property
    def keys(self) -> tuple[str, ...]:
        """Every group's keys (where the parts name them: Redis)."""
        return tuple(k for part in self.parts for k in getattr(part, "keys", ()))

    def __repr__(self) -> str:
        if self.groups == 1:
            return repr(self.parts[0])
        return f"GroupedBackend(groups={self.groups}, first={self.parts[0]!r})"

    # -- the protocol ---------------------------------------------------------

    def sync(self, request: SyncRequest) -> SyncReply:
        if not isinstance(request, SyncRequest):
            raise TypeError(
                f"request must be a SyncRequest, got {type(request).__name__}"
            )
        self._check()
        if self.groups == 1:
            return self.parts[0].sync(request)
        split: dict[int, list[BreakerDelta]] = {}
        for delta in request.deltas:
            split.setdefault(group_of(delta.name, self.groups), []).append(delta)
        used = self._used.setdefault(request.host_id, set())
        used.update(split)
        for group in used:
            split.setdefault(group, [])
        if not split:
            split[0] = []  # a host with no breakers still learns its seq
        replies = {
            group: self._sync_part(request, group, deltas, request.seq)
            for group, deltas in sorted(split.items())
        }
        self._catch_up(request, split, replies)
        return self._merge(request, replies)

    def force(
        self, name: str, action: str, *, by: str, time_ms: int | None = None
    ) -> FleetState:
        self._check(always=True)
        # A name that is not a str: the part's own check names the bad value.
        group = group_of(name, self.groups) if isinstance(name, str) else 0
        return self.parts[group].force(name, action, by=by, time_ms=time_ms)

    def events(self, cursor: str, block_ms: int) -> tuple[str, tuple[FleetState, ...]]:
        """Transitions of every group after ``cursor``: ``"$"`` (from now on),
        ``"0-0"`` (all kept) or a cursor this method returned."""
        if self.groups == 1:
            return self.parts[0].events(cursor, block_ms)
        block_ms = check_block(block_ms)
        cursors = self._cursors(cursor)
        if self._read_all is not None:
            read, states = self._read_all(cursors, block_ms)
            return ",".join(read), states
        found: list[FleetState] = []
        for group, part in enumerate(self.parts):
            cursors[group], states = part.events(cursors[group], 0)
            found.extend(states)
        if not found and block_ms:
            # Nothing now: wait on one stream, a slice of the block, in turn.
            group = self._turn = (self._turn + 1) % self.groups
            wait = min(block_ms, max(block_ms // self.groups, MIN_WAIT_MS))
            cursors[group], states = self.parts[group].events(cursors[group], wait)
            found.extend(states)
        return ",".join(cursors), tuple(found)

    def view(self, *, time_ms: int | None = None) -> tuple[FleetState, ...]:
        self._check(always=True)
        states = [s for part in self.parts for s in part.view(time_ms=time_ms)]
        return tuple(sorted(states, key=lambda state: state.name))

    # -- beyond the protocol ----------------------------------------------------

    def conflicts(self) -> tuple[PolicyConflict, ...]:
        found = [c for part in self.parts for c in _conflicts(part)]
        return tuple(sorted(found, key=lambda c: (c.name, c.host_id)))

    def overview(self, *args: Any, **kwargs: Any) -> FleetOverview:
        """Every group's ``overview()`` as one, where the parts have one (the
        view with the hosts that synced lately): all the states, and each
        host once, as its most recent sync in any group saw it."""
        self._check(always=True)
        views: list[FleetOverview] = [
            part.overview(*args, **kwargs)  # type: ignore[attr-defined]
            for part in self.parts
        ]
        if len(views) == 1:
            return views[0]
        hosts: dict[str, ActiveHost] = {}
        for view in views:
            for host in view.active_hosts:
                seen = hosts.get(host.host_id)
                if seen is None or host.ms_ago < seen.ms_ago:
                    hosts[host.host_id] = host
        return dataclasses.replace(
            views[0],
            states=tuple(
                sorted((s for v in views for s in v.states), key=lambda s: s.name)
            ),
            active_hosts=tuple(hosts[h] for h in sorted(hosts)),
        )

    def enable_test_clock(self) -> None:
        for part in self.parts:
            part.enable_test_clock()  # type: ignore[attr-defined]

    def close(self) -> None:
        for part in self.parts:
            close = getattr(part, "close", None)
            if close is not None:
                close()

    # -- internals --------------------------------------------------------------

    def _check(self, *, always: bool = False) -> None:
        now = time.monotonic()
        if not always and now - self._checked < CHECK_INTERVAL:
            return
        stored = self._record.claim_groups(self.groups)
        if stored != self.groups:
            raise FleetGroupsError(
                f"fleet_groups={self.groups} on this host, but the namespace "
                f"{self.namespace!r} is split over fleet_groups={stored} (stored "
                f"by its first host): every host of a namespace must use the "
                f"same fleet_groups, or their breakers' states split"
            )
        self._checked = now

    def _sync_part(
        self,
        request: SyncRequest,
        group: int,
        deltas: Sequence[BreakerDelta],
        seq: int,
    ) -> SyncReply:
        part = SyncRequest(request.host_id, seq, tuple(deltas), request.time_ms)
        return self.parts[group].sync(part)

    def _catch_up(
        self,
        request: SyncRequest,
        split: dict[int, list[BreakerDelta]],
        replies: dict[int, SyncReply],
    ) -> None:
        """Groups whose record of this host is ahead of the request (a new
        life of the agent) counted nothing. If every group did so, the agent
        resends past ``last_seq`` itself; if others counted, the groups that
        did not are sent again now, past the highest seq, so nothing is lost
        and nothing counted twice."""
        if all(reply.duplicate for reply in replies.values()) or not any(
            reply.last_seq > request.seq for reply in replies.values()
        ):
            return
        seq = max(reply.last_seq for reply in replies.values()) + 1
        for group, reply in list(replies.items()):
            if reply.duplicate:
                replies[group] = self._sync_part(request, group, split[group], seq)

    def _merge(self, request: SyncRequest, replies: dict[int, SyncReply]) -> SyncReply:
        by_name = {s.name: s for reply in replies.values() for s in reply.states}
        return SyncReply(
            ";".join(f"g{g}={r.epoch}/{r.version}" for g, r in replies.items()),
            sum(reply.version for reply in replies.values()),
            all(reply.duplicate for reply in replies.values()),
            tuple(by_name[delta.name] for delta in request.deltas),
            max(reply.last_seq for reply in replies.values()),
        )

    def _cursors(self, cursor: object) -> list[str]:
        if cursor == "$" or cursor == "0-0":
            return [str(cursor)] * self.groups
        parts = cursor.split(",") if isinstance(cursor, str) else []
        if len(parts) != self.groups:
            raise ValueError(
                f"cursor must be '$', '0-0' or a cursor of {self.groups} groups "
                f"as events() returned it, got {cursor!r}"
            )
        return parts


def _conflicts(part: FleetBackend) -> tuple[PolicyConflict, ...]:
    read: Any = getattr(part, "conflicts", None)
    return () if read is None else tuple(read())


if TYPE_CHECKING:  # mypy checks that the backend implements the protocol

    def _implements(backend: GroupedBackend) -> FleetBackend:
        return backend
