"""The fleet rules in plain Python: an in-memory backend, the executable specification.

``MemoryBackend`` implements ``FleetBackend`` with the same rules as the Lua
scripts of ``qbreaker.fleet.redis_backend``; tests/fleet/test_scripts.py runs
random sequences against both and compares every reply. It also serves tests
of the host side that need a backend without Redis. docs/fleet.md states the
rules in prose; this module is their reference.

One lock guards the whole namespace, as a script runs alone in Redis.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ._protocol import (
    ACTIVE_HOSTS_KEPT_MS,
    ACTIVE_WITHIN_MS,
    EVENTS_KEPT,
    EVENTS_PER_READ,
    PROBE_LEASE_MS,
    RING_BUCKETS,
    ActiveHost,
    BreakerDelta,
    FleetBackend,
    FleetOverview,
    FleetPolicy,
    FleetState,
    PolicyConflict,
    SyncReply,
    SyncRequest,
    check_active_within,
    check_block,
    check_force,
    check_groups,
    check_time,
)
from .grouping import GroupedBackend

__all__ = ("MemoryBackend", "MemoryKeyspace")

_FORCED = {"open": "forced_open", "close": "forced_closed", "reset": "closed"}


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class _Breaker:
    policy: FleetPolicy | None = None
    digest: str = ""
    state: str = "closed"
    generation: int = 0
    until_ms: int = 0
    tripped_by: tuple[str, ...] = ()
    reason: str = ""
    # bucket index -> [calls, failures, slow, successes]
    ring: dict[int, list[int]] = field(default_factory=dict)
    # host id -> time of its last local trip, oldest first
    trips: dict[str, int] = field(default_factory=dict)
    # The probe lease of an expired open: its holder ("" = free) and expiry.
    lease_holder: str = ""
    lease_until: int = 0


class MemoryBackend:
    """The fleet rules over one namespace held in memory.

    ``clock`` gives the backend's time in ms (Redis ``TIME`` for the Redis
    backend); a request's ``time_ms`` overrides it for that call.
    """

    def __init__(self, clock: Callable[[], int] = _wall_ms) -> None:
        self._clock = clock
        self._lock = threading.Condition()
        # The number the next event gets, from 1. Like stream ids, numbers go
        # on growing when the data is lost, so an old cursor misses nothing.
        self._next_event = 1
        # The namespace's fleet_groups, once a host stored it.
        self._groups: int | None = None
        self.lose_data()

    # -- the protocol ---------------------------------------------------------

    def sync(self, request: SyncRequest) -> SyncReply:
        if not isinstance(request, SyncRequest):
            raise TypeError(
                f"request must be a SyncRequest, got {type(request).__name__}"
            )
        with self._lock:
            now = self._now(request.time_ms)
            host = request.host_id
            # The host's last sync (any, a duplicate too: the host is alive),
            # for the view's active hosts; those silent too long go.
            self._hosts[host] = now
            for silent in [
                h for h, t in self._hosts.items() if t < now - ACTIVE_HOSTS_KEPT_MS
            ]:
                del self._hosts[silent]
            duplicate = request.seq <= self._seqs.setdefault(host, -1)
            if not duplicate:
                self._seqs[host] = request.seq
                for delta in request.deltas:
                    self._apply(delta, host, now)
            states = tuple(
                self._state(delta.name, self._breakers.get(delta.name), now)
                for delta in request.deltas
            )
            return SyncReply(
                self._epoch, self._version, duplicate, states, self._seqs[host]
            )

    def force(
        self, name: str, action: str, *, by: str, time_ms: int | None = None
    ) -> FleetState:
        check_force(name, action, by)
        with self._lock:
            now = self._now(check_time(time_ms))
            breaker = self._breakers.setdefault(name, _Breaker())
            self._transition(name, breaker, _FORCED[action], 0, "manual", (by,), now)
            return self._state(name, breaker, now)

    def events(self, cursor: str, block_ms: int) -> tuple[str, tuple[FleetState, ...]]:
        """Events after ``cursor`` (``"$"``: after the last one now; ``"0-0"``:
        all kept), waiting up to ``block_ms`` for one (0: not at all)."""
        block_ms = check_block(block_ms)
        with self._lock:
            after = self._cursor(cursor)
            deadline = time.monotonic() + block_ms / 1000
            while after >= self._next_event - 1 and block_ms:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._lock.wait(left)
            first = max(after + 1, self._next_event - len(self._events))
            last = min(self._next_event - 1, first + EVENTS_PER_READ - 1)
            offset = self._next_event - len(self._events)
            found = tuple(self._events[i - offset] for i in range(first, last + 1))
            return f"{max(after, last)}-0", found

    def view(self, *, time_ms: int | None = None) -> tuple[FleetState, ...]:
        with self._lock:
            now = self._now(check_time(time_ms))
            return tuple(
                self._state(name, self._breakers[name], now)
                for name in sorted(self._breakers)
            )

    # -- beyond the protocol ----------------------------------------------------

    def overview(
        self, active_within_ms: int = ACTIVE_WITHIN_MS, *, time_ms: int | None = None
    ) -> FleetOverview:
        """``view()`` and the hosts whose last sync is at most
        ``active_within_ms`` old, by host id."""
        within = check_active_within(active_within_ms)
        with self._lock:
            now = self._now(check_time(time_ms))
            hosts = tuple(
                ActiveHost(host, max(0, now - at))
                for host, at in sorted(self._hosts.items())
                if at >= now - within
            )
            return FleetOverview(self.view(time_ms=now), hosts, within)

    def conflicts(self) -> tuple[PolicyConflict, ...]:
        """Hosts whose policy for a breaker differs from the stored one."""
        with self._lock:
            return tuple(
                PolicyConflict(name, host, digest, self._breakers[name].digest)
                for (name, host), digest in sorted(self._conflicts.items())
            )

    def claim_groups(self, groups: int) -> int:
        """Store the namespace's ``fleet_groups`` unless one is stored; the
        stored one (as the Redis backend keeps it in the namespace's meta)."""
        with self._lock:
            stored = self._groups
            if stored is None:
                stored = self._groups = check_groups(groups)
            return stored

    @property
    def epoch(self) -> str:
        return self._epoch

    def lose_data(self) -> None:
        """Forget everything, as a Redis restarted empty: a new epoch."""
        with self._lock:
            self._epoch = os.urandom(8).hex()
            self._version = 0
            self._seqs: dict[str, int] = {}
            # host id -> backend ms of its last sync
            self._hosts: dict[str, int] = {}
            self._breakers: dict[str, _Breaker] = {}
            self._conflicts: dict[tuple[str, str], str] = {}
            self._events: list[FleetState] = []
            self._groups = None

    # -- the rules ------------------------------------------------------------

    def _now(self, time_ms: int | None) -> int:
        return self._clock() if time_ms is None else time_ms

    def _apply(self, delta: BreakerDelta, host: str, now: int) -> None:
        name = delta.name
        breaker = self._breakers.setdefault(name, _Breaker())
        # The first policy stored wins; another one is recorded, nothing more.
        digest = delta.policy.digest()
        if breaker.policy is None:
            breaker.policy, breaker.digest = delta.policy, digest
        elif digest != breaker.digest:
            self._conflicts[(name, host)] = digest
        policy = breaker.policy
        self._count(breaker, policy, delta, now)
        if delta.tripped and breaker.state == "closed":
            trips = {h: t for h, t in breaker.trips.items() if h != host}
            breaker.trips = _recent(trips, now, policy.reset_timeout_ms)
            breaker.trips[host] = now
        self._lease(name, breaker, policy, delta, host, now)
        verdict = delta.verdict
        if (
            verdict is not None
            and breaker.state == "open"
            and verdict.generation == breaker.generation
            and breaker.until_ms - now <= 0
            # While a host holds the lease, only its probes count.
            and breaker.lease_holder in ("", host)
        ):
            if verdict.ok:
                self._transition(name, breaker, "closed", 0, "probe", (host,), now)
            else:
                until = now + policy.reset_timeout_ms
                self._transition(name, breaker, "open", until, "probe", (host,), now)
        if delta.reseed_ms is not None:
            until = now + delta.reseed_ms
            if breaker.state == "closed":
                self._transition(name, breaker, "open", until, "reseed", (host,), now)
            elif breaker.state == "open" and until > breaker.until_ms:
                # Open again for a while: no probing, so no lease.
                breaker.until_ms = until
                breaker.lease_holder, breaker.lease_until = "", 0
        if breaker.state == "closed":
            tripped = self._trip_rule(breaker, policy, host, now)
            if tripped is not None:
                reason, by = tripped
                until = now + policy.reset_timeout_ms
                self._transition(name, breaker, "open", until, reason, by, now)

    def _lease(
        self,
        name: str,
        breaker: _Breaker,
        policy: FleetPolicy,
        delta: BreakerDelta,
        host: str,
        now: int,
    ) -> None:
        """The probe lease: an expired one re-opens the fleet from its expiry
        (its holder died or was cut off); a request for the current
        generation of an expired open takes, renews or releases it."""
        if (
            breaker.state == "open"
            and breaker.lease_holder
            and breaker.lease_until - now <= 0
        ):
            until = breaker.lease_until + policy.reset_timeout_ms
            by = (breaker.lease_holder,)
            self._transition(name, breaker, "open", until, "lease_expired", by, now)
        lease = delta.lease
        if (
            lease is None
            or breaker.state != "open"
            or lease.generation != breaker.generation
            or breaker.until_ms - now > 0
        ):
            return
        if lease.take and breaker.lease_holder in ("", host):
            breaker.lease_holder = host
            breaker.lease_until = now + PROBE_LEASE_MS
        elif not lease.take and breaker.lease_holder == host:
            breaker.lease_holder, breaker.lease_until = "", 0

    def _count(
        self, breaker: _Breaker, policy: FleetPolicy, delta: BreakerDelta, now: int
    ) -> None:
        """Add a delta to the ring's current bucket, dropping the buckets out of it.

        The current bucket is the newest of now's and the newest stored: time
        that goes backwards (a failover) adds to the newest bucket.
        """
        ring = breaker.ring
        current = now // (policy.window_ms // RING_BUCKETS)
        if ring:
            current = max(current, max(ring))
        for bucket in [b for b in ring if b <= current - RING_BUCKETS]:
            del ring[bucket]
        counts = (delta.calls, delta.failures, delta.slow, delta.successes)
        if any(counts):
            sums = ring.setdefault(current, [0, 0, 0, 0])
            for i, count in enumerate(counts):
                sums[i] += count

    @staticmethod
    def _trip_rule(
        breaker: _Breaker, policy: FleetPolicy, host: str, now: int
    ) -> tuple[str, tuple[str, ...]] | None:
        """The first rule that trips a closed breaker, and who tripped it."""
        quorum = tuple(_recent(breaker.trips, now, policy.reset_timeout_ms))
        if len(quorum) >= policy.quorum:
            return "quorum", quorum
        calls, failures, slow, successes = _window_sums(breaker, now)
        if (
            policy.max_failures is not None
            and failures >= policy.max_failures
            and successes == 0
        ):
            return "burst", (host,)
        if calls > 0 and calls >= policy.minimum_calls:
            if (
                policy.failure_rate is not None
                and failures >= policy.failure_rate * calls
            ):
                return "failure_rate", (host,)
            if policy.slow_rate is not None and slow >= policy.slow_rate * calls:
                return "slow_rate", (host,)
        return None

    def _transition(
        self,
        name: str,
        breaker: _Breaker,
        state: str,
        until_ms: int,
        reason: str,
        by: tuple[str, ...],
        now: int,
    ) -> None:
        """A fleet transition: new generation, window and trip reports emptied,
        namespace version + 1, one event."""
        breaker.state, breaker.until_ms = state, until_ms
        breaker.generation += 1
        breaker.reason, breaker.tripped_by = reason, by
        breaker.ring = {}
        breaker.trips = {}
        breaker.lease_holder, breaker.lease_until = "", 0
        self._version += 1
        self._events.append(self._state(name, breaker, now))
        self._next_event += 1
        del self._events[:-EVENTS_KEPT]
        self._lock.notify_all()

    @staticmethod
    def _state(name: str, breaker: _Breaker | None, now: int) -> FleetState:
        if breaker is None:
            return FleetState(name, "closed", 0, 0, (), "")
        remaining = breaker.until_ms - now if breaker.state == "open" else 0
        holder = breaker.lease_holder
        return FleetState(
            name,
            breaker.state,
            breaker.generation,
            remaining,
            breaker.tripped_by,
            breaker.reason,
            *_window_sums(breaker, now),
            holder,
            breaker.lease_until - now if holder else 0,
        )

    def _cursor(self, cursor: str) -> int:
        """The number of the last event a cursor has seen."""
        if cursor == "$":
            return self._next_event - 1
        head, sep, tail = (
            cursor.partition("-") if isinstance(cursor, str) else ("", "", "")
        )
        if not (head.isdigit() and (not sep or tail.isdigit())):
            raise ValueError(
                f"cursor must be '$' or an event id like '12-0', got {cursor!r}"
            )
        return int(head)


class MemoryKeyspace:
    """A namespace's key space in memory, as Redis holds it: a
    ``MemoryBackend`` per hash tag, made on first use, so hosts that use the
    same ``fleet_groups`` share each group's state (and hosts that do not are
    refused, as on Redis)."""

    def __init__(self, clock: Callable[[], int] = _wall_ms) -> None:
        self._clock = clock
        self._tags: dict[tuple[int, int], MemoryBackend] = {}
        self._lock = threading.Lock()

    def tag(self, group: int, groups: int) -> MemoryBackend:
        """The backend of group ``group`` of ``groups`` (the key prefix's tag)."""
        with self._lock:
            found = self._tags.get((group, groups))
            if found is None:
                found = self._tags[(group, groups)] = MemoryBackend(self._clock)
            return found

    def backend(self, groups: int = 1) -> GroupedBackend:
        """The namespace split over ``groups``; its G is stored in the
        one-group tag, as on Redis."""
        groups = check_groups(groups)
        parts = [self.tag(group, groups) for group in range(groups)]
        return GroupedBackend(parts, self.tag(0, 1), namespace="memory")


def _window_sums(breaker: _Breaker, now: int) -> tuple[int, int, int, int]:
    """Calls, failures, slow calls and successes of the ring's buckets in the
    window at ``now`` (its current bucket: as ``_count`` decides it)."""
    sums = [0, 0, 0, 0]
    if breaker.policy is None or not breaker.ring:
        return (0, 0, 0, 0)
    current = max(now // (breaker.policy.window_ms // RING_BUCKETS), max(breaker.ring))
    for bucket, counts in breaker.ring.items():
        if bucket > current - RING_BUCKETS:
            for i, count in enumerate(counts):
                sums[i] += count
    return (sums[0], sums[1], sums[2], sums[3])


def _recent(trips: dict[str, int], now: int, reset_timeout_ms: int) -> dict[str, int]:
    """The trip reports within ``reset_timeout_ms`` of ``now``, oldest first."""
    return {h: t for h, t in trips.items() if now - t < reset_timeout_ms}


if TYPE_CHECKING:  # mypy checks that the backend implements the protocol

    def _implements(backend: MemoryBackend) -> FleetBackend:
        return backend
