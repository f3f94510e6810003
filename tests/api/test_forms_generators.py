"""``@breaker`` on generator and async generator functions. Both cores.

The ticket is taken at the first ``next()`` (``__anext__()``), released
exactly once on every path: exhaustion and the consumer's close are
successes, exceptions go through the outcome rules, a generator never
started takes nothing. Every test checks the totals, whose outcome counts
must add up to ``allowed``.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any

import pytest

from qbreaker import State
from qbreaker._errors import CircuitOpenError

from ..helpers import FakeClock, Impl


class Abort(BaseException):
    """A BaseException that is not an Exception, like KeyboardInterrupt."""


def counts(b: Any) -> tuple[int, int, int, int, int]:
    """(allowed, rejected, successes, failures, neutral)."""
    t = b.totals()
    return (t.allowed, t.rejected, t.successes, t.failures, t.neutral)


def make(impl: Impl, clock: FakeClock, *args: Any, **kwargs: Any) -> Any:
    return impl.Breaker(*args, clock=clock, **kwargs)


def half_open(impl: Impl, clock: FakeClock, **kwargs: Any) -> Any:
    """Half-open on its next admission; totals start at one failure."""
    b = make(impl, clock, 1, 10.0, kwargs.pop("half_open_max", 1), **kwargs)
    b.record_failure()
    clock.advance(10.0)
    return b


# -- generator functions ---------------------------------------------------------


def test_generator_exhaustion_is_success(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock)

    @b
    def count(n: int) -> Iterator[int]:
        yield from range(n)

    gen = count(3)
    assert counts(b) == (0, 0, 0, 0, 0)  # calling takes no ticket
    assert next(gen) == 0
    assert counts(b) == (1, 0, 0, 0, 0)  # the first next() does
    assert list(gen) == [1, 2]
    assert counts(b) == (1, 0, 1, 0, 0)
    assert list(count(0)) == []  # an empty generator is a success too
    assert counts(b) == (2, 0, 2, 0, 0)


def test_generator_return_value_passes_through(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock, is_failure_result=lambda r: True)

    @b
    def gen() -> Generator[int, None, str]:
        yield 1
        return "done"

    def consumer() -> Generator[int, None, str]:
        return (yield from gen())

    items = consumer()
    assert next(items) == 1
    with pytest.raises(StopIteration) as stop:
        next(items)
    assert stop.value.value == "done"
    # is_failure_result does not apply to generators.
    assert counts(b) == (1, 0, 1, 0, 0)


def test_generator_never_started_takes_nothing(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock)
    ran = []

    @b
    def gen() -> Iterator[int]:
        ran.append(1)
        yield 1

    g = gen()
    g.close()
    g = gen()
    del g
    gc.collect()
    assert ran == []
    assert counts(b) == (0, 0, 0, 0, 0)


def test_generator_close_is_success(impl: Impl, clock: FakeClock) -> None:
    b = half_open(impl, clock, half_open_max=1)
    cleaned = []

    @b
    def gen() -> Iterator[int]:
        try:
            yield 1
            yield 2
        finally:
            cleaned.append(True)

    g = gen()
    assert next(g) == 1
    assert b.acquire() == 0  # the probe slot is held while it iterates
    g.close()
    assert cleaned == [True]
    assert counts(b) == (1, 1, 1, 1, 0)
    assert b.state is State.CLOSED  # the probe succeeded (success_threshold 1)
    g.close()  # closing again releases nothing
    assert counts(b) == (1, 1, 1, 1, 0)


def test_generator_garbage_collected_unclosed_is_success(
    impl: Impl, clock: FakeClock
) -> None:
    b = make(impl, clock)
    cleaned = []

    @b
    def gen() -> Iterator[int]:
        try:
            yield 1
            yield 2
        finally:
            cleaned.append(True)

    g = gen()
    next(g)
    del g
    gc.collect()
    assert cleaned == [True]
    assert counts(b) == (1, 0, 1, 0, 0)


def test_generator_failure_during_iteration(impl: Impl, clock: FakeClock) -> None:
    seen: list[Any] = []
    b = make(impl, clock, 2, on_failure=lambda br, exc: seen.append(exc))

    @b
    def gen() -> Iterator[int]:
        yield 1
        raise ConnectionError("lost")

    for _ in range(2):
        g = gen()
        assert next(g) == 1
        with pytest.raises(ConnectionError):
            next(g)
    assert counts(b) == (2, 0, 0, 2, 0)
    assert [type(e) for e in seen] == [ConnectionError, ConnectionError]
    assert b.state is State.OPEN


def test_generator_failure_before_first_yield(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock)

    @b
    def gen(x: int) -> Iterator[int]:
        raise ValueError(x)
        yield  # pragma: no cover

    g = gen(1)
    with pytest.raises(ValueError):
        next(g)
    assert counts(b) == (1, 0, 0, 1, 0)


@pytest.mark.parametrize(
    "exc",
    [KeyError("excluded"), KeyboardInterrupt(), Abort(), GeneratorExit()],
    ids=["excluded", "KeyboardInterrupt", "BaseException", "own-GeneratorExit"],
)
def test_generator_neutral_exceptions(
    impl: Impl, clock: FakeClock, exc: BaseException
) -> None:
    """Neutral, including a GeneratorExit the generator raises on its own
    (not the consumer's close)."""
    b = half_open(impl, clock, exclude=[KeyError])

    @b
    def gen() -> Iterator[int]:
        yield 1
        raise exc

    g = gen()
    next(g)
    with pytest.raises(type(exc)):
        next(g)
    assert counts(b) == (1, 0, 0, 1, 1)
    assert b.state is State.HALF_OPEN
    assert b.acquire()  # the neutral outcome gave the probe slot back


def test_generator_failing_while_closed(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock)

    @b
    def raises_on_close() -> Iterator[int]:
        try:
            yield 1
        finally:
            raise OSError("cleanup failed")

    @b
    def ignores_close() -> Iterator[int]:
        try:
            yield 1
        except GeneratorExit:
            pass
        yield 2  # yields once after GeneratorExit; the collector's close ends it

    g = raises_on_close()
    next(g)
    with pytest.raises(OSError, match="cleanup failed"):
        g.close()
    h = ignores_close()
    next(h)
    with pytest.raises(RuntimeError, match="ignored GeneratorExit"):
        h.close()
    assert counts(b) == (2, 0, 0, 2, 0)


def test_generator_send_and_throw_pass_through(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock)

    @b
    def echo() -> Generator[Any, Any, str]:
        received = None
        while True:
            try:
                received = yield received
            except LookupError as exc:
                received = f"caught {exc!r}"
            if received == "stop":
                return "stopped"

    g = echo()
    assert g.send(None) is None
    assert g.send("a") == "a"
    assert next(g) is None
    assert g.throw(KeyError("k")) == "caught KeyError('k')"
    with pytest.raises(StopIteration) as stop:
        g.send("stop")
    assert stop.value.value == "stopped"
    assert counts(b) == (1, 0, 1, 0, 0)

    g = echo()
    next(g)
    with pytest.raises(ValueError):
        g.throw(ValueError("not caught"))  # propagates: a failure
    assert counts(b) == (2, 0, 1, 1, 0)


def test_generator_throw_returning_is_success(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock)

    @b
    def gen() -> Generator[int, None, str]:
        try:
            yield 1
        except ValueError:
            return "handled"
        return "not reached"  # pragma: no cover

    g = gen()
    next(g)
    with pytest.raises(StopIteration) as stop:
        g.throw(ValueError())
    assert stop.value.value == "handled"
    assert counts(b) == (1, 0, 1, 0, 0)


def test_generator_rejected_at_first_next(impl: Impl, clock: FakeClock) -> None:
    rejects: list[Any] = []
    b = make(impl, clock, on_reject=rejects.append)
    ran = []

    @b
    def gen() -> Iterator[int]:
        ran.append(1)
        yield 1

    b.force_open()
    g = gen()
    assert counts(b) == (0, 0, 0, 0, 0)
    with pytest.raises(CircuitOpenError):
        next(g)
    with pytest.raises(StopIteration):
        next(g)  # the generator is finished
    assert ran == []
    assert rejects == [b]
    assert counts(b) == (0, 1, 0, 0, 0)


def test_generator_fallback_is_iterated(impl: Impl, clock: FakeClock) -> None:
    def cached(prefix: str, *, n: int) -> Iterator[str]:
        for i in range(n):
            yield f"{prefix}{i}"

    b = make(impl, clock, fallback=cached)

    @b
    def rows(prefix: str, *, n: int) -> Iterator[str]:
        raise AssertionError("must not run")
        yield  # pragma: no cover

    b.force_open()
    assert list(rows("cached-", n=2)) == ["cached-0", "cached-1"]
    assert counts(b) == (0, 1, 0, 0, 0)

    lists = make(impl, clock, fallback=lambda *a, **k: [1, 2, 3])
    lists.force_open()
    assert list(lists(rows)("x", n=1)) == [1, 2, 3]


def test_generator_fallback_must_return_an_iterable(
    impl: Impl, clock: FakeClock
) -> None:
    b = make(impl, clock, fallback=lambda: 42)

    @b
    def gen() -> Iterator[int]:
        yield 1

    b.force_open()
    with pytest.raises(TypeError, match="must return an iterable, got 42"):
        next(gen())


def test_generator_with_async_fallback_is_refused(impl: Impl, clock: FakeClock) -> None:
    async def coroutine_fallback() -> list[int]:
        return []

    async def async_gen_fallback() -> AsyncIterator[int]:
        yield 1

    def gen() -> Iterator[int]:
        yield 1

    for fallback, kind in [
        (coroutine_fallback, "coroutine function"),
        (async_gen_fallback, "async generator function"),
    ]:
        b = make(impl, clock, fallback=fallback)
        with pytest.raises(TypeError, match=f"fallback .* {kind}.* generator"):
            b(gen)


def test_generator_probe_holds_the_slot_until_done(
    impl: Impl, clock: FakeClock
) -> None:
    b = half_open(impl, clock, half_open_max=2)

    @b
    def gen() -> Iterator[int]:
        yield 1
        yield 2

    g1, g2, g3 = gen(), gen(), gen()
    next(g1)
    next(g2)
    with pytest.raises(CircuitOpenError):
        next(g3)
    assert list(g1) == [2]
    assert list(g2) == [2]
    assert b.state is State.CLOSED
    assert counts(b) == (2, 1, 2, 1, 0)


def test_generator_metadata(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock)

    def lines(path: str, *, strip: bool = True) -> Iterator[str]:
        """Lines of a file."""
        yield path

    guarded = b(lines)
    assert guarded.__name__ == "lines"
    assert guarded.__qualname__ == lines.__qualname__
    assert guarded.__doc__ == "Lines of a file."
    assert guarded.__wrapped__ is lines
    assert inspect.isgeneratorfunction(guarded)
    assert inspect.signature(guarded) == inspect.signature(lines)
    assert b.name == lines.__qualname__


def test_generator_method(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock)

    class Source:
        items = (1, 2)

        @b
        def read(self) -> Iterator[int]:
            yield from self.items

    assert list(Source().read()) == [1, 2]
    assert counts(b) == (1, 0, 1, 0, 0)


# -- async generator functions ------------------------------------------------------


async def alist(agen: Any) -> list[Any]:
    return [item async for item in agen]


def test_async_generator_exhaustion_is_success(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock, is_failure_result=lambda r: True)

    @b
    async def count(n: int) -> AsyncIterator[int]:
        for i in range(n):
            await asyncio.sleep(0)
            yield i

    agen = count(3)
    assert counts(b) == (0, 0, 0, 0, 0)
    assert asyncio.run(alist(agen)) == [0, 1, 2]
    assert asyncio.run(alist(count(0))) == []
    assert counts(b) == (2, 0, 2, 0, 0)


def test_async_generator_never_started_takes_nothing(
    impl: Impl, clock: FakeClock
) -> None:
    b = make(impl, clock)

    @b
    async def agen() -> AsyncIterator[int]:
        yield 1

    g = agen()
    del g
    gc.collect()
    asyncio.run(agen().aclose())
    assert counts(b) == (0, 0, 0, 0, 0)


def test_async_generator_aclose_is_success(impl: Impl, clock: FakeClock) -> None:
    b = half_open(impl, clock, half_open_max=1)
    cleaned = []

    @b
    async def agen() -> AsyncIterator[int]:
        try:
            yield 1
            yield 2
        finally:
            await asyncio.sleep(0)  # an async cleanup runs under aclose()
            cleaned.append(True)

    async def main() -> None:
        g = agen()
        assert await g.__anext__() == 1
        assert b.acquire() == 0
        await g.aclose()
        await g.aclose()

    asyncio.run(main())
    assert cleaned == [True]
    assert counts(b) == (1, 1, 1, 1, 0)
    assert b.state is State.CLOSED


def test_async_generator_abandoned_is_closed_as_success(
    impl: Impl, clock: FakeClock
) -> None:
    """An ``async for`` left by ``break`` leaves the generator to the event
    loop's async-generator finalizer, which schedules its aclose()."""
    b = make(impl, clock)
    cleaned = []

    @b
    async def agen() -> AsyncIterator[int]:
        try:
            for i in range(10):
                yield i
        finally:
            cleaned.append(True)

    async def main() -> None:
        async for item in agen():
            if item == 2:
                break
        gc.collect()
        for _ in range(5):  # turns for the finalizer's aclose() task
            await asyncio.sleep(0)
        assert cleaned == [True]

    asyncio.run(main())
    assert cleaned == [True]
    assert counts(b) == (1, 0, 1, 0, 0)


def test_async_generator_failure(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock, 1)

    @b
    async def agen() -> AsyncIterator[int]:
        yield 1
        await asyncio.sleep(0)
        raise ConnectionError("lost")

    with pytest.raises(ConnectionError):
        asyncio.run(alist(agen()))
    assert counts(b) == (1, 0, 0, 1, 0)
    assert b.state is State.OPEN
    with pytest.raises(CircuitOpenError):
        asyncio.run(alist(agen()))
    assert counts(b) == (1, 1, 0, 1, 0)


@pytest.mark.parametrize(
    "exc",
    [KeyError("excluded"), Abort(), GeneratorExit()],
    ids=["excluded", "BaseException", "own-GeneratorExit"],
)
def test_async_generator_neutral_exceptions(
    impl: Impl, clock: FakeClock, exc: BaseException
) -> None:
    b = half_open(impl, clock, exclude=[KeyError])

    @b
    async def agen() -> AsyncIterator[int]:
        yield 1
        raise exc

    async def main() -> None:
        g = agen()
        await g.__anext__()
        with pytest.raises(type(exc)):
            await g.__anext__()

    asyncio.run(main())
    assert counts(b) == (1, 0, 0, 1, 1)
    assert b.state is State.HALF_OPEN


def test_async_generator_keyboard_interrupt_is_neutral(
    impl: Impl, clock: FakeClock
) -> None:
    b = make(impl, clock)

    @b
    async def agen() -> AsyncIterator[int]:
        yield 1
        raise KeyboardInterrupt

    # Driven by hand: asyncio.run gives KeyboardInterrupt special treatment.
    g = agen()
    with pytest.raises(StopIteration) as first:
        g.__anext__().send(None)
    assert first.value.value == 1
    with pytest.raises(KeyboardInterrupt):
        g.__anext__().send(None)
    assert counts(b) == (1, 0, 0, 0, 1)


def test_async_generator_cancelled_is_neutral(impl: Impl, clock: FakeClock) -> None:
    b = half_open(impl, clock, half_open_max=1)

    @b
    async def agen(started: asyncio.Event) -> AsyncIterator[int]:
        yield 1
        started.set()
        await asyncio.Event().wait()
        yield 2  # pragma: no cover

    async def main() -> None:
        started = asyncio.Event()
        g = agen(started)
        assert await g.__anext__() == 1

        async def step() -> Any:
            return await g.__anext__()

        task = asyncio.create_task(step())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert counts(b) == (1, 0, 0, 1, 1)
    assert b.state is State.HALF_OPEN


def test_async_generator_asend_and_athrow_pass_through(
    impl: Impl, clock: FakeClock
) -> None:
    b = make(impl, clock)

    @b
    async def echo() -> Any:
        received = None
        while True:
            try:
                received = yield received
            except LookupError as exc:
                received = f"caught {exc!r}"
            if received == "stop":
                return

    async def main() -> None:
        g = echo()
        assert await g.asend(None) is None
        assert await g.asend("a") == "a"
        assert await g.__anext__() is None
        assert await g.athrow(KeyError("k")) == "caught KeyError('k')"
        with pytest.raises(StopAsyncIteration):
            await g.asend("stop")
        assert counts(b) == (1, 0, 1, 0, 0)

        g = echo()
        await g.__anext__()
        with pytest.raises(ValueError):
            await g.athrow(ValueError("not caught"))
        assert counts(b) == (2, 0, 1, 1, 0)

    asyncio.run(main())


def test_async_generator_athrow_returning_is_success(
    impl: Impl, clock: FakeClock
) -> None:
    b = make(impl, clock)

    @b
    async def agen() -> AsyncIterator[int]:
        try:
            yield 1
        except ValueError:
            return

    async def main() -> None:
        g = agen()
        await g.__anext__()
        with pytest.raises(StopAsyncIteration):
            await g.athrow(ValueError())

    asyncio.run(main())
    assert counts(b) == (1, 0, 1, 0, 0)


def test_async_generator_failing_while_closed(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock)

    @b
    async def agen() -> AsyncIterator[int]:
        try:
            yield 1
        finally:
            raise OSError("cleanup failed")

    async def main() -> None:
        g = agen()
        await g.__anext__()
        with pytest.raises(OSError):
            await g.aclose()

    asyncio.run(main())
    assert counts(b) == (1, 0, 0, 1, 0)


def test_async_generator_rejected(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock)

    @b
    async def agen() -> AsyncIterator[int]:
        raise AssertionError("must not run")
        yield  # pragma: no cover

    b.force_open()
    g = agen()
    assert counts(b) == (0, 0, 0, 0, 0)
    with pytest.raises(CircuitOpenError):
        asyncio.run(alist(g))
    assert counts(b) == (0, 1, 0, 0, 0)


async def _async_rows(prefix: str) -> AsyncIterator[str]:
    yield f"{prefix}-a"
    yield f"{prefix}-b"


async def _awaitable_rows(prefix: str) -> list[str]:
    return [f"{prefix}-a", f"{prefix}-b"]


def _sync_rows(prefix: str) -> Iterator[str]:
    yield f"{prefix}-a"
    yield f"{prefix}-b"


class _AsyncIterable:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __aiter__(self) -> AsyncIterator[str]:
        return _async_rows(self.prefix)


@pytest.mark.parametrize(
    "fallback",
    [_async_rows, _awaitable_rows, _sync_rows, _AsyncIterable],
    ids=["async-generator", "coroutine", "generator", "async-iterable"],
)
def test_async_generator_fallbacks(impl: Impl, clock: FakeClock, fallback: Any) -> None:
    b = make(impl, clock, fallback=fallback)

    @b
    async def rows(prefix: str) -> AsyncIterator[str]:
        raise AssertionError("must not run")
        yield  # pragma: no cover

    b.force_open()
    assert asyncio.run(alist(rows("cached"))) == ["cached-a", "cached-b"]
    assert counts(b) == (0, 1, 0, 0, 0)


def test_async_generator_fallback_aclose(impl: Impl, clock: FakeClock) -> None:
    closed = []

    async def fallback() -> AsyncIterator[int]:
        try:
            yield 1
            yield 2
        finally:
            closed.append(True)

    b = make(impl, clock, fallback=fallback)

    @b
    async def agen() -> AsyncIterator[int]:
        yield 0

    async def main() -> None:
        g = agen()
        assert await g.__anext__() == 1
        await g.aclose()

    b.force_open()
    asyncio.run(main())
    assert closed == [True]
    assert counts(b) == (0, 1, 0, 0, 0)


def test_async_generator_fallback_must_return_an_iterable(
    impl: Impl, clock: FakeClock
) -> None:
    b = make(impl, clock, fallback=lambda: 42)

    @b
    async def agen() -> AsyncIterator[int]:
        yield 1

    b.force_open()
    with pytest.raises(TypeError, match="must return an iterable.*got 42"):
        asyncio.run(alist(agen()))


def test_async_generator_metadata(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock)

    async def stream(topic: str, *, batch: int = 10) -> AsyncIterator[bytes]:
        """Stream a topic."""
        yield topic.encode()

    guarded = b(stream)
    assert guarded.__name__ == "stream"
    assert guarded.__doc__ == "Stream a topic."
    assert guarded.__wrapped__ is stream
    assert inspect.isasyncgenfunction(guarded)
    assert inspect.signature(guarded) == inspect.signature(stream)
    assert b.name == stream.__qualname__
