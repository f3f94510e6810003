"""The call forms' correctness: a breaker used inside its own protected call,
pickling decorated functions, ``call()`` given an async function, early
closes of generators, and which forms run ``on_reject``. Both cores."""

from __future__ import annotations

import asyncio
import gc
import pickle
import warnings
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable

import pytest

from qbreaker import CircuitOpenError, State

from ..helpers import FakeClock, Impl
from . import pickled_work


def counts(b: Any) -> tuple[int, int, int, int, int]:
    """(allowed, rejected, successes, failures, neutral)."""
    t = b.totals()
    return (t.allowed, t.rejected, t.successes, t.failures, t.neutral)


def half_open(impl: Impl, clock: FakeClock, half_open_max: int = 1, **kw: Any) -> Any:
    """Half-open on its next admission; totals start at one failure."""
    b = impl.Breaker(1, 10.0, half_open_max, clock=clock, **kw)
    b.record_failure()
    clock.advance(10.0)
    return b


# -- the same breaker inside its own protected call ----------------------------


def _nested_forms(outer: Any, inner: Any) -> dict[str, Callable[[], Any]]:
    """Each form of protection by ``outer`` around a call protected by ``inner``."""

    def query() -> str:
        return inner.call(lambda: "row")

    @outer
    def decorated() -> str:
        return query()

    def with_block() -> str:
        with outer:
            return query()

    @outer
    async def decorated_async() -> str:
        return query()

    async def async_with() -> str:
        async with outer:
            return query()

    async def coroutine() -> str:
        return query()

    @outer
    def generator() -> Iterator[str]:
        yield query()

    return {
        "decorator": decorated,
        "call": lambda: outer.call(query),
        "with": with_block,
        "async decorator": lambda: asyncio.run(decorated_async()),
        "async with": lambda: asyncio.run(async_with()),
        "call_async": lambda: asyncio.run(outer.call_async(coroutine)),
        "generator": lambda: list(generator()),
    }


FORMS = [
    "decorator", "call", "with", "async decorator", "async with", "call_async",
    "generator",
]  # fmt: skip


@pytest.mark.parametrize("form", FORMS)
def test_own_rejection_inside_a_probe_is_neutral(
    impl: Impl, clock: FakeClock, form: str
) -> None:
    # The outer call holds the only probe slot, so the inner call is
    # rejected: that says nothing about the backend, and must not re-open
    # the breaker as the probe's failure.
    b = half_open(impl, clock)
    with pytest.raises(CircuitOpenError) as info:
        _nested_forms(b, b)[form]()
    assert info.value.state is State.HALF_OPEN
    assert b.state is State.HALF_OPEN
    assert counts(b) == (1, 1, 0, 1, 1)  # the probe: neutral, its slot free
    assert b.acquire() != 0


@pytest.mark.parametrize("form", FORMS)
def test_another_breakers_rejection_is_a_failure(
    impl: Impl, clock: FakeClock, form: str
) -> None:
    b = half_open(impl, clock)
    other = impl.Breaker(clock=clock)
    other.force_open()
    with pytest.raises(CircuitOpenError):
        _nested_forms(b, other)[form]()
    assert b.state is State.OPEN
    assert counts(b) == (1, 0, 0, 2, 0)


def test_nested_use_recovers_with_a_slot_per_level(
    impl: Impl, clock: FakeClock
) -> None:
    # The README's advice: each nesting level needs its own probe slot.
    b = half_open(impl, clock, half_open_max=2)

    @b
    def query() -> str:
        return "row"

    @b
    def get_user() -> str:
        return query()

    assert get_user() == "row"
    assert b.state is State.CLOSED


def test_own_rejection_keeps_the_other_outcome_rules(
    impl: Impl, clock: FakeClock
) -> None:
    # Neutral before is_failure and exclude are asked: they never see it.
    seen: list[BaseException] = []
    b = half_open(impl, clock, is_failure=lambda exc: seen.append(exc) or True)

    @b
    def query() -> str:
        return "row"

    @b
    def get_user() -> str:
        return query()

    with pytest.raises(CircuitOpenError):
        get_user()
    assert b.state is State.HALF_OPEN and seen == []


def test_an_unpickled_rejection_is_no_longer_the_breakers_own(impl: Impl) -> None:
    b = impl.Breaker()
    b.force_open()
    with pytest.raises(CircuitOpenError) as info:
        b.call(lambda: None)
    copy = pickle.loads(pickle.dumps(info.value))
    assert str(copy) == str(info.value) and copy._breaker is None
    with pytest.raises(CircuitOpenError):
        impl.Breaker(1).call(_raise, copy)


def _raise(exc: BaseException) -> None:
    raise exc


# -- pickling decorated functions ----------------------------------------------


def test_a_decorated_function_pickles_by_reference(impl: Impl) -> None:
    work = getattr(pickled_work, f"work_{impl.name}")
    assert isinstance(work.__wrapped__, type(pickled_work.plain))
    assert pickle.loads(pickle.dumps(work)) is work
    method = getattr(pickled_work.Service, f"triple_{impl.name}")
    assert pickle.loads(pickle.dumps(method)) is method
    bound = getattr(pickled_work.Service(), f"triple_{impl.name}")
    assert pickle.loads(pickle.dumps(bound))(2) == 6


def test_a_decorated_function_runs_in_a_process_pool(impl: Impl) -> None:
    work = getattr(pickled_work, f"work_{impl.name}")
    with ProcessPoolExecutor(max_workers=2) as pool:
        assert list(pool.map(work, range(5), timeout=60)) == [0, 2, 4, 6, 8]


def test_a_decorated_function_not_found_by_name_refuses_to_pickle(
    impl: Impl, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = impl.Breaker()

    @b
    def local(x: int) -> int:
        return x

    with pytest.raises(pickle.PicklingError, match="by reference.*local"):
        pickle.dumps(local)
    # Under another name: its own (pickled_work.plain) is the plain function.
    monkeypatch.setattr(pickled_work, "alias", b(pickled_work.plain), raising=False)
    with pytest.raises(pickle.PicklingError, match=r"pickled_work\.plain"):
        pickle.dumps(pickled_work.alias)  # type: ignore[attr-defined]


# -- call() refuses awaitables -------------------------------------------------


class _Awaitable:
    def __await__(self) -> Iterator[None]:
        yield None


@pytest.mark.parametrize("returns", ["coroutine function", "coroutine", "awaitable"])
def test_call_refuses_an_awaitable(impl: Impl, clock: FakeClock, returns: str) -> None:
    b = half_open(impl, clock)
    ran = []

    async def fetch() -> None:
        ran.append(True)
        raise ConnectionError

    fn: Callable[[], Any] = {
        "coroutine function": fetch,
        "coroutine": lambda: fetch(),
        "awaitable": _Awaitable,
    }[returns]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(TypeError, match="call_async"):
            b.call(fn)
        gc.collect()
    assert [str(w.message) for w in seen] == []  # no "... was never awaited"
    assert ran == []
    assert b.state is State.HALF_OPEN  # not closed by a success never seen
    assert counts(b) == (1, 0, 0, 1, 1)
    assert b.acquire() != 0  # the probe slot is free again


def test_call_still_returns_other_results(impl: Impl) -> None:
    b = impl.Breaker()
    assert b.call(lambda: 1) == 1
    assert b.call(iter, ()) is not None
    assert counts(b) == (2, 0, 2, 0, 0)


# -- generators closed early ---------------------------------------------------


def test_generator_closed_after_an_item_is_a_success(
    impl: Impl, clock: FakeClock
) -> None:
    b = half_open(impl, clock)

    @b
    def rows() -> Iterator[int]:
        yield 1
        yield 2

    for _ in rows():
        break
    assert b.state is State.CLOSED
    assert counts(b) == (1, 0, 1, 1, 0)


def test_generator_closed_before_its_first_item_takes_nothing(
    impl: Impl, clock: FakeClock
) -> None:
    b = half_open(impl, clock)

    @b
    def rows() -> Iterator[int]:
        yield 1

    g = rows()
    g.close()
    assert b.state is State.OPEN and counts(b) == (0, 0, 0, 1, 0)
    assert b.acquire() != 0  # the probe slot was never taken


def test_async_generator_closed_after_an_item_is_a_success(
    impl: Impl, clock: FakeClock
) -> None:
    b = half_open(impl, clock)

    @b
    async def rows() -> Any:
        yield 1
        yield 2

    async def main() -> None:
        g = rows()
        async for _ in g:
            break
        await g.aclose()

    asyncio.run(main())
    assert b.state is State.CLOSED
    assert counts(b) == (1, 0, 1, 1, 0)


# -- on_reject -----------------------------------------------------------------


def test_on_reject_runs_for_the_raising_forms_only(
    impl: Impl, clock: FakeClock
) -> None:
    rejected: list[Any] = []
    b = impl.Breaker(clock=clock, on_reject=rejected.append)
    b.force_open()

    async def coroutine() -> None:
        pass

    @b
    async def decorated_async() -> None:
        pass

    @b
    async def async_generator() -> Any:
        yield 1

    async def iterate_async() -> None:
        async for _ in async_generator():
            pass

    async def async_with() -> None:
        async with b:
            pass

    def with_block() -> None:
        with b:
            pass

    raising: dict[str, Callable[[], Any]] = {
        "call": lambda: b.call(lambda: None),
        "decorator": b(lambda: None),
        "with": with_block,
        "generator": lambda: list(b(lambda: (yield))()),
        "call_async": lambda: asyncio.run(b.call_async(coroutine)),
        "async decorator": lambda: asyncio.run(decorated_async()),
        "async with": lambda: asyncio.run(async_with()),
        "async generator": lambda: asyncio.run(iterate_async()),
    }
    for form, run in raising.items():
        with pytest.raises(CircuitOpenError):
            run()
        assert rejected == [b], form
        rejected.clear()
    # The non-raising forms report a rejection by their result alone.
    assert b.allow() is False and b.acquire() == 0
    assert rejected == []
    assert b.totals().rejected == len(raising) + 2
