"""``python -m qbreaker tour``: the seed's scenario, traced step by step.

It runs on a virtual clock, so the minute-long reset timeout takes no time,
and it checks every step against the documented behaviour: the exit status
is 0 only if the breaker did exactly what docs/semantics.md says.
"""

from __future__ import annotations

import sys
from typing import Callable, TextIO

from qbreaker import IMPLEMENTATION, CircuitBreaker, State, __version__


class _VirtualClock:
    def __init__(self) -> None:
        self.ms = 0

    def __call__(self) -> float:
        return self.ms / 1000


def run(args: object = None, out: TextIO | None = None) -> int:
    out = out if out is not None else sys.stdout
    clock = _VirtualClock()
    breaker = CircuitBreaker(5, 60.0, 3, clock=clock)
    problems: list[str] = []

    def step(what: str, got: object, expected: object) -> None:
        mark = "ok " if got == expected else "BAD"
        if got != expected:
            problems.append(f"{what}: got {got!r}, expected {expected!r}")
        state = breaker.state
        print(
            f"  t={clock.ms / 1000:6.1f}s  {mark} {what:<38} -> {got!s:<5} "
            f"state={state!s:<9} gen={breaker.generation}",
            file=out,
        )

    def at(
        seconds: float, what: str, call: Callable[[], object], expected: object
    ) -> None:
        clock.ms = round(seconds * 1000)
        step(what, call(), expected)

    print(f"qbreaker {__version__} ({IMPLEMENTATION} core)", file=out)
    print(
        "CircuitBreaker(max_failures=5, reset_timeout=60.0, half_open_max=3)", file=out
    )
    print("\n1. closed: five consecutive failures trip it", file=out)
    for i in range(1, 6):
        at(i, f"allow() for call {i}", breaker.allow, True)
        at(i + 0.1, f"record_failure() #{i}", breaker.record_failure, None)
    step("state after 5 failures", breaker.state, State.OPEN)

    print("\n2. open: calls are rejected until reset_timeout has passed", file=out)
    at(6, "allow() right after the trip", breaker.allow, False)
    at(65.0, "allow() at 59.9 s after opening", breaker.allow, False)

    print("\n3. half-open: after 60 s, at most 3 probes at once", file=out)
    at(65.1, "allow() at 60 s: the first probe", breaker.allow, True)
    at(65.2, "allow(): the second probe", breaker.allow, True)
    at(65.3, "allow(): the third probe", breaker.allow, True)
    at(65.4, "allow(): a fourth is rejected", breaker.allow, False)

    print("\n4. three successful probes close it", file=out)
    at(66, "record_success() probe 1", breaker.record_success, None)
    at(66.1, "record_success() probe 2", breaker.record_success, None)
    step("still half-open after 2 of 3", breaker.state, State.HALF_OPEN)
    at(66.2, "record_success() probe 3", breaker.record_success, None)
    step("state after 3 successes", breaker.state, State.CLOSED)
    at(67, "allow() once closed again", breaker.allow, True)
    breaker.record_success()

    totals = breaker.totals()
    print(f"\ntotals: {totals}", file=out)
    if problems:
        print("\nUNEXPECTED behaviour:", *problems, sep="\n  ", file=out)
        return 1
    print("\nevery step behaved as documented", file=out)
    return 0
