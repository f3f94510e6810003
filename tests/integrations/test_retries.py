"""Retries around a protected call: the breaker inside the retry, so each
attempt is counted; a rejection is either not retried or waited out with
its retry_after, only within the retry's budget. tenacity (with
qbreaker.integrations.tenacity.wait_retry_after) and stamina. Both cores."""

from __future__ import annotations

from typing import Any

import pytest

tenacity = pytest.importorskip("tenacity", reason="tenacity is in the tenacity extra")

from qbreaker import CircuitOpenError, State  # noqa: E402
from qbreaker.integrations.tenacity import wait_retry_after  # noqa: E402

from ..helpers import FakeClock, Impl  # noqa: E402


class Backend:
    """Fails its first ``failures`` calls with ConnectionError, then answers."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.reached = 0

    def __call__(self) -> str:
        self.reached += 1
        if self.reached <= self.failures:
            raise ConnectionError("backend down")
        return "ok"


def retrying(clock: FakeClock, sleeps: list[float], **options: Any) -> Any:
    """A tenacity.Retrying whose sleeps move ``clock`` and are recorded."""

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.advance(seconds)

    return tenacity.Retrying(sleep=sleep, reraise=True, **options)


def waiting_out(clock: FakeClock, sleeps: list[float], budget: float) -> Any:
    return retrying(
        clock,
        sleeps,
        retry=tenacity.retry_if_exception_type((ConnectionError, CircuitOpenError)),
        wait=wait_retry_after(tenacity.wait_fixed(0.5)),
        stop=tenacity.stop_before_delay(budget),
    )


def test_a_rejection_is_waited_out_within_the_budget(
    impl: Impl, clock: FakeClock
) -> None:
    breaker = impl.Breaker(2, 3.0, 1, clock=clock)
    backend = Backend(failures=2)
    sleeps: list[float] = []
    result = waiting_out(clock, sleeps, budget=10.0)(breaker.call, backend)
    assert result == "ok"
    # Two backend errors (the usual backoff), then the rejection's 2.5 s.
    assert sleeps == [0.5, 0.5, 2.5]
    assert backend.reached == 3
    assert breaker.totals().rejected == 1
    assert breaker.state is State.CLOSED


def test_a_rejection_longer_than_the_budget_ends_the_retry(
    impl: Impl, clock: FakeClock
) -> None:
    breaker = impl.Breaker(2, 30.0, 1, clock=clock)
    backend = Backend(failures=5)
    sleeps: list[float] = []
    with pytest.raises(CircuitOpenError) as rejected:
        waiting_out(clock, sleeps, budget=10.0)(breaker.call, backend)
    assert rejected.value.retry_after == 29.5
    assert sleeps == [0.5, 0.5]  # no 29.5 s wait
    assert backend.reached == 2


def test_a_forced_open_breaker_ends_the_retry_at_once(
    impl: Impl, clock: FakeClock
) -> None:
    breaker = impl.Breaker(2, 3.0, 1, clock=clock)
    breaker.force_open()
    backend = Backend(failures=0)
    sleeps: list[float] = []
    with pytest.raises(CircuitOpenError):
        waiting_out(clock, sleeps, budget=3600.0)(breaker.call, backend)
    assert (sleeps, backend.reached) == ([], 0)


def test_a_retry_of_the_backend_errors_only_never_retries_a_rejection(
    impl: Impl, clock: FakeClock
) -> None:
    breaker = impl.Breaker(2, 3.0, 1, clock=clock)
    backend = Backend(failures=5)
    sleeps: list[float] = []
    attempts = retrying(
        clock,
        sleeps,
        retry=tenacity.retry_if_exception_type(ConnectionError),
        wait=tenacity.wait_fixed(0.5),
        stop=tenacity.stop_after_attempt(10),
    )
    with pytest.raises(CircuitOpenError):
        attempts(breaker.call, backend)
    assert attempts.statistics["attempt_number"] == 3
    assert (sleeps, backend.reached) == ([0.5, 0.5], 2)


def test_wait_retry_after_falls_back_for_other_errors() -> None:
    wait = wait_retry_after()

    def state_after(error: BaseException) -> Any:
        retry_state = tenacity.RetryCallState(None, lambda: None, (), {})
        retry_state.set_exception((type(error), error, None))
        return retry_state

    assert wait(state_after(ConnectionError())) == 0.0
    assert wait(state_after(CircuitOpenError("x", State.OPEN, 1.25))) == 1.25
    combined = wait_retry_after(tenacity.wait_fixed(2)) + tenacity.wait_fixed(1)
    assert combined(state_after(ConnectionError())) == 3.0
    with pytest.raises(TypeError, match="fallback must be a tenacity wait"):
        wait_retry_after(2)  # type: ignore[arg-type]


def test_stamina_waits_out_a_short_rejection_and_gives_up_on_a_long_one(
    impl: Impl,
) -> None:
    stamina = pytest.importorskip(
        "stamina", reason="stamina is in the integrations extra"
    )

    def retry_on(error: Exception) -> bool | float:
        # The hook of the README's Retries section.
        if isinstance(error, CircuitOpenError):
            return error.retry_after if error.retry_after <= 1.0 else False
        return isinstance(error, ConnectionError)

    breaker = impl.Breaker(1, 0.05, 1)  # the real clock: stamina really sleeps
    backend = Backend(failures=1)
    call = stamina.retry(
        on=retry_on, attempts=5, timeout=5.0, wait_initial=0.001, wait_jitter=0.0
    )(breaker.call)
    assert call(backend) == "ok"
    assert backend.reached == 2
    # Waited out (once, or again if a sleep ended a hair early), then the probe.
    assert breaker.totals().rejected >= 1
    assert breaker.state is State.CLOSED

    slow = impl.Breaker(1, 30.0, 1)
    backend = Backend(failures=1)
    call = stamina.retry(
        on=retry_on, attempts=5, timeout=5.0, wait_initial=0.001, wait_jitter=0.0
    )(slow.call)
    with pytest.raises(CircuitOpenError):
        call(backend)
    assert backend.reached == 1
