"""The Prometheus collector against a real prometheus_client registry."""

from __future__ import annotations

import math
from typing import Any

import pytest

import qbreaker

from ..helpers import FakeClock, Impl
from .scenario import scene

prometheus_client = pytest.importorskip(
    "prometheus_client", reason='prometheus_client is not installed ("[prometheus]")'
)
from qbreaker.integrations.prometheus import BreakerCollector  # noqa: E402

STATES = ("closed", "open", "half_open", "forced_open", "forced_closed")


def value(registry: Any, metric: str, **labels: str) -> float | None:
    found = registry.get_sample_value(metric, labels)
    return None if found is None else float(found)


def states(registry: Any, breaker: str) -> dict[str, float | None]:
    return {
        s: value(registry, "qbreaker_state", breaker=breaker, state=s) for s in STATES
    }


def one_hot(current: str) -> dict[str, float]:
    return {s: 1.0 if s == current else 0.0 for s in STATES}


def test_scripted_sequence_qbreaker_profile(impl: Impl, clock: FakeClock) -> None:
    s = scene(impl, clock)
    registry = prometheus_client.CollectorRegistry()
    BreakerCollector(breakers=[s.pay, s.rate], registry=registry)

    def calls(outcome: str) -> float | None:
        return value(registry, "qbreaker_calls_total", breaker="pay", outcome=outcome)

    assert states(registry, "pay") == one_hot("closed")
    assert calls("success") == 0.0
    s.successes_and_trip()
    assert states(registry, "pay") == one_hot("open")
    assert value(registry, "qbreaker_retry_after_seconds", breaker="pay") == 10.0
    assert value(registry, "qbreaker_opens_total", breaker="pay") == 1.0
    assert value(registry, "qbreaker_transitions_total", breaker="pay") == 1.0
    s.rejections()
    assert calls("rejected") == 2.0
    s.recovery()
    assert states(registry, "pay") == one_hot("closed")
    assert {o: calls(o) for o in ("success", "failure", "neutral", "rejected")} == {
        "success": 4.0, "failure": 2.0, "neutral": 1.0, "rejected": 2.0,
    }  # fmt: skip
    assert value(registry, "qbreaker_transitions_total", breaker="pay") == 3.0
    assert value(registry, "qbreaker_opens_total", breaker="pay") == 1.0
    assert value(registry, "qbreaker_retry_after_seconds", breaker="pay") == 0.0
    assert value(registry, "qbreaker_consecutive_failures", breaker="pay") == 0.0
    # The windowed breaker: 1 failure in 4 calls, below its 50 % threshold.
    assert states(registry, "rate") == one_hot("closed")
    assert value(registry, "qbreaker_failure_rate", breaker="rate") == 0.25
    assert value(registry, "qbreaker_slow_call_rate", breaker="rate") == 0.0
    assert value(registry, "qbreaker_window_calls", breaker="rate") == 4.0
    info = {"breaker": "pay", "policy": "consecutive", "shared": "false",
            "max_failures": "2", "reset_timeout_seconds": "10", "half_open_max": "1",
            "failure_rate_threshold": "0", "slow_call_rate_threshold": "0",
            "minimum_calls": "0"}  # fmt: skip
    assert registry.get_sample_value("qbreaker_info", info) == 1.0
    rate_info = registry.get_sample_value(
        "qbreaker_info",
        {**info, "breaker": "rate", "policy": "rate", "max_failures": "0",
         "failure_rate_threshold": "0.5", "minimum_calls": "4"},
    )  # fmt: skip
    assert rate_info == 1.0
    # Forced open: forced_open alone is 1, and a probe never comes.
    s.pay.force_open()
    assert states(registry, "pay") == one_hot("forced_open")
    assert value(registry, "qbreaker_retry_after_seconds", breaker="pay") == math.inf
    assert value(registry, "qbreaker_opens_total", breaker="pay") == 1.0
    s.pay.force_closed()
    assert states(registry, "pay") == one_hot("forced_closed")


def test_scripted_sequence_resilience4j_profile(impl: Impl, clock: FakeClock) -> None:
    s = scene(impl, clock)
    registry = prometheus_client.CollectorRegistry()
    BreakerCollector(breakers=[s.pay, s.rate], registry=registry,
                     profile="resilience4j")  # fmt: skip
    r4j = "resilience4j_circuitbreaker_"
    all_states = ("closed", "open", "half_open", "forced_open", "disabled",
                  "metrics_only")  # fmt: skip

    def r4j_states(name: str) -> dict[str, float | None]:
        return {
            st: value(registry, r4j + "state", name=name, state=st) for st in all_states
        }

    def calls(kind: str) -> float | None:
        return value(registry, r4j + "calls_seconds_count", name="pay", kind=kind)

    s.successes_and_trip()
    assert r4j_states("pay") == {st: float(st == "open") for st in all_states}
    s.rejections()
    assert value(registry, r4j + "not_permitted_calls_total", name="pay",
                 kind="not_permitted") == 2.0  # fmt: skip
    s.recovery()
    assert r4j_states("pay") == {st: float(st == "closed") for st in all_states}
    assert (calls("successful"), calls("failed"), calls("ignored")) == (4.0, 2.0, 1.0)
    # Without a window (pay), and below minimum_calls, the rate is -1; at 4
    # calls the window judges: 25 %.
    assert value(registry, r4j + "failure_rate", name="pay") == -1.0
    assert value(registry, r4j + "failure_rate", name="rate") == 25.0
    assert value(registry, r4j + "slow_call_rate", name="rate") == 0.0
    assert value(registry, r4j + "buffered_calls", name="rate", kind="failed") == 1.0
    assert value(registry, r4j + "buffered_calls", name="rate",
                 kind="successful") == 3.0  # fmt: skip
    # qbreaker's own names are not emitted in this profile.
    assert (
        registry.get_sample_value(
            "qbreaker_calls_total", {"breaker": "pay", "outcome": "success"}
        )
        is None
    )
    s.pay.force_closed()
    assert r4j_states("pay") == {st: float(st == "disabled") for st in all_states}


def test_below_minimum_calls_is_minus_one(impl: Impl, clock: FakeClock) -> None:
    s = scene(impl, clock)
    registry = prometheus_client.CollectorRegistry()
    BreakerCollector(breakers=[s.rate], registry=registry, profile="resilience4j")
    for _ in range(2):
        s.rate.call(lambda: None)
    s.rate.release(s.rate.acquire(), False)  # 3 calls of the 4 needed
    name = "resilience4j_circuitbreaker_failure_rate"
    assert value(registry, name, name="rate") == -1.0


def test_groups_are_read_live_and_bounded(impl: Impl) -> None:
    small = qbreaker.BreakerGroup(_breaker_class=impl.Breaker, max_failures=1)
    big = qbreaker.BreakerGroup(_breaker_class=impl.Breaker, max_failures=1)
    registry = prometheus_client.CollectorRegistry()
    BreakerCollector(groups={"small": small, "big": big}, registry=registry,
                     series_limit=3)  # fmt: skip

    def group(label: str, state: str) -> float | None:
        return value(registry, "qbreaker_group_breakers", group=label, state=state)

    assert group("small", "closed") == 0.0  # emitted before any breaker exists
    small.get("a").record_failure()  # created after the collector: it appears
    small.get("b")
    for i in range(4):
        big.get(f"k{i}")
    big.get("k0").record_failure()
    assert (group("small", "open"), group("small", "closed")) == (1.0, 1.0)
    assert (group("big", "open"), group("big", "closed")) == (1.0, 3.0)
    assert states(registry, "a") == one_hot("open")
    # big holds 4 breakers, over the limit of 3: no series of their own.
    assert states(registry, "k0") == dict.fromkeys(STATES)
    names = {
        s.labels.get("breaker")
        for m in registry.collect() for s in m.samples
    }  # fmt: skip
    assert names == {None, "a", "b"}


def test_a_breaker_named_twice_is_reported_once(impl: Impl) -> None:
    b = impl.Breaker(1, 10, 1, name="x")
    group = qbreaker.BreakerGroup(_breaker_class=impl.Breaker)
    group.get("x")
    registry = prometheus_client.CollectorRegistry()
    BreakerCollector(breakers=[b, b], groups=[group], registry=registry)
    samples = [
        s for m in registry.collect() for s in m.samples
        if s.name == "qbreaker_calls_total" and s.labels["outcome"] == "success"
    ]  # fmt: skip
    assert len(samples) == 1
    assert value(registry, "qbreaker_group_breakers", group="0", state="closed") == 1


def test_registers_in_the_default_registry_and_not_with_none(impl: Impl) -> None:
    b = impl.Breaker(1, 10, 1, name="default-registry")
    collector = BreakerCollector(breakers=[b])
    try:
        assert value(prometheus_client.REGISTRY, "qbreaker_transitions_total",
                     breaker="default-registry") == 0.0  # fmt: skip
    finally:
        prometheus_client.REGISTRY.unregister(collector)  # type: ignore[arg-type]
    BreakerCollector(breakers=[b], registry=None)
    assert value(prometheus_client.REGISTRY, "qbreaker_transitions_total",
                 breaker="default-registry") is None  # fmt: skip


def test_scrape_text_parses(impl: Impl, clock: FakeClock) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    s = scene(impl, clock)
    s.successes_and_trip()
    s.pay.force_open()
    registry = prometheus_client.CollectorRegistry()
    BreakerCollector(breakers=[s.pay, s.rate], registry=registry)
    text = prometheus_client.generate_latest(registry).decode()
    assert 'qbreaker_retry_after_seconds{breaker="pay"} +Inf' in text
    families = {f.name for f in text_string_to_metric_families(text)}
    assert {"qbreaker_calls", "qbreaker_state", "qbreaker_info"} <= families


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"profile": "micrometer"}, ValueError, "profile"),
        ({"breakers": "pay"}, TypeError, "breakers"),
        ({"breakers": [object()]}, TypeError, "breakers"),
        ({"groups": {"g": object()}}, TypeError, "groups"),
        ({"groups": 3}, TypeError, "groups"),
        ({"include_shared": 1}, TypeError, "include_shared"),
        ({"series_limit": -1}, ValueError, "series_limit"),
        ({"series_limit": 2.5}, TypeError, "series_limit"),
        ({"series_limit": True}, TypeError, "series_limit"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], error: type, words: str) -> None:
    with pytest.raises(error, match=words):
        BreakerCollector(registry=None, **kwargs)


@pytest.mark.parametrize("profile", ["qbreaker", "resilience4j"])
def test_openmetrics_exposition_parses(impl: Impl, profile: str) -> None:
    from prometheus_client.openmetrics.exposition import generate_latest
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    b = impl.Breaker(1, 10, 1, name="om")
    b.record_success()
    b.force_open()
    registry = prometheus_client.CollectorRegistry()
    BreakerCollector(breakers=[b], registry=registry, profile=profile)
    text = generate_latest(registry).decode()
    families = list(text_string_to_metric_families(text))
    assert len(families) == (10 if profile == "qbreaker" else 6)
