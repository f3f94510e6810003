"""Every public parameter refuses wrong types and out-of-range values by name.

The calls are generated from the signatures: each parameter of each public
constructor and method gets each value of ``BAD`` (none of which any
parameter accepts), alone, and must raise TypeError or ValueError whose
message names the parameter.
"""

from __future__ import annotations

import inspect
import math
import uuid
from collections.abc import Callable
from typing import Any

import pytest

import qbreaker
from qbreaker import BreakerGroup, Metrics
from qbreaker import shared as shared_mod
from qbreaker._impl.group import _PyGroupHits
from qbreaker.compat import pybreaker

from ..helpers import Impl

BAD: dict[str, object] = {
    "object": object(),
    "bytes": b"x",
    "negative": -1,
    "huge": 10**400,
    "nan": math.nan,
    "inf": math.inf,
    "-inf": -math.inf,
    "list": [],
}
# Values that some parameter does accept, left out for it.
ACCEPTS: dict[str, set[str]] = {
    "exclude": {"list"},  # empty
    "listeners": {"list"},  # empty (the pybreaker drop-in)
    "max_breakers": {"huge"},  # a bound is a bound
    "fail_max": {"huge", "inf"},  # pybreaker's "never trip"
    "state_storage": {"list"},  # false: pybreaker's memory storage
    "throw_new_error_on_trip": set(BAD),  # pybreaker takes any truth value
}


def parameters(fn: Callable[..., Any], skip: tuple[str, ...] = ()) -> list[str]:
    return [
        p.name
        for p in inspect.signature(fn).parameters.values()
        if p.name != "self"
        and not p.name.startswith("_")
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        and p.name not in skip
    ]


def cases(names: list[str]) -> list[tuple[str, str]]:
    return [
        (name, label)
        for name in names
        for label in BAD
        if label not in ACCEPTS.get(name, set())
    ]


def refused_by_name(call: Callable[[], object], parameter: str) -> None:
    with pytest.raises((TypeError, ValueError)) as info:
        call()
    assert parameter in str(info.value), (
        f"{parameter}: {type(info.value).__name__}: {info.value}"
    )


BREAKER_PARAMETERS = parameters(qbreaker.PyCircuitBreaker.__init__)


def test_the_parameters_are_found() -> None:
    # (tests/core/test_parity.py checks that both cores take the same ones)
    assert {"max_failures", "clock", "shared_policy"} <= set(BREAKER_PARAMETERS)
    assert "max_breakers" in GROUP_PARAMETERS


@pytest.mark.parametrize(("parameter", "label"), cases(BREAKER_PARAMETERS))
def test_constructor(impl: Impl, parameter: str, label: str) -> None:
    refused_by_name(lambda: impl.Breaker(**{parameter: BAD[label]}), parameter)


GROUP_PARAMETERS = parameters(BreakerGroup.__init__) + [
    p for p in BREAKER_PARAMETERS if p not in ("name", "shared", "shared_policy")
]


@pytest.mark.parametrize(("parameter", "label"), cases(GROUP_PARAMETERS))
def test_group(parameter: str, label: str) -> None:
    refused_by_name(lambda: BreakerGroup(**{parameter: BAD[label]}), parameter)


GROUP_METHODS = ["get", "__getitem__", "allow", "record_success", "record_failure"]


@pytest.mark.parametrize("method", GROUP_METHODS)
@pytest.mark.parametrize("label", BAD)
def test_group_methods(method: str, label: str) -> None:
    group = BreakerGroup()
    # The compiled hit path has no signature to read: its Python spec names
    # the parameter.
    spec = _PyGroupHits if method in vars(_PyGroupHits) else BreakerGroup
    (parameter,) = parameters(getattr(spec, method))
    refused_by_name(lambda: getattr(group, method)(BAD[label]), parameter)
    assert len(group) == 0


@pytest.mark.parametrize(
    ("parameter", "label"), cases(parameters(qbreaker.PyCircuitBreaker.release))
)
def test_release(impl: Impl, parameter: str, label: str) -> None:
    b = impl.Breaker(
        slow_call_rate_threshold=0.5, slow_call_duration=1, window_size=10
    )
    arguments: dict[str, object] = {"ticket": b.acquire(), "ok": True}
    arguments[parameter] = BAD[label]
    refused_by_name(lambda: b.release(**arguments), parameter)
    b.release(arguments["ticket"] if parameter != "ticket" else b.acquire(), True)


@pytest.mark.parametrize("label", BAD)
def test_observe(impl: Impl, label: str) -> None:
    b = impl.Breaker(error_rate_threshold=0.5)
    (parameter,) = parameters(qbreaker.PyCircuitBreaker.observe)
    refused_by_name(lambda: b.observe(BAD[label]), parameter)


@pytest.mark.parametrize(("parameter", "label"), cases(parameters(Metrics)))
def test_metrics(parameter: str, label: str) -> None:
    refused_by_name(lambda: Metrics(**{parameter: BAD[label]}), parameter)


@pytest.mark.parametrize("function", ["exists", "unlink"])
@pytest.mark.parametrize("label", BAD)
def test_shared_functions(function: str, label: str) -> None:
    fn = getattr(shared_mod, function)
    (parameter,) = parameters(fn)
    refused_by_name(lambda: fn(BAD[label]), parameter)


@pytest.mark.parametrize(
    ("parameter", "label"), cases(parameters(pybreaker.CircuitBreaker.__init__))
)
def test_pybreaker_constructor(parameter: str, label: str) -> None:
    refused_by_name(
        lambda: pybreaker.CircuitBreaker(**{parameter: BAD[label]}), parameter
    )


def test_a_segment_name_is_checked_before_anything_is_made() -> None:
    name = f"test-bad-{uuid.uuid4().hex[:8]}"
    refused_by_name(
        lambda: qbreaker.CircuitBreaker(shared=name, shared_policy="both"),
        "shared_policy",
    )
    assert not shared_mod.exists(name)


# open_for and the fleet agent's operations: refused by name, nothing changed.
OUT_OF_RANGE_SECONDS = [0, 0.0, 0.0004, -0.5, 134217.728, 10**9, True, "5", None]
OUT_OF_RANGE_GENERATIONS = [0, -1, 1 << 42, 1.0, True, "1", None]


@pytest.mark.parametrize("value", [*BAD.values(), *OUT_OF_RANGE_SECONDS])
def test_open_for(impl: Impl, value: object) -> None:
    b = impl.Breaker()
    (parameter,) = parameters(qbreaker.PyCircuitBreaker.open_for)
    refused_by_name(lambda: b.open_for(value), parameter)
    assert b._word == 0 and b.totals().transitions == 0


@pytest.mark.parametrize("value", [*BAD.values(), *OUT_OF_RANGE_GENERATIONS])
@pytest.mark.parametrize("method", ["_extend_open", "_expire_open", "_close_if"])
def test_fleet_generation(impl: Impl, method: str, value: object) -> None:
    b = impl.Breaker()
    generation = b.open_for(5)
    word = b._word
    arguments = (value, 1) if method == "_extend_open" else (value,)
    refused_by_name(lambda: getattr(b, method)(*arguments), "generation")
    assert b._word == word
    assert getattr(b, method)(generation, *arguments[1:]) is True


@pytest.mark.parametrize("value", [*BAD.values(), *OUT_OF_RANGE_SECONDS])
def test_fleet_seconds(impl: Impl, value: object) -> None:
    b = impl.Breaker()
    generation = b.open_for(5)
    word = b._word
    refused_by_name(lambda: b._extend_open(generation, value), "seconds")
    assert b._word == word
