"""Rejections: the CircuitOpenError each form raises, and the fallback.

The error a rejection raises is built without ``__init__`` and formats its
message when read; it must be indistinguishable from one built by
``CircuitOpenError(name, state, retry_after)``.
"""

from __future__ import annotations

import copy
import gc
import math
import pickle
import sys
from types import FrameType
from typing import Any, Callable

import pytest

from qbreaker import BreakerError, CircuitOpenError, State

from ..helpers import FakeClock, Impl


def work(*args: Any, **kwargs: Any) -> tuple[Any, ...]:
    return ("work", args, kwargs)


def fallback(*args: Any, **kwargs: Any) -> tuple[Any, ...]:
    return ("fallback", args, kwargs)


def _with(b: Any) -> None:
    with b:
        pass


def _call(b: Any) -> None:
    b.call(work, 1, key=2)


def _decorated(b: Any) -> None:
    b(work)(1, key=2)


FORMS: dict[str, Callable[[Any], None]] = {
    "with": _with,
    "call": _call,
    "decorator": _decorated,
}


def _open(impl: Impl, clock: FakeClock, how: str, **settings: Any) -> Any:
    """A breaker named "db" that rejects: open, half-open and busy, or forced."""
    b = impl.Breaker(1, 10, 1, clock=clock, name="db", **settings)
    if how == "forced":
        b.force_open()
        return b
    b.record_failure()
    clock.advance(4)
    if how == "half-open":
        clock.advance(6)
        assert b.allow()  # the one probe slot, now busy
    return b


def _rejection(b: Any, form: str) -> CircuitOpenError:
    with pytest.raises(CircuitOpenError) as info:
        FORMS[form](b)
    return info.value


EXPECTED = {
    "open": (State.OPEN, 6.0, "circuit breaker 'db' is open; retry after 6.000 s"),
    "half-open": (
        State.HALF_OPEN,
        0.0,
        "circuit breaker 'db' is half-open and every probe slot is busy; "
        "retry when a probe reports",
    ),
    "forced": (
        State.OPEN,
        math.inf,
        "circuit breaker 'db' is forced open until reset()",
    ),
}


@pytest.mark.parametrize("how", list(EXPECTED))
@pytest.mark.parametrize("form", list(FORMS))
def test_a_rejection_is_the_documented_error(
    impl: Impl, clock: FakeClock, form: str, how: str
) -> None:
    b = _open(impl, clock, how)
    err = _rejection(b, form)
    state, retry_after, message = EXPECTED[how]
    # A private subclass with its fields in slots (see _errors._Rejection),
    # named, shown and pickled as the public class.
    assert isinstance(err, CircuitOpenError) and isinstance(err, BreakerError)
    assert type(err).__name__ == type(err).__qualname__ == "CircuitOpenError"
    assert type(err).__module__ == CircuitOpenError.__module__
    assert type(err).__slots__ == ("name", "state", "retry_after", "_breaker")
    assert type(pickle.loads(pickle.dumps(err))) is CircuitOpenError
    assert (err.name, err.state, err.retry_after) == ("db", state, retry_after)
    assert err.state is state and err._breaker is b
    # The same as one built by hand, field by field.
    made = CircuitOpenError("db", state, retry_after)
    assert err.args == made.args == (message,)
    assert str(err) == str(made) == message
    assert repr(err) == repr(made) == f"CircuitOpenError({message!r})"
    assert err.__reduce__() == made.__reduce__()


@pytest.mark.parametrize("first", ["str", "repr", "args"])
def test_the_message_reads_the_same_whatever_is_read_first(
    impl: Impl, clock: FakeClock, first: str
) -> None:
    message = EXPECTED["open"][2]
    err = _rejection(_open(impl, clock, "open"), "with")
    read = {"str": str, "repr": repr, "args": lambda e: e.args}[first]
    read(err)
    assert (str(err), err.args) == (message, (message,))
    assert repr(err) == f"CircuitOpenError({message!r})"


def test_a_rejections_args_can_be_set(impl: Impl, clock: FakeClock) -> None:
    err = _rejection(_open(impl, clock, "open"), "call")
    err.args = ("replaced", 1)
    assert err.args == ("replaced", 1) and str(err) == "('replaced', 1)"
    err = _rejection(_open(impl, clock, "open"), "call")
    err.args = ()  # set before the message was ever read: stays empty
    assert err.args == () and str(err) == "" and repr(err) == "CircuitOpenError()"


def test_a_rejection_pickles_and_copies_without_its_breaker(
    impl: Impl, clock: FakeClock
) -> None:
    err = _rejection(_open(impl, clock, "half-open"), "decorator")
    for twin in (pickle.loads(pickle.dumps(err)), copy.copy(err), copy.deepcopy(err)):
        assert type(twin) is CircuitOpenError
        assert (twin.name, twin.state, twin.retry_after) == ("db", State.HALF_OPEN, 0.0)
        assert twin.args == err.args and str(twin) == str(err)
        assert twin._breaker is None


def test_a_rejection_with_a_traceback_prints_its_message(
    impl: Impl, clock: FakeClock
) -> None:
    import traceback

    err = _rejection(_open(impl, clock, "forced"), "with")
    text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    assert text.rstrip().endswith(
        "CircuitOpenError: circuit breaker 'db' is forced open until reset()"
    )


def test_each_rejection_is_a_fresh_error(impl: Impl, clock: FakeClock) -> None:
    b = _open(impl, clock, "open")
    first, second = _rejection(b, "with"), _rejection(b, "with")
    assert first is not second


def test_an_unnamed_breaker_names_itself_in_its_rejection(impl: Impl) -> None:
    b = impl.Breaker()
    b.force_open()
    with pytest.raises(CircuitOpenError) as info, b:
        pass
    assert info.value.name == b.name and b.name.startswith("breaker-")
    assert f"{b.name!r}" in str(info.value)


# -- the fallback --------------------------------------------------------------------


@pytest.mark.parametrize("form", ["call", "decorator"])
def test_the_fallback_gets_the_calls_arguments(
    impl: Impl, clock: FakeClock, form: str
) -> None:
    b = _open(impl, clock, "open", fallback=fallback)
    if form == "call":
        got = b.call(work, 1, 2, key=3)
        none = b.call(work)
    else:
        got = b(work)(1, 2, key=3)
        none = b(work)()
    assert got == ("fallback", (1, 2), {"key": 3})
    assert none == ("fallback", (), {})
    assert b.totals().rejected == 2


def test_an_exception_from_the_fallback_propagates(
    impl: Impl, clock: FakeClock
) -> None:
    def failing(*args: Any) -> None:
        raise KeyError(args)

    b = _open(impl, clock, "open", fallback=failing)
    with pytest.raises(KeyError) as info:
        b(work)(7)
    assert info.value.args == ((7,),)
    assert b.state is State.OPEN and b.totals().failures == 1


def test_on_reject_runs_before_the_fallback_and_before_raising(
    impl: Impl, clock: FakeClock
) -> None:
    seen: list[Any] = []
    b = _open(impl, clock, "open", on_reject=seen.append)
    with pytest.raises(CircuitOpenError) as info, b:
        pass
    assert info.value._breaker is b
    with pytest.raises(CircuitOpenError):
        b.call(work)
    f = _open(impl, clock, "open", on_reject=seen.append, fallback=fallback)
    assert f.call(work, 1) == ("fallback", (1,), {})
    assert seen == [b, b, f]


# -- subclasses ----------------------------------------------------------------------


def test_a_subclass_that_keeps_the_methods_raises_the_same_error(
    impl: Impl, clock: FakeClock
) -> None:
    class Mine(impl.Breaker):  # type: ignore[misc,name-defined]
        pass

    b = Mine(1, 10, 1, clock=clock, name="db", fallback=fallback)
    b.record_failure()
    assert b(work)(1) == ("fallback", (1,), {})
    err = _rejection(b, "with")
    assert (err.name, err.state, err.retry_after, err._breaker) == (
        "db",
        State.OPEN,
        10.0,
        b,
    )


def test_a_subclass_overriding_the_rejection_methods_is_called(
    impl: Impl, clock: FakeClock
) -> None:
    seen: list[str] = []

    class Mine(impl.Breaker):  # type: ignore[misc,name-defined]
        def _raise_open(self) -> None:
            seen.append("raise_open")
            raise LookupError("mine")

        def _rejected(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            seen.append("rejected")
            return ("mine", args, kwargs)

    b = Mine(1, 10, 1, clock=clock)
    b.record_failure()
    with pytest.raises(LookupError, match="mine"), b:
        pass
    assert b.call(work, 1, k=2) == ("mine", (1,), {"k": 2})
    assert b(work)() == ("mine", (), {})
    assert seen == ["raise_open", "rejected", "rejected"]


# -- the compiled raise path runs no Python code ----------------------------------


def _python_frames(action: Callable[[], object]) -> list[str]:
    """The Python-level functions that ``action`` runs, itself excepted."""
    seen: list[str] = []
    own = action.__code__

    def profile(frame: FrameType, event: str, arg: object) -> None:
        if event == "call" and frame.f_code is not own:
            seen.append(frame.f_code.co_name)

    # A collection during the action would run weakref callbacks of objects
    # earlier tests left (WeakSet._remove, say): not the action's frames.
    collecting = gc.isenabled()
    gc.collect()
    gc.disable()
    sys.setprofile(profile)
    try:
        action()
    finally:
        sys.setprofile(None)
        if collecting:
            gc.enable()
    return seen


@pytest.mark.parametrize("form", list(FORMS))
def test_a_compiled_rejection_runs_no_python_frame(core_c: Any, form: str) -> None:
    # The monotonic clock: a clock= function would be a Python call of its own.
    b = core_c.CircuitBreaker(1, 3600, 1, name="db")
    b.record_failure()
    guarded = b(work)
    run = {
        "with": lambda: b.__enter__(),
        "call": lambda: b.call(work),
        "decorator": lambda: guarded(),
    }[form]

    def action() -> None:
        try:
            run()
        except CircuitOpenError:
            pass

    assert _python_frames(action) == ["<lambda>"]


def test_a_compiled_fallback_rejection_runs_only_the_fallback(core_c: Any) -> None:
    b = core_c.CircuitBreaker(1, 3600, 1, fallback=fallback)
    b.record_failure()
    guarded = b(work)

    def action() -> None:
        guarded(1, key=2)
        b.call(work, 1)

    assert _python_frames(action) == ["fallback", "fallback"]


def test_a_circuit_open_error_made_by_a_subclass_init_is_a_failure(
    impl: Impl,
) -> None:
    # Raised by the backend, not by this breaker: an ordinary exception, even
    # when its __init__ leaves CircuitOpenError's attributes unset.
    class Downstream(CircuitOpenError):
        def __init__(self) -> None:
            Exception.__init__(self, "a downstream breaker is open")

    def call_downstream() -> None:
        raise Downstream()

    b = impl.Breaker(1, 10, 1)
    with pytest.raises(Downstream):
        b.call(call_downstream)
    assert b.state is State.OPEN and b.totals().failures == 1
