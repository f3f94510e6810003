"""What the benchmark times, and with what: the vocabulary of its subjects.

``python -m qbreaker bench`` and the pytest-benchmark suite in ``benchmarks/``
build their subjects from these pieces: the protected functions, the
implementations compared, and the shape of a subject and of a scenario
(``scenarios`` defines the scenarios themselves, ``loops`` the loops they
time). Nothing here imports a peer at module level: a peer is imported when
its subject is built, and a missing one is reported as :class:`Unavailable`.

Families:

- ``bare``: the reference itself;
- ``floor``: ``qbreaker._cli.bench._floor.Floor``, compiled methods that do
  nothing, the least any compiled breaker can cost;
- ``qbreaker-c`` / ``qbreaker-py``: the compiled class and the pure-Python twin;
- the peers: ``pybreaker``, ``circuitbreaker``, ``purgatory``, ``aiobreaker``.
"""

from __future__ import annotations

import importlib
import types
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from qbreaker import State

__all__ = (
    "BARE",
    "FAMILIES",
    "FLOOR",
    "PEERS",
    "PY",
    "Boom",
    "C",
    "Scenario",
    "Subject",
    "Timed",
    "Unavailable",
    "awork",
    "boom",
    "breaker_class",
    "expect",
    "closed_success",
    "compiled_class",
    "drive",
    "floor_module",
    "fresh",
    "new_breaker",
    "opened_breaker",
    "peer_module",
    "still_open",
    "twin_class",
    "work",
)

BARE = "bare"
FLOOR = "floor"
C = "qbreaker-c"
PY = "qbreaker-py"
PEERS = ("pybreaker", "circuitbreaker", "purgatory", "aiobreaker")
FAMILIES = (BARE, FLOOR, C, PY, *PEERS)


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
    """The compiled ``CircuitBreaker``, or Unavailable with the reason."""
    import qbreaker

    if qbreaker.IMPLEMENTATION == "cython":
        return qbreaker.CircuitBreaker
    # Only to tell the two reasons apart: the class itself stays unused.
    try:
        importlib.import_module("qbreaker._core_c")
    except ImportError as exc:
        raise Unavailable(f"the compiled core is not built ({exc})") from exc
    raise Unavailable("the compiled core is switched off (QBREAKER_NO_EXTENSIONS)")


def twin_class() -> Any:
    from qbreaker import PyCircuitBreaker

    return PyCircuitBreaker


def breaker_class(family: str) -> Any:
    """The class of family ``C`` or ``PY``."""
    return compiled_class() if family == C else twin_class()


def new_breaker(family: str, **settings: Any) -> Any:
    """A breaker of family ``C`` or ``PY`` with ``settings``."""
    return breaker_class(family)(**settings)


def opened_breaker(family: str, **settings: Any) -> Any:
    """A breaker of ``family`` that stays open for the whole run."""
    b = new_breaker(family, max_failures=1, reset_timeout=3600, **settings)  # an hour
    b.record_failure()
    return b


def floor_module() -> Any:
    """``qbreaker._cli.bench._floor``, or Unavailable (a pure-Python install)."""
    compiled_class()  # the same switch governs both
    try:
        return importlib.import_module(f"{__package__}._floor")
    except ImportError as exc:
        raise Unavailable(f"the floor is not built ({exc})") from exc


def peer_module(name: str) -> Any:
    """The peer library ``name``, or Unavailable."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise Unavailable(
            f'{name} is not installed (pip install "qbreaker[bench]")'
        ) from exc


# -- subjects and scenarios ----------------------------------------------------


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


def expect(cond: Callable[[], bool], what: str) -> Callable[[], None]:
    """A ``Timed.check`` that raises AssertionError(``what``) unless ``cond()``."""

    def check() -> None:
        if not cond():
            raise AssertionError(what)

    return check


def closed_success(b: Any, loops: int) -> Callable[[], None]:
    return expect(
        lambda: b.state is State.CLOSED and b.totals().successes >= loops,
        "the breaker left the closed state or counted no success",
    )


def still_open(b: Any, loops: int) -> Callable[[], None]:
    return expect(
        lambda: b.state is State.OPEN and b.totals().rejected >= loops,
        "the breaker did not stay open and reject",
    )


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
