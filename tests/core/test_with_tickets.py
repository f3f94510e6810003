"""Each ``with`` / ``async with`` block reports against the ticket it took.

Blocks of one context interleave when a generator or coroutine suspends inside
one: the stale outcome of an old block must neither take a newer block's
ticket nor leave records behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from qbreaker import State
from qbreaker._impl import twin as _core_py

from ..helpers import FakeClock, Impl


def counts(b: Any) -> tuple[int, int, int, int, int]:
    """(allowed, rejected, successes, failures, neutral)."""
    t = b.totals()
    return (t.allowed, t.rejected, t.successes, t.failures, t.neutral)


def open_blocks(impl: Impl) -> int:
    """How many with blocks this context has recorded open."""
    return int(impl.core.with_blocks()[0])


def next_generation(b: Any) -> None:
    """Two transitions: every ticket taken before is stale."""
    b.force_open()
    b.reset()


def stream(b: Any) -> Iterator[int]:
    """A block that spans a yield and then fails."""
    with b:
        yield 1
        raise ConnectionError("backend gone")


def test_suspended_generator_fails_stale_inside_a_new_block(
    impl: Impl, clock: FakeClock
) -> None:
    b = impl.Breaker(1, 60, 1, clock=clock)
    g = stream(b)
    next(g)  # its block holds a ticket of generation 0
    next_generation(b)
    with b:
        with pytest.raises(ConnectionError):
            next(g)
        assert b.state is State.CLOSED, "the stale failure took this block's ticket"
    assert b.state is State.CLOSED
    assert counts(b) == (2, 0, 1, 1, 0)
    assert open_blocks(impl) == 0


def test_generator_resumed_in_another_thread(impl: Impl, clock: FakeClock) -> None:
    """The thread resuming the generator is inside a block of its own."""
    b = impl.Breaker(1, 60, 1, clock=clock)
    g = stream(b)
    next(g)
    next_generation(b)
    seen: list[object] = []

    def resume() -> None:
        with b:
            with pytest.raises(ConnectionError):
                next(g)
            seen.append(b.state)
        seen.append(open_blocks(impl))

    worker = threading.Thread(target=resume)
    worker.start()
    worker.join(10)
    assert not worker.is_alive()
    assert seen == [State.CLOSED, 0]
    assert b.state is State.CLOSED
    assert counts(b) == (2, 0, 1, 1, 0)
    assert open_blocks(impl) == 0, "the generator's record stayed here"


def test_generator_from_a_finished_thread(impl: Impl, clock: FakeClock) -> None:
    """The context that entered the block is gone when its frame exits it."""
    b = impl.Breaker(1, 60, 1, clock=clock)
    g = stream(b)
    worker = threading.Thread(target=next, args=(g,))
    worker.start()
    worker.join(10)
    assert not worker.is_alive()
    next_generation(b)
    with b:
        with pytest.raises(ConnectionError):
            next(g)
        assert b.state is State.CLOSED, "the stale failure took this block's ticket"
    assert counts(b) == (2, 0, 1, 1, 0)
    assert open_blocks(impl) == 0


def test_async_generator_from_a_finished_task(impl: Impl, clock: FakeClock) -> None:
    b = impl.Breaker(1, 60, 1, clock=clock)

    async def feed() -> AsyncIterator[int]:
        async with b:
            yield 1
            raise ConnectionError("backend gone")

    async def main() -> None:
        g = feed()
        await asyncio.wait_for(asyncio.ensure_future(g.__anext__()), 10)
        next_generation(b)

        async def consume() -> None:
            async with b:
                with pytest.raises(ConnectionError):
                    await g.__anext__()
                assert b.state is State.CLOSED, "the stale failure took this ticket"

        await asyncio.wait_for(asyncio.ensure_future(consume()), 10)

    asyncio.run(main())
    assert b.state is State.CLOSED
    assert counts(b) == (2, 0, 1, 1, 0)


def test_nested_blocks_of_a_generator_interleaved_with_the_caller(
    impl: Impl, clock: FakeClock
) -> None:
    b = impl.Breaker(1, 60, 1, clock=clock)

    def nested() -> Iterator[int]:
        with b:
            with b:
                yield 1
                raise ConnectionError("backend gone")

    g = nested()
    next(g)  # two blocks of generation 0, one frame
    next_generation(b)
    with b:  # generation 2, the caller's frame
        with pytest.raises(ConnectionError):
            next(g)  # both stale: the inner failure, then the outer one
        assert b.state is State.CLOSED
        assert b.consecutive_failures == 0
    assert b.state is State.CLOSED
    assert counts(b) == (3, 0, 1, 2, 0)
    assert open_blocks(impl) == 0


@pytest.mark.skipif(sys.version_info < (3, 11), reason="create_task(context=) is 3.11+")
def test_tasks_sharing_one_context(impl: Impl, clock: FakeClock) -> None:
    """Task A's block (generation 0) fails while task B's (generation 2) is open."""
    b = impl.Breaker(1, 60, 1, clock=clock)

    async def main() -> None:
        ctx = contextvars.copy_context()
        a_in, b_in, a_go, b_go = (asyncio.Event() for _ in range(4))

        async def task_a() -> None:
            async with b:
                a_in.set()
                await a_go.wait()
                raise ValueError("A failed")

        async def task_b() -> None:
            async with b:
                b_in.set()
                await b_go.wait()

        loop = asyncio.get_running_loop()
        ta = loop.create_task(task_a(), context=ctx)
        await asyncio.wait_for(a_in.wait(), 10)
        next_generation(b)
        tb = loop.create_task(task_b(), context=ctx)
        await asyncio.wait_for(b_in.wait(), 10)
        a_go.set()
        with pytest.raises(ValueError):
            await asyncio.wait_for(ta, 10)
        assert b.state is State.CLOSED, "A's stale failure took B's ticket"
        b_go.set()
        await asyncio.wait_for(tb, 10)
        assert ctx.run(open_blocks, impl) == 0

    asyncio.run(main())
    assert b.state is State.CLOSED
    assert counts(b) == (2, 0, 1, 1, 0)


def test_coroutines_stepped_in_one_context(impl: Impl, clock: FakeClock) -> None:
    """The same interleaving without a loop, on every Python version."""
    b = impl.Breaker(1, 60, 1, clock=clock)

    class Suspend:
        def __await__(self) -> Iterator[None]:
            yield None

    async def first() -> None:
        async with b:
            await Suspend()
            raise ValueError("first failed")

    async def second() -> None:
        async with b:
            await Suspend()

    ctx = contextvars.copy_context()
    one, two = first(), second()
    ctx.run(one.send, None)
    next_generation(b)
    ctx.run(two.send, None)
    with pytest.raises(ValueError):
        ctx.run(one.send, None)
    assert b.state is State.CLOSED
    with pytest.raises(StopIteration):
        ctx.run(two.send, None)
    assert counts(b) == (2, 0, 1, 1, 0)
    assert ctx.run(open_blocks, impl) == 0


def test_abandoned_blocks_closed_elsewhere_leave_no_records(
    impl: Impl, clock: FakeClock
) -> None:
    """Generators dropped inside their blocks, collected in another thread.

    Each is closed there (its block exits with GeneratorExit, neutral); the
    records taken here must go, however many rounds.
    """
    b = impl.Breaker(1, 60, 1, clock=clock)
    per_round, rounds = 200, 6
    held = []
    for _ in range(rounds):
        gens = [stream(b) for _ in range(per_round)]
        for g in gens:
            next(g)
        del g
        worker = threading.Thread(target=gens.clear)
        worker.start()
        worker.join(10)
        assert not worker.is_alive() and not gens
        assert open_blocks(impl) == 0
        held.append(impl.core.with_blocks()[1])
    # The twin drops the closed records of a context lazily, at most about
    # twice the largest number open at once; the compiled core at once.
    assert max(held) <= 2 * per_round + 64, held
    assert counts(b) == (rounds * per_round, 0, 0, 0, rounds * per_round)
    with b:
        pass
    assert b.state is State.CLOSED
    assert counts(b)[2] == 1


def test_blocks_entered_by_hand_and_never_exited_are_bounded(
    impl: Impl, clock: FakeClock
) -> None:
    """A context keeps at most MAX_OPEN_BLOCKS records: the oldest half goes."""
    b = impl.Breaker(1, 60, 1, clock=clock)
    limit = _core_py.MAX_OPEN_BLOCKS

    def enter_forever() -> tuple[int, int]:
        for _ in range(limit + 100):
            b.__enter__()
        return impl.core.with_blocks()  # type: ignore[no-any-return]

    open_now, held = contextvars.Context().run(enter_forever)
    assert open_now == held == limit // 2 + 100
    assert counts(b) == (limit + 100, 0, 0, 0, 0)


def test_exit_stack_still_reports_its_own_ticket(impl: Impl, clock: FakeClock) -> None:
    """__exit__ from another frame than __enter__ takes the breaker's innermost
    block of its context (and leaves no record behind)."""
    b = impl.Breaker(1, 60, 1, clock=clock)
    before = open_blocks(impl)
    with pytest.raises(ConnectionError), contextlib.ExitStack() as stack:
        stack.enter_context(b)
        next_generation(b)
        raise ConnectionError("stale")
    assert b.state is State.CLOSED
    with pytest.raises(ConnectionError), contextlib.ExitStack() as stack:
        stack.enter_context(b)
        raise ConnectionError("fresh")
    assert b.state is State.OPEN
    assert open_blocks(impl) == before


def test_a_generator_finalized_inside_a_locked_section_exits_its_block() -> None:
    """The twin: the collector may finalize an abandoned generator while
    this thread holds the blocks' lock (any allocation can run it, and
    free-threaded builds do); its GeneratorExit exits its block and claims
    the lock again. Run in a child, so a deadlock is a failed test."""
    script = textwrap.dedent(
        """
        import gc
        from qbreaker._impl import twin

        b = twin.CircuitBreaker(1, 60, 1)

        def rows(holder):
            with b:
                yield 1
                yield 2

        holder = []
        g = rows(holder)
        holder.append(g)  # a cycle through its frame: only the collector frees it
        next(g)
        del g, holder
        gc.disable()
        with twin._BLOCKS.lock:
            gc.collect()
        print(b.state.name, b.totals().neutral)  # GeneratorExit: neutral
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["CLOSED", "1"]
