"""OpenTelemetry metrics for breakers: observable instruments.

``instrument(breakers=..., groups=..., include_shared=...)`` creates
observable instruments on a ``qbreaker`` meter. Their callbacks read the
breakers' totals and snapshots when the SDK collects: nothing is counted on
the call path.

In a pre-fork server every worker reports its private breakers only
(``include_shared=False``, the default): a backend sums the workers' series,
which is right for them and N times too much for host-wide totals. Shared
breakers are reported by one process per host: ``python -m qbreaker export
--otlp URL``.

Needs the ``opentelemetry`` extra (``pip install "qbreaker[opentelemetry]"``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from .._version import __version__
from ._common import require
from ._readings import (
    OUTCOMES,
    STATES,
    Groups,
    Row,
    Sources,
    fleet_families,
    fleet_series,
)

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

__all__ = ("instrument",)

Attributes = dict[str, Any]


def instrument(
    *,
    breakers: Iterable[Any] = (),
    groups: Groups = (),
    include_shared: bool = False,
    meter_provider: MeterProvider | None = None,
) -> dict[str, Any]:
    """Create the ``qbreaker.*`` observable instruments; return them by name.

    - ``qbreaker.calls`` (counter, ``qbreaker.breaker``, ``qbreaker.outcome``
      = success, failure, neutral or rejected);
    - ``qbreaker.state`` (up-down counter, 1 for the current
      ``qbreaker.state`` and 0 for the others: closed, open, half_open,
      forced_open, forced_closed);
    - ``qbreaker.transitions``, ``qbreaker.opens`` (counters);
    - ``qbreaker.failure_rate``, ``qbreaker.slow_call_rate`` (gauges, 0-1),
      ``qbreaker.retry_after`` (gauge, seconds; no point while forced open,
      since OpenTelemetry drops infinities);
    - ``qbreaker.group.breakers`` (up-down counter per ``qbreaker.group``
      and ``qbreaker.state``) when there are groups.
    - ``qbreaker.fleet.*`` (the counters of ``qbreaker.fleet.metrics()``:
      ``agent``, ``syncs``, ``sync_errors`` per ``qbreaker.kind``,
      ``round_trip_seconds`` per ``qbreaker.stat``, ``events_applied``,
      ``leader_changes``, ``lease_grants``) when this process has called
      ``qbreaker.fleet.connect()`` before.

    Every breaker series carries ``qbreaker.breaker``; a breaker named by an
    authority (``scheme://host:port``, or ``host:port`` with or without a
    gRPC method after it, as the HTTP and gRPC integrations name theirs)
    also carries ``server.address`` and
    ``server.port``. ``groups`` and ``include_shared`` are read as by
    ``qbreaker.integrations.prometheus.BreakerCollector``. ``meter_provider``
    defaults to the global one.
    """
    metrics = require("opentelemetry.metrics", extra="opentelemetry")
    sources = Sources(breakers=breakers, groups=groups, include_shared=include_shared)
    provider = meter_provider or metrics.get_meter_provider()
    meter = provider.get_meter("qbreaker", __version__)
    observe = _Observer(sources)
    made: dict[str, Any] = {
        "qbreaker.calls": meter.create_observable_counter(
            "qbreaker.calls", [observe.calls], unit="{call}",
            description="Calls by outcome; rejected: refused by the breaker",
        ),
        "qbreaker.state": meter.create_observable_up_down_counter(
            "qbreaker.state", [observe.state], unit="1",
            description="1 for the breaker's current state, 0 for the others",
        ),
        "qbreaker.transitions": meter.create_observable_counter(
            "qbreaker.transitions", [observe.each(lambda r: r.transitions)],
            unit="{transition}", description="State changes",
        ),
        "qbreaker.opens": meter.create_observable_counter(
            "qbreaker.opens", [observe.each(lambda r: r.opens)],
            unit="{transition}",
            description="Transitions into open (forcing open is not one)",
        ),
        "qbreaker.failure_rate": meter.create_observable_gauge(
            "qbreaker.failure_rate", [observe.each(lambda r: r.failure_rate)],
            unit="1", description="Failures per call in the window (0-1)",
        ),
        "qbreaker.slow_call_rate": meter.create_observable_gauge(
            "qbreaker.slow_call_rate", [observe.each(lambda r: r.slow_call_rate)],
            unit="1", description="Slow calls per call in the window (0-1)",
        ),
        # The SDK drops non-finite values (with a warning each time): a forced
        # open breaker, which admits no probe until reset, reports none.
        "qbreaker.retry_after": meter.create_observable_gauge(
            "qbreaker.retry_after",
            [observe.each(lambda r: r.retry_after, finite=True)], unit="s",
            description="Seconds until a probe can be admitted; none when "
            "forced open",
        ),
    }  # fmt: skip
    if sources.groups:
        made["qbreaker.group.breakers"] = meter.create_observable_up_down_counter(
            "qbreaker.group.breakers", [observe.groups], unit="{breaker}",
            description="A group's breakers by state",
        )  # fmt: skip
    # A process in a fleet (connected before this call) also reports its
    # agent's counters; they are observed only while it stays connected.
    for series in fleet_families() if fleet_series() else ():
        name = f"qbreaker.fleet.{series.name}"
        make = (
            meter.create_observable_counter
            if series.kind == "counter"
            else meter.create_observable_gauge
        )
        made[name] = make(
            name, [_fleet_callback(series.name)], unit=series.unit,
            description=series.description,
        )  # fmt: skip
    return made


def _fleet_callback(
    name: str,
) -> Callable[[CallbackOptions], Iterator[Observation]]:
    def callback(options: CallbackOptions) -> Iterator[Observation]:
        from opentelemetry.metrics import Observation

        for series in fleet_series():
            if series.name == name:
                for labels, value in series.points:
                    attributes = {f"qbreaker.{k}": v for k, v in labels.items()}
                    yield Observation(value, attributes)

    return callback


class _Observer:
    """The instruments' callbacks: each reads the sources when collected."""

    def __init__(self, sources: Sources) -> None:
        self._sources = sources

    def calls(self, options: CallbackOptions) -> Iterator[Observation]:
        from opentelemetry.metrics import Observation

        for r in self._sources.read().rows:
            for outcome in OUTCOMES:
                attributes = {**_attributes(r), "qbreaker.outcome": outcome}
                yield Observation(r.calls[outcome], attributes)

    def state(self, options: CallbackOptions) -> Iterator[Observation]:
        from opentelemetry.metrics import Observation

        for r in self._sources.read().rows:
            for s in STATES:
                attributes = {**_attributes(r), "qbreaker.state": s}
                yield Observation(1 if s == r.state else 0, attributes)

    def each(
        self, value: Callable[[Row], float], *, finite: bool = False
    ) -> Callable[[CallbackOptions], Iterator[Observation]]:
        def callback(options: CallbackOptions) -> Iterator[Observation]:
            from opentelemetry.metrics import Observation

            for r in self._sources.read().rows:
                v = value(r)
                if not finite or math.isfinite(v):
                    yield Observation(v, _attributes(r))

        return callback

    def groups(self, options: CallbackOptions) -> Iterator[Observation]:
        from opentelemetry.metrics import Observation

        for g in self._sources.read().groups:
            for s in STATES:
                attributes = {"qbreaker.group": g.label, "qbreaker.state": s}
                yield Observation(g.states[s], attributes)


def _attributes(r: Row) -> Attributes:
    attributes: Attributes = {"qbreaker.breaker": r.name}
    if r.server is not None:
        attributes["server.address"], attributes["server.port"] = r.server
    return attributes
