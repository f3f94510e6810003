"""What the exporters read: breakers, groups and shared segments as rows.

The Prometheus collector and the OpenTelemetry instruments both render the
rows made here, so a value is read, named and counted in one place. Nothing
here runs on the call path: a reading is taken at scrape or export time from
the totals and snapshots the cores already keep (``metrics()``, and for
segments the read-only scan of ``qbreaker._impl.shared_scan``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union
from urllib.parse import urlsplit

from .._impl.group import BreakerGroup
from .._metrics import BreakerSnapshot
from .._policy import Policy
from .._state import State

if TYPE_CHECKING:
    from ..fleet.counters import AgentMetrics

#: Every state series, emitted on every scrape (1 for the current one).
STATES = ("closed", "open", "half_open", "forced_open", "forced_closed")
#: The outcome label of each call counted, in Totals' terms.
OUTCOMES = ("success", "failure", "neutral", "rejected")
#: Per-breaker series of a group stop above this many breakers.
DEFAULT_SERIES_LIMIT = 200

Groups = Union[Mapping[str, BreakerGroup], Iterable[BreakerGroup]]


@dataclass(frozen=True)
class Row:
    """One breaker, read at one moment (not atomically)."""

    name: str
    state: str  # one of STATES
    successes: int
    failures: int
    neutral: int
    rejected: int
    transitions: int
    opens: int
    failure_rate: float  # 0-1 over the window; 0 without one
    slow_call_rate: float
    window_calls: int
    consecutive_failures: int
    retry_after: float  # seconds; inf when forced open
    time_in_state: float
    policy: Policy
    shared: str | None  # the segment's name for a host-wide breaker
    # (server.address, server.port) for a breaker keyed by an authority, as
    # the HTTP and gRPC integrations key theirs; None otherwise.
    server: tuple[str, int] | None

    @property
    def calls(self) -> dict[str, int]:
        """The calls counted, by outcome label."""
        return {
            "success": self.successes,
            "failure": self.failures,
            "neutral": self.neutral,
            "rejected": self.rejected,
        }

    @property
    def policy_kind(self) -> str:
        """``consecutive``, ``rate``, ``slow`` or a ``+`` of them."""
        p = self.policy
        parts = [
            kind
            for kind, on in (
                ("consecutive", p.max_failures),
                ("rate", p.failure_rate_threshold),
                ("slow", p.slow_rate_threshold),
            )
            if on
        ]
        return "+".join(parts)

    @property
    def below_minimum_calls(self) -> bool:
        """Whether the window holds too few calls for its rates to judge."""
        p = self.policy
        return p.window_kind == 0 or self.window_calls < max(p.minimum_calls, 1)


@dataclass(frozen=True)
class GroupRow:
    """A group's breakers counted by state."""

    label: str
    states: dict[str, int]


@dataclass(frozen=True)
class Reading:
    """Everything one scrape or export reports: each breaker once."""

    rows: list[Row]
    groups: list[GroupRow]
    # This process's fleet agent counters, when it has joined a fleet.
    fleet: list[FleetSeries] = field(default_factory=list)


@dataclass(frozen=True)
class FleetSeries:
    """One ``qbreaker_fleet_*`` family: ``name`` without the prefix,
    ``kind`` "counter" or "gauge", each point (labels, value)."""

    name: str
    kind: str
    description: str
    unit: str
    points: tuple[tuple[dict[str, str], float], ...]


class Sources:
    """The breakers, groups and segments an exporter reads, checked once."""

    def __init__(
        self,
        *,
        breakers: Iterable[Any] = (),
        groups: Groups = (),
        include_shared: bool = False,
        series_limit: int = DEFAULT_SERIES_LIMIT,
    ) -> None:
        if isinstance(breakers, (str, bytes)) or not isinstance(breakers, Iterable):
            raise TypeError(
                f"breakers must be an iterable of CircuitBreaker, got {breakers!r}"
            )
        self.breakers = list(breakers)
        for b in self.breakers:
            if not callable(getattr(b, "metrics", None)) or not hasattr(b, "policy"):
                raise TypeError(
                    f"breakers must hold CircuitBreaker objects, got {b!r} "
                    f"({type(b).__name__})"
                )
        self.groups = _labelled(groups)
        if not isinstance(include_shared, bool):
            raise TypeError(
                f"include_shared must be True or False, got {include_shared!r}"
            )
        self.include_shared = include_shared
        if isinstance(series_limit, bool) or not isinstance(series_limit, int):
            raise TypeError(
                f"series_limit must be an int >= 0 (breakers per group with "
                f"series of their own), got {series_limit!r}"
            )
        if series_limit < 0:
            raise ValueError(
                f"series_limit must be an int >= 0 (breakers per group with "
                f"series of their own), got {series_limit!r}"
            )
        self.series_limit = series_limit

    def read(self) -> Reading:
        """Read every source now. A name is reported once: a shared segment
        first (its totals are host-wide), then the breakers, then groups."""
        rows: dict[str, Row] = {}
        segments: set[str] = set()
        if self.include_shared:
            for r in shared_rows():
                segments.add(r.name)
                rows.setdefault(r.name, r)

        def keep(r: Row) -> None:
            # A shared breaker is read once, from its segment, under the
            # segment's name; otherwise the first source naming it wins.
            if r.shared not in segments:
                rows.setdefault(r.name, r)

        for b in self.breakers:
            keep(row_of(b))
        group_rows = []
        for label, group in self.groups:
            # A copy of the group's own dict: never get(), which would create
            # breakers, and never a view that its creations could change.
            members = list(group._breakers.values())
            states = dict.fromkeys(STATES, 0)
            if len(members) <= self.series_limit:
                for b in members:
                    r = row_of(b)
                    states[r.state] += 1
                    keep(r)
            else:  # counted only: a state read per breaker, no snapshot
                for b in members:
                    states[state_label(b.state, b.forced)] += 1
            group_rows.append(GroupRow(label, states))
        return Reading(list(rows.values()), group_rows, fleet_series())


def fleet_series() -> list[FleetSeries]:
    """The agent counters of ``qbreaker.fleet.metrics()`` as series; none
    unless this process has joined a fleet (the fleet package is then loaded:
    a process that never imported it has nothing to report)."""
    fleet = sys.modules.get("qbreaker.fleet")
    if fleet is None or not fleet.joined():
        return []
    return series_of(fleet.metrics())


def fleet_families() -> list[FleetSeries]:
    """Every ``qbreaker_fleet_*`` family, with zeros: what exporters make
    ahead of a fleet connection."""
    from ..fleet.counters import AgentCounters

    return series_of(AgentCounters().read())


def series_of(m: AgentMetrics) -> list[FleetSeries]:
    one: dict[str, str] = {}
    return [
        FleetSeries("agent", "gauge", "1 while this process runs its host's "
                    "fleet agent", "1", ((one, float(m.agent)),)),
        FleetSeries("syncs", "counter", "Successful syncs with the fleet "
                    "backend", "{sync}", ((one, m.syncs),)),
        FleetSeries("sync_errors", "counter", "Failed syncs by kind",
                    "{sync}", tuple(({"kind": k}, v) for k, v in m.errors.items())),
        FleetSeries("round_trip_seconds", "gauge", "Sync round trips over the "
                    "recent window: the last, the median, the largest", "s",
                    (({"stat": "last"}, m.rtt_last), ({"stat": "p50"}, m.rtt_p50),
                     ({"stat": "max"}, m.rtt_max))),
        FleetSeries("events_applied", "counter", "Fleet decisions that changed "
                    "a cell of this host", "{event}", ((one, m.events_applied),)),
        FleetSeries("leader_changes", "counter", "Elections won and lost by "
                    "this process's agent", "{change}", ((one, m.leader_changes),)),
        FleetSeries("lease_grants", "counter", "Probe leases granted to this "
                    "host", "{lease}", ((one, m.lease_grants),)),
    ]  # fmt: skip


def row_of(breaker: Any) -> Row:
    """The row of one breaker object (private or shared)."""
    m = breaker.metrics()
    return _row(m, breaker.policy, shared=m.shared)


def shared_rows() -> list[Row]:
    """A row per shared breaker of this user on this host, read from the
    segments without mapping or changing them."""
    from .._impl import shared_scan

    found = shared_scan.readings()
    return [_row(f.snapshot, f.policy, shared=f.snapshot.name) for f in found]


def _row(m: BreakerSnapshot, policy: Policy, *, shared: str | None) -> Row:
    return Row(
        name=m.name,
        state=state_label(m.state, m.forced),
        successes=m.successes,
        failures=m.failures,
        neutral=m.neutral,
        rejected=m.rejected,
        transitions=m.transitions,
        opens=m.opens,
        failure_rate=m.failure_rate,
        slow_call_rate=m.slow_call_rate,
        window_calls=m.calls_in_window,
        consecutive_failures=m.consecutive_failures,
        retry_after=m.retry_after,
        time_in_state=m.time_in_state,
        policy=policy,
        shared=shared,
        server=server_of(m.name),
    )


def state_label(state: State, forced: str | None) -> str:
    """The exporters' state value: a forced breaker is ``forced_*`` only."""
    if forced is not None:
        return f"forced_{forced}"
    return str(state).replace("-", "_")


def server_of(name: str) -> tuple[str, int] | None:
    """``(host, port)`` of a breaker named by an authority with its port:
    ``scheme://host:port``, as the HTTP integrations key theirs (with the
    scheme's default port filled in), or a gRPC target ``host:port``, alone
    or followed by the full method name (the interceptor's ``key="method"``)."""
    if "://" in name:
        try:
            parts = urlsplit(name)
            port = parts.port
        except ValueError:
            return None
        if not parts.hostname or port is None:
            return None
        return parts.hostname, port
    target = name.partition("/")[0]  # a method after the target: /pkg.Svc/M
    host, sep, port_text = target.rpartition(":")
    if sep and host and port_text.isdigit() and 0 < int(port_text) < 65536:
        return host.strip("[]"), int(port_text)
    return None


def _labelled(groups: Groups) -> list[tuple[str, BreakerGroup]]:
    if isinstance(groups, BreakerGroup):
        groups = (groups,)
    if isinstance(groups, Mapping):
        pairs = list(groups.items())
    elif isinstance(groups, Iterable) and not isinstance(groups, (str, bytes)):
        pairs = [(str(i), g) for i, g in enumerate(groups)]
    else:
        raise TypeError(
            f"groups must be a mapping of label to BreakerGroup or an iterable "
            f"of BreakerGroup, got {groups!r}"
        )
    for label, group in pairs:
        if not isinstance(label, str) or not isinstance(group, BreakerGroup):
            raise TypeError(
                f"groups must map str labels to BreakerGroup objects, got "
                f"{label!r}: {group!r} ({type(group).__name__})"
            )
    return pairs
