"""The host agent's own counters, kept in the process that runs it.

The agent thread counts its syncs, their round trips and errors, the fleet
decisions it applied, its elections and the probe leases granted to this
host; ``qbreaker.fleet.metrics()`` reads them as one ``AgentMetrics``. The
counters live in the ``Runner`` so that they outlast each election.
Nothing here is on a protected call.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

#: Round trips kept for ``rtt_p50``/``rtt_max``: the recent past only.
RTT_WINDOW = 128


@dataclass(frozen=True)
class AgentMetrics:
    """This process's agent counters (all 0 where it never ran the agent).

    ``errors`` counts failed syncs by kind: "unreachable" (nobody answered),
    "backend" (the backend answered with an error), "guard_open" (the agent's
    own breaker skipped the call). ``rtt_*`` are seconds over the last
    ``RTT_WINDOW`` successful syncs (0.0 before the first).
    ``leader_changes``: elections won and lost by this process.
    ``lease_grants``: times the fleet made this host its probe host.
    """

    agent: bool
    syncs: int
    errors: dict[str, int] = field(default_factory=dict)
    rtt_last: float = 0.0
    rtt_p50: float = 0.0
    rtt_max: float = 0.0
    events_applied: int = 0
    leader_changes: int = 0
    lease_grants: int = 0


ERROR_KINDS = ("unreachable", "backend", "guard_open")


class AgentCounters:
    """Written by the agent's threads, read by anyone (under one lock: each
    update is a few additions, once a tick at most)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._syncs = 0
        self._errors = dict.fromkeys(ERROR_KINDS, 0)
        self._rtts: deque[float] = deque(maxlen=RTT_WINDOW)
        self._events_applied = 0
        self._leader_changes = 0
        self._lease_grants = 0
        self.running = False

    def synced(self, rtt: float) -> None:
        with self._lock:
            self._syncs += 1
            self._rtts.append(rtt)

    def failed(self, kind: str) -> None:
        if kind not in self._errors:
            raise ValueError(f"kind must be one of {ERROR_KINDS!r}, got {kind!r}")
        with self._lock:
            self._errors[kind] += 1

    def applied(self) -> None:
        with self._lock:
            self._events_applied += 1

    def leader_changed(self, running: bool) -> None:
        with self._lock:
            self._leader_changes += 1
            self.running = running

    def lease_granted(self) -> None:
        with self._lock:
            self._lease_grants += 1

    def read(self) -> AgentMetrics:
        with self._lock:
            rtts = sorted(self._rtts)
            return AgentMetrics(
                agent=self.running,
                syncs=self._syncs,
                errors=dict(self._errors),
                rtt_last=self._rtts[-1] if self._rtts else 0.0,
                rtt_p50=rtts[(len(rtts) - 1) // 2] if rtts else 0.0,
                rtt_max=rtts[-1] if rtts else 0.0,
                events_applied=self._events_applied,
                leader_changes=self._leader_changes,
                lease_grants=self._lease_grants,
            )
