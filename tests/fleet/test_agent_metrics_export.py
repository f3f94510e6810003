"""The agent's counters in the Prometheus collector and the OpenTelemetry
instruments, as ``qbreaker_fleet_*``, with a real agent thread syncing with
a real redis-server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

import qbreaker
from qbreaker import fleet

from .host_helpers import host_dir

__all__ = ("host_dir",)  # a fixture

pytestmark = pytest.mark.c_extension


@pytest.fixture
def joined(host_dir: str, redis_client: Any, namespace: str) -> Iterator[Any]:
    """This process in a fleet, its agent thread having synced twice."""
    port = redis_client.connection_pool.connection_kwargs["port"]
    fleet.connect(f"redis://127.0.0.1:{port}/0", namespace=namespace,
                  agent="auto", sync_interval=0.05)  # fmt: skip
    breaker = qbreaker.CircuitBreaker(2, 5.0, 1, shared="pay", fleet=True)
    deadline = time.monotonic() + 10
    while fleet.metrics().syncs < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fleet.metrics().syncs >= 2
    yield breaker
    fleet.disconnect()


def test_prometheus_has_the_fleet_families_only_when_joined(
    host_dir: str, redis_client: Any, namespace: str
) -> None:
    prometheus_client = pytest.importorskip(
        "prometheus_client",
        reason='prometheus_client is not installed ("[prometheus]")',
    )
    from qbreaker.integrations.prometheus import BreakerCollector

    registry = prometheus_client.CollectorRegistry()
    BreakerCollector(breakers=[], registry=registry)
    assert registry.get_sample_value("qbreaker_fleet_syncs_total") is None
    port = redis_client.connection_pool.connection_kwargs["port"]
    fleet.connect(f"redis://127.0.0.1:{port}/0", namespace=namespace,
                  agent="auto", sync_interval=0.05)  # fmt: skip
    qbreaker.CircuitBreaker(2, 5.0, 1, shared="pay", fleet=True)
    deadline = time.monotonic() + 10
    while fleet.metrics().syncs < 2 and time.monotonic() < deadline:
        time.sleep(0.02)

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    syncs = sample("qbreaker_fleet_syncs_total")
    assert syncs is not None and syncs >= 2
    assert sample("qbreaker_fleet_agent") == 1.0
    assert sample("qbreaker_fleet_leader_changes_total") == 1.0
    assert sample("qbreaker_fleet_sync_errors_total", kind="unreachable") == 0.0
    assert sample("qbreaker_fleet_lease_grants_total") == 0.0
    assert sample("qbreaker_fleet_events_applied_total") == 0.0
    p50 = sample("qbreaker_fleet_round_trip_seconds", stat="p50")
    top = sample("qbreaker_fleet_round_trip_seconds", stat="max")
    assert p50 is not None and top is not None and 0 < p50 <= top
    fleet.disconnect()
    assert sample("qbreaker_fleet_syncs_total") is None


def test_opentelemetry_observes_the_fleet_instruments(joined: Any) -> None:
    pytest.importorskip(
        "opentelemetry.sdk.metrics",
        reason='opentelemetry-sdk is not installed ("[opentelemetry]")',
    )
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from qbreaker.integrations.opentelemetry import instrument

    reader = InMemoryMetricReader()
    made = instrument(
        breakers=[], meter_provider=MeterProvider(metric_readers=[reader])
    )
    assert "qbreaker.fleet.syncs" in made
    data = reader.get_metrics_data()
    assert data is not None
    points = {
        (metric.name, frozenset(p.attributes.items())): (p.value, metric.unit)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        for p in metric.data.data_points
    }
    syncs, unit = points[("qbreaker.fleet.syncs", frozenset())]
    assert syncs >= 2 and unit == "{sync}"
    assert points[("qbreaker.fleet.sync_errors",
                   frozenset({("qbreaker.kind", "backend")}))][0] == 0  # fmt: skip
    rtt, unit = points[("qbreaker.fleet.round_trip_seconds",
                        frozenset({("qbreaker.stat", "max")}))]  # fmt: skip
    assert rtt > 0 and unit == "s"
    assert points[("qbreaker.fleet.agent", frozenset())][0] == 1
