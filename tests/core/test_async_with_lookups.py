"""``__aenter__``/``__aexit__`` reached every way, not only by ``async with``.

The compiled core pairs the two objects one ``async with`` statement looks
up, so the block's ticket travels from one to the other; any other way of
looking them up or calling them keeps the ticket in the with-ticket store.
Each test holds on both cores: the block reports against its own ticket
(a max_failures=1 breaker stays closed on a stale failure, opens on a
current one), and no record or reference is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
import weakref
from typing import Any

import pytest

from qbreaker import State

from ..helpers import FakeClock, Impl


def counts(b: Any) -> tuple[int, int, int, int, int]:
    """(allowed, rejected, successes, failures, neutral)."""
    t = b.totals()
    return (t.allowed, t.rejected, t.successes, t.failures, t.neutral)


def open_blocks(impl: Impl) -> int:
    return int(impl.core.with_blocks()[0])


def next_generation(b: Any) -> None:
    """Two transitions: every ticket taken before is stale."""
    b.force_open()
    b.reset()


def strict(impl: Impl, clock: FakeClock) -> Any:
    """One current failure opens it."""
    return impl.Breaker(1, 60, 1, clock=clock)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_looked_up_by_hand_in_statement_order(impl: Impl, clock: FakeClock) -> None:
    b = strict(impl, clock)

    async def main() -> None:
        enter, exit_ = b.__aenter__, b.__aexit__
        await enter()
        next_generation(b)
        await exit_(ValueError, ValueError("stale"), None)

    run(main())
    assert b.state is State.CLOSED, "the stale failure took the current generation"
    assert counts(b) == (1, 0, 0, 1, 0)
    assert open_blocks(impl) == 0


def test_current_failure_through_hand_lookups_opens(
    impl: Impl, clock: FakeClock
) -> None:
    b = strict(impl, clock)

    async def main() -> None:
        enter, exit_ = b.__aenter__, b.__aexit__
        await enter()
        await exit_(ValueError, ValueError("current"), None)

    run(main())
    assert b.state is State.OPEN
    assert open_blocks(impl) == 0


def test_entered_by_hand_exited_by_a_later_lookup(impl: Impl, clock: FakeClock) -> None:
    b = strict(impl, clock)

    async def main() -> None:
        await b.__aenter__()
        next_generation(b)
        await b.__aexit__(ValueError, ValueError("stale"), None)

    run(main())
    assert b.state is State.CLOSED
    assert counts(b) == (1, 0, 0, 1, 0)
    assert open_blocks(impl) == 0


def test_the_class_methods_called_with_the_breaker(
    impl: Impl, clock: FakeClock
) -> None:
    b = strict(impl, clock)
    cls = type(b)

    async def main() -> None:
        await cls.__aenter__(b)
        next_generation(b)
        await cls.__aexit__(b, ValueError, ValueError("stale"), None)
        await cls.__aenter__(b)
        await cls.__aexit__(b, None, None, None)

    run(main())
    assert b.state is State.CLOSED
    assert counts(b) == (2, 0, 1, 1, 0)
    assert open_blocks(impl) == 0


def test_async_exit_stack(impl: Impl, clock: FakeClock) -> None:
    b = strict(impl, clock)

    async def main() -> None:
        with pytest.raises(ValueError):
            async with contextlib.AsyncExitStack() as stack:
                await stack.enter_async_context(b)
                raise ValueError("current")

    run(main())
    assert b.state is State.OPEN
    assert open_blocks(impl) == 0


def test_entered_twice_through_one_lookup(impl: Impl, clock: FakeClock) -> None:
    b = impl.Breaker(5, 60, 1, clock=clock)

    async def main() -> None:
        enter, exit_ = b.__aenter__, b.__aexit__
        await enter()
        await enter()
        await exit_(None, None, None)
        await exit_(None, None, None)

    run(main())
    assert counts(b) == (2, 0, 2, 0, 0)
    assert open_blocks(impl) == 0


def test_a_dangling_lookup_pairs_with_nothing(impl: Impl, clock: FakeClock) -> None:
    """An __aenter__ looked up and dropped, another breaker's block, then a
    hand exit: each block keeps its own ticket."""
    a, b = strict(impl, clock), strict(impl, clock)

    async def main() -> None:
        assert hasattr(a, "__aenter__")
        dangling = a.__aenter__
        async with b:
            pass
        await dangling()
        next_generation(a)
        async with b:
            await a.__aexit__(ValueError, ValueError("stale"), None)

    run(main())
    assert a.state is State.CLOSED
    assert counts(a) == (1, 0, 0, 1, 0)
    assert counts(b) == (2, 0, 2, 0, 0)
    assert open_blocks(impl) == 0


def test_exit_dropped_after_entering_leaves_the_block_open(
    impl: Impl, clock: FakeClock
) -> None:
    """A paired __aexit__ dropped unused: its block is still found by an exit
    from the frame that entered it."""
    b = strict(impl, clock)

    async def main() -> None:
        enter, exit_ = b.__aenter__, b.__aexit__
        await enter()
        del enter, exit_
        gc.collect()
        assert open_blocks(impl) in (0, 1)  # kept by the store either way
        next_generation(b)
        await b.__aexit__(ValueError, ValueError("stale"), None)

    run(main())
    assert b.state is State.CLOSED
    assert counts(b) == (1, 0, 0, 1, 0)
    assert open_blocks(impl) == 0


def test_lookups_in_two_threads_do_not_pair(impl: Impl, clock: FakeClock) -> None:
    """__aenter__ looked up here, __aexit__ of the same breaker in another
    thread between that lookup and the call: this block keeps its ticket."""
    b = strict(impl, clock)
    other: list[Any] = []

    async def main() -> None:
        enter = b.__aenter__
        worker = threading.Thread(target=lambda: other.append(b.__aexit__))
        worker.start()
        worker.join(10)
        assert not worker.is_alive()
        await enter()
        next_generation(b)
        await b.__aexit__(ValueError, ValueError("stale"), None)

    run(main())
    assert b.state is State.CLOSED
    assert counts(b) == (1, 0, 0, 1, 0)
    assert open_blocks(impl) == 0


def test_no_reference_to_the_breaker_is_left(impl: Impl, clock: FakeClock) -> None:
    b = impl.Breaker(5, 60, 1, clock=clock)
    ref = weakref.ref(b)

    async def main(b: Any) -> None:
        async with b:
            pass
        assert b.__aenter__ is not None  # looked up, never called
        await b.__aenter__()
        await b.__aexit__(None, None, None)

    run(main(b))
    del b
    gc.collect()
    assert ref() is None


@pytest.mark.parametrize(
    "call",
    [
        lambda b: b.__aenter__(1),
        lambda b: b.__aexit__(None),
        lambda b: b.__aexit__(None, None, None, None),
        lambda b: type(b).__aenter__(object()),
    ],
    ids=["aenter-arg", "aexit-one-arg", "aexit-four-args", "aenter-not-a-breaker"],
)
def test_bad_arguments_are_type_errors(impl: Impl, clock: FakeClock, call: Any) -> None:
    b = impl.Breaker(5, 60, 1, clock=clock)
    with pytest.raises((TypeError, AttributeError)):
        made = call(b)
        run(made)
    assert counts(b) == (0, 0, 0, 0, 0)
