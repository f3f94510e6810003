"""``qbreaker.compat.pybreaker`` against pybreaker 1.4.1's documented behaviour.

Written from pybreaker's README and docstrings. Every test that takes
``make`` runs on both cores (the breaker's memory storage is given the
``impl`` core); ``now`` replaces the clocks the compat layer reads, so
nothing here waits for a timeout. Threads: test_compat_pybreaker_threads.py;
Redis and user storages: test_compat_pybreaker_storage.py.
"""

from __future__ import annotations

import asyncio
import datetime
import gc
import inspect
import pickle
import threading
from typing import Any, Callable

import pytest

import qbreaker
import qbreaker.compat.pybreaker as pybreaker
from qbreaker.compat.pybreaker import base as pyb_base
from qbreaker.compat.pybreaker import core as pyb_core
from qbreaker.compat.pybreaker import engine as pyb_engine
from qbreaker.compat.pybreaker import memory as pyb_memory

UTC = datetime.timezone.utc


class FakeTime:
    """Moves the compat layer's monotonic and wall clocks together."""

    def __init__(self) -> None:
        self.mono = 1000.0
        self.wall = datetime.datetime(2026, 1, 1, tzinfo=UTC)

    def monotonic(self) -> float:
        return self.mono

    def utcnow(self) -> datetime.datetime:
        return self.wall

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += datetime.timedelta(seconds=seconds)


@pytest.fixture
def now(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(pyb_core, "_monotonic", fake.monotonic)
    for module in (pyb_memory, pyb_engine, pyb_base):
        monkeypatch.setattr(module, "utcnow", fake.utcnow)
    return fake


Make = Callable[..., pybreaker.CircuitBreaker]


@pytest.fixture
def make(impl: Any) -> Make:
    """A compat breaker whose memory storage is on the ``impl`` core."""

    def build(state: str = pybreaker.STATE_CLOSED, **settings: Any) -> Any:
        settings.setdefault(
            "state_storage",
            pybreaker.CircuitMemoryStorage(state, core_class=impl.Breaker),
        )
        return pybreaker.CircuitBreaker(**settings)

    return build


class DummyError(Exception):
    pass


class SubDummyError(DummyError):
    pass


class OtherError(Exception):
    pass


def fail() -> None:
    raise DummyError("boom")


def succeed() -> bool:
    return True


class Recorder(pybreaker.CircuitBreakerListener):
    """Records every callback as a tuple."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def before_call(self, cb: Any, func: Any, *args: Any, **kwargs: Any) -> None:
        self.events.append(("before_call", func, args, kwargs))

    def success(self, cb: Any) -> None:
        self.events.append(("success",))

    def failure(self, cb: Any, exc: BaseException) -> None:
        self.events.append(("failure", type(exc)))

    def state_change(self, cb: Any, old: Any, new: Any) -> None:
        assert old is None or isinstance(old, pybreaker.CircuitBreakerState)
        assert isinstance(new, pybreaker.CircuitBreakerState)
        self.events.append(("state_change", old.name if old else None, new.name))

    def kinds(self) -> list[Any]:
        return [e if e[0] == "state_change" else e[0] for e in self.events]


def trip(breaker: Any) -> None:
    for _ in range(breaker.fail_max):
        with pytest.raises((DummyError, pybreaker.CircuitBreakerError)):
            breaker.call(fail)
    assert breaker.current_state == "open"


# -- construction and attributes -------------------------------------------------


def test_defaults_are_pybreakers() -> None:
    breaker = pybreaker.CircuitBreaker()
    assert breaker.fail_max == 5
    assert breaker.reset_timeout == 60
    assert breaker.success_threshold == 1
    assert breaker.name is None
    assert breaker.excluded_exceptions == ()
    assert breaker.listeners == ()
    assert breaker.current_state == pybreaker.STATE_CLOSED == "closed"
    assert isinstance(breaker.state, pybreaker.CircuitClosedState)
    assert breaker.state.name == "closed"
    assert breaker.fail_counter == 0
    assert breaker.success_counter == 0
    assert isinstance(breaker._state_storage, pybreaker.CircuitMemoryStorage)
    assert breaker._state_storage.name == "memory"
    assert (pybreaker.STATE_OPEN, pybreaker.STATE_HALF_OPEN) == ("open", "half-open")


def test_default_storage_is_the_selected_core() -> None:
    breaker = pybreaker.CircuitBreaker()
    core = breaker._state_storage._engine.core
    assert isinstance(core, qbreaker.CircuitBreaker)
    if qbreaker.IMPLEMENTATION == "cython":
        # call() is the core's compiled method: no Python frame of ours.
        assert type(breaker.call).__name__ == "builtin_function_or_method"


def test_settings_are_kept_as_given(make: Make) -> None:
    breaker = make(
        fail_max=3,
        reset_timeout=2.5,
        success_threshold=2,
        name="db",
        exclude=[KeyError],
    )
    assert (breaker.fail_max, breaker.reset_timeout) == (3, 2.5)
    assert (breaker.success_threshold, breaker.name) == (2, "db")
    assert breaker.excluded_exceptions == (KeyError,)
    breaker.name = "other"
    assert breaker.name == "other"


def test_unknown_state_is_a_value_error(impl: Any) -> None:
    with pytest.raises(ValueError, match="Unknown state 'sideways'"):
        pybreaker.CircuitMemoryStorage("sideways", core_class=impl.Breaker)


# -- closed ----------------------------------------------------------------------


def test_call_passes_arguments_and_counts(make: Make) -> None:
    breaker = make()
    assert breaker.call(lambda a, b=0: a + b, 1, b=2) == 3
    for expected in (1, 2):
        with pytest.raises(DummyError):
            breaker.call(fail)
        assert breaker.fail_counter == expected
    breaker.call(succeed)
    assert breaker.fail_counter == 0
    assert breaker.current_state == "closed"


def test_trip_raises_circuit_breaker_error_chained(make: Make) -> None:
    breaker = make(fail_max=3)
    for _ in range(2):
        with pytest.raises(DummyError):
            breaker.call(fail)
    with pytest.raises(pybreaker.CircuitBreakerError) as info:
        breaker.call(fail)
    error = info.value
    assert str(error) == "Failures threshold reached, circuit breaker opened"
    assert isinstance(error.__cause__, DummyError)
    assert error.__context__ is error.__cause__
    assert error.retry_after == pytest.approx(60, abs=0.01)
    assert breaker.current_state == "open"
    assert breaker.fail_counter == 3


def test_open_breaker_rejects_without_calling(make: Make) -> None:
    breaker = make(fail_max=1)
    trip(breaker)
    called = []
    with pytest.raises(pybreaker.CircuitBreakerError) as info:
        breaker.call(called.append, 1)
    assert called == []
    assert str(info.value) == "Timeout not elapsed yet, circuit breaker still open"
    assert 0 < info.value.retry_after <= 60


def test_throw_new_error_on_trip_false_reraises_original(make: Make) -> None:
    breaker = make(fail_max=2, throw_new_error_on_trip=False)
    for _ in range(2):
        with pytest.raises(DummyError):
            breaker.call(fail)
    assert breaker.current_state == "open"
    assert breaker.open() is False
    assert make().open() is True


def test_fail_max_zero_trips_on_the_first_failure(make: Make) -> None:
    breaker = make(fail_max=0)
    with pytest.raises(pybreaker.CircuitBreakerError):
        breaker.call(fail)


# -- open, half-open --------------------------------------------------------------


def test_trial_call_after_reset_timeout(make: Make, now: FakeTime) -> None:
    breaker = make(fail_max=2, reset_timeout=60)
    trip(breaker)
    now.advance(59.9)
    with pytest.raises(pybreaker.CircuitBreakerError) as info:
        breaker.call(succeed)
    assert info.value.retry_after == pytest.approx(0.1, abs=0.002)
    now.advance(0.1)
    assert breaker.call(succeed) is True
    assert breaker.current_state == "closed"
    assert breaker.fail_counter == 0


def test_failed_trial_reopens(make: Make, now: FakeTime) -> None:
    breaker = make(fail_max=3, reset_timeout=10)
    trip(breaker)
    assert breaker.fail_counter == 3
    now.advance(10)
    with pytest.raises(pybreaker.CircuitBreakerError) as info:
        breaker.call(fail)
    assert str(info.value) == "Trial call failed, circuit breaker opened"
    assert breaker.current_state == "open"
    assert breaker.fail_counter == 4  # pybreaker counts the failed trial on top
    # Open again for a whole reset_timeout from the failed trial.
    now.advance(9.9)
    with pytest.raises(pybreaker.CircuitBreakerError):
        breaker.call(succeed)


def test_failed_call_when_half_open(make: Make) -> None:
    breaker = make()
    breaker.half_open()
    assert (breaker.fail_counter, breaker.current_state) == (0, "half-open")
    with pytest.raises(pybreaker.CircuitBreakerError):
        breaker.call(fail)
    assert (breaker.fail_counter, breaker.current_state) == (1, "open")


def test_success_threshold(make: Make, now: FakeTime) -> None:
    breaker = make(fail_max=1, reset_timeout=5, success_threshold=3)
    trip(breaker)
    now.advance(5)
    for expected in (1, 2):
        breaker.call(succeed)
        assert breaker.current_state == "half-open"
        assert breaker.success_counter == expected
        assert breaker.fail_counter == 0  # pybreaker resets it on a success
    breaker.call(succeed)
    assert breaker.current_state == "closed"
    assert breaker.success_counter == 0


def test_failure_after_some_successes_reopens(make: Make, now: FakeTime) -> None:
    breaker = make(fail_max=2, reset_timeout=5, success_threshold=3)
    trip(breaker)
    now.advance(5)
    breaker.call(succeed)
    with pytest.raises(pybreaker.CircuitBreakerError):
        breaker.call(fail)
    assert (breaker.current_state, breaker.fail_counter) == ("open", 1)
    assert breaker.success_counter == 0


def test_reset_timeout_zero_lets_the_next_call_through(make: Make) -> None:
    breaker = make(fail_max=1, reset_timeout=0)
    trip(breaker)
    assert breaker.call(succeed) is True
    assert breaker.current_state == "closed"


def test_storage_made_open_admits_a_trial_at_once(make: Make) -> None:
    # pybreaker: an open state without opened_at half-opens on the next call.
    breaker = make(pybreaker.STATE_OPEN)
    assert breaker.current_state == "open"
    assert breaker._state_storage.opened_at is None
    breaker.call(succeed)
    assert breaker.current_state == "closed"


# -- manual control ------------------------------------------------------------------


def test_manual_transitions_notify_every_time(make: Make, now: FakeTime) -> None:
    recorder = Recorder()
    breaker = make(listeners=[recorder], reset_timeout=30)
    breaker.open()
    assert breaker.current_state == "open"
    assert breaker._state_storage.opened_at == now.wall
    breaker.open()
    breaker.half_open()
    breaker.close()
    breaker.close()
    assert recorder.kinds() == [
        ("state_change", "closed", "open"),
        ("state_change", "open", "open"),
        ("state_change", "open", "half-open"),
        ("state_change", "half-open", "closed"),
        ("state_change", "closed", "closed"),
    ]


def test_manual_open_rejects_until_timeout(make: Make, now: FakeTime) -> None:
    breaker = make(reset_timeout=30)
    breaker.open()
    now.advance(29)
    with pytest.raises(pybreaker.CircuitBreakerError):
        breaker.call(succeed)
    now.advance(1)
    breaker.call(succeed)
    assert breaker.current_state == "closed"


def test_manual_transitions_keep_pybreakers_counters(make: Make) -> None:
    breaker = make(fail_max=5)
    for _ in range(2):
        with pytest.raises(DummyError):
            breaker.call(fail)
    breaker.open()
    assert breaker.fail_counter == 2
    breaker.half_open()
    assert breaker.fail_counter == 2
    breaker.close()
    assert (breaker.fail_counter, breaker.success_counter) == (0, 0)


def test_state_setter_makes_the_transition(make: Make) -> None:
    breaker = make()
    breaker.state = pybreaker.STATE_OPEN
    assert breaker.current_state == "open"
    assert breaker.state.name == "open"
    breaker.state = "closed"
    assert breaker.current_state == "closed"


# -- exclusions ------------------------------------------------------------------------


def test_excluded_exception_counts_as_success(make: Make) -> None:
    breaker = make(fail_max=2, exclude=[DummyError])
    with pytest.raises(OtherError):
        breaker.call(_raise, OtherError())
    assert breaker.fail_counter == 1
    with pytest.raises(SubDummyError):  # a subclass is excluded too
        breaker.call(_raise, SubDummyError())
    assert breaker.fail_counter == 0
    assert breaker.current_state == "closed"


def _raise(exc: BaseException) -> None:
    raise exc


def test_exclusion_predicates_and_types_mix(make: Make) -> None:
    breaker = make(fail_max=10, exclude=[lambda e: getattr(e, "status", 500) < 500])
    breaker.add_excluded_exception(KeyError)
    breaker.add_excluded_exceptions(IndexError, ZeroDivisionError)
    client_error = OtherError()
    client_error.status = 404  # type: ignore[attr-defined]
    for exc in (client_error, KeyError(), IndexError(), ZeroDivisionError()):
        with pytest.raises(type(exc)):
            breaker.call(_raise, exc)
    assert breaker.fail_counter == 0
    breaker.remove_excluded_exception(KeyError)
    with pytest.raises(KeyError):
        breaker.call(_raise, KeyError())
    assert breaker.fail_counter == 1
    assert len(breaker.excluded_exceptions) == 3
    with pytest.raises(ValueError):
        breaker.remove_excluded_exception(KeyError)


def test_excluded_error_of_a_trial_closes(make: Make) -> None:
    breaker = make(exclude=[DummyError])
    breaker.half_open()
    with pytest.raises(DummyError):
        breaker.call(fail)
    assert breaker.current_state == "closed"


def test_raising_predicate_propagates_and_counts_nothing(make: Make) -> None:
    def broken(exc: BaseException) -> bool:
        raise RuntimeError("predicate")

    breaker = make(exclude=[broken])
    with pytest.raises(RuntimeError, match="predicate"):
        breaker.call(fail)
    assert breaker.fail_counter == 0


# -- listeners -------------------------------------------------------------------------


def test_listener_callbacks_and_their_order(make: Make, now: FakeTime) -> None:
    recorder = Recorder()
    breaker = make(fail_max=2, reset_timeout=1, listeners=[recorder])
    breaker.call(succeed)
    with pytest.raises(DummyError):
        breaker.call(fail)
    with pytest.raises(pybreaker.CircuitBreakerError):
        breaker.call(fail)
    now.advance(1)
    breaker.call(succeed)
    assert recorder.kinds() == [
        "before_call",
        "success",
        "before_call",
        "failure",
        "before_call",
        "failure",
        ("state_change", "closed", "open"),
        ("state_change", "open", "half-open"),
        "before_call",
        ("state_change", "half-open", "closed"),
        "success",
    ]
    assert recorder.events[0][1:] == (succeed, (), {})


def test_listener_sees_arguments_and_breaker(make: Make) -> None:
    seen: list[Any] = []

    class Listener(pybreaker.CircuitBreakerListener):
        def before_call(self, cb: Any, func: Any, *args: Any, **kwargs: Any) -> None:
            seen.append((cb, func, args, kwargs, cb.current_state))

        def failure(self, cb: Any, exc: BaseException) -> None:
            seen.append(("failure", cb.fail_counter))

    breaker = make()
    breaker.add_listener(Listener())
    breaker.call(_add, 1, b=2)
    with pytest.raises(DummyError):
        breaker.call(fail)
    assert seen[0] == (breaker, _add, (1,), {"b": 2}, "closed")
    assert seen[-1] == ("failure", 1)  # counted before failure() is called


def _add(a: int, b: int = 0) -> int:
    return a + b


def test_add_and_remove_listeners(make: Make) -> None:
    first, second = Recorder(), Recorder()
    breaker = make()
    breaker.add_listeners(first, second)
    assert breaker.listeners == (first, second)
    breaker.remove_listener(first)
    assert breaker.listeners == (second,)
    with pytest.raises(ValueError):
        breaker.remove_listener(first)
    breaker.call(succeed)
    assert first.events == [] and len(second.events) == 2


def test_state_objects_follow_transitions(make: Make) -> None:
    recorder_states: list[Any] = []

    class Listener(pybreaker.CircuitBreakerListener):
        def state_change(self, cb: Any, old: Any, new: Any) -> None:
            recorder_states.append((old, new))

    breaker = make(listeners=[Listener()])
    closed = breaker.state
    assert breaker.state is closed
    breaker.open()
    old, new = recorder_states[0]
    assert old is closed
    assert isinstance(new, pybreaker.CircuitOpenState)
    assert breaker.state is new


def test_listener_may_call_the_breaker(make: Make) -> None:
    calls: list[str] = []

    class Reentrant(pybreaker.CircuitBreakerListener):
        def state_change(self, cb: Any, old: Any, new: Any) -> None:
            calls.append(new.name)
            if new.name == "open":
                cb.close()

    breaker = make(fail_max=1, listeners=[Reentrant()])
    with pytest.raises(pybreaker.CircuitBreakerError):
        breaker.call(fail)
    assert calls == ["open", "closed"]
    assert breaker.current_state == "closed"


def test_listener_exception_propagates_like_pybreakers(make: Make) -> None:
    class Refuse(pybreaker.CircuitBreakerListener):
        def before_call(self, cb: Any, func: Any, *args: Any, **kwargs: Any) -> None:
            raise PermissionError("no")

    breaker = make()
    breaker.half_open()
    breaker.add_listener(Refuse())
    called: list[int] = []
    with pytest.raises(PermissionError):
        breaker.call(called.append, 1)
    assert called == []
    # The trial slot was given back: the next call is admitted as a trial.
    breaker.remove_listener(breaker.listeners[0])
    breaker.call(succeed)
    assert breaker.current_state == "closed"


# -- forms -----------------------------------------------------------------------------


def test_decorator_plain_function(make: Make) -> None:
    breaker = make(fail_max=2)

    @breaker
    def double(x: int) -> int:
        """Doubles."""
        if x < 0:
            raise DummyError
        return 2 * x

    assert double(2) == 4
    assert double.__name__ == "double"
    assert double.__doc__ == "Doubles."
    assert inspect.signature(double) == inspect.signature(double.__wrapped__)
    with pytest.raises(DummyError):
        double(-1)
    with pytest.raises(pybreaker.CircuitBreakerError):
        double(-1)
    with pytest.raises(pybreaker.CircuitBreakerError):
        double(1)


def test_decorator_with_parentheses_and_methods(make: Make) -> None:
    breaker = make()

    class Service:
        factor = 3

        @breaker()
        def scale(self, x: int) -> int:
            return self.factor * x

    assert Service().scale(2) == 6
    assert breaker.fail_counter == 0


def test_decorated_function_follows_listeners_and_manual_state(make: Make) -> None:
    breaker = make()
    decorated = breaker(succeed)
    recorder = Recorder()
    breaker.add_listener(recorder)
    decorated()
    assert recorder.kinds() == ["before_call", "success"]
    breaker.remove_listener(recorder)
    breaker.open()  # replaces the core: the decorated function must follow
    with pytest.raises(pybreaker.CircuitBreakerError):
        decorated()
    breaker.close()
    assert decorated() is True


def test_decorated_module_function_pickles_by_name() -> None:
    assert pickle.loads(pickle.dumps(_pickled)) is _pickled
    assert _pickled(2) == 3

    @_module_breaker
    def local(x: int) -> int:
        return x

    with pytest.raises(pickle.PicklingError, match="by reference"):
        pickle.dumps(local)


_module_breaker = pybreaker.CircuitBreaker()


@_module_breaker
def _pickled(x: int) -> int:
    return x + 1


def three_numbers(fail_at: int | None) -> Any:
    for i in range(3):
        if i == fail_at:
            raise DummyError
        yield i


@pytest.mark.parametrize("listened", [False, True], ids=["compiled", "python"])
@pytest.mark.parametrize("form", ["decorated", "call"])
def test_a_generator_is_counted_when_it_finishes(
    make: Make, form: str, listened: bool
) -> None:
    # pybreaker's generator call, through the decorator on a generator
    # function or through call(f) for an f that returns a generator: a
    # success when exhausted, a failure when it raises, nothing before.
    breaker = make(fail_max=2)
    recorder = Recorder()
    if listened:
        breaker.add_listener(recorder)
    assert ("call" in vars(breaker)) is (not listened), "the path under test"
    decorated = breaker(three_numbers)

    def numbers(fail_at: int | None) -> Any:
        if form == "decorated":
            return decorated(fail_at)
        return breaker.call(three_numbers, fail_at)

    with pytest.raises(DummyError):
        breaker.call(fail)
    gen = numbers(None)
    assert inspect.isgenerator(gen)
    assert breaker.fail_counter == 1  # nothing counted before it finishes
    assert list(gen) == [0, 1, 2]
    assert breaker.fail_counter == 0
    with pytest.raises(DummyError):
        list(numbers(1))
    assert breaker.fail_counter == 1
    with pytest.raises(pybreaker.CircuitBreakerError):
        list(numbers(0))  # trips while iterating
    assert breaker.current_state == "open"
    with pytest.raises(pybreaker.CircuitBreakerError):
        numbers(None)  # rejected when called, as pybreaker does
    if listened:
        assert [k for k in recorder.kinds() if isinstance(k, str)] == [
            "before_call", "failure", "before_call", "success",
            "before_call", "failure", "before_call", "failure",
        ]  # fmt: skip


@pytest.mark.parametrize("listened", [False, True], ids=["compiled", "python"])
def test_generator_closed_after_an_item_is_a_success(
    make: Make, listened: bool
) -> None:
    # qbreaker's outcome rule (pybreaker counts the close as a failure): an
    # item shows the backend works.
    breaker = make()
    recorder = Recorder()
    if listened:
        breaker.add_listener(recorder)

    @breaker
    def numbers() -> Any:
        yield 1
        yield 2

    breaker.half_open()
    for _ in numbers():
        break
    assert breaker.current_state == "closed"
    if listened:
        assert "success" in recorder.kinds() and "failure" not in recorder.kinds()


def test_generator_closed_before_its_first_item_is_neutral(make: Make) -> None:
    breaker = make()

    @breaker
    def numbers() -> Any:
        yield 1
        yield 2

    breaker.half_open()
    unstarted = numbers()  # admitted when called, as pybreaker does
    unstarted.close()
    del unstarted
    gc.collect()
    assert breaker.current_state == "half-open"
    assert list(numbers()) == [1, 2]  # the trial slot was given back
    assert breaker.current_state == "closed"


@pytest.mark.parametrize("listened", [False, True], ids=["compiled", "python"])
def test_call_refuses_an_awaitable(make: Make, listened: bool) -> None:
    breaker = make()
    if listened:
        breaker.add_listener(Recorder())

    async def fetch() -> None:
        raise DummyError

    breaker.half_open()
    with pytest.raises(TypeError, match="call_async"):
        breaker.call(fetch)
    assert breaker.current_state == "half-open"  # neither closed nor re-opened
    with pytest.raises(pybreaker.CircuitBreakerError, match="Trial call failed"):
        asyncio.run(breaker.call_async(fetch))  # the trial slot was given back
    assert breaker.current_state == "open"


def test_generator_send_and_throw_pass_through(make: Make) -> None:
    breaker = make()

    @breaker
    def echo() -> Any:
        received = yield "ready"
        while True:
            try:
                received = yield received
            except KeyError:
                received = "caught"

    gen = echo()
    assert next(gen) == "ready"
    assert gen.send("a") == "a"
    assert gen.throw(KeyError()) == "caught"
    gen.close()
    assert breaker.fail_counter == 0


def test_a_generator_from_call_holds_the_trial_until_it_finishes(make: Make) -> None:
    breaker = make()

    def numbers() -> Any:
        yield 1
        yield 2

    breaker.half_open()
    gen = breaker.call(numbers)
    assert next(gen) == 1
    with pytest.raises(pybreaker.CircuitBreakerError):
        breaker.call(succeed)  # the trial call is still running
    assert list(gen) == [2]
    assert breaker.current_state == "closed"


def test_calling_context_manager(make: Make) -> None:
    breaker = make(fail_max=2, exclude=[KeyError])
    with breaker.calling():
        pass
    with pytest.raises(KeyError), breaker.calling():
        raise KeyError
    with pytest.raises(DummyError), breaker.calling():
        raise DummyError
    assert breaker.fail_counter == 1
    with pytest.raises(pybreaker.CircuitBreakerError) as info, breaker.calling():
        raise DummyError
    assert isinstance(info.value.__cause__, DummyError)
    ran = []
    with pytest.raises(pybreaker.CircuitBreakerError), breaker.calling():
        ran.append(1)
    assert ran == []


# -- what is not a failure -------------------------------------------------------------


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit, GeneratorExit])
def test_base_exceptions_are_neutral(make: Make, exc_type: type) -> None:
    breaker = make(fail_max=1)
    with pytest.raises(exc_type):
        breaker.call(_raise, exc_type())
    assert (breaker.current_state, breaker.fail_counter) == ("closed", 0)
    breaker.half_open()
    with pytest.raises(exc_type):
        breaker.call(_raise, exc_type())
    assert breaker.current_state == "half-open"
    breaker.call(succeed)  # the trial slot was given back
    assert breaker.current_state == "closed"


# -- asyncio (beyond pybreaker) --------------------------------------------------------


def test_call_async_counts_on_completion(make: Make) -> None:
    breaker = make(fail_max=2)

    async def work(x: int) -> int:
        await asyncio.sleep(0)
        if x < 0:
            raise DummyError
        return x

    async def main() -> None:
        assert await breaker.call_async(work, 3) == 3
        pending = breaker.call_async(work, -1)
        assert breaker.fail_counter == 0  # nothing runs before it is awaited
        with pytest.raises(DummyError):
            await pending
        assert breaker.fail_counter == 1
        with pytest.raises(pybreaker.CircuitBreakerError):
            await breaker.call_async(work, -1)
        with pytest.raises(pybreaker.CircuitBreakerError):
            await breaker.call_async(work, 1)

    asyncio.run(main())


def test_decorated_coroutine_function_is_counted(make: Make) -> None:
    breaker = make(fail_max=1)

    @breaker
    async def fetch(ok: bool) -> str:
        await asyncio.sleep(0)
        if not ok:
            raise DummyError
        return "ok"

    assert inspect.iscoroutinefunction(fetch)

    async def main() -> None:
        assert await fetch(True) == "ok"
        with pytest.raises(pybreaker.CircuitBreakerError):
            await fetch(False)
        assert breaker.current_state == "open"

    asyncio.run(main())


def test_cancelled_error_is_neutral(make: Make) -> None:
    breaker = make(fail_max=1)

    async def main() -> None:
        started = asyncio.Event()

        async def hang() -> None:
            started.set()
            await asyncio.sleep(3600)

        breaker.half_open()
        task = asyncio.ensure_future(breaker.call_async(hang))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert breaker.current_state == "half-open"
        assert await breaker.call_async(asyncio.sleep, 0, "done") == "done"
        assert breaker.current_state == "closed"

    asyncio.run(main())


def test_tornado_call_async() -> None:
    gen = pytest.importorskip("tornado.gen")
    ioloop = pytest.importorskip("tornado.ioloop")
    breaker = pybreaker.CircuitBreaker(fail_max=2)

    @gen.coroutine
    def tornado_work(ok: bool) -> Any:
        yield gen.sleep(0)
        if not ok:
            raise DummyError
        return "done"

    @breaker(__pybreaker_call_async=True)
    @gen.coroutine
    def decorated(ok: bool) -> Any:
        result = yield tornado_work(ok)
        return result

    @gen.coroutine
    def main() -> Any:
        assert (yield breaker.call_async(tornado_work, True)) == "done"
        assert (yield decorated(True)) == "done"
        try:
            yield breaker.call_async(tornado_work, False)
        except DummyError:
            pass
        assert breaker.fail_counter == 1
        try:
            yield decorated(False)
        except pybreaker.CircuitBreakerError:
            pass
        assert breaker.current_state == "open"

    ioloop.IOLoop.current().run_sync(main)


# -- settings changed at run time ------------------------------------------------------


def test_fail_max_can_change(make: Make) -> None:
    breaker = make(fail_max=5)
    for _ in range(2):
        with pytest.raises(DummyError):
            breaker.call(fail)
    breaker.fail_max = 3
    with pytest.raises(pybreaker.CircuitBreakerError):
        breaker.call(fail)
    assert breaker.fail_max == 3


def test_reset_timeout_change_applies_to_an_open_breaker(
    make: Make, now: FakeTime
) -> None:
    breaker = make(fail_max=1, reset_timeout=60)
    trip(breaker)
    now.advance(5)
    breaker.reset_timeout = 10
    assert breaker.reset_timeout == 10
    assert breaker.current_state == "open"
    now.advance(4.9)
    with pytest.raises(pybreaker.CircuitBreakerError):
        breaker.call(succeed)
    now.advance(0.1)
    breaker.call(succeed)
    assert breaker.current_state == "closed"


def test_success_threshold_change_in_half_open(make: Make) -> None:
    breaker = make(success_threshold=3)
    breaker.half_open()
    breaker.call(succeed)
    breaker.success_threshold = 2
    assert (breaker.current_state, breaker.success_counter) == ("half-open", 1)
    breaker.call(succeed)
    assert breaker.current_state == "closed"


def test_fail_counter_kept_across_a_policy_change(make: Make) -> None:
    breaker = make(fail_max=5)
    for _ in range(3):
        with pytest.raises(DummyError):
            breaker.call(fail)
    breaker.reset_timeout = 5
    assert breaker.fail_counter == 3


# -- storage ---------------------------------------------------------------------------


def test_breakers_sharing_a_memory_storage_share_state(impl: Any) -> None:
    storage = pybreaker.CircuitMemoryStorage("closed", core_class=impl.Breaker)
    first = pybreaker.CircuitBreaker(fail_max=2, state_storage=storage)
    second = pybreaker.CircuitBreaker(fail_max=2, state_storage=storage)
    with pytest.raises(DummyError):
        first.call(fail)
    assert second.fail_counter == 1
    with pytest.raises(pybreaker.CircuitBreakerError):
        second.call(fail)
    assert first.current_state == "open"
    with pytest.raises(pybreaker.CircuitBreakerError):
        first.call(succeed)


class DuckStorage:
    """A storage with pybreaker's interface but not its base class, as
    pybreaker itself accepts."""

    def __init__(self) -> None:
        self.state = "closed"
        self.counter = 0
        self.success_counter = 0
        self.opened_at: datetime.datetime | None = None

    def increment_counter(self) -> None:
        self.counter += 1

    def reset_counter(self) -> None:
        self.counter = 0

    def increment_success_counter(self) -> None:
        self.success_counter += 1

    def reset_success_counter(self) -> None:
        self.success_counter = 0


@pytest.mark.parametrize("module", [pybreaker, pytest.importorskip("pybreaker")])
def test_a_duck_typed_storage_is_accepted_as_by_pybreaker(module: Any) -> None:
    storage = DuckStorage()
    breaker = module.CircuitBreaker(fail_max=2, state_storage=storage)
    with pytest.raises(DummyError):
        breaker.call(fail)
    with pytest.raises(module.CircuitBreakerError):
        breaker.call(fail)
    assert storage.state == "open"
    with pytest.raises(TypeError, match="state_storage"):
        pybreaker.CircuitBreaker(state_storage=object())


def test_memory_storage_api(make: Make, now: FakeTime) -> None:
    breaker = make(fail_max=10, reset_timeout=30)
    storage = breaker._state_storage
    storage.increment_counter()
    storage.increment_counter()
    assert storage.counter == breaker.fail_counter == 2
    storage.reset_counter()
    assert storage.counter == 0
    storage.state = "open"
    assert breaker.current_state == "open"
    opened = storage.opened_at
    assert opened == now.wall
    now.advance(20)
    storage.opened_at = now.wall  # the timeout counts from here now
    now.advance(29)
    with pytest.raises(pybreaker.CircuitBreakerError):
        breaker.call(succeed)
    now.advance(1)
    breaker.success_threshold = 3
    breaker.call(succeed)
    assert storage.success_counter == 1
    storage.reset_success_counter()
    assert storage.success_counter == 0
    storage.increment_success_counter()
    assert storage.success_counter == 1


# -- pybreaker's guarantees without its lock -------------------------------------------


def _in_flight(breaker: Any, outcome: Callable[[], Any]) -> tuple[Any, Any, list[Any]]:
    """Start a call on a thread; it runs ``outcome`` when ``go`` is set."""
    entered, go = threading.Event(), threading.Event()
    result: list[Any] = []

    def slow() -> Any:
        entered.set()
        assert go.wait(10)
        return outcome()

    def run() -> None:
        try:
            result.append(breaker.call(slow))
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            result.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    assert entered.wait(10)
    return thread, go, result


@pytest.mark.parametrize("moved_by", ["trip", "open", "close", "half_open"])
def test_failure_admitted_before_a_transition_is_not_counted(
    make: Make, moved_by: str
) -> None:
    breaker = make(fail_max=3)
    thread, go, result = _in_flight(breaker, fail)
    if moved_by == "trip":
        trip(breaker)
    else:
        getattr(breaker, moved_by)()
    state, failures = breaker.current_state, breaker.fail_counter
    go.set()
    thread.join(10)
    assert isinstance(result[0], DummyError)  # not the error of a trip
    assert (breaker.current_state, breaker.fail_counter) == (state, failures)


def test_exactly_one_trial_call_in_half_open(make: Make) -> None:
    breaker = make(fail_max=1)
    breaker.half_open()
    thread, go, result = _in_flight(breaker, succeed)
    for _ in range(3):
        with pytest.raises(pybreaker.CircuitBreakerError) as info:
            breaker.call(succeed)
        assert str(info.value) == "Trial call in progress, circuit breaker half-open"
        assert info.value.retry_after == 0.0
    go.set()
    thread.join(10)
    assert result == [True]
    assert breaker.current_state == "closed"


# -- CircuitBreakerError ---------------------------------------------------------------


def test_circuit_breaker_error() -> None:
    error = pybreaker.CircuitBreakerError("message", retry_after=1.5)
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.retry_after) == ("message", 1.5)
    assert pybreaker.CircuitBreakerError("made by hand").retry_after is None
    assert issubclass(pybreaker.CircuitBreakerError, Exception)
    assert issubclass(pybreaker.CircuitBreakerError, qbreaker.BreakerError)


def test_subclass_overriding_call_is_honoured(make: Make) -> None:
    seen: list[Any] = []

    class Audited(pybreaker.CircuitBreaker):
        def call(self, func: Any, *args: Any, **kwargs: Any) -> Any:
            seen.append(func)
            return super().call(func, *args, **kwargs)

    breaker = Audited(state_storage=make()._state_storage)
    decorated = breaker(succeed)
    assert breaker.call(succeed) is True and decorated() is True
    assert seen == [succeed, succeed]


def test_compiled_path_only_without_listeners(make: Make) -> None:
    breaker = make()
    listener = Recorder()
    assert "call" in vars(breaker)  # the core's own call, bound
    breaker.add_listener(listener)
    assert "call" not in vars(breaker)
    breaker.remove_listener(listener)
    assert "call" in vars(breaker)
