"""The host's fleet agent: the one process of a host that talks to the fleet.

Calls never see it. They touch only their host's shared cells; the agent
works beside them::

    workers ──(load + CAS)──> host cells (/dev/shm) <──(scan, core ops)── agent
                                                                            │
                              control segment <──(lease, status)──────────── │
                                                                            │
                                   fleet backend (Redis) <──(sync, events)──┘

``Runner`` elects the agent through the control segment's lease (a daemon
thread in a worker, or ``python -m qbreaker agent``), and runs ``Agent``
while it holds the lease. ``Agent`` is one loop:

- every SCAN_INTERVAL it reads each fleet cell's word (``_word_view``): a
  transition into open that the fleet did not make is a local trip; a
  half-open that ends while the fleet's open has expired is a probe verdict;
- it syncs (one ``backend.sync`` per tick: about 1 s quiet, 250 ms while
  anything is failing or not closed, at once after a local trip or a
  verdict): per-breaker count deltas from the cells' totals since the last
  acknowledged sync, resent unchanged (same sequence number) after a lost
  reply, so nothing is counted twice. A breaker that is closed, here and in
  the fleet, with nothing to send, is left out but for one sync every
  FULL_SYNC_TICKS quiet ticks and the first after any trouble;
- it applies each breaker's fleet state to its cell with the core's fleet
  operations, each one CAS that a concurrent local transition wins;
- once a fleet open has expired, one host at a time probes: the holder of
  the fleet's probe lease, which an agent asks for only when its cell
  rejected calls in the last tick (demand), renews while its cell has
  traffic and releases without. Every other host's cell is held open for
  two ticks at a time, so the holds lapse, and the cell half-opens on its
  own, when this agent or the backend is gone;
- a second thread blocks on ``backend.events``, so a fleet decision is
  applied about one round trip after it is made.

Redis trouble never reaches a call: the agent guards its backend calls with
a breaker of its own, publishes ``connected=False`` in the control segment
and logs ONE warning per change of connectivity; the cells go on as
host-wide breakers, and once more while degraded if the backend's answer
names another cause (a changed password after a dropped connection). A
backend that answers with errors gets backoff (doubling up to a quiet tick,
jittered); one that cannot be reached gets one sync attempt
a tick (one connection attempt in flight per host: the events thread waits
for the sync loop to reconnect), so its return is noticed within a tick.
A backend that lost its data (a new epoch, or a namespace version that went
back) is re-seeded from the cells and never closes one.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._impl.methods import FleetOptions
from ._protocol import (
    BreakerDelta,
    FleetBackend,
    FleetPolicy,
    FleetState,
    LeaseRequest,
    PolicyConflict,
    SyncReply,
    SyncRequest,
    Verdict,
    data_lost,
)
from .control import LEASE_CHECK_MS, LEASE_MS, ControlSegment, monotonic_ms
from .counters import AgentCounters

SCAN_INTERVAL = 0.02  # seconds between scans of the cells
HOT_INTERVAL = 0.25  # seconds between syncs while anything is failing or open
REGISTRY_INTERVAL = 0.5  # seconds between reads of the registry
# Seconds between reads of the fleet's policy conflicts: a rolling policy
# change is news for people, not for the cells.
CONFLICT_INTERVAL = 10.0
# Quiet ticks (sync_interval, whatever the pace) between syncs that send every
# breaker. In between, a sync sends only the breakers with news (counts, a
# trip, a verdict, a lease request, a cell or a fleet state other than
# closed): a closed, idle breaker costs Redis nothing, and learns of fleet
# decisions from the events stream. The full sync bounds what a lost event
# (a trimmed stream) can hide from it.
FULL_SYNC_TICKS = 10
LEASE_RENEW_MS = LEASE_CHECK_MS
# The longest the election loop may go without a pass and still have its
# lease renewed for it: a slow step (redis-py imported on a busy machine,
# Sentinels asked in turn) keeps the lease; a hung one loses it. A frozen
# process renews nothing: its lease lapses after LEASE_MS.
STALL_MS = 5_000
BACKOFF_MAX = 10.0  # seconds: the longest wait after failing event reads
# A blocked read that outlives its socket timeout (this + timeout) is a frozen
# Redis: short enough to say so within a second.
EVENTS_BLOCK_MS = 500
#: A forced fleet open is applied as an open of the longest duration a word
#: holds, renewed on every sync.
FORCED_OPEN_MS = (1 << 27) - 1
# The fleet's ring limits (see _protocol.FleetPolicy).
_FLEET_MS_LIMIT = 86_400_000

BackendFactory = Callable[[], FleetBackend]


def _state_name(raw: object) -> str:
    """The core's state name in one spelling: closed, open, half-open,
    forced-open, forced-closed."""
    return str(raw).lower().replace("_", "-").replace(" ", "-")


@dataclass
class Track:
    """The agent's knowledge of one fleet breaker of this host."""

    name: str
    breaker: Any
    policy: FleetPolicy
    # Counts (calls, failures, successes, slow) at the last acknowledged sync.
    base: tuple[int, int, int, int]
    seen: tuple[str, int] | None = None  # (state, generation) at the last scan
    owned: int | None = None  # the generation of the cell's fleet-made open
    held: int | None = None  # the generation of a local open the fleet held
    open_fgen: int = 0  # the fleet generation whose open was applied
    fleet: FleetState | None = None
    fleet_until_ms: int = 0  # host monotonic ms when the fleet's open ends
    trip: bool = False  # a local trip not yet sent
    verdict: Verdict | None = None  # a probe verdict not yet sent
    reseed_ms: int | None = None  # after a data loss: the fleet open's time left
    forced_closed: bool = False  # the agent forced the cell closed
    replied_generation: int = 0  # the fleet generation of the last sync reply
    failing: bool = False  # failures in the last delta sent
    activity: tuple[int, int] = (0, 0)  # (allowed, rejected) at the last request
    sent: tuple[int, int, int] = (0, 0, 0)  # counts sent, for metrics
    acknowledged: bool = False  # in a sync the backend acknowledged

    def view(self) -> tuple[str, int, float]:
        state, generation, retry_after = self.breaker._word_view()
        return _state_name(state), int(generation), float(retry_after)


class Agent:
    """One host's agent while it holds the lease (see the module's notes).

    ``step()`` does one round (scan, sync if due) and is what tests drive;
    ``Runner`` calls it in a loop and runs ``pump_events`` on a thread.
    """

    def __init__(
        self,
        control: ControlSegment,
        backend: FleetBackend,
        host_id: str,
        *,
        info: dict[str, Any] | None = None,
        sync_interval: float = 1.0,
        hot_interval: float = HOT_INTERVAL,
        open_breaker: Callable[[str], Any] | None = None,
        log: Any = None,
        probe_lease: bool = True,
        counters: AgentCounters | None = None,
    ) -> None:
        from .._impl.select import CircuitBreaker

        self.control = control
        self.backend = backend
        self.host_id = host_id
        self.info = dict(info or {})
        self.sync_interval = sync_interval
        self.hot_interval = hot_interval
        # One probe host at a time (the fleet's probe lease); False: every
        # host's cell half-opens when the fleet's open expires.
        self.probe_lease = probe_lease
        self._open_breaker = open_breaker or _open_breaker
        self._log = log
        self.lock = threading.RLock()
        self.tracks: dict[str, Track] = {}
        self.seq = 0
        self.epoch: str | None = None
        self.version = 0
        self.pending: SyncRequest | None = None
        # When the next sync must carry every breaker (monotonic seconds):
        # at once for a new agent, and after any trouble (see _set_connected).
        self.full_sync_at = -math.inf
        self._pending_totals: dict[str, tuple[int, int, int, int]] = {}
        self.next_sync = 0.0
        self.errors = 0
        # The last failure found no backend to talk to (refused, timed out),
        # as opposed to a backend that answered with an error.
        self.unreachable = False
        # Successful syncs so far: the events thread waits for the next one
        # after its own failure (see Runner._events).
        self.good_syncs = 0
        self.connected: bool | None = None
        self.degraded_since: float | None = None
        self.last_error: str | None = None
        # The kinds of error already told in a WARNING line this outage.
        self._causes_told: set[str] = set()
        self.last_good_sync: float | None = None
        self.applied = 0  # fleet states that changed a cell
        self.counters = counters if counters is not None else AgentCounters()
        # Hosts whose policy for one of this host's breakers differs from
        # the fleet's, and the (breaker, digest) pairs already warned of.
        self.conflicts: tuple[PolicyConflict, ...] = ()
        self._conflicts_read = -math.inf
        self._registry_read = 0.0
        # The agent's own breaker around its backend calls. Open, it lets one
        # call through at a time (half_open_max=1), at most one a tick (the
        # loop's pace): a dead Redis costs one connection attempt in flight,
        # bounded by the client's timeout, and quick rejections otherwise.
        self.guard = CircuitBreaker(3, hot_interval / 2, 1, name="qbreaker.fleet.agent")
        # Host monotonic ms until which this agent surely holds its host's
        # lease (the Runner moves it on at every renewal): past it, another
        # process may have taken over, so this one sends no sync (a worker
        # frozen inside a step must not send a stale one when it thaws).
        self.lease_deadline_ms = math.inf
        self._restore()

    # -- state kept across agents ------------------------------------------

    def _restore(self) -> None:
        """Take over what the previous agent of this host published: its
        sequence number, the counts it had sent, the opens the fleet made."""
        status = self.control.read_status()
        self.seq = int(status.get("seq", 0)) + 1  # its last request may be in flight
        self.epoch = status.get("epoch")
        self.version = int(status.get("version", 0))
        self._restored: dict[str, dict[str, Any]] = dict(status.get("breakers", {}))
        # A new agent of the host does not warn again of what one before did.
        self._warned = {(c[0], c[2]) for c in status.get("conflicts", ())}

    # -- the loop ------------------------------------------------------------

    def step(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if now - self._registry_read >= REGISTRY_INTERVAL or not self.tracks:
            self.refresh_registry()
            self._registry_read = now
        urgent = self.scan()
        if (urgent or now >= self.next_sync) and self.tracks:
            self.sync(now)
        if self.connected and now - self._conflicts_read >= CONFLICT_INTERVAL:
            self._conflicts_read = now
            self.check_conflicts()

    def check_conflicts(self) -> None:
        """Read the fleet's policy conflicts for this host's breakers; warn
        once per breaker and policy digest (a rolling change warns once per
        host policy, not once per host or tick)."""
        read = getattr(self.backend, "conflicts", None)
        if read is None:
            return
        try:
            found = read()
        except Exception:  # noqa: BLE001 - the next sync reports the trouble
            return
        with self.lock:
            mine = tuple(c for c in found if c.name in self.tracks)
            changed = mine != self.conflicts
            self.conflicts = mine
        for c in mine:
            if (c.name, c.digest) not in self._warned:
                self._warned.add((c.name, c.digest))
                self._warn(
                    "qbreaker fleet: breaker %r has two policies: host %s "
                    "sends digest %s, the fleet keeps the first stored, %s "
                    "(a rolling policy change, or hosts that disagree)",
                    c.name, c.host_id, c.digest, c.stored_digest,
                )  # fmt: skip
        if changed:
            self.publish()

    def refresh_registry(self) -> None:
        for name, options in self.control.registered():
            if name in self.tracks:
                continue
            try:
                breaker = self._open_breaker(name)
            except (OSError, ValueError, TypeError) as exc:
                self._note_error(f"cannot open fleet breaker {name!r}: {exc}")
                continue
            fresh = self.control.take_fresh(name)
            with self.lock:
                self._add(name, options, breaker, fresh=fresh)

    def _add(
        self, name: str, options: FleetOptions, breaker: Any, *, fresh: bool = False
    ) -> None:
        counts = _counts(breaker)
        # A segment made by its registering process holds only news: send it
        # all, from zero (else the counts taken before this first sight,
        # such as a new worker's first failures, would never be sent).
        start = (0, 0, 0, 0) if fresh else counts
        track = Track(name, breaker, fleet_policy(options, breaker.policy), start)
        totals = breaker.totals()
        track.activity = (int(totals.allowed), int(totals.rejected))
        restored = self._restored.pop(name, None)
        if restored is not None:
            base = restored.get("base")
            if isinstance(base, list) and len(base) in (3, 4):
                # (An agent of an earlier release published no slow count.)
                track.base = (
                    int(base[0]),
                    int(base[1]),
                    int(base[2]),
                    int(base[3]) if len(base) == 4 else counts[3],
                )
            track.owned = restored.get("owned")
            track.open_fgen = int(restored.get("open_fgen", 0))
        self.tracks[name] = track
        # A new breaker is synced at once: a host starting during an outage
        # learns of it before its workers send many calls.
        self.next_sync = 0.0

    def scan(self) -> bool:
        """Read every cell's word; True if something must be sent at once."""
        urgent = False
        now_ms = monotonic_ms()
        with self.lock:
            for track in self.tracks.values():
                state, generation, _ = track.view()
                previous, track.seen = track.seen, (state, generation)
                if previous == (state, generation):
                    continue
                if previous is None:
                    # First sight (a new agent): an open the fleet did not
                    # make is reported as this host's trip.
                    if state == "open" and generation != track.owned:
                        track.trip = urgent = True
                    continue
                fleet = track.fleet
                probed = (
                    fleet is not None
                    and fleet.state == "open"
                    and now_ms >= track.fleet_until_ms
                    and previous[0] in ("open", "half-open")
                    and state in ("closed", "open")
                    and generation != previous[1]
                )
                if probed and fleet is not None:
                    # Out of half-open (seen or not: a probe can be quicker
                    # than a scan) while the fleet's open has expired: the
                    # verdict, fenced by the fleet generation.
                    track.verdict = Verdict(fleet.generation, state == "closed")
                    urgent = True
                    owned = track.owned
                    if state == "open" and owned is not None:
                        if previous[1] in (owned, owned + 1):
                            # A failed probe of the fleet's open: the fleet
                            # re-opens, and this open is the fleet's to close.
                            track.owned = generation
                    continue
                if state == "open" and generation != track.owned:
                    track.trip = True
                    urgent = True
        return urgent

    # -- sync ----------------------------------------------------------------

    def sync(self, now: float | None = None) -> bool:
        """One sync with the backend; True if it got a reply."""
        now = time.monotonic() if now is None else now
        if monotonic_ms() >= self.lease_deadline_ms:
            return False  # no longer surely elected: the Runner steps down
        with self.lock:
            if self.pending is None:
                self.pending = self._request(now)
            # What this host had applied when it sent (replies and events
            # alike): one master answers with no lower generation.
            floors = {
                name: t.fleet.generation
                for name, t in self.tracks.items()
                if t.fleet is not None
            }
        try:
            if not self.guard.allow():
                raise _GuardOpen
            started = time.perf_counter()
            try:
                reply = self.backend.sync(self.pending)
            except BaseException:
                self.guard.record_failure()
                raise
            self.guard.record_success()
            self.counters.synced(time.perf_counter() - started)
        except Exception as exc:  # noqa: BLE001 - any backend trouble
            self.errors += 1
            if not isinstance(exc, _GuardOpen):
                # The guard's rejection says nothing new: keep the last cause.
                self.unreachable = unreachable(exc)
            self.counters.failed(_error_kind(exc))
            if self.unreachable:
                # Nobody answered: try again next tick, so a Redis that
                # returns is noticed within about a tick. Each try is one
                # connection attempt at most, bounded by the short timeout.
                self.next_sync = now + self.hot_interval
            else:
                # A backend that answers with errors (out of memory, refused
                # credentials, loading): backoff, doubling from a hot tick up
                # to the quiet tick, jittered over its upper half. At most
                # two tries a second per host, and a backend that is fixed
                # is seen within a tick: the fleet reconverges in two.
                delay = min(self.sync_interval, self.hot_interval * 2**self.errors)
                self.next_sync = now + random.uniform(delay / 2, delay)
            self.set_connected(False, None if isinstance(exc, _GuardOpen) else exc)
            return False
        with self.lock:
            self.errors = 0
            self.unreachable = False
            self.good_syncs += 1
            done = self._acknowledge(reply, floors)
            busy = self._apply_reply(reply)
        self.last_good_sync = time.time()
        self.set_connected(True, None)
        if not done or self.full_sync_at == -math.inf:
            # Or the request resent after trouble, which may have left out
            # breakers that missed fleet decisions meanwhile: ask at once.
            self.next_sync = now
        else:
            self.next_sync = now + (self.hot_interval if busy else self.sync_interval)
        return True

    def request_full_sync(self) -> None:
        """The next sync carries every breaker, quiet or not."""
        with self.lock:
            self.full_sync_at = -math.inf

    def _request(self, now: float) -> SyncRequest:
        deltas = []
        self._pending_totals = {}
        full = now >= self.full_sync_at
        if full:
            self.full_sync_at = now + FULL_SYNC_TICKS * self.sync_interval
        for track in self.tracks.values():
            counts = _counts(track.breaker)
            if any(c < b for c, b in zip(counts, track.base)):
                track.base = counts  # a segment made afresh: count from here
            calls, failures, successes, slow = (
                c - b for c, b in zip(counts, track.base)
            )
            delta = BreakerDelta(
                track.name,
                track.policy,
                calls,
                failures,
                slow,
                successes,
                track.trip,
                track.verdict,
                track.reseed_ms,
                self._lease_request(track),
            )
            track.failing = failures > 0
            if not full and _quiet(track, delta):
                continue
            self._pending_totals[track.name] = counts
            deltas.append(delta)
            track.trip, track.verdict, track.reseed_ms = False, None, None
        self.seq += 1
        return SyncRequest(self.host_id, self.seq, tuple(deltas))

    def _lease_request(self, track: Track) -> LeaseRequest | None:
        """What this host asks of the probe lease of an expired fleet open:
        to take it (if free) when its cell rejected calls since the last
        request; as the holder, to renew while its cell has traffic, else
        to release it for a host that has some."""
        totals = track.breaker.totals()
        activity = (int(totals.allowed), int(totals.rejected))
        previous, track.activity = track.activity, activity
        fleet = track.fleet
        if (
            not self.probe_lease
            or fleet is None
            or fleet.state != "open"
            or monotonic_ms() < track.fleet_until_ms
        ):
            return None
        if fleet.lease_holder == self.host_id:
            return LeaseRequest(fleet.generation, activity != previous)
        if activity[1] > previous[1]:
            # Asked even if another host held it at the last reply: it may
            # have released it since, and a held lease ignores the request.
            return LeaseRequest(fleet.generation, True)
        return None

    def _acknowledge(self, reply: SyncReply, floors: dict[str, int]) -> bool:
        """Take the reply's news; False if another sync must follow at once
        (the request again, or the re-seed of a backend that lost its data)."""
        pending = self.pending
        assert pending is not None
        behind = reply.duplicate and pending.seq < reply.last_seq
        if behind:
            # This host's record in the backend is ahead of this agent (its
            # control segment is new: a reboot wiped /dev/shm): nothing of the
            # request was counted. It goes again, past the last applied seq.
            self.seq = reply.last_seq + 1
            self.pending = dataclasses.replace(pending, seq=self.seq)
        else:
            for delta in pending.deltas:
                track = self.tracks.get(delta.name)
                if track is not None:
                    track.acknowledged = True
                    track.base = self._pending_totals[delta.name]
                    c, f, s = track.sent
                    track.sent = (
                        c + delta.calls,
                        f + delta.failures,
                        s + delta.successes,
                    )
            self.pending = None
            # A namespace split over groups may send parts past the seq
            # (see grouping): the next request goes after them.
            self.seq = max(self.seq, reply.last_seq)
        lost = data_lost(self.epoch, self.version, reply)
        lost = self._generation_went_back(reply, floors) or lost
        self.epoch, self.version = reply.epoch, reply.version
        if lost:
            self._reseed()
        return not (behind or lost)

    def _generation_went_back(self, reply: SyncReply, floors: dict[str, int]) -> bool:
        """A failover that lost writes: a breaker's fleet generation below
        the one an earlier reply gave, or the one applied (from a reply or
        an event) when this sync was sent, whatever the epoch and version
        say. An event read after the send may run ahead of this reply, so
        ``floors`` is taken at the send."""
        back = False
        for state in reply.states:
            track = self.tracks.get(state.name)
            if track is not None:
                floor = max(track.replied_generation, floors.get(state.name, 0))
                back = back or state.generation < floor
                track.replied_generation = state.generation
        return back

    def _reseed(self) -> None:
        """The backend lost its data: forget the fleet's past, never close a
        cell, and tell the fleet again what the cells say."""
        for track in self.tracks.values():
            state, generation, retry_after = track.view()
            if state == "open" and track.owned == generation and retry_after > 0:
                track.reseed_ms = min(
                    _FLEET_MS_LIMIT, max(1, round(retry_after * 1000))
                )
            elif state == "open":
                track.trip = True
            track.owned = track.held = None
            track.open_fgen = 0
            track.replied_generation = 0
            track.fleet = None
            track.fleet_until_ms = 0

    def _apply_reply(self, reply: SyncReply) -> bool:
        busy = False
        for state in reply.states:
            track = self.tracks.get(state.name)
            if track is None:
                continue
            self.apply(track, state)
            busy = busy or state.state != "closed" or track.failing
            busy = busy or (track.seen is not None and track.seen[0] != "closed")
        self.publish()
        return busy

    # -- applying fleet states -------------------------------------------------

    def apply_event(self, state: FleetState) -> None:
        with self.lock:
            track = self.tracks.get(state.name)
            if track is not None:
                self.apply(track, state)

    def apply(self, track: Track, fleet: FleetState) -> None:
        """Bring ``track``'s cell in line with its fleet state (each step one
        CAS on the cell's word; a local transition that wins it stands)."""
        known = track.fleet
        if known is not None and fleet.generation < known.generation:
            return  # an older decision (an event read after a newer reply)
        track.fleet = fleet
        b = track.breaker
        state, generation, _ = track.view()
        if track.forced_closed and fleet.state != "forced_closed":
            b.reset()
            track.forced_closed = False
            state, generation, _ = track.view()
        changed = False
        if fleet.state in ("open", "forced_open"):
            remaining = (
                FORCED_OPEN_MS if fleet.state == "forced_open" else fleet.remaining_ms
            )
            track.fleet_until_ms = monotonic_ms() + remaining
            if remaining > 0:
                seconds = min(remaining, FORCED_OPEN_MS) / 1000
                forced = fleet.state == "forced_open"
                if self.probe_lease and not forced:
                    # The cell outlasts the fleet's open by one hold: at its
                    # expiry the lease decides who probes, not the first call.
                    seconds += 2 * self.hot_interval
                if state in ("closed", "half-open"):
                    # An open is applied once per fleet generation (a cell
                    # that probed and closed a little before the fleet's open
                    # ended stays closed); a forced one, always.
                    if forced or track.open_fgen != fleet.generation:
                        made = b.open_for(seconds)
                        if made:
                            track.owned = int(made)
                            track.seen = ("open", track.owned)
                            changed = True
                elif state == "open" and (not forced or generation == track.owned):
                    # A local open is held to the fleet's expiry, never to a
                    # forced open's: the fleet's reset would not end it.
                    changed = bool(b._extend_open(generation, seconds))
                    if changed and generation != track.owned:
                        track.held = generation
                track.open_fgen = fleet.generation
            elif self.probe_lease and state == "open":
                if fleet.lease_holder == self.host_id:
                    # This host probes for the fleet: half-open at the next call.
                    changed = bool(b._expire_open(generation))
                    if changed:
                        self.counters.lease_granted()
                else:
                    # Another host probes, or none yet: hold the cell open
                    # for two ticks, renewed at every sync while it lasts.
                    hold = 2 * self.hot_interval
                    changed = bool(b._extend_open(generation, hold))
                    if changed and generation != track.owned:
                        track.held = generation
            elif state == "open" and generation == track.owned:
                # The fleet's open ended: the cell half-opens at its next call.
                changed = bool(b._expire_open(generation))
        elif fleet.state == "closed":
            if track.owned is not None and state in ("open", "half-open"):
                changed = bool(b._close_if(track.owned))
                track.seen = track.view()[:2]
            elif track.held is not None and state in ("open", "half-open"):
                # A local open the fleet held through its open and its
                # probe: the fleet's verdict closes it too, else every such
                # host would probe alone after the fleet closed. Only that
                # open (by its generation): a local open made while the
                # fleet was closed (one bad host), or since the fleet's
                # verdict, stands. ``seen`` moves only if this closed it: a
                # local transition the scan has not seen yet (a trip to
                # send) must stay news.
                if b._close_if(track.held):
                    changed = True
                    track.seen = track.view()[:2]
            track.owned = track.held = None
            track.open_fgen = 0
        elif fleet.state == "forced_closed" and not track.forced_closed:
            b.force_closed()
            track.forced_closed = True
            track.owned = track.held = None
            changed = True
        if changed:
            self.applied += 1
            self.counters.applied()

    def pump_events(self, events_backend: FleetBackend, cursor: str) -> str:
        """One blocking read of fleet events, applied; the next cursor."""
        cursor, states = events_backend.events(cursor, EVENTS_BLOCK_MS)
        for state in states:
            self.apply_event(state)
        if states:
            with self.lock:
                self.publish()
        return cursor

    # -- connectivity and status -----------------------------------------------

    def set_connected(self, connected: bool, error: BaseException | None) -> None:
        # The sync loop and the events thread both report: one change, one line.
        with self.lock:
            self._set_connected(connected, error)

    def _set_connected(self, connected: bool, error: BaseException | None) -> None:
        if error is not None:
            self.last_error = _describe_error(error, self.info.get("password"))
        if not connected:
            # Events may have been missed while the connection was down: the
            # next good sync asks about every breaker.
            self.full_sync_at = -math.inf
        if connected == self.connected:
            if not connected:
                if error is not None and not unreachable(error):
                    self._warn_cause(error)
                self.publish()
            return
        was = self.connected
        self.connected = connected
        if connected:
            self.degraded_since = None
            self._causes_told.clear()
            if was is False:
                self._warn(
                    "qbreaker fleet: connected to %s again; fleet decisions apply",
                    self.info.get("url", "the fleet backend"),
                )
        else:
            self.degraded_since = time.time()
            if error is not None:
                self._causes_told.add(type(error).__name__)
            self._warn(
                "qbreaker fleet: lost %s (%s); breakers are host-wide only "
                "until it is back",
                self.info.get("url", "the fleet backend"),
                self.last_error,
            )
        self.publish()

    def _warn_cause(self, error: BaseException) -> None:
        """While degraded, one line for each new kind of answer: the outage
        began as a dropped connection, say, and Redis now refuses the
        credentials. An operator must hear that, once."""
        kind = type(error).__name__
        if kind in self._causes_told:
            return
        self._causes_told.add(kind)
        self._warn(
            "qbreaker fleet: %s answers %s; breakers stay host-wide only",
            self.info.get("url", "the fleet backend"),
            self.last_error,
        )

    def _note_error(self, message: str) -> None:
        self.last_error = message

    def _warn(self, message: str, *args: object) -> None:
        if self._log is not None:
            self._log(message, *args)
            return
        from .._log import logger

        logger.warning(message, *args)

    def publish(self) -> None:
        """Write this agent's status into the control segment."""
        breakers = {}
        for track in self.tracks.values():
            fleet = track.fleet
            breakers[track.name] = {
                "state": None if fleet is None else fleet.state,
                "generation": 0 if fleet is None else fleet.generation,
                "remaining_ms": 0 if fleet is None else fleet.remaining_ms,
                "tripped_by": [] if fleet is None else list(fleet.tripped_by),
                "reason": "" if fleet is None else fleet.reason,
                "lease_holder": "" if fleet is None else fleet.lease_holder,
                "until_ms": track.fleet_until_ms,
                "owned": track.owned,
                "local_open": track.seen is not None
                and track.seen[0] == "open"
                and track.seen[1] != track.owned,
                "open_fgen": track.open_fgen,
                "base": list(track.base),
                "sent": list(track.sent),
                # The fleet's counts over its window, from the last reply.
                "window": []
                if fleet is None
                else [fleet.calls, fleet.failures, fleet.successes, fleet.slow],
            }
        public = {k: v for k, v in self.info.items() if k != "password"}
        self.control.write_status(
            {
                **public,
                "pid": os.getpid(),
                "host_id": self.host_id,
                "connected": bool(self.connected),
                "degraded_since": self.degraded_since,
                "last_error": self.last_error,
                "last_good_sync": self.last_good_sync,
                "epoch": self.epoch,
                "version": self.version,
                "seq": self.seq,
                "errors": self.errors,
                "applied": self.applied,
                "updated_ms": monotonic_ms(),
                "breakers": breakers,
                "conflicts": [
                    [c.name, c.host_id, c.digest, c.stored_digest]
                    for c in self.conflicts
                ],
            }
        )


def fleet_policy(options: FleetOptions, policy: Any) -> FleetPolicy:
    """What the fleet decides with, from the fleet options and the cell's policy."""
    return FleetPolicy(
        quorum=options.quorum,
        max_failures=options.max_failures,
        window_ms=max(10, min(options.window_ms, _FLEET_MS_LIMIT)),
        reset_timeout_ms=max(1, min(int(policy.reset_ticks), _FLEET_MS_LIMIT)),
        failure_rate=policy.failure_rate_threshold or None,
        slow_rate=policy.slow_rate_threshold or None,
        minimum_calls=max(1, int(policy.minimum_calls)),
        local_max_failures=max(1, int(policy.max_failures)),
    )


# Connection errors of redis-py that are answers: the server is there.
_ANSWERED = (
    "AuthenticationError",
    "AuthorizationError",
    "BusyLoadingError",
    "ExternalAuthProviderError",
    "MaxClientsReachedError",
)


def _error_kind(error: BaseException) -> str:
    if isinstance(error, _GuardOpen):
        return "guard_open"
    return "unreachable" if unreachable(error) else "backend"


def unreachable(error: BaseException) -> bool:
    """Whether ``error`` says the backend could not be reached (refused,
    reset, timed out), as opposed to an answer that was an error."""
    if isinstance(error, OSError):  # ConnectionError and TimeoutError too
        return True
    # redis-py's own; the module is loaded wherever its client raised.
    exceptions = sys.modules.get("redis.exceptions")
    if exceptions is None:
        return False
    answered = tuple(
        getattr(exceptions, name) for name in _ANSWERED if hasattr(exceptions, name)
    )
    return isinstance(
        error, (exceptions.ConnectionError, exceptions.TimeoutError)
    ) and not isinstance(error, answered)


def _quiet(track: Track, delta: BreakerDelta) -> bool:
    """Whether a sync may leave ``track`` out: nothing to send, closed here
    and in the fleet (an open is renewed by every reply), and known to the
    backend (its policy stored: an event may bring a new breaker's fleet
    state before its first sync)."""
    fleet = track.fleet
    return (
        track.acknowledged
        and fleet is not None
        and fleet.state == "closed"
        and not (delta.calls or delta.failures or delta.successes or delta.slow)
        and not delta.tripped
        and delta.verdict is None
        and delta.reseed_ms is None
        and delta.lease is None
        and not track.forced_closed
        and track.view()[0] == "closed"
    )


def _counts(breaker: Any) -> tuple[int, int, int, int]:
    """(calls, failures, successes, slow) of a cell, host-wide."""
    totals = breaker.totals()
    return (
        totals.successes + totals.failures + totals.neutral,
        totals.failures,
        totals.successes,
        int(breaker._slow_total()),
    )


def _open_breaker(name: str) -> Any:
    from ..shared import open_existing

    return open_existing(name)


def _describe_error(error: BaseException, password: object) -> str:
    text = f"{type(error).__name__}: {error}"
    if isinstance(password, str) and password:
        text = text.replace(password, "***")
    return text[:300]


class Runner:
    """Elects this process as its host's agent and runs it while elected.

    ``make_backend`` is called by the elected process only, once per
    election: no other process opens a connection.
    """

    def __init__(
        self,
        make_backend: BackendFactory,
        host_id: str,
        *,
        info: dict[str, Any],
        sync_interval: float = 1.0,
        control: ControlSegment | None = None,
    ) -> None:
        self._make_backend = make_backend
        self.host_id = host_id
        self.info = info
        self.sync_interval = sync_interval
        self.control = control if control is not None else ControlSegment()
        self.nonce = _nonce()
        self.agent: Agent | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._events_thread: threading.Thread | None = None
        self._lease_thread: threading.Thread | None = None
        # Taking, renewing and releasing the lease, and the election or
        # demotion that follows, one thread at a time.
        self._lease_lock = threading.RLock()
        self._beat = 0  # host monotonic ms of the election loop's last pass
        # Outlast each election: metrics() reads them.
        self.counters = AgentCounters()

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.run, name="qbreaker-fleet-agent", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        for thread in (self._thread, self._events_thread, self._lease_thread):
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout)
        self._demote()

    def abandon(self) -> None:
        """In a forked child: the parent's threads do not exist here."""
        self._stop.set()
        self.agent = None

    def run(self) -> None:
        """The election loop (the sidecar runs it in its main thread)."""
        renewed = 0
        while not self._stop.is_set():
            now_ms = self._beat = monotonic_ms()
            if now_ms - renewed >= LEASE_RENEW_MS or self.agent is None:
                renewed = now_ms
                with self._lease_lock:
                    held = self._renew(now_ms)
                    if held and self.agent is None:
                        self._elect()
                        assert self.agent is not None
                        self.agent.lease_deadline_ms = now_ms + LEASE_MS
                    elif not held and self.agent is not None:
                        self._demote()
            if self.agent is not None:
                try:
                    self.agent.step()
                except Exception as exc:  # noqa: BLE001 - never let the agent die
                    self.agent._note_error(f"{type(exc).__name__}: {exc}")
                self._stop.wait(SCAN_INTERVAL)
            else:
                self._stop.wait(LEASE_RENEW_MS / 1000)

    def _renew(self, now_ms: int) -> bool:
        """Take or renew the lease; True if held. The agent, if any, may
        sync until it would lapse."""
        try:
            held = self.control.try_lease(self.nonce)
        except Exception:  # noqa: BLE001 - the control segment was removed
            return False
        if held and self.agent is not None:
            # The lease's expiry is at least LEASE_MS from now_ms.
            self.agent.lease_deadline_ms = now_ms + LEASE_MS
        return held

    def _keep_lease(self, agent: Agent) -> None:
        # Renewals on a thread of their own, while the election loop passes
        # at least every STALL_MS: a step slower than the lease (an import,
        # a Sentinel round) is no reason for another process to take over.
        while not self._stop.wait(LEASE_RENEW_MS / 1000):
            with self._lease_lock:
                if self.agent is not agent:
                    return
                now_ms = monotonic_ms()
                if now_ms - self._beat <= STALL_MS:
                    # A lost lease is the election loop's to act on.
                    self._renew(now_ms)

    def _elect(self) -> None:
        self.agent = Agent(
            self.control,
            _LazyBackend(self._make_backend),
            self.host_id,
            info=self.info,
            sync_interval=self.sync_interval,
            counters=self.counters,
        )
        self.counters.leader_changed(True)
        self.agent.publish()
        self._events_thread = threading.Thread(
            target=self._events,
            args=(self.agent,),
            name="qbreaker-fleet-events",
            daemon=True,
        )
        self._events_thread.start()
        self._lease_thread = threading.Thread(
            target=self._keep_lease,
            args=(self.agent,),
            name="qbreaker-fleet-lease",
            daemon=True,
        )
        self._lease_thread.start()

    def _demote(self) -> None:
        with self._lease_lock:
            agent, self.agent = self.agent, None
            if agent is not None:
                self.counters.leader_changed(False)
                # Its connections go before the lease: never two agents.
                _close(agent.backend)
            try:
                self.control.release_lease(self.nonce)
            except Exception:  # noqa: BLE001, S110 - the file may be gone
                pass

    def _events(self, agent: Agent) -> None:
        # The backend serves events on a connection of their own (a blocking
        # read must not hold up the syncs).
        cursor = "$"
        errors = 0
        # Connecting is the sync loop's (one connection attempt in flight per
        # host): read once it has synced. A decision made before the first
        # read reaches this host by the full sync that read asks for.
        while (
            agent.good_syncs == 0
            and self.agent is agent
            and not self._stop.wait(SCAN_INTERVAL)
        ):
            pass
        while not self._stop.is_set() and self.agent is agent:
            try:
                first = cursor == "$"
                cursor = agent.pump_events(agent.backend, cursor)
                errors = 0
                if first:
                    # Reading from "now" began after the first sync's reply:
                    # a decision made in between reached neither, so the next
                    # sync asks about the quiet breakers too. (After an error
                    # the read resumes from its cursor and misses nothing.)
                    agent.request_full_sync()
            except Exception as exc:  # noqa: BLE001 - any backend trouble
                errors += 1
                # A dead backend is seen here first: the sync loop would
                # wait for its next tick.
                synced = agent.good_syncs
                agent.set_connected(False, exc)
                agent.next_sync = 0.0  # the sync loop tries at once
                if errors > 1:
                    # Failing reads while the syncs succeed: a backend that
                    # answers the syncs and not this (backoff, full jitter).
                    delay = random.uniform(
                        0, min(BACKOFF_MAX, HOT_INTERVAL * 2 ** (errors - 1))
                    )
                    self._stop.wait(delay)
                # Reconnecting is the sync loop's, once a tick: read again
                # after its next good sync.
                while (
                    agent.good_syncs == synced
                    and self.agent is agent
                    and not self._stop.wait(SCAN_INTERVAL)
                ):
                    pass


class _GuardOpen(Exception):
    """The agent's own breaker rejected a backend call."""


class _LazyBackend:
    """The backend, made on first use and made again after that failed (a
    client library that is missing, a name that does not resolve): the
    agent is then degraded and says why, like any other backend trouble."""

    def __init__(self, make: BackendFactory) -> None:
        self._make = make
        self._backend: FleetBackend | None = None
        self._lock = threading.Lock()

    def _get(self) -> FleetBackend:
        with self._lock:
            if self._backend is None:
                self._backend = self._make()
            return self._backend

    def sync(self, request: SyncRequest) -> SyncReply:
        return self._get().sync(request)

    def force(
        self, name: str, action: str, *, by: str, time_ms: int | None = None
    ) -> FleetState:
        return self._get().force(name, action, by=by, time_ms=time_ms)

    def events(self, cursor: str, block_ms: int) -> tuple[str, tuple[FleetState, ...]]:
        return self._get().events(cursor, block_ms)

    def view(self, *, time_ms: int | None = None) -> tuple[FleetState, ...]:
        return self._get().view(time_ms=time_ms)

    def conflicts(self) -> tuple[PolicyConflict, ...]:
        read = getattr(self._get(), "conflicts", None)
        return () if read is None else tuple(read())

    def close(self) -> None:
        _close(self._backend)


def _close(backend: object) -> None:
    close = getattr(backend, "close", None)
    if close is not None:
        try:
            close()
        except Exception:  # noqa: BLE001, S110 - closing a broken connection
            pass


def _nonce() -> int:
    return int.from_bytes(os.urandom(4), "little") | 1
