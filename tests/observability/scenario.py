"""The scripted sequence both exporters are checked against.

A breaker ``pay`` (trips after 2 failures, reset timeout 10 s, one probe)
sees 3 successes, 1 neutral outcome and 2 failures (the trip), rejects 2
calls, then its probe succeeds after the reset timeout (the recovery). A
windowed breaker ``rate`` sees 3 successes and 1 failure (25 % of the 4
calls its minimum asks for). Each step's expected values are written out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..helpers import FakeClock, Impl


class Boom(Exception):
    pass


def fail() -> None:
    raise Boom


@dataclass
class Scene:
    pay: Any
    rate: Any
    clock: FakeClock

    def successes_and_trip(self) -> None:
        """3 successes, 1 neutral, 2 failures: open, retry after 10 s."""
        for _ in range(3):
            self.pay.call(lambda: None)
        self.pay.release(self.pay.acquire(), None)
        for _ in range(2):
            try:
                self.pay.call(fail)
            except Boom:
                pass
        for _ in range(3):
            self.rate.call(lambda: None)
        self.rate.release(self.rate.acquire(), False)

    def rejections(self) -> None:
        """2 calls refused while open."""
        assert not self.pay.allow()
        assert not self.pay.allow()

    def recovery(self) -> None:
        """After the reset timeout the probe succeeds: closed again."""
        self.clock.advance(10)
        self.pay.call(lambda: None)


def scene(impl: Impl, clock: FakeClock) -> Scene:
    pay = impl.Breaker(2, 10, 1, clock=clock, name="pay")
    rate = impl.Breaker(
        max_failures=None, reset_timeout=10, half_open_max=1, clock=clock,
        failure_rate_threshold=0.5, window_size=10, minimum_calls=4, name="rate",
    )  # fmt: skip
    return Scene(pay, rate, clock)
