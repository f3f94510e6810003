"""Prometheus metrics for breakers: a custom collector read at scrape time.

``BreakerCollector(breakers=..., groups=..., include_shared=...)`` registers
itself in prometheus_client's default registry (or ``registry=``) and reads
the breakers' totals and snapshots on every scrape: nothing is counted on
the call path. ``profile="resilience4j"`` emits resilience4j's Micrometer
names and units instead, for existing Grafana dashboards.

Needs the ``prometheus`` extra (``pip install "qbreaker[prometheus]"``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ._common import require
from ._readings import (
    DEFAULT_SERIES_LIMIT,
    OUTCOMES,
    STATES,
    Groups,
    Reading,
    Row,
    Sources,
)

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry

__all__ = ("BreakerCollector", "PROFILES")

PROFILES = ("qbreaker", "resilience4j")

# The registry default: prometheus_client's REGISTRY, looked up only when a
# collector is made, so importing this module never imports the library.
_DEFAULT_REGISTRY: Any = object()

# resilience4j's state tag values; qbreaker's forced closed is its DISABLED
# (every call permitted, no transitions), and nothing is METRICS_ONLY.
_R4J_STATES = {
    "closed": "closed",
    "open": "open",
    "half_open": "half_open",
    "forced_open": "forced_open",
    "forced_closed": "disabled",
}
_R4J_ALL_STATES = ("closed", "open", "half_open", "forced_open", "disabled",
                   "metrics_only")  # fmt: skip


class BreakerCollector:
    """A prometheus_client collector of breakers, groups and shared breakers.

    - ``breakers``: breaker objects (private or shared).
    - ``groups``: ``{label: BreakerGroup}`` (or an iterable of groups,
      labelled ``"0"``, ``"1"``, ...), read live: breakers created later
      appear. ``qbreaker_group_breakers{group,state}`` is always emitted;
      a group's breakers get series of their own only while it holds at
      most ``series_limit`` of them, so cardinality stays bounded.
    - ``include_shared``: every shared breaker of this user on this host,
      read from its segment: host-wide totals, the same whichever process
      serves the scrape.
    - ``registry``: where to register (None: nowhere).
    - In a process that has called ``qbreaker.fleet.connect()``, every
      scrape also has the ``qbreaker_fleet_*`` families of
      ``qbreaker.fleet.metrics()`` (agent, syncs, sync_errors{kind},
      round_trip_seconds{stat}, events_applied, leader_changes,
      lease_grants).
    - ``profile``: ``"qbreaker"`` or ``"resilience4j"``.

    A breaker named by more than one source is reported once.
    """

    def __init__(
        self,
        *,
        breakers: Iterable[Any] = (),
        groups: Groups = (),
        include_shared: bool = False,
        registry: CollectorRegistry | None = _DEFAULT_REGISTRY,
        profile: str = "qbreaker",
        series_limit: int = DEFAULT_SERIES_LIMIT,
    ) -> None:
        registry_module = require("prometheus_client.registry", extra="prometheus")
        if profile not in PROFILES:
            raise ValueError(
                f"profile must be one of {', '.join(map(repr, PROFILES))}, "
                f"got {profile!r}"
            )
        self.profile = profile
        self.sources = Sources(
            breakers=breakers,
            groups=groups,
            include_shared=include_shared,
            series_limit=series_limit,
        )
        if registry is _DEFAULT_REGISTRY:
            registry = registry_module.REGISTRY
        if registry is not None:
            registry.register(self)

    def describe(self) -> list[Metric]:
        # Nothing to describe ahead: registering must not run a scrape.
        return []

    def collect(self) -> Iterator[Metric]:
        reading = self.sources.read()
        if self.profile == "resilience4j":
            yield from _resilience4j(reading)
        else:
            yield from _qbreaker(reading)
        yield from _groups(reading)
        yield from _fleet(reading)


def _qbreaker(reading: Reading) -> Iterator[Metric]:
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        InfoMetricFamily,
    )

    rows = reading.rows
    b = ["breaker"]
    calls = CounterMetricFamily(
        "qbreaker_calls", "Calls by outcome; rejected: refused by the breaker",
        labels=["breaker", "outcome"],
    )  # fmt: skip
    state = GaugeMetricFamily(
        "qbreaker_state", "1 for the breaker's current state, 0 for the others",
        labels=["breaker", "state"],
    )  # fmt: skip
    transitions = CounterMetricFamily("qbreaker_transitions", "State changes", labels=b)
    opens = CounterMetricFamily(
        "qbreaker_opens", "Transitions into open (forcing open is not one)", labels=b
    )
    failure_rate = GaugeMetricFamily(
        "qbreaker_failure_rate", "Failures per call in the window (0-1)", labels=b
    )
    slow_rate = GaugeMetricFamily(
        "qbreaker_slow_call_rate", "Slow calls per call in the window (0-1)", labels=b
    )
    window = GaugeMetricFamily(
        "qbreaker_window_calls", "Calls in the rate window", labels=b
    )
    consecutive = GaugeMetricFamily(
        "qbreaker_consecutive_failures", "Consecutive failures", labels=b
    )
    retry = GaugeMetricFamily(
        "qbreaker_retry_after_seconds",
        "Seconds until a probe can be admitted; +Inf when forced open",
        labels=b,
    )
    info = InfoMetricFamily("qbreaker", "The breaker's policy", labels=b)
    for r in rows:
        for outcome in OUTCOMES:
            calls.add_metric([r.name, outcome], r.calls[outcome])
        for s in STATES:
            state.add_metric([r.name, s], 1.0 if s == r.state else 0.0)
        transitions.add_metric([r.name], r.transitions)
        opens.add_metric([r.name], r.opens)
        failure_rate.add_metric([r.name], r.failure_rate)
        slow_rate.add_metric([r.name], r.slow_call_rate)
        window.add_metric([r.name], r.window_calls)
        consecutive.add_metric([r.name], r.consecutive_failures)
        retry.add_metric([r.name], r.retry_after)
        info.add_metric([r.name], _info(r))
    yield from (calls, state, transitions, opens, failure_rate, slow_rate, window,
                consecutive, retry, info)  # fmt: skip


def _info(r: Row) -> dict[str, str]:
    p = r.policy
    return {
        "policy": r.policy_kind,
        "shared": "true" if r.shared is not None else "false",
        "max_failures": str(p.max_failures),
        "reset_timeout_seconds": _number(p.reset_ticks / 1000),
        "half_open_max": str(p.half_open_max),
        "failure_rate_threshold": _number(p.failure_rate_threshold),
        "slow_call_rate_threshold": _number(p.slow_rate_threshold),
        "minimum_calls": str(p.minimum_calls),
    }


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _resilience4j(reading: Reading) -> Iterator[Metric]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.metrics_core import Metric

    n = ["name"]
    state = GaugeMetricFamily(
        "resilience4j_circuitbreaker_state", "The states of the circuit breaker",
        labels=["name", "state"],
    )  # fmt: skip
    not_permitted = CounterMetricFamily(
        "resilience4j_circuitbreaker_not_permitted_calls",
        "Total number of not permitted calls",
        labels=["name", "kind"],
    )
    # resilience4j's calls are a Micrometer Timer. Durations are not measured
    # (that would cost every call), so only its _count series is emitted.
    calls = Metric(
        "resilience4j_circuitbreaker_calls_seconds",
        "Total number of successful, failed and ignored calls",
        "summary",
    )
    failure_rate = GaugeMetricFamily(
        "resilience4j_circuitbreaker_failure_rate",
        "The failure rate of the circuit breaker (percent; -1 below the "
        "minimum number of calls)",
        labels=n,
    )
    slow_rate = GaugeMetricFamily(
        "resilience4j_circuitbreaker_slow_call_rate",
        "The slow call rate of the circuit breaker (percent; -1 below the "
        "minimum number of calls)",
        labels=n,
    )
    buffered = GaugeMetricFamily(
        "resilience4j_circuitbreaker_buffered_calls",
        "The number of buffered calls stored in the ring buffer",
        labels=["name", "kind"],
    )
    for r in reading.rows:
        current = _R4J_STATES[r.state]
        for s in _R4J_ALL_STATES:
            state.add_metric([r.name, s], 1.0 if s == current else 0.0)
        not_permitted.add_metric([r.name, "not_permitted"], r.rejected)
        for kind, count in (("successful", r.successes), ("failed", r.failures),
                            ("ignored", r.neutral)):  # fmt: skip
            calls.add_sample(
                "resilience4j_circuitbreaker_calls_seconds_count",
                {"name": r.name, "kind": kind},
                count,
            )
        below = r.below_minimum_calls
        failure_rate.add_metric([r.name], -1.0 if below else r.failure_rate * 100)
        slow_rate.add_metric([r.name], -1.0 if below else r.slow_call_rate * 100)
        failed = round(r.failure_rate * r.window_calls)
        buffered.add_metric([r.name, "failed"], failed)
        buffered.add_metric([r.name, "successful"], r.window_calls - failed)
    yield from (state, not_permitted, calls, failure_rate, slow_rate, buffered)


def _fleet(reading: Reading) -> Iterator[Metric]:
    if not reading.fleet:
        return
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    for series in reading.fleet:
        labels = sorted(series.points[0][0])
        make = CounterMetricFamily if series.kind == "counter" else GaugeMetricFamily
        family = make(f"qbreaker_fleet_{series.name}", series.description,
                      labels=labels)  # fmt: skip
        for point, value in series.points:
            family.add_metric([point[k] for k in labels], value)
        yield family


def _groups(reading: Reading) -> Iterator[Metric]:
    if not reading.groups:
        return
    from prometheus_client.core import GaugeMetricFamily

    family = GaugeMetricFamily(
        "qbreaker_group_breakers", "A group's breakers by state",
        labels=["group", "state"],
    )  # fmt: skip
    for g in reading.groups:
        for s in STATES:
            family.add_metric([g.label, s], g.states[s])
    yield family
