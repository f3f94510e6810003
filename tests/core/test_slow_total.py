"""The slow total: slow outcomes counted beside the cell, on both cores.

The fleet agent diffs it to send each breaker's slow calls; it is counted
only where an outcome is slow (out of the inlined closed path).
"""

from __future__ import annotations

import os
from typing import Any

import pytest

import qbreaker

from ..helpers import FakeClock, Impl


def slow_policy(impl: Impl, clock: FakeClock, **kwargs: Any) -> Any:
    kwargs.setdefault("max_failures", None)
    kwargs.setdefault("window_size", 100)
    kwargs.setdefault("minimum_calls", 100)
    return impl.Breaker(
        clock=clock,
        slow_call_duration=0.5,
        slow_call_rate_threshold=0.9,
        **kwargs,
    )


def test_slow_outcomes_are_counted(impl: Impl, clock: FakeClock) -> None:
    b = slow_policy(impl, clock)
    assert b._slow_total() == 0
    b.release(b.acquire(), True, 0.1)  # quick: not counted
    b.release(b.acquire(), True, 0.5)  # slow success
    b.release(b.acquire(), False, 2.0)  # slow failure
    b.release(b.acquire(), None, 2.0)  # neutral: never slow
    b.record_success()
    assert b._slow_total() == 2

    def sleepy() -> int:
        clock.advance(1)
        return 1

    assert b.call(sleepy) == 1  # timed by the breaker's clock: slow
    with b:
        clock.advance(0.6)
    assert b._slow_total() == 4
    # Totals are unchanged in shape: slow outcomes count as what they are.
    totals = b.totals()
    assert (totals.successes, totals.failures, totals.neutral) == (5, 1, 1)


def test_slow_outcomes_in_any_state_are_counted(impl: Impl, clock: FakeClock) -> None:
    b = slow_policy(impl, clock, max_failures=1, reset_timeout=1)
    b.record_failure()
    assert b.state is qbreaker.State.OPEN
    clock.advance(1)
    ticket = b.acquire()
    b.release(ticket, True, 3.0)  # a slow probe: a failed probe, and slow
    assert b.state is qbreaker.State.OPEN
    assert b._slow_total() == 1


def test_without_a_slow_policy_nothing_is_slow(impl: Impl, clock: FakeClock) -> None:
    b = impl.Breaker(clock=clock, max_failures=3)
    b.release(b.acquire(), True, 100.0)
    assert b._slow_total() == 0


def test_the_slow_word_is_free_header_space() -> None:
    from qbreaker._impl import segment_format as fmt

    # After the longest name, right before the opens word.
    assert fmt.NAME_OFFSET + 4 + fmt.NAME_LIMIT <= fmt.SLOW_OFFSET
    assert fmt.SLOW_OFFSET + 8 == fmt.OPENS_OFFSET and fmt.SLOW_OFFSET % 8 == 0


@pytest.mark.c_extension
def test_a_shared_breaker_counts_host_wide() -> None:
    name = f"slow-total-{os.getpid()}"
    settings: dict[str, Any] = {
        "window_size": 50,
        "minimum_calls": 50,
        "slow_call_duration": 0.5,
        "slow_call_rate_threshold": 0.9,
        "shared": name,
    }
    here = qbreaker.CircuitBreaker(None, 30.0, **settings)
    try:
        here.release(here.acquire(), True, 1.0)
        pid = os.fork()
        if pid == 0:  # another worker of the host
            code = 1
            try:
                there = qbreaker.CircuitBreaker(None, 30.0, **settings)
                for _ in range(3):
                    there.release(there.acquire(), True, 1.0)
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert here._slow_total() == 4
        # Where the segment format says, for readers that do not map it.
        from qbreaker._impl import segment_format

        (info,) = [i for i in qbreaker.shared.list() if i.name == name]
        with open(info.path, "rb") as f:
            f.seek(segment_format.SLOW_OFFSET)
            assert int.from_bytes(f.read(8), "little") == 4
    finally:
        qbreaker.shared.unlink(name)
