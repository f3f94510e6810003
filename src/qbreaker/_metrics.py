"""Observations fed to ``observe()`` and snapshots returned by ``metrics()``."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from ._state import State
from ._validate import check_fraction, check_seconds


@dataclass(frozen=True)
class Metrics:
    """An aggregate observation of a dependency, from your own monitoring.

    ``error_rate`` is a fraction in [0, 1]; ``latency`` is seconds (a float
    or a timedelta, stored as float seconds). Either may be None.
    """

    error_rate: float | None = None
    latency: float | datetime.timedelta | None = None

    def __post_init__(self) -> None:
        rate = check_fraction("error_rate", self.error_rate, open_low=False)
        object.__setattr__(self, "error_rate", rate)
        if self.latency is not None:
            seconds = check_seconds("latency", self.latency, zero_ok=True)
            object.__setattr__(self, "latency", seconds)


@dataclass(frozen=True)
class BreakerSnapshot:
    """A breaker's state and totals, read at one moment (not atomically)."""

    name: str
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
    retry_after: float
    time_in_state: float
    last_observation: Metrics | None
    # The window policy's view (0.0, 0.0 and 0 without a window).
    failure_rate: float = 0.0
    slow_call_rate: float = 0.0
    calls_in_window: int = 0
    # The segment's name for a host-wide breaker (see qbreaker.shared),
    # None for a process-local one.
    shared: str | None = None
    # Transitions into open (see Totals.opens): host-wide when shared.
    opens: int = 0
