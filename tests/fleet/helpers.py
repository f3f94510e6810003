"""Plain helpers of the fleet tests: policies, deltas, a host that counts its seq."""

from __future__ import annotations

import dataclasses
from typing import Any

from qbreaker.fleet._protocol import (
    BreakerDelta,
    FleetBackend,
    FleetPolicy,
    FleetState,
    SyncReply,
    SyncRequest,
    Verdict,
)

#: Injected backend times start here (about real Redis ms, so the scripts'
#: numbers are as large as in production).
T0 = 1_800_000_000_000


def policy(**changes: Any) -> FleetPolicy:
    base = FleetPolicy(
        quorum=2,
        max_failures=None,
        window_ms=10_000,
        reset_timeout_ms=5_000,
        failure_rate=None,
        slow_rate=None,
        minimum_calls=10,
    )
    return dataclasses.replace(base, **changes)


def delta(
    name: str,
    pol: FleetPolicy,
    *,
    calls: int = 0,
    failures: int = 0,
    slow: int = 0,
    successes: int = 0,
    tripped: bool = False,
    verdict: tuple[int, bool] | None = None,
    reseed_ms: int | None = None,
) -> BreakerDelta:
    return BreakerDelta(
        name,
        pol,
        calls,
        failures,
        slow,
        successes,
        tripped,
        None if verdict is None else Verdict(*verdict),
        reseed_ms,
    )


class Host:
    """One host's agent, reduced to what the rules see: an id and its seq."""

    def __init__(self, backend: FleetBackend, host_id: str) -> None:
        self.backend = backend
        self.host_id = host_id
        self.seq = 0
        self.last: SyncRequest | None = None

    def sync(self, now: int, *deltas: BreakerDelta) -> SyncReply:
        self.seq += 1
        self.last = SyncRequest(self.host_id, self.seq, tuple(deltas), time_ms=now)
        return self.backend.sync(self.last)

    def resend(self, now: int | None = None) -> SyncReply:
        assert self.last is not None
        request = self.last
        if now is not None:
            request = dataclasses.replace(request, time_ms=now)
        return self.backend.sync(request)

    def state(self, now: int, name: str, pol: FleetPolicy) -> FleetState:
        """The fleet state of ``name`` from a sync that brings no news."""
        return self.sync(now, delta(name, pol)).states[0]
