"""What the benchmark measures: its scenarios and their subjects, written once.

``python -m qbreaker bench`` and the pytest-benchmark suite in ``benchmarks/``
both time the subjects defined here, so the two can never disagree about what
"the compiled pair" or "pybreaker's ``call(f)``" means.

A *scenario* (a ``group``) is one situation: the closed success path, an open
breaker's rejection, half-open probes... Every subject of a scenario runs the
same loop of ``loops`` operations around the same protected function, so its
cost over the scenario's *reference* (``bare f()``, or ``empty loop`` where
nothing is called) is what the protection adds. The families compared, and
the pieces a subject is built of, are in ``subjects``; the loops in ``loops``.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any, Callable

from qbreaker import CircuitOpenError, State

from .loops import (
    async_with_loop,
    bare_await,
    bare_loop,
    call_async_loop,
    call_loop,
    empty_loop,
    failure_loop,
    pair_await,
    pair_loop,
    raise_call_loop,
    raise_with_loop,
    ticket_loop,
    with_loop,
    wrapped_await,
    wrapped_loop,
)
from .subjects import (
    BARE,
    FLOOR,
    PY,
    Boom,
    C,
    Scenario,
    Subject,
    Timed,
    awork,
    boom,
    closed_success,
    drive,
    expect,
    floor_module,
    new_breaker,
    opened_breaker,
    peer_module,
    still_open,
    work,
)

__all__ = (
    "CLOSED",
    "CLOSED_ASYNC",
    "FAILURE_TRIP",
    "HALF_OPEN",
    "LOOPS",
    "OPEN_RAISE",
    "OPEN_REJECT",
    "SCENARIOS",
)

# Operations per timed round (aio-libs style): one call is too short to time
# on its own, and every figure is divided by this to give ns per operation.
LOOPS = 100

CLOSED = "closed"
CLOSED_ASYNC = "closed-async"
OPEN_REJECT = "open-reject"
OPEN_RAISE = "open-raise"
HALF_OPEN = "half-open"
FAILURE_TRIP = "failure-trip"

# The widest half-open the packed word allows (INFLIGHT_MAX, HSUCC_MAX): a
# round of LOOPS probes never closes the breaker.
PROBES = 255


# closed ------------------------------------------------------------------------


def _closed() -> Scenario:
    g = CLOSED
    fp, ft, fw = "floor allow+record", "floor acquire+release", "floor with"

    def qb(family: str) -> list[Subject]:
        def pair(loops: int) -> Timed:
            b = new_breaker(family)
            return Timed(pair_loop(b, loops), check=closed_success(b, loops))

        def ticket(loops: int) -> Timed:
            b = new_breaker(family)
            return Timed(ticket_loop(b, loops), check=closed_success(b, loops))

        def with_(loops: int) -> Timed:
            b = new_breaker(family)
            return Timed(with_loop(b, loops), check=closed_success(b, loops))

        def decorator(loops: int) -> Timed:
            b = new_breaker(family)
            return Timed(wrapped_loop(b(work), loops), check=closed_success(b, loops))

        def call(loops: int) -> Timed:
            b = new_breaker(family)
            return Timed(call_loop(b, loops), check=closed_success(b, loops))

        return [
            Subject(g, f"{family} allow+record", family, pair, fp),
            Subject(g, f"{family} acquire+release", family, ticket, ft),
            Subject(g, f"{family} with", family, with_, fw),
            Subject(g, f"{family} @breaker", family, decorator, fp),
            Subject(g, f"{family} call(f)", family, call, fp),
        ]

    def pybreaker_call(loops: int) -> Timed:
        cb = peer_module("pybreaker").CircuitBreaker(fail_max=5, reset_timeout=60)
        return Timed(call_loop(cb, loops))

    def pybreaker_decorator(loops: int) -> Timed:
        cb = peer_module("pybreaker").CircuitBreaker(fail_max=5, reset_timeout=60)
        return Timed(wrapped_loop(cb(work), loops))

    def circuitbreaker_decorator(loops: int) -> Timed:
        circuit = peer_module("circuitbreaker").circuit
        g = circuit(failure_threshold=5, recovery_timeout=60)(work)
        return Timed(wrapped_loop(g, loops))

    def purgatory_with(loops: int) -> Timed:
        factory = peer_module("purgatory").SyncCircuitBreakerFactory(
            default_threshold=5
        )
        return Timed(with_loop(factory.get_breaker("bench-with"), loops))

    def purgatory_decorator(loops: int) -> Timed:
        factory = peer_module("purgatory").SyncCircuitBreakerFactory(
            default_threshold=5
        )
        return Timed(wrapped_loop(factory("bench-decorator")(work), loops))

    subjects = [
        Subject(g, "bare f()", BARE, lambda n: Timed(bare_loop(n))),
        Subject(g, fp, FLOOR, lambda n: Timed(pair_loop(floor_module().Floor(), n))),
        Subject(g, ft, FLOOR, lambda n: Timed(ticket_loop(floor_module().Floor(), n))),
        Subject(
            g, fw, FLOOR, lambda n: Timed(with_loop(floor_module().NullContext(), n))
        ),
        # Not a reference of any target: the price of calling f from C.
        Subject(
            g,
            "floor call(f)",
            FLOOR,
            lambda n: Timed(call_loop(floor_module().Floor(), n)),
            fp,
        ),
        *qb(C),
        *_policies(g, fp),
        *qb(PY),
        Subject(g, "pybreaker call(f)", "pybreaker", pybreaker_call, fp),
        Subject(g, "pybreaker @breaker", "pybreaker", pybreaker_decorator, fp),
        Subject(
            g, "circuitbreaker @circuit", "circuitbreaker", circuitbreaker_decorator, fp
        ),
        Subject(g, "purgatory with", "purgatory", purgatory_with, fw),
        Subject(g, "purgatory @breaker", "purgatory", purgatory_decorator, fp),
    ]
    return Scenario(g, "closed, success path", "bare f()", False, tuple(subjects))


def _policies(g: str, fp: str) -> list[Subject]:
    """The compiled pair under a rate window, and on a shared-memory cell."""

    def pair(**settings: Any) -> Callable[[int], Timed]:
        def build(loops: int) -> Timed:
            b = new_breaker(C, **settings)
            return Timed(pair_loop(b, loops), check=closed_success(b, loops))

        return build

    def shared(loops: int) -> Timed:
        from qbreaker import shared as shared_module

        name = f"qbreaker-bench-{os.getpid()}-{next(_segments)}"
        b = new_breaker(C, shared=name)
        # The mapping lives as long as the breaker; the file need not.
        shared_module.unlink(name)
        return Timed(pair_loop(b, loops), check=closed_success(b, loops))

    return [
        Subject(
            g,
            "qbreaker-c count-window allow+record",
            C,
            pair(failure_rate_threshold=0.5, window_size=100),
            fp,
        ),
        Subject(
            g,
            "qbreaker-c time-window allow+record",
            C,
            pair(failure_rate_threshold=0.5, window_seconds=10.0),
            fp,
        ),
        Subject(g, "qbreaker-c shared allow+record", C, shared, fp),
    ]


_segments = itertools.count()


# closed, async -------------------------------------------------------------------


def _closed_async() -> Scenario:
    g = CLOSED_ASYNC
    fp = "floor allow+record"

    def qb(family: str) -> list[Subject]:
        def pair(loops: int) -> Timed:
            b = new_breaker(family)
            return Timed(pair_await(b, loops), check=closed_success(b, loops))

        def decorator(loops: int) -> Timed:
            b = new_breaker(family)
            return Timed(wrapped_await(b(awork), loops), check=closed_success(b, loops))

        def call_async(loops: int) -> Timed:
            b = new_breaker(family)
            return Timed(call_async_loop(b, loops), check=closed_success(b, loops))

        def async_with(loops: int) -> Timed:
            b = new_breaker(family)
            return Timed(async_with_loop(b, loops), check=closed_success(b, loops))

        return [
            Subject(g, f"{family} allow+record", family, pair, fp),
            Subject(g, f"{family} async @breaker", family, decorator, fp),
            Subject(g, f"{family} call_async(f)", family, call_async, fp),
            Subject(g, f"{family} async with", family, async_with, fp),
        ]

    def aiobreaker_call(loops: int) -> Timed:
        cb = peer_module("aiobreaker").CircuitBreaker(fail_max=5)
        return Timed(call_async_loop(cb, loops))

    def aiobreaker_decorator(loops: int) -> Timed:
        cb = peer_module("aiobreaker").CircuitBreaker(fail_max=5)
        return Timed(wrapped_await(cb(awork), loops))

    def circuitbreaker_decorator(loops: int) -> Timed:
        circuit = peer_module("circuitbreaker").circuit
        g = circuit(failure_threshold=5, recovery_timeout=60)(awork)
        return Timed(wrapped_await(g, loops))

    def purgatory_async_with(loops: int) -> Timed:
        factory = peer_module("purgatory").AsyncCircuitBreakerFactory(
            default_threshold=5
        )
        brk: list[Any] = []

        async def get() -> None:
            brk.append(await factory.get_breaker("bench-async-with"))

        drive(get)()
        return Timed(async_with_loop(brk[0], loops))

    subjects = [
        Subject(g, "bare await f()", BARE, lambda n: Timed(bare_await(n))),
        Subject(g, fp, FLOOR, lambda n: Timed(pair_await(floor_module().Floor(), n))),
        Subject(
            g,
            "floor async with",
            FLOOR,
            lambda n: Timed(async_with_loop(floor_module().NullAsyncContext(), n)),
        ),
        *qb(C),
        *qb(PY),
        Subject(g, "aiobreaker call_async(f)", "aiobreaker", aiobreaker_call, fp),
        Subject(g, "aiobreaker async @breaker", "aiobreaker", aiobreaker_decorator, fp),
        Subject(
            g,
            "circuitbreaker async @circuit",
            "circuitbreaker",
            circuitbreaker_decorator,
            fp,
        ),
        Subject(g, "purgatory async with", "purgatory", purgatory_async_with, fp),
    ]
    return Scenario(
        g,
        "closed, success path, around an await",
        "bare await f()",
        False,
        tuple(subjects),
    )


# open: rejection -------------------------------------------------------------------


def _open_reject() -> Scenario:
    g = OPEN_REJECT
    fr = "floor allow()->False"

    def qb(family: str) -> Subject:
        def reject(loops: int) -> Timed:
            b = opened_breaker(family)
            # The closed scenario's loop: only the answer of allow() differs.
            return Timed(pair_loop(b, loops), check=still_open(b, loops))

        return Subject(g, f"{family} allow()->False", family, reject, fr)

    # A rejection that returns the fallback's result: its floor is calling
    # the fallback directly ("bare f()"); "floor call(f)" is a compiled
    # wrapper that only calls it, so the share of a call made from C shows.
    def fallback(family: str) -> Subject:
        def run(loops: int) -> Timed:
            b = opened_breaker(family, fallback=work)
            return Timed(wrapped_loop(b(work), loops), check=still_open(b, loops))

        return Subject(g, f"{family} @breaker->fallback", family, run, "bare f()")

    def floor_call(loops: int) -> Timed:
        return Timed(call_loop(floor_module().Floor(True), loops))

    subjects = [
        Subject(g, "empty loop", BARE, lambda n: Timed(empty_loop(n))),
        Subject(g, "bare f()", BARE, lambda n: Timed(bare_loop(n))),
        Subject(
            g, fr, FLOOR, lambda n: Timed(pair_loop(floor_module().Floor(False), n))
        ),
        qb(C),
        qb(PY),
        Subject(g, "floor call(f)", FLOOR, floor_call),
        fallback(C),
        fallback(PY),
    ]
    return Scenario(
        g, "open, non-raising rejection", "empty loop", False, tuple(subjects)
    )


def _open_raise() -> Scenario:
    g = OPEN_RAISE
    fr = "floor with->raise"

    def qb(family: str) -> list[Subject]:
        def with_(loops: int) -> Timed:
            b = opened_breaker(family)
            run = raise_with_loop(b, CircuitOpenError, loops)
            return Timed(run, check=still_open(b, loops))

        def call(loops: int) -> Timed:
            b = opened_breaker(family)
            run = raise_call_loop(lambda: b.call(work), CircuitOpenError, loops)
            return Timed(run, check=still_open(b, loops))

        return [
            Subject(g, f"{family} with->CircuitOpenError", family, with_, fr),
            Subject(g, f"{family} call(f)->CircuitOpenError", family, call, fr),
        ]

    def floor(loops: int) -> Timed:
        module = floor_module()
        return Timed(raise_with_loop(module.Floor(False), module.FloorRejected, loops))

    def pybreaker_call(loops: int) -> Timed:
        pybreaker = peer_module("pybreaker")
        cb = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=3600)
        cb.open()
        error = pybreaker.CircuitBreakerError
        return Timed(raise_call_loop(lambda: cb.call(work), error, loops))

    def circuitbreaker_decorator(loops: int) -> Timed:
        module = peer_module("circuitbreaker")
        cb = module.CircuitBreaker(failure_threshold=1, recovery_timeout=3600)
        try:
            cb(boom)()
        except Boom:
            pass
        error = module.CircuitBreakerError
        return Timed(raise_call_loop(cb(work), error, loops))

    def purgatory_with(loops: int) -> Timed:
        module = peer_module("purgatory")
        factory = module.SyncCircuitBreakerFactory(
            default_threshold=1, default_ttl=3600
        )
        brk = factory.get_breaker("bench-open")
        try:
            with brk:
                boom()
        except Boom:
            pass
        from purgatory.domain.model import OpenedState

        return Timed(raise_with_loop(brk, OpenedState, loops))

    subjects = [
        Subject(g, "empty loop", BARE, lambda n: Timed(empty_loop(n))),
        Subject(g, fr, FLOOR, floor),
        *qb(C),
        *qb(PY),
        Subject(g, "pybreaker call(f)->error", "pybreaker", pybreaker_call, fr),
        Subject(
            g,
            "circuitbreaker @circuit->error",
            "circuitbreaker",
            circuitbreaker_decorator,
            fr,
        ),
        Subject(g, "purgatory with->error", "purgatory", purgatory_with, fr),
    ]
    return Scenario(g, "open, raising rejection", "empty loop", False, tuple(subjects))


# half-open -------------------------------------------------------------------------


def _half_open() -> Scenario:
    g = HALF_OPEN
    ft = "floor acquire+release"

    def qb(family: str) -> Subject:
        def probes(loops: int) -> Timed:
            if loops >= PROBES:
                raise ValueError(f"a half-open round must stay under {PROBES} probes")
            b = new_breaker(
                family,
                max_failures=1,
                reset_timeout=0.001,
                half_open_max=PROBES,
                success_threshold=PROBES,
                half_open_timeout=3600,
            )

            def setup() -> None:
                b.reset()
                b.record_failure()
                # The 1 ms minimum reset timeout: wait it out, then move on
                # (a few ms with the coarse clock). Never timed.
                while b.state is not State.HALF_OPEN:
                    time.sleep(0.001)
                    b.renormalize()

            check = expect(
                lambda: b.state is State.HALF_OPEN, "the breaker left half-open"
            )
            return Timed(ticket_loop(b, loops), setup, check)

        return Subject(g, f"{family} acquire+release", family, probes, ft)

    subjects = [
        Subject(g, "bare f()", BARE, lambda n: Timed(bare_loop(n), lambda: None)),
        Subject(
            g,
            ft,
            FLOOR,
            lambda n: Timed(ticket_loop(floor_module().Floor(), n), lambda: None),
        ),
        qb(C),
        qb(PY),
    ]
    return Scenario(g, "half-open admission", "bare f()", True, tuple(subjects))


# failure path up to the trip -----------------------------------------------------


def _failure_trip() -> Scenario:
    g = FAILURE_TRIP
    ff = "floor allow+record_failure"

    def qb(family: str) -> Subject:
        def trip(loops: int) -> Timed:
            # max_failures equals the round: loops - 1 counted failures and
            # one trip (one clock read, one transition); setup closes it.
            b = new_breaker(family, max_failures=loops, reset_timeout=3600)
            check = expect(
                lambda: b.state is State.OPEN and b.totals().transitions >= 2,
                "the breaker did not trip",
            )
            return Timed(failure_loop(b, loops), b.reset, check)

        return Subject(g, f"{family} allow+record_failure", family, trip, ff)

    subjects = [
        Subject(g, "bare f()", BARE, lambda n: Timed(bare_loop(n), lambda: None)),
        Subject(
            g,
            ff,
            FLOOR,
            lambda n: Timed(failure_loop(floor_module().Floor(), n), lambda: None),
        ),
        qb(C),
        qb(PY),
    ]
    return Scenario(g, "failure path up to the trip", "bare f()", True, tuple(subjects))


SCENARIOS: tuple[Scenario, ...] = (
    _closed(),
    _closed_async(),
    _open_reject(),
    _open_raise(),
    _half_open(),
    _failure_trip(),
)
