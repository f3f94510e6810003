"""The shared rules of the client integrations (qbreaker.integrations._common)."""

from __future__ import annotations

import email.utils
import pickle
from typing import Any

import pytest

import qbreaker
from qbreaker import BreakerGroup, CircuitOpenError, State
from qbreaker.integrations import _common
from qbreaker.integrations._common import (
    DEFAULT_FAILURE_STATUSES,
    Rules,
    authority,
    parse_retry_after,
    rejection_class,
)

from ..helpers import FakeClock, Impl


class LibraryError(Exception):
    """Stands in for a client library's base error."""


class OSLibraryError(OSError):
    """A base error with OSError's layout, as requests' is."""


def _rejection(name: str, state: State, retry_after: float, request: Any) -> Any:
    cls = rejection_class(LibraryError, module=__name__, name="Rejected", doc="test")
    return cls(name, state, retry_after, request)


def __getattr__(name: str) -> Any:
    # How an integration module exposes its lazily made class, for pickle.
    if name == "Rejected":
        return rejection_class(LibraryError, module=__name__, name=name, doc="test")
    raise AttributeError(name)


def _rules(impl: Impl, clock: FakeClock, **kwargs: Any) -> Rules[str]:
    settings: dict[str, Any] = {
        "group": BreakerGroup(
            _breaker_class=impl.Breaker, max_failures=2, reset_timeout=5, clock=clock
        ),
        "key": lambda request: request,
        "failure_statuses": DEFAULT_FAILURE_STATUSES,
        "open_on_retry_after": False,
        "rejection": _rejection,
    }
    settings.update(kwargs)
    return Rules(**settings)


@pytest.mark.parametrize(
    ("scheme", "host", "port", "key"),
    [
        ("http", "example.com", None, "http://example.com:80"),
        ("HTTPS", "Example.COM", None, "https://example.com:443"),
        ("https", "example.com", 8443, "https://example.com:8443"),
        ("http", "::1", 8080, "http://[::1]:8080"),
        ("http", "[::1]", None, "http://[::1]:80"),
        ("unix", "socket", None, "unix://socket"),
    ],
)
def test_authority_fills_in_the_default_port(
    scheme: str, host: str, port: int | None, key: str
) -> None:
    assert authority(scheme, host, port) == key


def test_retry_after_seconds_and_dates() -> None:
    now = 1_800_000_000.0
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after(" 7 ") == 7.0
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now) == (
        pytest.approx(30.0)
    )
    # In the past, zero, negative, junk, non-ASCII digits: no opening.
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now) is None
    for value in ("0", "-5", "soon", "", "1.5", "\u0661\u0662", "Mon, 99 Foo 2026"):
        assert parse_retry_after(value, now) is None, value
    assert parse_retry_after("9" * 400, now) == 1e10  # capped by the caller


def test_the_default_group_is_per_instance_with_the_documented_settings() -> None:
    rules = [
        Rules(
            group=None,
            key=str,
            failure_statuses=DEFAULT_FAILURE_STATUSES,
            open_on_retry_after=False,
            rejection=_rejection,
        )
        for _ in range(2)
    ]
    assert rules[0].group is not rules[1].group
    group = rules[0].group
    assert group.max_breakers == _common.DEFAULT_MAX_BREAKERS == 1000
    breaker = group["http://a:80"]
    settings = dict(_common.DEFAULT_GROUP_SETTINGS)
    policy = breaker.policy
    assert policy.max_failures == 0  # no consecutive-failure trip
    assert policy.failure_rate_threshold == settings["failure_rate_threshold"] == 0.5
    assert policy.window_buckets * policy.window_span == 10_000  # ms
    assert settings["window_seconds"] == 10.0
    assert policy.minimum_calls == settings["minimum_calls"] == 20
    assert breaker.reset_timeout == settings["reset_timeout"] == 10.0
    assert breaker.half_open_max == settings["half_open_max"] == 3


def test_default_failure_statuses() -> None:
    assert {500, 502, 503, 504, 599, 408, 429} <= DEFAULT_FAILURE_STATUSES
    assert not {200, 301, 400, 401, 403, 404, 409, 422} & DEFAULT_FAILURE_STATUSES


def test_tickets_count_statuses_and_reject(impl: Impl, clock: FakeClock) -> None:
    rules = _rules(impl, clock)
    for _ in range(5):
        rules.admit("a").settle_status(404)
    for _ in range(2):
        rules.admit("a").settle_status(503)
    with pytest.raises(CircuitOpenError) as info:
        rules.admit("a")
    error = info.value
    assert isinstance(error, LibraryError)
    assert (error.name, error.state, error.retry_after) == ("a", State.OPEN, 5.0)
    assert error.request == "a"  # type: ignore[attr-defined]
    # Another key is another breaker.
    rules.admit("b").settle_status(200)
    assert rules.group["b"].state is State.CLOSED


def test_a_late_outcome_after_a_transition_changes_no_state(
    impl: Impl, clock: FakeClock
) -> None:
    rules = _rules(impl, clock)
    slow = rules.admit("a")
    for _ in range(2):
        rules.admit("a").settle_status(500)
    clock.advance(5)
    probe = rules.admit("a")
    slow.settle_status(500)  # from the closed generation: ignored
    assert rules.group["a"].state is State.HALF_OPEN
    probe.settle_status(200)


def test_exceptions_are_failures_only_when_listed(impl: Impl, clock: FakeClock) -> None:
    rules = _rules(impl, clock)
    for exc in (ValueError("usage"), KeyboardInterrupt(), OSError("not listed")):
        rules.admit("a").settle_exception(exc, (ConnectionError, TimeoutError))
    assert rules.group["a"].totals().failures == 0
    rules.admit("a").settle_exception(ConnectionRefusedError(), (ConnectionError,))
    rules.admit("a").settle_exception(TimeoutError(), (ConnectionError, TimeoutError))
    assert rules.group["a"].state is State.OPEN


def test_failure_statuses_can_be_changed(impl: Impl, clock: FakeClock) -> None:
    rules = _rules(impl, clock, failure_statuses=[404])
    for _ in range(3):
        rules.admit("a").settle_status(503)
    assert rules.group["a"].state is State.CLOSED
    for _ in range(2):
        rules.admit("a").settle_status(404)
    assert rules.group["a"].state is State.OPEN


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"failure_statuses": 500}, TypeError, "failure_statuses"),
        ({"failure_statuses": [500, 600]}, ValueError, "[600]"),
        ({"failure_statuses": [True]}, ValueError, "failure_statuses"),
        ({"failure_statuses": ["500"]}, ValueError, "'500'"),
        ({"open_on_retry_after": 0}, ValueError, "open_on_retry_after"),
        ({"open_on_retry_after": -1.0}, ValueError, "-1.0"),
        ({"open_on_retry_after": 1e9}, ValueError, "1000000000.0"),
        ({"open_on_retry_after": "60"}, TypeError, "'60'"),
        ({"open_on_retry_after": None}, TypeError, "None"),
        ({"group": {}}, TypeError, "group must be a qbreaker.BreakerGroup"),
        ({"key": "host"}, TypeError, "key must be a callable"),
    ],
)
def test_bad_settings_name_the_parameter(
    impl: Impl, clock: FakeClock, kwargs: dict[str, Any], error: type, words: str
) -> None:
    with pytest.raises(error) as info:
        _rules(impl, clock, **kwargs)
    assert words in str(info.value)


def test_a_key_that_is_not_a_str_is_a_clear_error(impl: Impl, clock: FakeClock) -> None:
    rules = _rules(impl, clock, key=lambda request: 42)
    with pytest.raises(TypeError, match="key= must return the breaker's name as a str"):
        rules.admit("a")


def test_the_rejection_class_is_made_once_and_pickles() -> None:
    cls = rejection_class(LibraryError, module=__name__, name="Rejected", doc="test")
    assert cls is __getattr__("Rejected")
    assert cls.__mro__[1:3] == (CircuitOpenError, qbreaker.BreakerError)
    assert issubclass(cls, LibraryError)
    error = cls("svc", State.OPEN, 2.5, object())
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls
    assert (copy.name, copy.state, copy.retry_after) == ("svc", State.OPEN, 2.5)
    assert str(copy) == str(error)
    assert copy.request is None  # the request is not pickled


def test_a_rejection_can_also_be_an_oserror() -> None:
    # requests' base error is an OSError: CircuitOpenError's layout must mix.
    cls = rejection_class(OSLibraryError, module=__name__, name="OSRejected", doc="")
    error = cls("svc", State.OPEN, 1.0)
    assert isinstance(error, OSError) and isinstance(error, CircuitOpenError)
    assert error.retry_after == 1.0


def test_retry_after_opens_only_when_enabled(impl: Impl, clock: FakeClock) -> None:
    off = _rules(impl, clock)
    off.admit("a").settle_status(503, {"Retry-After": "30"})
    assert off.group["a"].state is State.CLOSED

    on = _rules(impl, clock, open_on_retry_after=True)
    on.admit("a").settle_status(200, {"Retry-After": "30"})  # only 429 and 503 count
    on.admit("a").settle_status(429, {"Retry-After": "junk"})
    assert on.group["a"].state is State.CLOSED
    on.admit("a").settle_status(429, {"Retry-After": "30"})
    breaker = on.group["a"]
    assert breaker.state is State.OPEN
    assert breaker.retry_after == 30.0
    clock.advance(30)
    assert breaker.allow()

    capped = _rules(impl, clock, open_on_retry_after=2.5)
    capped.admit("a").settle_status(503, {"Retry-After": "3600"})
    assert capped.group["a"].retry_after == 2.5
