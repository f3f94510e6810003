"""The compat breaker under 8 Python threads: exact, and not serialized.

pybreaker holds its lock across the protected call, so two threads are never
inside the protected function of one breaker at once; here they are, and the
counters, the single trial call and the listener serialization still hold.
Both cores, the compiled path (no listener) and the Python one (listeners).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import qbreaker.compat.pybreaker as pybreaker

THREADS = 8


class DummyError(Exception):
    pass


def fail() -> None:
    raise DummyError


def run_threads(target: Callable[[int], None], n: int = THREADS) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def body(index: int) -> None:
        try:
            start.wait(10)
            target(index)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(t.is_alive() for t in threads)
    if errors:
        raise errors[0]


class Counting(pybreaker.CircuitBreakerListener):
    """Counts callbacks and notices if two ever run at once."""

    def __init__(self) -> None:
        self.busy = threading.Lock()
        self.overlaps = 0
        self.counts = {"before_call": 0, "success": 0, "failure": 0, "state": 0}

    def _enter(self, kind: str) -> None:
        if not self.busy.acquire(blocking=False):
            self.overlaps += 1
            self.busy.acquire()
        try:
            self.counts[kind] += 1
            if self.counts[kind] % 64 == 0:
                time.sleep(0)  # invite a thread switch inside the callback
        finally:
            self.busy.release()

    def before_call(self, cb: Any, func: Any, *args: Any, **kwargs: Any) -> None:
        self._enter("before_call")

    def success(self, cb: Any) -> None:
        self._enter("success")

    def failure(self, cb: Any, exc: BaseException) -> None:
        self._enter("failure")

    def state_change(self, cb: Any, old: Any, new: Any) -> None:
        self._enter("state")


@pytest.fixture(params=["compiled path", "listeners"])
def breaker_of(request: pytest.FixtureRequest, impl: Any) -> Callable[..., Any]:
    def make(**settings: Any) -> Any:
        storage = pybreaker.CircuitMemoryStorage("closed", core_class=impl.Breaker)
        breaker = pybreaker.CircuitBreaker(state_storage=storage, **settings)
        if request.param == "listeners":
            breaker.add_listener(Counting())
        return breaker

    return make


def test_counters_are_exact(breaker_of: Callable[..., Any]) -> None:
    calls = 2000
    breaker = breaker_of(fail_max=10**9)

    def work(index: int) -> None:
        for _ in range(calls):
            with pytest.raises(DummyError):
                breaker.call(fail)

    run_threads(work)
    assert breaker.fail_counter == THREADS * calls
    assert breaker.current_state == "closed"
    for listener in breaker.listeners:
        assert listener.counts["failure"] == THREADS * calls
        assert listener.counts["before_call"] == THREADS * calls
        assert listener.overlaps == 0


def test_successes_and_exclusions_are_exact(breaker_of: Callable[..., Any]) -> None:
    calls = 1000
    breaker = breaker_of(exclude=[KeyError])

    def raise_key_error() -> None:
        raise KeyError

    def work(index: int) -> None:
        for _ in range(calls):
            breaker.call(int)
            with pytest.raises(KeyError):
                breaker.call(raise_key_error)

    run_threads(work)
    assert (breaker.fail_counter, breaker.current_state) == (0, "closed")
    for listener in breaker.listeners:
        assert listener.counts["success"] == 2 * THREADS * calls
        assert listener.overlaps == 0


def test_one_call_trips_the_breaker(breaker_of: Callable[..., Any]) -> None:
    breaker = breaker_of(fail_max=50, reset_timeout=3600)
    outcomes: list[str] = []
    lock = threading.Lock()

    def work(index: int) -> None:
        while True:
            try:
                breaker.call(fail)
            except DummyError:
                outcome = "failure"
            except pybreaker.CircuitBreakerError as exc:
                outcome = str(exc)
            with lock:
                outcomes.append(outcome)
            if outcome.startswith("Timeout"):
                return

    run_threads(work)
    assert outcomes.count("Failures threshold reached, circuit breaker opened") == 1
    assert outcomes.count("failure") >= 49
    assert breaker.current_state == "open"
    assert breaker.fail_counter >= 50
    for listener in breaker.listeners:
        assert listener.counts["state"] == 1
        assert listener.overlaps == 0


def test_calls_run_concurrently(breaker_of: Callable[..., Any]) -> None:
    # Every thread waits inside the protected function for all the others:
    # under pybreaker's lock the barrier would break (one thread at a time).
    breaker = breaker_of()
    inside = threading.Barrier(THREADS)

    @breaker
    def slow(index: int) -> int:
        inside.wait(10)
        return index

    results: list[int] = []

    def work(index: int) -> None:
        if index % 2:
            results.append(breaker.call(slow.__wrapped__, index))
        else:
            results.append(slow(index))

    run_threads(work)
    assert sorted(results) == list(range(THREADS))
    assert inside.broken is False


def test_two_threads_inside_at_once(breaker_of: Callable[..., Any]) -> None:
    # Both calls must be inside at once to pass the barrier: a breaker that
    # held a lock across the call (pybreaker does) would break it after the
    # timeout. No timing window to lose under load.
    breaker = breaker_of()
    both_inside = threading.Barrier(2, timeout=10)

    def slow() -> None:
        both_inside.wait()

    run_threads(lambda index: breaker.call(slow), n=2)
    assert both_inside.broken is False


def test_exactly_one_trial_call_under_threads(breaker_of: Callable[..., Any]) -> None:
    breaker = breaker_of(fail_max=1)
    breaker.half_open()
    ran: list[int] = []
    all_tried = threading.Event()
    rejected: list[float | None] = []
    lock = threading.Lock()

    def trial(index: int) -> None:
        ran.append(index)
        assert all_tried.wait(10)

    def work(index: int) -> None:
        try:
            breaker.call(trial, index)
        except pybreaker.CircuitBreakerError as exc:
            with lock:
                rejected.append(exc.retry_after)
                if len(rejected) == THREADS - 1:
                    all_tried.set()

    run_threads(work)
    assert len(ran) == 1
    assert rejected == [0.0] * (THREADS - 1)
    assert breaker.current_state == "closed"
