"""Transition log records carry structured fields; rejections log nothing."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from ..helpers import FakeClock, Impl


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def fields(self) -> list[tuple[str, str, str, str, int, str]]:
        return [
            (r.levelname, r.qbreaker_breaker, r.qbreaker_from,  # type: ignore[attr-defined]
             r.qbreaker_to, r.qbreaker_generation,  # type: ignore[attr-defined]
             r.qbreaker_reason)  # type: ignore[attr-defined]
            for r in self.records
        ]  # fmt: skip


@pytest.fixture
def records() -> Iterator[Records]:
    logger = logging.getLogger("qbreaker")
    handler = Records()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_every_transition_has_its_fields(
    impl: Impl, clock: FakeClock, records: Records
) -> None:
    b = impl.Breaker(2, 10, 1, clock=clock, name="db")
    b.record_failure()
    b.record_failure()  # closed -> open
    for _ in range(1000):
        assert not b.allow()  # rejections: never one record per call
    clock.advance(10)
    ticket = b.acquire()  # open -> half-open
    b.release(ticket, False)  # half-open -> open
    clock.advance(10)
    b.release(b.acquire(), True)  # -> half-open -> closed
    b.force_open()
    b.force_closed()
    b.reset()
    b.reset()  # closed -> closed: a new generation
    assert records.fields() == [
        ("WARNING", "db", "closed", "open", 1, "tripped"),
        ("INFO", "db", "open", "half_open", 2, "reset_timeout"),
        ("WARNING", "db", "half_open", "open", 3, "reopened"),
        ("INFO", "db", "open", "half_open", 4, "reset_timeout"),
        ("INFO", "db", "half_open", "closed", 5, "recovered"),
        ("WARNING", "db", "closed", "forced_open", 6, "forced_open"),
        ("INFO", "db", "forced_open", "forced_closed", 7, "forced_closed"),
        ("INFO", "db", "forced_closed", "closed", 8, "reset"),
        ("INFO", "db", "closed", "closed", 9, "reset"),
    ]
    assert records.records[0].getMessage() == (
        "circuit breaker 'db': closed -> open (generation 1)"
    )
    assert all(r.name == "qbreaker" for r in records.records)


def test_reset_while_half_open_is_not_a_recovery(
    impl: Impl, clock: FakeClock, records: Records
) -> None:
    b = impl.Breaker(1, 10, 2, clock=clock, name="db")
    b.record_failure()
    clock.advance(10)
    b.release(b.acquire(), True)  # one success of the two needed
    b.reset()
    assert [f[-1] for f in records.fields()] == ["tripped", "reset_timeout", "reset"]


def test_half_open_timeout_reopens(
    impl: Impl, clock: FakeClock, records: Records
) -> None:
    b = impl.Breaker(1, 10, 1, clock=clock, half_open_timeout=5, name="db")
    b.record_failure()
    clock.advance(10)
    b.acquire()  # a probe that never reports
    clock.advance(5)
    assert not b.allow()
    assert [f[-1] for f in records.fields()] == ["tripped", "reset_timeout",
                                                  "reopened"]  # fmt: skip


def test_a_reason_given_by_the_operation_wins(
    impl: Impl, clock: FakeClock, records: Records
) -> None:
    b = impl.Breaker(5, 10, 1, clock=clock, name="api")
    b.open_for(30)
    assert records.fields() == [("WARNING", "api", "closed", "open", 1, "open_for")]
    assert records.records[0].getMessage() == (
        "circuit breaker 'api': closed -> open (open_for, generation 1)"
    )


def test_qbreakers_own_breakers_log_at_debug(
    impl: Impl, clock: FakeClock, records: Records
) -> None:
    # The fleet agent's guard ("qbreaker.fleet.agent") re-opens every few
    # hundred ms while Redis is down; its agent logs connectivity itself.
    guard = impl.Breaker(1, 10, 1, clock=clock, name="qbreaker.fleet.agent")
    logging.getLogger("qbreaker").setLevel(logging.DEBUG)
    guard.record_failure()
    clock.advance(10)
    guard.release(guard.acquire(), False)
    assert [f[:4] for f in records.fields()] == [
        ("DEBUG", "qbreaker.fleet.agent", "closed", "open"),
        ("DEBUG", "qbreaker.fleet.agent", "open", "half_open"),
        ("DEBUG", "qbreaker.fleet.agent", "half_open", "open"),
    ]
    # At INFO (what an application's logging usually lets through): nothing.
    records.records.clear()
    logging.getLogger("qbreaker").setLevel(logging.INFO)
    guard.reset()
    guard.record_failure()
    assert records.records == []
