"""The OpenTelemetry instruments against a real SDK (an InMemoryMetricReader)."""

from __future__ import annotations

from typing import Any

import pytest

import qbreaker

from ..helpers import FakeClock, Impl
from .scenario import scene

pytest.importorskip(
    "opentelemetry.sdk.metrics",
    reason='opentelemetry-sdk is not installed ("[opentelemetry]")',
)
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402

from qbreaker.integrations.opentelemetry import instrument  # noqa: E402

#: The instrumentation scope of the SDK's metrics about itself.
SDK_SCOPE = "opentelemetry-sdk"
STATES = ("closed", "open", "half_open", "forced_open", "forced_closed")
Points = dict[str, dict[frozenset[tuple[str, Any]], float]]


class Reader:
    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader])
        self.units: dict[str, str] = {}

    def collect(self) -> Points:
        """Each of qbreaker's instruments' points by their attributes; asserts
        the scope and units on the way."""
        points: Points = {}
        data = self.reader.get_metrics_data()
        assert data is not None
        scopes = [s for r in data.resource_metrics for s in r.scope_metrics]
        for scope in scopes:
            if scope.scope.name == SDK_SCOPE:
                # The SDK's own metrics about the reader's collections: always
                # on in opentelemetry-sdk 1.41 (the newest for Python 3.9),
                # opt-in (OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED) since.
                assert all(m.name.startswith("otel.sdk.") for m in scope.metrics)
                continue
            assert (scope.scope.name, scope.scope.version) == (
                "qbreaker", qbreaker.__version__,
            )  # fmt: skip
            for metric in scope.metrics:
                points[metric.name] = {
                    frozenset(p.attributes.items()): p.value
                    for p in metric.data.data_points
                }
                self.units[metric.name] = metric.unit
        return points


def at(points: Points, name: str, **attributes: Any) -> float:
    key = frozenset(attributes.items())
    return points[name][key]


def state_of(points: Points, breaker: str) -> dict[str, float]:
    return {
        s: at(points, "qbreaker.state", **{"qbreaker.breaker": breaker,
                                            "qbreaker.state": s})
        for s in STATES
    }  # fmt: skip


def calls(points: Points, breaker: str) -> dict[str, float]:
    return {
        o: at(points, "qbreaker.calls", **{"qbreaker.breaker": breaker,
                                            "qbreaker.outcome": o})
        for o in ("success", "failure", "neutral", "rejected")
    }  # fmt: skip


def test_scripted_sequence(impl: Impl, clock: FakeClock) -> None:
    s = scene(impl, clock)
    reader = Reader()
    made = instrument(breakers=[s.pay, s.rate], meter_provider=reader.provider)
    assert set(made) == {
        "qbreaker.calls", "qbreaker.state", "qbreaker.transitions", "qbreaker.opens",
        "qbreaker.failure_rate", "qbreaker.slow_call_rate", "qbreaker.retry_after",
    }  # fmt: skip
    pay = {"qbreaker.breaker": "pay"}
    s.successes_and_trip()
    points = reader.collect()
    assert state_of(points, "pay") == {st: float(st == "open") for st in STATES}
    assert at(points, "qbreaker.retry_after", **pay) == 10.0
    assert at(points, "qbreaker.opens", **pay) == 1
    s.rejections()
    s.recovery()
    points = reader.collect()
    assert calls(points, "pay") == {"success": 4, "failure": 2, "neutral": 1,
                                    "rejected": 2}  # fmt: skip
    assert state_of(points, "pay") == {st: float(st == "closed") for st in STATES}
    assert at(points, "qbreaker.transitions", **pay) == 3
    assert at(points, "qbreaker.opens", **pay) == 1
    assert at(points, "qbreaker.retry_after", **pay) == 0.0
    rate = {"qbreaker.breaker": "rate"}
    assert at(points, "qbreaker.failure_rate", **rate) == 0.25
    assert at(points, "qbreaker.slow_call_rate", **rate) == 0.0
    assert reader.units == {
        "qbreaker.calls": "{call}", "qbreaker.state": "1",
        "qbreaker.transitions": "{transition}", "qbreaker.opens": "{transition}",
        "qbreaker.failure_rate": "1", "qbreaker.slow_call_rate": "1",
        "qbreaker.retry_after": "s",
    }  # fmt: skip
    s.pay.force_open()
    points = reader.collect()
    assert state_of(points, "pay") == {st: float(st == "forced_open")
                                       for st in STATES}  # fmt: skip
    # OpenTelemetry takes no infinity: no retry_after point while forced open.
    assert frozenset(pay.items()) not in points["qbreaker.retry_after"]
    assert at(points, "qbreaker.retry_after", **{"qbreaker.breaker": "rate"}) == 0


def test_authority_names_carry_server_attributes(impl: Impl) -> None:
    reader = Reader()
    b = impl.Breaker(1, 10, 1, name="https://api.example.com:443")
    grpc_target = impl.Breaker(1, 10, 1, name="127.0.0.1:50051")
    # The gRPC interceptor's key="method": the target, then the method.
    grpc_method = impl.Breaker(1, 10, 1, name="127.0.0.1:50052/shop.Prices/Get")
    ipv6 = impl.Breaker(1, 10, 1, name="http://[::1]:8080")
    plain = impl.Breaker(1, 10, 1, name="payments")
    no_port = impl.Breaker(1, 10, 1, name="https://api.example.com")
    instrument(
        breakers=[b, grpc_target, grpc_method, ipv6, plain, no_port],
        meter_provider=reader.provider,
    )
    points = reader.collect()
    keys = {dict(k)["qbreaker.breaker"]: dict(k) for k in points["qbreaker.opens"]}
    assert keys["https://api.example.com:443"] == {
        "qbreaker.breaker": "https://api.example.com:443",
        "server.address": "api.example.com", "server.port": 443,
    }  # fmt: skip
    assert keys["127.0.0.1:50051"]["server.port"] == 50051
    method = keys["127.0.0.1:50052/shop.Prices/Get"]
    assert (method["server.address"], method["server.port"]) == ("127.0.0.1", 50052)
    assert (keys["http://[::1]:8080"]["server.address"],
            keys["http://[::1]:8080"]["server.port"]) == ("::1", 8080)  # fmt: skip
    assert keys["payments"] == {"qbreaker.breaker": "payments"}
    assert keys["https://api.example.com"] == {
        "qbreaker.breaker": "https://api.example.com"
    }


def test_groups(impl: Impl) -> None:
    reader = Reader()
    group = qbreaker.BreakerGroup(_breaker_class=impl.Breaker, max_failures=1)
    made = instrument(groups={"out": group}, meter_provider=reader.provider)
    assert "qbreaker.group.breakers" in made
    group.get("a").record_failure()
    group.get("b")
    points = reader.collect()
    counts = {
        dict(k)["qbreaker.state"]: v
        for k, v in points["qbreaker.group.breakers"].items()
    }
    assert counts == {"closed": 1, "open": 1, "half_open": 0, "forced_open": 0,
                      "forced_closed": 0}  # fmt: skip
    assert state_of(points, "a")["open"] == 1


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="include_shared"):
        instrument(include_shared="yes")  # type: ignore[arg-type]


def test_the_sdks_own_metrics_are_told_apart(
    impl: Impl, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An SDK that reports on itself (opentelemetry-sdk 1.41, the newest for
    # Python 3.9, always; newer ones when asked) adds its own scope from the
    # second collection on: qbreaker's scope and points are unchanged by it.
    monkeypatch.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")
    reader = Reader()
    b = impl.Breaker(1, 10, 1, name="pay")
    instrument(breakers=[b], meter_provider=reader.provider)
    b.record_failure()
    first = reader.collect()
    second = reader.collect()
    data = reader.reader.get_metrics_data()
    assert data is not None
    names = {s.scope.name for r in data.resource_metrics for s in r.scope_metrics}
    if SDK_SCOPE not in names:
        pytest.skip("this opentelemetry-sdk reports no metrics of its own")
    assert names == {"qbreaker", SDK_SCOPE}
    pay = {"qbreaker.breaker": "pay"}
    for points in (first, second, reader.collect()):
        assert points.keys() == first.keys()
        assert at(points, "qbreaker.opens", **pay) == 1
        assert state_of(points, "pay") == {st: float(st == "open") for st in STATES}
