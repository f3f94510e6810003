"""What the benchmark measures: scenarios, subjects and their loops, written once.

``python -m qbreaker bench`` (``_bench``) and the pytest-benchmark suite in
``benchmarks/`` both time the subjects defined here, so the two can never
disagree about what "the compiled pair" or "pybreaker's ``call(f)``" means.
Nothing here imports pytest, matplotlib or a peer at module level: a peer is
imported when its subject is built, and a missing one is reported as
:class:`Unavailable`.

A *scenario* (a ``group``) is one situation: the closed success path, an open
breaker's rejection, half-open probes... Every subject of a scenario runs the
same loop of ``loops`` operations around the same protected function, so its
cost over the scenario's *reference* (``bare f()``, or ``empty loop`` where
nothing is called) is what the protection adds. Families:

- ``bare``: the reference itself;
- ``floor``: ``qbreaker._floor.Floor``, compiled methods that do nothing, the
  least any compiled breaker can cost;
- ``qbreaker-c`` / ``qbreaker-py``: the compiled class and the pure-Python twin;
- the peers: ``pybreaker``, ``circuitbreaker``, ``purgatory``, ``aiobreaker``.
"""

from __future__ import annotations

import importlib
import itertools
import os
import time
import types
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

__all__ = (
    "CLOSED",
    "CLOSED_ASYNC",
    "FAILURE_TRIP",
    "FAMILIES",
    "HALF_OPEN",
    "LOOPS",
    "OPEN_RAISE",
    "OPEN_REJECT",
    "PEERS",
    "SCENARIOS",
    "Scenario",
    "Subject",
    "Timed",
    "Unavailable",
    "awork",
    "compiled_class",
    "drive",
    "floor_module",
    "fresh",
    "twin_class",
    "work",
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

BARE = "bare"
FLOOR = "floor"
C = "qbreaker-c"
PY = "qbreaker-py"
PEERS = ("pybreaker", "circuitbreaker", "purgatory", "aiobreaker")
FAMILIES = (BARE, FLOOR, C, PY, *PEERS)

# The widest half-open the packed word allows (INFLIGHT_MAX, HSUCC_MAX): a
# round of LOOPS probes never closes the breaker.
PROBES = 255


class Unavailable(Exception):
    """A subject that cannot run here (a peer not installed, no compiled core)."""


# -- the protected functions ---------------------------------------------------


def work() -> None:
    """The protected function: a plain Python call that does nothing."""


async def awork() -> None:
    """The protected coroutine function; it never suspends."""


class Boom(Exception):
    """What the protected function raises to trip a peer."""


def boom() -> None:
    raise Boom


F = TypeVar("F", bound=Callable[..., Any])


def fresh(fn: F) -> F:
    """``fn`` with a code object of its own.

    CPython 3.11+ specialises bytecode per code object: subjects sharing one
    loop would share its inline caches, and each would start by undoing the
    previous subject's specialisation. A real call site sees one type.
    """
    copy = types.FunctionType(
        fn.__code__.replace(),
        fn.__globals__,
        fn.__name__,
        fn.__defaults__,
        fn.__closure__,
    )
    return copy  # type: ignore[return-value]


def drive(coro_fn: Callable[[], Coroutine[Any, Any, Any]]) -> Callable[[], None]:
    """A synchronous round that runs ``coro_fn()`` to completion, with no loop.

    Every protected coroutine here completes without suspending, so one
    ``send(None)`` runs the whole round. An event loop would add tens of
    microseconds of scheduling per round: noise ten times the floor's cost.
    """

    def run() -> None:
        coro = coro_fn()
        try:
            coro.send(None)
        except StopIteration:
            return
        coro.close()
        raise RuntimeError(f"{coro_fn!r} suspended: it needs an event loop")

    return fresh(run)


# -- the implementations ---------------------------------------------------------


def compiled_class() -> Any:
    """``qbreaker._core_c.CircuitBreaker``, or Unavailable with the reason."""
    from ._impl import select as _core

    if _core.NO_EXTENSIONS:
        raise Unavailable("the compiled core is switched off (QBREAKER_NO_EXTENSIONS)")
    try:
        module = importlib.import_module("qbreaker._core_c")
    except ImportError as exc:
        raise Unavailable(f"the compiled core is not built ({exc})") from exc
    return module.CircuitBreaker


def twin_class() -> Any:
    from ._impl.twin import CircuitBreaker

    return CircuitBreaker


def floor_module() -> Any:
    """``qbreaker._floor``, or Unavailable (a pure-Python install)."""
    compiled_class()  # the same switch governs both
    try:
        return importlib.import_module("qbreaker._floor")
    except ImportError as exc:
        raise Unavailable(f"the floor is not built ({exc})") from exc


def _peer(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise Unavailable(
            f'{name} is not installed (pip install "qbreaker[bench]")'
        ) from exc


def _breaker(family: str, **settings: Any) -> Any:
    cls = compiled_class() if family == C else twin_class()
    return cls(**settings)


# -- the loops -------------------------------------------------------------------
#
# Each builder returns a fresh function (see ``fresh``) that performs ``loops``
# operations. The breaker is reached the way a caller reaches it, attribute
# lookup included: ``b.allow()``, not a pre-bound ``allow()``.


def _bare_loop(loops: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(loops):
            work()

    return fresh(run)


def _empty_loop(loops: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(loops):
            pass

    return fresh(run)


def _pair_loop(b: Any, loops: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(loops):
            if b.allow():
                work()
                b.record_success()

    return fresh(run)


def _failure_loop(b: Any, loops: int) -> Callable[[], None]:
    # The protected function does not raise: a raise-and-catch would swamp
    # the breaker's own cost (raising belongs to the open-raise scenario).
    def run() -> None:
        for _ in range(loops):
            if b.allow():
                work()
                b.record_failure()

    return fresh(run)


def _ticket_loop(b: Any, loops: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(loops):
            t = b.acquire()
            if t:
                work()
                b.release(t, True)

    return fresh(run)


def _with_loop(cm: Any, loops: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(loops):
            with cm:
                work()

    return fresh(run)


def _call_loop(b: Any, loops: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(loops):
            b.call(work)

    return fresh(run)


def _wrapped_loop(g: Callable[[], Any], loops: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(loops):
            g()

    return fresh(run)


def _raise_with_loop(
    cm: Any, error: type[BaseException], loops: int
) -> Callable[[], None]:
    def run() -> None:
        for _ in range(loops):
            try:
                with cm:
                    work()
            except error:
                pass

    return fresh(run)


def _raise_call_loop(
    call: Callable[[], Any], error: type[BaseException], loops: int
) -> Callable[[], None]:
    def run() -> None:
        for _ in range(loops):
            try:
                call()
            except error:
                pass

    return fresh(run)


def _bare_await(loops: int) -> Callable[[], None]:
    async def run() -> None:
        for _ in range(loops):
            await awork()

    return drive(fresh(run))


def _pair_await(b: Any, loops: int) -> Callable[[], None]:
    async def run() -> None:
        for _ in range(loops):
            if b.allow():
                await awork()
                b.record_success()

    return drive(fresh(run))


def _wrapped_await(g: Callable[[], Awaitable[Any]], loops: int) -> Callable[[], None]:
    async def run() -> None:
        for _ in range(loops):
            await g()

    return drive(fresh(run))


def _call_async_loop(b: Any, loops: int) -> Callable[[], None]:
    async def run() -> None:
        for _ in range(loops):
            await b.call_async(awork)

    return drive(fresh(run))


def _async_with_loop(cm: Any, loops: int) -> Callable[[], None]:
    async def run() -> None:
        for _ in range(loops):
            async with cm:
                await awork()

    return drive(fresh(run))


# -- subjects and scenarios --------------------------------------------------------


@dataclass(frozen=True)
class Timed:
    """One subject, ready to time.

    ``run()`` performs one round of ``loops`` operations. ``setup()``, if
    any, restores the state a round needs and is never timed; a scenario
    whose subjects need it times every round on its own. ``check()`` raises
    AssertionError if the subject did not do what it claims (a breaker that
    tripped during a success benchmark measured the wrong path).
    """

    run: Callable[[], None]
    setup: Callable[[], object] | None = None
    check: Callable[[], None] | None = None


@dataclass(frozen=True)
class Subject:
    """``name`` ("qbreaker-c with"), timed in ``group`` by ``build(loops)``.

    ``floor`` names the floor subject whose overhead this one's is compared
    with: the same form where the floor has it, else the floor pair.
    """

    group: str
    name: str
    family: str
    build: Callable[[int], Timed]
    floor: str | None = None

    @property
    def form(self) -> str:
        return self.name.split(" ", 1)[1] if " " in self.name else self.name


@dataclass(frozen=True)
class Scenario:
    group: str
    title: str
    reference: str
    # True: state is restored before every round (half-open, failure-trip),
    # so every subject is timed one round at a time, baselines included.
    per_round_setup: bool
    subjects: tuple[Subject, ...] = field(default_factory=tuple)

    def subject(self, name: str) -> Subject:
        for s in self.subjects:
            if s.name == name:
                return s
        raise KeyError(name)


def _check(cond: Callable[[], bool], what: str) -> Callable[[], None]:
    def check() -> None:
        if not cond():
            raise AssertionError(what)

    return check


def _closed_success(b: Any, loops: int) -> Callable[[], None]:
    from ._state import State

    return _check(
        lambda: b.state is State.CLOSED and b.totals().successes >= loops,
        "the breaker left the closed state or counted no success",
    )


# closed ------------------------------------------------------------------------


def _closed() -> Scenario:
    g = CLOSED
    fp, ft, fw = "floor allow+record", "floor acquire+release", "floor with"

    def qb(family: str) -> list[Subject]:
        def pair(loops: int) -> Timed:
            b = _breaker(family)
            return Timed(_pair_loop(b, loops), check=_closed_success(b, loops))

        def ticket(loops: int) -> Timed:
            b = _breaker(family)
            return Timed(_ticket_loop(b, loops), check=_closed_success(b, loops))

        def with_(loops: int) -> Timed:
            b = _breaker(family)
            return Timed(_with_loop(b, loops), check=_closed_success(b, loops))

        def decorator(loops: int) -> Timed:
            b = _breaker(family)
            return Timed(_wrapped_loop(b(work), loops), check=_closed_success(b, loops))

        def call(loops: int) -> Timed:
            b = _breaker(family)
            return Timed(_call_loop(b, loops), check=_closed_success(b, loops))

        return [
            Subject(g, f"{family} allow+record", family, pair, fp),
            Subject(g, f"{family} acquire+release", family, ticket, ft),
            Subject(g, f"{family} with", family, with_, fw),
            Subject(g, f"{family} @breaker", family, decorator, fp),
            Subject(g, f"{family} call(f)", family, call, fp),
        ]

    def pybreaker_call(loops: int) -> Timed:
        cb = _peer("pybreaker").CircuitBreaker(fail_max=5, reset_timeout=60)
        return Timed(_call_loop(cb, loops))

    def pybreaker_decorator(loops: int) -> Timed:
        cb = _peer("pybreaker").CircuitBreaker(fail_max=5, reset_timeout=60)
        return Timed(_wrapped_loop(cb(work), loops))

    def circuitbreaker_decorator(loops: int) -> Timed:
        circuit = _peer("circuitbreaker").circuit
        g = circuit(failure_threshold=5, recovery_timeout=60)(work)
        return Timed(_wrapped_loop(g, loops))

    def purgatory_with(loops: int) -> Timed:
        factory = _peer("purgatory").SyncCircuitBreakerFactory(default_threshold=5)
        return Timed(_with_loop(factory.get_breaker("bench-with"), loops))

    def purgatory_decorator(loops: int) -> Timed:
        factory = _peer("purgatory").SyncCircuitBreakerFactory(default_threshold=5)
        return Timed(_wrapped_loop(factory("bench-decorator")(work), loops))

    subjects = [
        Subject(g, "bare f()", BARE, lambda n: Timed(_bare_loop(n))),
        Subject(g, fp, FLOOR, lambda n: Timed(_pair_loop(floor_module().Floor(), n))),
        Subject(g, ft, FLOOR, lambda n: Timed(_ticket_loop(floor_module().Floor(), n))),
        Subject(
            g, fw, FLOOR, lambda n: Timed(_with_loop(floor_module().NullContext(), n))
        ),
        # Not a reference of any target: the price of calling f from C.
        Subject(
            g,
            "floor call(f)",
            FLOOR,
            lambda n: Timed(_call_loop(floor_module().Floor(), n)),
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
            b = _breaker(C, **settings)
            return Timed(_pair_loop(b, loops), check=_closed_success(b, loops))

        return build

    def shared(loops: int) -> Timed:
        from . import shared as shared_module

        name = f"qbreaker-bench-{os.getpid()}-{next(_segments)}"
        b = _breaker(C, shared=name)
        # The mapping lives as long as the breaker; the file need not.
        shared_module.unlink(name)
        return Timed(_pair_loop(b, loops), check=_closed_success(b, loops))

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
            b = _breaker(family)
            return Timed(_pair_await(b, loops), check=_closed_success(b, loops))

        def decorator(loops: int) -> Timed:
            b = _breaker(family)
            return Timed(
                _wrapped_await(b(awork), loops), check=_closed_success(b, loops)
            )

        def call_async(loops: int) -> Timed:
            b = _breaker(family)
            return Timed(_call_async_loop(b, loops), check=_closed_success(b, loops))

        def async_with(loops: int) -> Timed:
            b = _breaker(family)
            return Timed(_async_with_loop(b, loops), check=_closed_success(b, loops))

        return [
            Subject(g, f"{family} allow+record", family, pair, fp),
            Subject(g, f"{family} async @breaker", family, decorator, fp),
            Subject(g, f"{family} call_async(f)", family, call_async, fp),
            Subject(g, f"{family} async with", family, async_with, fp),
        ]

    def aiobreaker_call(loops: int) -> Timed:
        cb = _peer("aiobreaker").CircuitBreaker(fail_max=5)
        return Timed(_call_async_loop(cb, loops))

    def aiobreaker_decorator(loops: int) -> Timed:
        cb = _peer("aiobreaker").CircuitBreaker(fail_max=5)
        return Timed(_wrapped_await(cb(awork), loops))

    def circuitbreaker_decorator(loops: int) -> Timed:
        circuit = _peer("circuitbreaker").circuit
        g = circuit(failure_threshold=5, recovery_timeout=60)(awork)
        return Timed(_wrapped_await(g, loops))

    def purgatory_async_with(loops: int) -> Timed:
        factory = _peer("purgatory").AsyncCircuitBreakerFactory(default_threshold=5)
        brk: list[Any] = []

        async def get() -> None:
            brk.append(await factory.get_breaker("bench-async-with"))

        drive(get)()
        return Timed(_async_with_loop(brk[0], loops))

    subjects = [
        Subject(g, "bare await f()", BARE, lambda n: Timed(_bare_await(n))),
        Subject(g, fp, FLOOR, lambda n: Timed(_pair_await(floor_module().Floor(), n))),
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


def _opened(family: str) -> Any:
    # An hour's reset timeout keeps it open for the whole run.
    b = _breaker(family, max_failures=1, reset_timeout=3600)
    b.record_failure()
    return b


def _still_open(b: Any, loops: int) -> Callable[[], None]:
    from ._state import State

    return _check(
        lambda: b.state is State.OPEN and b.totals().rejected >= loops,
        "the breaker did not stay open and reject",
    )


def _open_reject() -> Scenario:
    g = OPEN_REJECT
    fr = "floor allow()->False"

    def qb(family: str) -> Subject:
        def reject(loops: int) -> Timed:
            b = _opened(family)
            # The closed scenario's loop: only the answer of allow() differs.
            return Timed(_pair_loop(b, loops), check=_still_open(b, loops))

        return Subject(g, f"{family} allow()->False", family, reject, fr)

    subjects = [
        Subject(g, "empty loop", BARE, lambda n: Timed(_empty_loop(n))),
        Subject(g, "bare f()", BARE, lambda n: Timed(_bare_loop(n))),
        Subject(
            g, fr, FLOOR, lambda n: Timed(_pair_loop(floor_module().Floor(False), n))
        ),
        qb(C),
        qb(PY),
    ]
    return Scenario(
        g, "open, non-raising rejection", "empty loop", False, tuple(subjects)
    )


def _open_raise() -> Scenario:
    g = OPEN_RAISE
    fr = "floor with->raise"

    def qb(family: str) -> list[Subject]:
        from ._errors import CircuitOpenError

        def with_(loops: int) -> Timed:
            b = _opened(family)
            run = _raise_with_loop(b, CircuitOpenError, loops)
            return Timed(run, check=_still_open(b, loops))

        def call(loops: int) -> Timed:
            b = _opened(family)
            run = _raise_call_loop(lambda: b.call(work), CircuitOpenError, loops)
            return Timed(run, check=_still_open(b, loops))

        return [
            Subject(g, f"{family} with->CircuitOpenError", family, with_, fr),
            Subject(g, f"{family} call(f)->CircuitOpenError", family, call, fr),
        ]

    def floor(loops: int) -> Timed:
        module = floor_module()
        return Timed(_raise_with_loop(module.Floor(False), module.FloorRejected, loops))

    def pybreaker_call(loops: int) -> Timed:
        pybreaker = _peer("pybreaker")
        cb = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=3600)
        cb.open()
        error = pybreaker.CircuitBreakerError
        return Timed(_raise_call_loop(lambda: cb.call(work), error, loops))

    def circuitbreaker_decorator(loops: int) -> Timed:
        module = _peer("circuitbreaker")
        cb = module.CircuitBreaker(failure_threshold=1, recovery_timeout=3600)
        try:
            cb(boom)()
        except Boom:
            pass
        error = module.CircuitBreakerError
        return Timed(_raise_call_loop(cb(work), error, loops))

    def purgatory_with(loops: int) -> Timed:
        module = _peer("purgatory")
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

        return Timed(_raise_with_loop(brk, OpenedState, loops))

    subjects = [
        Subject(g, "empty loop", BARE, lambda n: Timed(_empty_loop(n))),
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
            from ._state import State

            if loops >= PROBES:
                raise ValueError(f"a half-open round must stay under {PROBES} probes")
            b = _breaker(
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

            check = _check(
                lambda: b.state is State.HALF_OPEN, "the breaker left half-open"
            )
            return Timed(_ticket_loop(b, loops), setup, check)

        return Subject(g, f"{family} acquire+release", family, probes, ft)

    subjects = [
        Subject(g, "bare f()", BARE, lambda n: Timed(_bare_loop(n), lambda: None)),
        Subject(
            g,
            ft,
            FLOOR,
            lambda n: Timed(_ticket_loop(floor_module().Floor(), n), lambda: None),
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
            from ._state import State

            # max_failures equals the round: loops - 1 counted failures and
            # one trip (one clock read, one transition); setup closes it.
            b = _breaker(family, max_failures=loops, reset_timeout=3600)
            check = _check(
                lambda: b.state is State.OPEN and b.totals().transitions >= 2,
                "the breaker did not trip",
            )
            return Timed(_failure_loop(b, loops), b.reset, check)

        return Subject(g, f"{family} allow+record_failure", family, trip, ff)

    subjects = [
        Subject(g, "bare f()", BARE, lambda n: Timed(_bare_loop(n), lambda: None)),
        Subject(
            g,
            ff,
            FLOOR,
            lambda n: Timed(_failure_loop(floor_module().Floor(), n), lambda: None),
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
