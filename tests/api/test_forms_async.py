"""Async forms: ``@breaker`` on coroutine functions, ``call_async``, ``async
with``, and the decorator's dispatch and fallback checks. Both cores.

No test sleeps: ``asyncio.sleep(0)`` only hands the loop a turn, and the
clock is a FakeClock.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import inspect
import sys
import warnings
from typing import Any

import pytest

from qbreaker import State
from qbreaker._errors import CircuitOpenError
from qbreaker._impl.wrappers import decorate

from ..helpers import FakeClock, Impl


class Abort(BaseException):
    """A BaseException that is not an Exception, like KeyboardInterrupt."""


def counts(b: Any) -> tuple[int, int, int, int, int]:
    """(allowed, rejected, successes, failures, neutral)."""
    t = b.totals()
    return (t.allowed, t.rejected, t.successes, t.failures, t.neutral)


def make(impl: Impl, clock: FakeClock, *args: Any, **kwargs: Any) -> Any:
    return impl.Breaker(*args, clock=clock, **kwargs)


def opened(impl: Impl, clock: FakeClock, **kwargs: Any) -> Any:
    """A breaker that has just opened (max_failures=1, reset_timeout=10).

    Its totals start at one failure, the one that opened it.
    """
    b = make(impl, clock, 1, 10.0, kwargs.pop("half_open_max", 3), **kwargs)
    b.record_failure()
    assert b.state is State.OPEN
    return b


def half_open(impl: Impl, clock: FakeClock, **kwargs: Any) -> Any:
    """A breaker whose next admission is its first half-open probe."""
    b = opened(impl, clock, **kwargs)
    clock.advance(10.0)
    return b


def run_sync(coro: Any) -> Any:
    """Drive a coroutine that never suspends, without an event loop."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise AssertionError("the coroutine suspended")


# -- @breaker on a coroutine function ---------------------------------------------


def test_async_success(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock)

    @b
    async def double(x: int, *, y: int = 0) -> int:
        await asyncio.sleep(0)
        return 2 * x + y

    assert asyncio.run(double(3, y=1)) == 7
    assert counts(b) == (1, 0, 1, 0, 0)


def test_async_ticket_is_taken_when_the_coroutine_runs(
    impl: Impl, clock: FakeClock
) -> None:
    b = make(impl, clock)

    @b
    async def f() -> int:
        return 1

    coro = f()
    assert counts(b) == (0, 0, 0, 0, 0)
    coro.close()  # never started: nothing taken, nothing released
    assert counts(b) == (0, 0, 0, 0, 0)
    assert run_sync(f()) == 1
    assert counts(b) == (1, 0, 1, 0, 0)


def test_async_failure(impl: Impl, clock: FakeClock) -> None:
    seen: list[Any] = []
    b = make(impl, clock, 2, on_failure=lambda br, exc: seen.append(exc))

    @b
    async def boom() -> None:
        await asyncio.sleep(0)
        raise ValueError("backend down")

    for _ in range(2):
        with pytest.raises(ValueError, match="backend down"):
            asyncio.run(boom())
    assert counts(b) == (2, 0, 0, 2, 0)
    assert b.state is State.OPEN
    assert [type(e) for e in seen] == [ValueError, ValueError]
    with pytest.raises(CircuitOpenError):
        asyncio.run(boom())
    assert counts(b) == (2, 1, 0, 2, 0)


def test_async_excluded_exception_is_neutral(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock, 1, exclude=[KeyError])

    @b
    async def missing() -> None:
        raise KeyError("nope")

    with pytest.raises(KeyError):
        asyncio.run(missing())
    assert counts(b) == (1, 0, 0, 0, 1)
    assert b.state is State.CLOSED


def test_async_is_failure_predicate(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock, is_failure=lambda exc: not isinstance(exc, LookupError))

    @b
    async def f(exc: Exception) -> None:
        raise exc

    with pytest.raises(IndexError):
        run_sync(f(IndexError()))
    with pytest.raises(RuntimeError):
        run_sync(f(RuntimeError()))
    assert counts(b) == (2, 0, 1, 1, 0)


def test_async_is_failure_result(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock, 2, is_failure_result=lambda status: status >= 500)

    @b
    async def status(code: int) -> int:
        return code

    assert run_sync(status(200)) == 200
    assert run_sync(status(503)) == 503  # returned, but counted as a failure
    assert counts(b) == (2, 0, 1, 1, 0)
    assert b.consecutive_failures == 1


def test_async_base_exception_is_neutral(impl: Impl, clock: FakeClock) -> None:
    b = half_open(impl, clock, half_open_max=1)

    @b
    async def f(exc: BaseException) -> None:
        raise exc

    with pytest.raises(KeyboardInterrupt):
        run_sync(f(KeyboardInterrupt()))
    # The neutral outcome gave the only probe slot back.
    with pytest.raises(Abort):
        asyncio.run(f(Abort()))
    assert counts(b) == (2, 0, 0, 1, 2)
    assert b.state is State.HALF_OPEN


def test_async_cancelled_task_is_neutral(impl: Impl, clock: FakeClock) -> None:
    b = half_open(impl, clock, half_open_max=1)

    @b
    async def hang(started: asyncio.Event) -> None:
        started.set()
        await asyncio.Event().wait()

    async def main() -> None:
        started = asyncio.Event()
        task = asyncio.create_task(hang(started))
        await started.wait()
        assert b.acquire() == 0  # the one probe slot is taken
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert counts(b) == (1, 1, 0, 1, 1)
    assert b.state is State.HALF_OPEN
    assert b.acquire()  # the slot came back


def test_async_rejected_raises_without_running(impl: Impl, clock: FakeClock) -> None:
    rejects: list[Any] = []
    b = make(impl, clock, on_reject=rejects.append)
    calls = []

    @b
    async def f() -> None:
        calls.append(1)

    b.force_open()
    with pytest.raises(CircuitOpenError) as info:
        run_sync(f())
    assert calls == []
    assert rejects == [b]
    assert info.value.name == b.name == f.__qualname__
    assert counts(b) == (0, 1, 0, 0, 0)


def test_async_rejected_sync_fallback(impl: Impl, clock: FakeClock) -> None:
    b = opened(impl, clock, fallback=lambda *a, **k: ("cached", a, k))

    @b
    async def price(item: str, *, currency: str = "EUR") -> Any:
        raise AssertionError("must not run")

    assert run_sync(price("apple", currency="USD")) == (
        "cached",
        ("apple",),
        {"currency": "USD"},
    )
    assert counts(b) == (0, 1, 0, 1, 0)


def test_async_rejected_async_fallback(impl: Impl, clock: FakeClock) -> None:
    async def cached(item: str) -> str:
        await asyncio.sleep(0)
        return f"cached {item}"

    b = opened(impl, clock, fallback=cached)

    @b
    async def price(item: str) -> str:
        raise AssertionError("must not run")

    assert asyncio.run(price("pear")) == "cached pear"
    assert counts(b) == (0, 1, 0, 1, 0)


def test_async_sync_fallback_returning_awaitable_is_awaited(
    impl: Impl, clock: FakeClock
) -> None:
    async def later() -> str:
        return "later"

    b = opened(impl, clock, fallback=lambda: later())

    @b
    async def f() -> str:
        raise AssertionError("must not run")

    assert asyncio.run(f()) == "later"


def test_async_fallback_never_on_failure(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock, fallback=lambda: "fallback")

    @b
    async def f() -> str:
        raise ValueError("failed")

    with pytest.raises(ValueError):
        run_sync(f())
    assert counts(b) == (1, 0, 0, 1, 0)


def test_async_metadata(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock)

    async def fetch(url: str, timeout: float = 1.0) -> bytes:
        """Fetch a URL."""
        return url.encode()

    guarded = b(fetch)
    assert guarded.__name__ == "fetch"
    assert guarded.__qualname__ == fetch.__qualname__
    assert guarded.__doc__ == "Fetch a URL."
    assert guarded.__wrapped__ is fetch
    assert guarded.__module__ == fetch.__module__
    assert inspect.iscoroutinefunction(guarded)
    assert inspect.signature(guarded) == inspect.signature(fetch)
    assert b.name == fetch.__qualname__


def test_name_is_adopted_once_and_never_overrides(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock)

    async def first() -> None: ...

    async def second() -> None: ...

    b(first)
    b(second)
    assert b.name == first.__qualname__
    named = make(impl, clock, name="payments")
    named(first)
    assert named.name == "payments"


def test_async_method(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock)

    class Client:
        def __init__(self) -> None:
            self.base = 10

        @b
        async def get(self, x: int) -> int:
            return self.base + x

    assert run_sync(Client().get(5)) == 15
    assert counts(b) == (1, 0, 1, 0, 0)


def test_callable_object_with_async_call(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock)

    class Handler:
        async def __call__(self, x: int) -> int:
            return x + 1

    guarded = b(Handler())
    assert inspect.iscoroutinefunction(guarded)
    assert run_sync(guarded(1)) == 2
    assert counts(b) == (1, 0, 1, 0, 0)


# -- dispatch and fallback checks ----------------------------------------------------


def test_decorate_refuses_non_callable(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock)
    with pytest.raises(TypeError, match=r"fn must be callable.*got 42"):
        b(42)
    with pytest.raises(TypeError, match=r"fn must be callable"):
        decorate(b, "not a function")  # type: ignore[type-var]


def test_decorate_plain_function_uses_core_wrapper(
    impl: Impl, clock: FakeClock
) -> None:
    b = make(impl, clock)

    def add(x: int, y: int) -> int:
        """Add."""
        return x + y

    guarded = b(add)
    assert guarded(2, 3) == 5
    assert guarded.__wrapped__ is add
    assert guarded.__doc__ == "Add."
    assert counts(b) == (1, 0, 1, 0, 0)


async def _async_fallback(*args: Any, **kwargs: Any) -> str:
    return "fallback"


async def _async_gen_fallback(*args: Any, **kwargs: Any) -> Any:
    yield "fallback"


def test_sync_function_with_async_fallback_is_refused(
    impl: Impl, clock: FakeClock
) -> None:
    b = make(impl, clock, fallback=_async_fallback)

    def sync() -> None: ...

    with pytest.raises(TypeError, match=r"fallback .* coroutine function.*'.*sync'"):
        b(sync)
    # An async function takes it.
    b(_async_fallback)


def test_async_function_takes_either_fallback(impl: Impl, clock: FakeClock) -> None:
    for fallback in (
        lambda: "sync",
        _async_fallback,
        functools.partial(_async_fallback),
    ):
        b = opened(impl, clock, fallback=fallback)

        @b
        async def f() -> str:
            raise AssertionError("must not run")

        assert asyncio.run(f()) in ("sync", "fallback")


# -- call_async ------------------------------------------------------------------


def test_call_async_outcomes(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock, 3, exclude=(KeyError,))

    async def echo(x: Any, *, y: Any = None) -> Any:
        await asyncio.sleep(0)
        return (x, y)

    async def fail(exc: BaseException) -> None:
        raise exc

    async def main() -> None:
        assert await b.call_async(echo, 1, y=2) == (1, 2)
        with pytest.raises(ValueError):
            await b.call_async(fail, ValueError())
        with pytest.raises(KeyError):
            await b.call_async(fail, KeyError())
        with pytest.raises(Abort):
            await b.call_async(fail, Abort())

    asyncio.run(main())
    assert counts(b) == (4, 0, 1, 1, 2)


def test_call_async_cancelled_is_neutral(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock)

    async def hang(started: asyncio.Event) -> None:
        started.set()
        await asyncio.Event().wait()

    async def main() -> None:
        started = asyncio.Event()
        task = asyncio.create_task(b.call_async(hang, started))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert counts(b) == (1, 0, 0, 0, 1)


def test_call_async_is_failure_result(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock, is_failure_result=lambda r: r is None)

    async def maybe(x: Any) -> Any:
        return x

    assert run_sync(b.call_async(maybe, None)) is None
    assert run_sync(b.call_async(maybe, 1)) == 1
    assert counts(b) == (2, 0, 1, 1, 0)


def test_call_async_rejected(impl: Impl, clock: FakeClock) -> None:
    b = opened(impl, clock)

    async def f() -> None:
        raise AssertionError("must not run")

    with pytest.raises(CircuitOpenError) as info:
        run_sync(b.call_async(f))
    assert info.value.state is State.OPEN
    assert info.value.retry_after == pytest.approx(10.0)
    assert counts(b) == (0, 1, 0, 1, 0)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_call_async_fallback(impl: Impl, clock: FakeClock, kind: str) -> None:
    async def async_fb(*args: Any, **kwargs: Any) -> Any:
        return ("async", args, kwargs)

    def sync_fb(*args: Any, **kwargs: Any) -> Any:
        return ("sync", args, kwargs)

    b = opened(impl, clock, fallback=async_fb if kind == "async" else sync_fb)

    async def f(a: int, *, c: int) -> None:
        raise AssertionError("must not run")

    assert asyncio.run(b.call_async(f, 1, c=2)) == (kind, (1,), {"c": 2})
    assert counts(b) == (0, 1, 0, 1, 0)


def test_call_async_bad_arguments(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock)

    def sync() -> int:
        return 1

    with pytest.raises(TypeError, match="fn must be callable"):
        run_sync(b.call_async(42))
    assert counts(b) == (0, 0, 0, 0, 0)
    # A function that returns no awaitable: a TypeError, and a neutral call.
    with pytest.raises(TypeError, match="returns an awaitable"):
        run_sync(b.call_async(sync))
    assert counts(b) == (1, 0, 0, 0, 1)


# -- async with ------------------------------------------------------------------


def test_async_with_outcomes(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock, 5, exclude=[KeyError], fallback=lambda: "ignored")

    async def main() -> None:
        async with b:
            await asyncio.sleep(0)
        with pytest.raises(ValueError):
            async with b:
                raise ValueError
        with pytest.raises(KeyError):
            async with b:
                raise KeyError
        with pytest.raises(Abort):
            async with b:
                raise Abort
        b.force_open()
        ran = False
        # A with block ignores the fallback: the rejection raises before the body.
        with pytest.raises(CircuitOpenError):
            async with b:
                ran = True
        assert not ran

    asyncio.run(main())
    assert counts(b) == (4, 1, 1, 1, 2)


def test_async_with_cancelled_is_neutral(impl: Impl, clock: FakeClock) -> None:
    b = half_open(impl, clock, half_open_max=1)

    async def body(started: asyncio.Event) -> None:
        async with b:
            started.set()
            await asyncio.Event().wait()

    async def main() -> None:
        started = asyncio.Event()
        task = asyncio.create_task(body(started))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert counts(b) == (1, 0, 0, 1, 1)
    assert b.state is State.HALF_OPEN


def test_async_with_tickets_belong_to_tasks(impl: Impl, clock: FakeClock) -> None:
    """Task A enters, the breaker moves to a new generation, task B enters.

    A's failure is then stale (its ticket is from the old generation) and
    must not touch B's generation; had the ticket been kept on the breaker,
    A would have released B's.
    """
    b = make(impl, clock, 5)

    async def main() -> None:
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

        ta = asyncio.create_task(task_a())
        await a_in.wait()
        b.reset()
        tb = asyncio.create_task(task_b())
        await b_in.wait()
        a_go.set()
        with pytest.raises(ValueError):
            await ta
        assert b.consecutive_failures == 0  # A's stale failure changed nothing
        b_go.set()
        await tb

    asyncio.run(main())
    assert counts(b) == (2, 0, 1, 1, 0)


# -- 100 tasks arriving while half-open ---------------------------------------------


@pytest.mark.parametrize("with_fallback", [False, True], ids=["raise", "fallback"])
@pytest.mark.parametrize("form", ["decorator", "call_async", "async_with"])
def test_hundred_tasks_while_half_open(
    impl: Impl, clock: FakeClock, form: str, with_fallback: bool
) -> None:
    kwargs: dict[str, Any] = {"fallback": lambda: "fallback"} if with_fallback else {}
    b = half_open(impl, clock, half_open_max=3, **kwargs)
    reached = 0

    async def main() -> list[Any]:
        gate = asyncio.Event()

        async def backend() -> str:
            nonlocal reached
            reached += 1
            await gate.wait()  # the probes stay in flight until every task arrived
            return "backend"

        call: Any
        if form == "decorator":
            call = b(backend)
        elif form == "call_async":

            def call() -> Any:
                return b.call_async(backend)

        else:

            async def call() -> str:
                async with b:
                    return await backend()

        tasks = [asyncio.create_task(call()) for _ in range(100)]
        for _ in range(100):
            if sum(t.done() for t in tasks) == 97:
                break
            await asyncio.sleep(0)
        assert reached == 3
        assert sum(t.done() for t in tasks) == 97
        assert b.state is State.HALF_OPEN
        gate.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(main())
    assert reached == 3
    assert results.count("backend") == 3
    others = [r for r in results if r != "backend"]
    assert len(others) == 97
    if with_fallback and form != "async_with":
        assert others == ["fallback"] * 97
    else:
        assert all(isinstance(r, CircuitOpenError) for r in others)
        assert {r.state for r in others} == {State.HALF_OPEN}
        assert {r.retry_after for r in others} == {0.0}
    assert counts(b) == (3, 97, 3, 1, 0)
    assert b.state is State.CLOSED  # success_threshold defaults to half_open_max


# -- every async form: start, close, throw, collection, slow calls ------------------
#
# The compiled core runs these forms without a coroutine of its own (an
# awaitable that delegates to fn's); the twin with coroutines. Both must count
# the same.


def protect(b: Any, form: str, fn: Any) -> Any:
    """``fn`` (a coroutine function) as the given form protects it: a
    function of the same arguments returning what to await."""
    if form == "decorator":
        return b(fn)
    if form == "call_async":
        return functools.partial(b.call_async, fn)

    async def in_block(*args: Any, **kwargs: Any) -> Any:
        async with b:
            return await fn(*args, **kwargs)

    return in_block


ASYNC_FORMS = ("decorator", "call_async", "async with")
CALL_FORMS = ("decorator", "call_async")  # the awaitable is the breaker's own


def finish(coro: Any) -> Any:
    """Drive ``coro`` to its end without an event loop, sending None to each
    suspension (a Suspend's await returns None)."""
    for _ in range(10):
        try:
            coro.send(None)
        except StopIteration as stop:
            return stop.value
    coro.close()
    raise AssertionError("the coroutine did not finish")


class Suspend:
    """An awaitable that suspends once, yielding ``"paused"``, and returns what
    it is sent."""

    def __await__(self) -> Any:
        return (yield "paused")


@pytest.mark.parametrize("form", ASYNC_FORMS)
def test_form_outcomes_and_arguments(impl: Impl, clock: FakeClock, form: str) -> None:
    b = make(impl, clock, exclude=(KeyError,), is_failure_result=lambda r: r == "bad")

    async def f(x: Any, *, exc: BaseException | None = None) -> Any:
        await Suspend()
        if exc is not None:
            raise exc
        return x

    g = protect(b, form, f)
    assert finish(g(1)) == 1
    assert finish(g((1, 2))) == (1, 2)  # a tuple returned whole
    assert finish(g("bad")) == "bad"  # is_failure_result: a failure
    with pytest.raises(ValueError):
        finish(g(0, exc=ValueError()))
    with pytest.raises(KeyError):
        finish(g(0, exc=KeyError()))  # excluded: neutral
    with pytest.raises(Abort):
        finish(g(0, exc=Abort()))  # a BaseException: neutral
    if form == "async with":  # is_failure_result judges returned values only
        assert counts(b) == (6, 0, 3, 1, 2)
    else:
        assert counts(b) == (6, 0, 2, 2, 2)


@pytest.mark.parametrize("form", CALL_FORMS)
def test_form_never_awaited_takes_nothing(
    impl: Impl, clock: FakeClock, form: str
) -> None:
    b = half_open(impl, clock, half_open_max=1)
    calls: list[int] = []

    async def f() -> int:
        calls.append(1)
        return 1

    g = protect(b, form, f)
    made = g()
    made.close()
    with pytest.raises(RuntimeError):
        made.send(None)  # closed before it ran: it never runs
    del made
    with warnings.catch_warnings():  # a coroutine's "never awaited" (the twin)
        warnings.simplefilter("ignore", RuntimeWarning)
        g()  # made and dropped, never awaited
        gc.collect()
    assert calls == [] and counts(b) == (0, 0, 0, 1, 0)
    assert run_sync(g()) == 1  # the probe slot was never taken
    assert counts(b) == (1, 0, 1, 1, 0) and b.state is State.CLOSED


@pytest.mark.parametrize("form", CALL_FORMS)
def test_form_send_before_start(impl: Impl, clock: FakeClock, form: str) -> None:
    b = make(impl, clock)

    async def f() -> int:
        return 1

    made = protect(b, form, f)()
    with pytest.raises(TypeError, match="non-None"):
        made.send(1)
    made.close()
    # A throw before it runs ends it without running: nothing taken.
    made = protect(b, form, f)()
    with pytest.raises(ValueError):
        made.throw(ValueError("early"))
    assert counts(b) == (0, 0, 0, 0, 0)


@pytest.mark.parametrize("form", CALL_FORMS)
def test_form_close_mid_await_is_neutral(
    impl: Impl, clock: FakeClock, form: str
) -> None:
    b = half_open(impl, clock, half_open_max=1)
    cleaned: list[str] = []

    async def f() -> int:
        try:
            return await Suspend()  # type: ignore[no-any-return]
        finally:
            cleaned.append("inner")

    made = protect(b, form, f)()
    assert made.send(None) == "paused"
    assert b.acquire() == 0  # the one probe slot is taken
    made.close()
    assert cleaned == ["inner"]
    assert counts(b) == (1, 1, 0, 1, 1)
    made.close()  # closing again releases nothing twice
    assert counts(b) == (1, 1, 0, 1, 1)
    assert b.acquire()  # the slot came back


@pytest.mark.parametrize("form", CALL_FORMS)
def test_form_collected_mid_await_is_neutral(
    impl: Impl, clock: FakeClock, form: str
) -> None:
    b = half_open(impl, clock, half_open_max=1)

    async def f() -> int:
        return await Suspend()  # type: ignore[no-any-return]

    made = protect(b, form, f)()
    assert made.send(None) == "paused"
    del made
    gc.collect()
    assert counts(b) == (1, 0, 0, 1, 1)
    assert b.acquire()  # the slot came back


@pytest.mark.parametrize("form", CALL_FORMS)
def test_form_close_failing_is_classified(
    impl: Impl, clock: FakeClock, form: str
) -> None:
    b = make(impl, clock)

    async def f() -> int:
        try:
            return await Suspend()  # type: ignore[no-any-return]
        except GeneratorExit:
            raise ValueError("cleanup failed") from None

    made = protect(b, form, f)()
    made.send(None)
    with pytest.raises(ValueError, match="cleanup failed"):
        made.close()
    assert counts(b) == (1, 0, 0, 1, 0)


@pytest.mark.parametrize("form", CALL_FORMS)
def test_form_throw_mid_await(impl: Impl, clock: FakeClock, form: str) -> None:
    b = make(impl, clock, 5, exclude=(KeyError,))

    async def f() -> str:
        try:
            return await Suspend()  # type: ignore[no-any-return]
        except LookupError as exc:
            if isinstance(exc, IndexError):
                return "handled"
            raise

    # Thrown and not handled: the exception rules decide.
    made = protect(b, form, f)()
    made.send(None)
    with pytest.raises(KeyError):
        made.throw(KeyError("excluded"))
    made = protect(b, form, f)()
    made.send(None)
    with pytest.raises(ValueError):
        made.throw(ValueError("failed"))
    # Handled by fn, which then returns: a success, its value the return.
    made = protect(b, form, f)()
    made.send(None)
    with pytest.raises(StopIteration) as stop:
        made.throw(IndexError("handled"))
    assert stop.value.value == "handled"
    # Sent a value: fn's await returns it.
    made = protect(b, form, f)()
    made.send(None)
    with pytest.raises(StopIteration) as stop:
        made.send("sent")
    assert stop.value.value == "sent"
    with pytest.raises(RuntimeError):
        made.send(None)  # finished: never settled twice
    assert counts(b) == (4, 0, 2, 1, 1)


@pytest.mark.parametrize("form", ASYNC_FORMS)
def test_form_cancelled_is_neutral(impl: Impl, clock: FakeClock, form: str) -> None:
    b = half_open(impl, clock, half_open_max=1)

    async def hang(started: asyncio.Event) -> None:
        started.set()
        await asyncio.Event().wait()

    g = protect(b, form, hang)

    async def main() -> None:
        started = asyncio.Event()
        task = asyncio.create_task(g(started))
        await started.wait()
        assert b.acquire() == 0
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert counts(b) == (1, 1, 0, 1, 1)
    assert b.acquire()


@pytest.mark.parametrize("form", CALL_FORMS)
@pytest.mark.parametrize("kind", ["value", "awaitable", "coroutine function"])
def test_form_fallback(impl: Impl, clock: FakeClock, form: str, kind: str) -> None:
    async def later(x: int) -> tuple[str, int]:
        await Suspend()
        return ("later", x)

    def fallback(x: int) -> Any:
        if kind == "value":
            return ("now", x)
        return later(x)

    async def async_fallback(x: int) -> tuple[str, int]:
        return await later(x)

    chosen = async_fallback if kind == "coroutine function" else fallback
    b = opened(impl, clock, fallback=chosen)
    ran: list[int] = []

    async def f(x: int) -> None:
        ran.append(x)

    made = protect(b, form, f)(7)
    if kind == "value":
        with pytest.raises(StopIteration) as stop:
            made.send(None)
    else:
        assert made.send(None) == "paused"  # the fallback's own await
        with pytest.raises(StopIteration) as stop:
            made.send(None)
    assert stop.value.value == (("now", 7) if kind == "value" else ("later", 7))
    assert ran == [] and counts(b) == (0, 1, 0, 1, 0)


@pytest.mark.parametrize("form", ASYNC_FORMS)
def test_form_slow_calls(impl: Impl, clock: FakeClock, form: str) -> None:
    b = make(
        impl, clock, slow_call_duration=1.0, slow_call_rate_threshold=0.5, window_size=2
    )

    async def f(seconds: float) -> int:
        await Suspend()
        clock.advance(seconds)
        return 1

    g = protect(b, form, f)
    for _ in range(4):
        assert finish(g(0.5)) == 1  # fast: never slow
    assert b.state is State.CLOSED
    assert finish(g(2.0)) == 1  # slow: half the last two calls
    assert b.state is State.OPEN


@pytest.mark.parametrize("form", CALL_FORMS)
def test_form_is_a_coroutine_to_asyncio(
    impl: Impl, clock: FakeClock, form: str
) -> None:
    b = make(impl, clock)

    async def f() -> int:
        return 1

    made = protect(b, form, f)()
    assert inspect.isawaitable(made)
    assert asyncio.iscoroutine(made)
    assert asyncio.run(made) == 1


@pytest.mark.skipif(
    sys.version_info < (3, 10),
    reason="3.9 keeps the Python wrapper: its inspect sees only real functions "
    "as coroutine functions",
)
def test_compiled_forms_run_no_coroutine_of_their_own(clock: FakeClock) -> None:
    compiled = pytest.importorskip("qbreaker._core_c")
    b = compiled.CircuitBreaker(clock=clock)

    async def f() -> int:
        return 1

    g = b(f)
    assert inspect.iscoroutinefunction(g)
    for made in (g(), b.call_async(f)):
        assert not inspect.iscoroutine(made)  # not a Python coroutine
        assert run_sync(made) == 1
    # async with awaits nothing made per block.
    assert b.__aenter__() is b.__aexit__(None, None, None)
    assert counts(b) == (3, 0, 3, 0, 0)


def test_call_async_fn_raising_before_any_awaitable(
    impl: Impl, clock: FakeClock
) -> None:
    b = make(impl, clock, exclude=(KeyError,))

    def fails(exc: BaseException) -> Any:
        raise exc  # before any awaitable exists

    with pytest.raises(ValueError):
        run_sync(b.call_async(fails, ValueError("no")))
    with pytest.raises(KeyError):
        run_sync(b.call_async(fails, KeyError("excluded")))
    assert counts(b) == (2, 0, 0, 1, 1)


def test_call_async_awaits_any_awaitable(impl: Impl, clock: FakeClock) -> None:
    b = make(impl, clock, is_failure_result=lambda r: r == "bad")

    class Answer:
        def __init__(self, value: Any) -> None:
            self.value = value

        def __await__(self) -> Any:
            yield "paused"
            return self.value

    made = b.call_async(Answer, "good")
    assert made.send(None) == "paused"
    with pytest.raises(StopIteration) as stop:
        made.send(None)
    assert stop.value.value == "good"
    made = b.call_async(Answer, "bad")
    made.send(None)
    with pytest.raises(StopIteration):
        made.send(None)
    assert counts(b) == (2, 0, 1, 1, 0)
