"""The sync forms, outcome rules, listeners, errors, metrics and observe()."""

from __future__ import annotations

import copy
import gc
import logging
import math
import threading
import tracemalloc
from typing import Any

import pytest

from qbreaker import BreakerError, CircuitOpenError, Metrics, State

from ..helpers import FakeClock, Impl


class Boom(Exception):
    pass


class Ignored(Exception):
    pass


def boom() -> None:
    raise Boom("down")


# -- with ----------------------------------------------------------------------


def test_with_success_failure_and_rejection(impl: Impl, clock: FakeClock) -> None:
    b = impl.Breaker(2, 10, 1, clock=clock, name="db")
    with b:
        pass
    for _ in range(2):
        with pytest.raises(Boom), b:
            boom()
    assert b.state is State.OPEN
    ran = []
    with pytest.raises(CircuitOpenError) as info, b:
        ran.append(1)
    assert not ran, "the body must not run when rejected"
    err = info.value
    assert isinstance(err, BreakerError)
    assert (err.name, err.state, err.retry_after) == ("db", State.OPEN, 10.0)
    assert "'db' is open; retry after 10.000 s" in str(err)
    t = b.totals()
    assert (t.allowed, t.rejected, t.successes, t.failures) == (3, 1, 1, 2)


def test_with_tickets_are_per_block_and_nest(impl: Impl, clock: FakeClock) -> None:
    a = impl.Breaker(1, 10, 1, clock=clock)
    b = impl.Breaker(1, 10, 1, clock=clock)
    with a:
        with b:
            with a:
                pass
        with pytest.raises(Boom), b:
            boom()
    assert a.state is State.CLOSED and b.state is State.OPEN
    assert a.totals().successes == 2


def test_with_ticket_is_tied_to_the_generation(impl: Impl, clock: FakeClock) -> None:
    """A block admitted before a trip reports late: its failure is stale."""
    b = impl.Breaker(1, 10, 1, clock=clock)
    with pytest.raises(Boom), b:
        b.record_failure()  # trips the breaker while the block runs
        clock.advance(10)
        b.renormalize()  # half-open now
        boom()
    assert b.state is State.HALF_OPEN


def test_with_is_per_thread(impl: Impl, clock: FakeClock) -> None:
    b = impl.Breaker(3, 10, 1, clock=clock)
    inside, release = threading.Barrier(2), threading.Event()
    errors: list[BaseException] = []

    def worker(fail: bool) -> None:
        try:
            with b:
                inside.wait(5)
                release.wait(5)
                if fail:
                    raise Boom()
        except Boom:
            pass
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(f,)) for f in (True, False)]
    for t in threads:
        t.start()
    release.set()
    for t in threads:
        t.join(10)
    assert not errors
    totals = b.totals()
    assert (totals.successes, totals.failures) == (1, 1)


def test_excluded_and_base_exceptions_are_neutral(impl: Impl, clock: FakeClock) -> None:
    b = impl.Breaker(1, 10, 1, clock=clock, exclude=[Ignored])
    for exc in (Ignored(), KeyboardInterrupt(), SystemExit(), GeneratorExit()):
        with pytest.raises(BaseException) as info, b:
            raise exc
        assert info.value is exc
    assert b.state is State.CLOSED
    assert b.totals().neutral == 4


def test_is_failure_predicate_replaces_the_default(
    impl: Impl, clock: FakeClock
) -> None:
    seen = []

    def is_failure(exc: BaseException) -> bool:
        seen.append(exc)
        return not isinstance(exc, LookupError)

    b = impl.Breaker(1, 10, 1, clock=clock, is_failure=is_failure, exclude=[Ignored])
    with pytest.raises(KeyError), b:
        raise KeyError("missing")  # not a failure: a success
    with pytest.raises(Ignored), b:
        raise Ignored()  # exclude comes first: the predicate never sees it
    assert [type(e) for e in seen] == [KeyError]
    assert b.totals().successes == 1 and b.totals().neutral == 1
    with pytest.raises(Boom), b:
        boom()
    assert b.state is State.OPEN


def test_a_raising_predicate_counts_a_failure(
    impl: Impl, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    def bad(exc: BaseException) -> bool:
        raise RuntimeError("predicate bug")

    b = impl.Breaker(1, 10, 1, clock=clock, is_failure=bad)
    with pytest.raises(Boom), b:
        boom()
    assert b.state is State.OPEN
    assert "is_failure raised" in caplog.text


# -- call and the sync decorator ---------------------------------------------------


def test_call(impl: Impl, clock: FakeClock) -> None:
    b = impl.Breaker(1, 10, 1, clock=clock)
    assert b.call(lambda x, y=0: x + y, 1, y=2) == 3
    with pytest.raises(Boom):
        b.call(boom)
    with pytest.raises(CircuitOpenError):
        b.call(lambda: 1)


def test_is_failure_result(impl: Impl, clock: FakeClock) -> None:
    failures: list[Any] = []
    b = impl.Breaker(
        2,
        10,
        1,
        clock=clock,
        is_failure_result=lambda r: r == 503,
        on_failure=lambda br, what: failures.append(what),
    )
    assert b.call(lambda: 200) == 200
    assert b.call(lambda: 503) == 503  # returned, but counted as a failure
    assert b.consecutive_failures == 1
    assert failures == [503]
    b.call(lambda: 503)
    assert b.state is State.OPEN


def test_fallback_only_on_rejection(impl: Impl, clock: FakeClock) -> None:
    calls = []

    def fallback(*args: Any, **kwargs: Any) -> str:
        calls.append((args, kwargs))
        return "cached"

    b = impl.Breaker(1, 10, 1, clock=clock, fallback=fallback)
    with pytest.raises(Boom):
        b.call(boom)  # a failure is never replaced by the fallback
    assert not calls
    assert b.call(lambda item, n: "fresh", "x", n=2) == "cached"
    assert calls == [(("x",), {"n": 2})]
    with pytest.raises(CircuitOpenError), b:
        pass  # with ignores the fallback


def test_decorated_function(impl: Impl, clock: FakeClock) -> None:
    b = impl.Breaker(1, 10, 1, clock=clock)

    @b
    def add(x: int, y: int) -> int:
        """Adds."""
        return x + y

    assert add(2, 3) == 5
    assert add.__name__ == "add" and add.__doc__ == "Adds."
    assert add.__wrapped__(1, 1) == 2  # type: ignore[attr-defined]
    assert b.name.endswith("test_decorated_function.<locals>.add")

    class Service:
        @b
        def ping(self) -> str:
            return "pong"

    assert Service().ping() == "pong"
    assert b.totals().successes == 2


def test_async_fallback_on_sync_call_is_a_type_error(impl: Impl) -> None:
    async def fallback() -> None:
        pass

    b = impl.Breaker(fallback=fallback)
    with pytest.raises(TypeError, match="is an async .* function"):
        b.call(lambda: 1)


# -- hooks and listeners -------------------------------------------------------------


def test_outcome_hooks(impl: Impl, clock: FakeClock) -> None:
    events: list[tuple[str, Any]] = []
    b = impl.Breaker(
        1,
        10,
        1,
        clock=clock,
        on_success=lambda br: events.append(("success", br is b)),
        on_failure=lambda br, what: events.append(("failure", type(what))),
        on_reject=lambda br: events.append(("reject", br is b)),
    )
    b.call(lambda: 1)
    with pytest.raises(Boom):
        b.call(boom)
    with pytest.raises(CircuitOpenError):
        b.call(lambda: 1)
    assert events == [("success", True), ("failure", Boom), ("reject", True)]


def test_listeners_see_every_transition_once_in_order(
    impl: Impl, clock: FakeClock
) -> None:
    seen: list[tuple[str, State, State]] = []
    b = impl.Breaker(
        1,
        10,
        1,
        clock=clock,
        half_open_timeout=2,
        on_state_change=lambda br, old, new: seen.append(("ctor", old, new)),
    )

    def second(br: Any, old: State, new: State) -> None:
        seen.append(("added", old, new))

    b.add_listener(second)
    b.record_failure()  # closed -> open
    clock.advance(10)
    assert b.allow()  # lazily: open -> half-open
    clock.advance(2 + 10)
    assert b.allow()  # lazily: half-open -> open (expired) -> half-open
    b.record_success()  # half-open -> closed
    closed, opened, half = State.CLOSED, State.OPEN, State.HALF_OPEN
    expected = [
        (closed, opened),
        (opened, half),
        (half, opened),
        (opened, half),
        (half, closed),
    ]
    assert [(o, n) for who, o, n in seen if who == "ctor"] == expected
    assert [(o, n) for who, o, n in seen if who == "added"] == expected
    b.remove_listener(second)
    b.force_open()
    assert seen[-1] == ("ctor", closed, opened)
    with pytest.raises(ValueError):
        b.remove_listener(second)


def test_listener_may_call_back_into_the_breaker(impl: Impl, clock: FakeClock) -> None:
    seen: list[tuple[State, State]] = []

    def listener(br: Any, old: State, new: State) -> None:
        seen.append((old, new))
        if new is State.OPEN and len(seen) == 1:
            br.reset()  # re-entrant: queued, delivered after this returns

    b = impl.Breaker(1, 10, 1, clock=clock, on_state_change=listener)
    b.record_failure()
    assert seen == [(State.CLOSED, State.OPEN), (State.OPEN, State.CLOSED)]
    assert b.state is State.CLOSED


def test_listener_errors_are_logged_not_raised(
    impl: Impl, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(br: Any, old: State, new: State) -> None:
        raise RuntimeError("listener bug")

    b = impl.Breaker(1, 10, 1, clock=clock, on_state_change=broken, name="svc")
    with caplog.at_level(logging.INFO, logger="qbreaker"):
        b.record_failure()
    assert b.state is State.OPEN
    assert "listener bug" in caplog.text
    assert "circuit breaker 'svc': closed -> open (generation 1)" in caplog.text


def test_listeners_from_many_threads_never_overlap(impl: Impl) -> None:
    active, overlaps, count = [0], [0], [0]
    lock = threading.Lock()

    def listener(br: Any, old: State, new: State) -> None:
        with lock:
            active[0] += 1
            overlaps[0] += active[0] > 1
            count[0] += 1
        for _ in range(200):
            pass
        with lock:
            active[0] -= 1

    b = impl.Breaker(1, 10, 1, on_state_change=listener)

    def worker() -> None:
        for _ in range(300):
            b.reset()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps[0] == 0
    assert count[0] == 1200 == b.totals().transitions


def test_bad_listener_arguments(impl: Impl) -> None:
    with pytest.raises(TypeError, match="on_state_change must be callable"):
        impl.Breaker(on_state_change=3)
    with pytest.raises(TypeError, match="listener must be callable"):
        impl.Breaker().add_listener("x")
    for kw in (
        "is_failure",
        "is_failure_result",
        "fallback",
        "on_success",
        "on_failure",
        "on_reject",
    ):
        with pytest.raises(TypeError, match=f"{kw} must be callable or None"):
            impl.Breaker(**{kw: 42})
    with pytest.raises(TypeError, match="exclude entries must be exception classes"):
        impl.Breaker(exclude=[ValueError, "KeyError"])
    with pytest.raises(TypeError, match="exclude must be an iterable"):
        impl.Breaker(exclude=ValueError)
    with pytest.raises(TypeError, match="name must be a str"):
        impl.Breaker(name=5)


# -- errors --------------------------------------------------------------------------


def test_retry_after_by_state(impl: Impl, clock: FakeClock) -> None:
    b = impl.Breaker(1, 10, 1, clock=clock)
    assert b.retry_after == 0.0
    b.record_failure()
    clock.advance(4)
    assert b.retry_after == 6.0
    clock.advance(6)
    assert b.allow()
    with pytest.raises(CircuitOpenError) as info, b:
        pass
    assert info.value.retry_after == 0.0 and info.value.state is State.HALF_OPEN
    assert "half-open" in str(info.value)
    b.force_open()
    with pytest.raises(CircuitOpenError) as info, b:
        pass
    assert info.value.retry_after == math.inf and "forced open" in str(info.value)


def test_rejections_do_not_grow_memory(impl: Impl, clock: FakeClock) -> None:
    b = impl.Breaker(1, 10, 1, clock=clock)
    b.record_failure()

    def reject(n: int) -> None:
        for _ in range(n):
            try:
                b.call(int)
            except CircuitOpenError:
                pass

    reject(1000)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    reject(20_000)
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert grown < 50_000, f"{grown} bytes kept after 20,000 rejections"


# -- metrics and observe ---------------------------------------------------------------


def test_metrics_snapshot(impl: Impl, clock: FakeClock) -> None:
    b = impl.Breaker(2, 10, 1, clock=clock, name="payments")
    b.call(lambda: 1)
    clock.advance(3)
    b.record_failure()
    m = b.metrics()
    assert (m.name, m.state, m.forced, m.generation) == (
        "payments",
        State.CLOSED,
        None,
        0,
    )
    assert (m.consecutive_failures, m.allowed, m.successes, m.failures) == (1, 1, 1, 1)
    assert m.time_in_state == 3.0 and m.retry_after == 0.0
    assert m.last_observation is None
    b.record_failure()
    clock.advance(1.5)
    m = b.metrics()
    assert (m.state, m.transitions, m.time_in_state, m.retry_after) == (
        State.OPEN,
        1,
        1.5,
        8.5,
    )
    with pytest.raises(AttributeError):
        m.state = State.CLOSED  # type: ignore[misc]
    b.force_closed()
    assert b.metrics().forced == "closed"


def test_observe_trips_from_closed_only(impl: Impl, clock: FakeClock) -> None:
    b = impl.Breaker(
        5, 10, 1, clock=clock, error_rate_threshold=0.5, latency_threshold=2.0
    )
    assert not b.observe(Metrics(error_rate=0.49, latency=1.9))
    assert b.state is State.CLOSED
    obs = Metrics(error_rate=0.1, latency=2.0)
    assert b.observe(obs) is True
    assert b.state is State.OPEN and b.metrics().last_observation == obs
    assert not b.observe(Metrics(error_rate=1.0))  # open: only records
    assert b.metrics().last_observation == Metrics(error_rate=1.0)
    b.reset()
    b.force_closed()
    assert not b.observe(Metrics(error_rate=1.0))
    assert b.forced == "closed"
    b.reset()
    assert b.observe(Metrics(error_rate=0.5))


def test_observe_without_thresholds_only_records(impl: Impl) -> None:
    b = impl.Breaker()
    assert not b.observe(Metrics(error_rate=1.0, latency=100))
    assert b.state is State.CLOSED


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        (
            {"error_rate": 1.5},
            ValueError,
            r"error_rate must be a fraction in \[0, 1\], got 1.5",
        ),
        ({"error_rate": -0.1}, ValueError, r"error_rate must be a fraction in \[0"),
        ({"error_rate": math.nan}, ValueError, r"error_rate .* got nan"),
        ({"error_rate": "high"}, TypeError, r"error_rate must be a fraction"),
        (
            {"latency": -1},
            ValueError,
            r"latency must be a finite number of seconds >= 0",
        ),
        ({"latency": math.nan}, ValueError, r"latency .* got nan"),
        ({"latency": "1s"}, TypeError, r"latency must be seconds"),
    ],
)
def test_bad_metrics(kwargs: dict[str, Any], error: type, pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        Metrics(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        (
            {"error_rate_threshold": 0},
            r"error_rate_threshold must be a fraction in \(0, 1\], got 0",
        ),
        (
            {"error_rate_threshold": 50},
            r"error_rate_threshold must be a fraction in \(0, 1\], got 50",
        ),
        (
            {"latency_threshold": 0},
            r"latency_threshold must be a finite number of seconds > 0",
        ),
        ({"latency_threshold": -2.0}, r"latency_threshold .* got -2.0"),
    ],
)
def test_bad_thresholds(impl: Impl, kwargs: dict[str, Any], pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        impl.Breaker(**kwargs)


def test_observe_needs_metrics(impl: Impl) -> None:
    with pytest.raises(TypeError, match="qbreaker.Metrics"):
        impl.Breaker().observe({"error_rate": 1})  # type: ignore[arg-type]


def test_the_first_with_block_of_a_fresh_thread_keeps_its_ticket(impl: Impl) -> None:
    """A thread starts with no context until its first ContextVar.set()."""
    results: list[int] = []

    def stale_failure() -> None:
        b = impl.Breaker(5, 10, 1)
        try:
            with b:
                b.reset()  # a new generation: this block's failure is stale
                raise Boom()
        except Boom:
            pass
        results.append(b.consecutive_failures)

    thread = threading.Thread(target=stale_failure)
    thread.start()
    thread.join(10)
    assert results == [0]


def _echo(*args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return args, kwargs


def test_call_and_decorator_pass_arguments_unchanged(impl: Impl) -> None:
    # The compiled forms take the vectorcall convention: every way of
    # passing arguments must reach the function as it was written.
    b = impl.Breaker()
    guarded = b(_echo)
    for form in (lambda *a, **k: b.call(_echo, *a, **k), guarded):
        assert form() == ((), {})
        assert form(1, 2) == ((1, 2), {})
        assert form(fn=1, self=2) == ((), {"fn": 1, "self": 2})
        assert form(*range(40), **{f"k{i}": i for i in range(40)}) == (
            tuple(range(40)),
            {f"k{i}": i for i in range(40)},
        )
    # A caller that passes a tuple and a dict (tp_call), and a bound method.
    assert type(guarded).__call__(guarded, 1, k=2) == ((1,), {"k": 2})

    class Service:
        echo = guarded

    service = Service()
    assert service.echo(3, k=4) == ((service, 3), {"k": 4})
    assert b.totals().successes == 10
    with pytest.raises(TypeError, match="first positional argument|missing"):
        b.call()  # type: ignore[call-arg]


def test_call_raises_through_and_counts(impl: Impl) -> None:
    b = impl.Breaker(2, 10, 1)

    def fails(x: int, *, by: int) -> None:
        raise Boom(x + by)

    with pytest.raises(Boom) as info:
        b.call(fails, 1, by=2)
    assert info.value.args == (3,)
    with pytest.raises(Boom):
        b(fails)(1, by=2)
    assert b.state is State.OPEN and b.totals().failures == 2


def test_a_decorated_function_copies_and_refuses_to_run_unmade(impl: Impl) -> None:
    b = impl.Breaker()
    guarded = b(_echo)
    duplicate = copy.copy(guarded)
    assert duplicate(1) == ((1,), {}) and duplicate.__wrapped__ is _echo
    assert b.totals().successes == 1
    # Shared, as a copied function is, even where pickle cannot find it.
    assert duplicate is guarded and copy.deepcopy(guarded) is guarded
    if impl.name == "c":  # the compiled wrapper's class can be called bare
        with pytest.raises(TypeError, match="decorating"):
            type(guarded)()()


@pytest.mark.parametrize("slow_policy", [False, True], ids=["plain", "timed"])
def test_a_generator_hook_sees_every_returned_generator(
    impl: Impl, slow_policy: bool
) -> None:
    # The protocol the pybreaker compat layer uses: a subclass that defines
    # _generator_result gets each generator that call() returns, timed or not.
    seen: list[Any] = []

    class Hooked(impl.Breaker):  # type: ignore[name-defined,misc]
        __slots__ = ()

        def _generator_result(self, ticket: int, generator: Any) -> Any:
            seen.append(generator)
            self.release(ticket, True)
            return generator

    settings: dict[str, Any] = {}
    if slow_policy:
        settings = dict(
            slow_call_duration=1.0, slow_call_rate_threshold=0.5, window_size=10
        )
    b = Hooked(**settings)

    def numbers() -> Any:
        yield 1

    gen = b.call(numbers)
    assert seen == [gen] and list(gen) == [1]
    assert b.call(lambda: 2) == 2 and len(seen) == 1
    assert b.totals().successes == 2
