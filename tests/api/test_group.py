"""BreakerGroup: lazy named breakers, overrides, the bound, threads and fork."""

from __future__ import annotations

import collections
import os
import re
import signal
import sys
import threading
import warnings
from typing import Any, Callable

import pytest

from qbreaker import State
from qbreaker._impl.group import BreakerGroup

from ..helpers import FakeClock, Impl


def make_group(impl: Impl, **kwargs: Any) -> BreakerGroup:
    return BreakerGroup(_breaker_class=impl.Breaker, **kwargs)


def state(group: BreakerGroup, name: str) -> State:
    # A call, so mypy does not narrow one read and flag the next as unreachable.
    return group[name].state


def counting(impl: Impl) -> tuple[Callable[..., Any], collections.Counter[str]]:
    """A breaker factory that counts the breakers it builds, by name."""
    built: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()

    def factory(**kwargs: Any) -> Any:
        with lock:
            built[kwargs["name"]] += 1
        return impl.Breaker(**kwargs)

    return factory, built


def test_breakers_are_created_lazily_once_per_name(impl: Impl) -> None:
    factory, built = counting(impl)
    group = BreakerGroup(_breaker_class=factory)
    assert built == {"BreakerGroup defaults": 1}  # the validation throwaway
    assert len(group) == 0 and "a" not in group

    a = group.get("a")
    assert isinstance(a, impl.Breaker)
    assert a.name == "a"
    assert group.get("a") is a and group["a"] is a
    assert group["b"] is not a
    assert built["a"] == built["b"] == 1

    class Host(str):
        pass

    assert group[Host("a")] is a and group.allow(Host("a"))
    assert len(group) == 2


def test_defaults_and_overrides(impl: Impl, clock: FakeClock) -> None:
    group = make_group(impl, max_failures=2, reset_timeout=5.0, clock=clock)
    a = group["a"]
    assert (a.max_failures, a.reset_timeout) == (2, 5.0)

    b = group.get("b", max_failures=4, half_open_max=1)
    assert (b.max_failures, b.reset_timeout, b.half_open_max) == (4, 5.0, 1)
    # The same overrides again, or none at all, return the existing breaker.
    assert group.get("b", half_open_max=1, max_failures=4) is b
    assert group.get("b") is b and group["b"] is b
    # Restating a group default is not a difference.
    assert group.get("a", max_failures=2, reset_timeout=5.0) is a


def test_get_with_different_overrides_is_a_value_error(impl: Impl) -> None:
    group = make_group(impl, max_failures=2)
    group.get("b", max_failures=4)
    with pytest.raises(ValueError, match=r"'b' .*max_failures"):
        group.get("b", max_failures=3)
    with pytest.raises(ValueError, match=r"'b' .*half_open_max, max_failures"):
        group.get("b", max_failures=9, half_open_max=1)
    # Overrides against a breaker created without any.
    group.get("a")
    with pytest.raises(ValueError, match=r"'a' .*reset_timeout"):
        group.get("a", reset_timeout=7)
    # A callable compares by identity: a fresh lambda is a different setting.
    group.get("c", fallback=len)
    assert group.get("c", fallback=len) is group["c"]
    with pytest.raises(ValueError, match=r"'c' .*fallback"):
        group.get("c", fallback=lambda *a: None)
    assert len(group) == 3


def test_delegation(impl: Impl, clock: FakeClock) -> None:
    group = make_group(
        impl, max_failures=2, reset_timeout=10, half_open_max=1, clock=clock
    )
    assert group.allow("svc") is True
    group.record_failure("svc")
    group.record_failure("svc")
    breaker = group["svc"]
    assert state(group, "svc") is State.OPEN
    assert group.allow("svc") is False
    clock.advance(10)
    assert group.allow("svc") is True
    assert state(group, "svc") is State.HALF_OPEN
    group.record_success("svc")
    assert state(group, "svc") is State.CLOSED
    totals = breaker.totals()
    assert (totals.allowed, totals.rejected) == (2, 1)
    assert (totals.successes, totals.failures) == (1, 2)
    assert len(group) == 1


def test_len_iter_contains(impl: Impl) -> None:
    group = make_group(impl)
    for name in ("x", "y", "z"):
        group.get(name)
    assert len(group) == 3
    assert sorted(group) == ["x", "y", "z"]
    assert "x" in group and "w" not in group and 5 not in group
    # Iteration works on a snapshot: creating names meanwhile is fine.
    seen = [name for name in group if group.get(name + "!")]
    assert sorted(seen) == ["x", "y", "z"]
    assert len(group) == 6


def test_metrics_is_a_snapshot_per_name(impl: Impl) -> None:
    group = make_group(impl, max_failures=1)
    group.allow("ok")
    group.record_success("ok")
    group.record_failure("down")
    metrics = group.metrics()
    assert sorted(metrics) == ["down", "ok"]
    assert metrics["ok"].name == "ok"
    assert (metrics["ok"].allowed, metrics["ok"].successes) == (1, 1)
    assert metrics["ok"].state is State.CLOSED
    assert metrics["down"].failures == 1
    assert metrics["down"].state is State.OPEN


def test_exclude_from_a_generator_reaches_every_breaker(impl: Impl) -> None:
    group = make_group(impl, exclude=(e for e in [KeyError]))

    def lookup() -> None:
        raise KeyError("missing")

    for name in ("a", "b"):
        with pytest.raises(KeyError):
            group[name].call(lookup)
        totals = group[name].totals()
        assert (totals.neutral, totals.failures) == (1, 0)


def test_repr(impl: Impl) -> None:
    group = make_group(impl, max_breakers=10, max_failures=3)
    group.get("a")
    assert (
        repr(group) == "<BreakerGroup 1 breakers max_breakers=10 {'max_failures': 3}>"
    )
    assert group.max_breakers == 10
    assert make_group(impl).max_breakers is None


@pytest.mark.parametrize("name", [5, None, b"host", ("a",)])
def test_names_must_be_str(impl: Impl, name: Any) -> None:
    group = make_group(impl)
    pattern = "name must be a str, got " + re.escape(repr(name))
    calls: list[Callable[[], object]] = [
        lambda: group.get(name),
        lambda: group[name],
        lambda: group.allow(name),
        lambda: group.record_success(name),
        lambda: group.record_failure(name),
    ]
    for call in calls:
        with pytest.raises(TypeError, match=pattern):
            call()
    assert len(group) == 0


@pytest.mark.parametrize(
    ("value", "error", "pattern"),
    [
        (0, ValueError, r"max_breakers must be None or an int in \[1, inf\), got 0"),
        (-2, ValueError, r"max_breakers .* got -2"),
        (True, TypeError, r"max_breakers .*\[1, inf\).* got True \(bool\)"),
        (2.0, TypeError, r"max_breakers .* got 2.0 \(float\)"),
        ("3", TypeError, r"max_breakers .* got '3' \(str\)"),
    ],
)
def test_bad_max_breakers(impl: Impl, value: Any, error: type, pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        make_group(impl, max_breakers=value)


def test_bad_defaults_fail_at_construction(impl: Impl) -> None:
    with pytest.raises(ValueError, match=r"max_failures must be in .* got 0"):
        make_group(impl, max_failures=0)
    with pytest.raises(TypeError, match=r"fallback must be callable"):
        make_group(impl, fallback=3)
    with pytest.raises(TypeError, match=r"max_failure"):
        make_group(impl, max_failure=3)
    with pytest.raises(TypeError, match=r"name cannot be given .*name='x'"):
        make_group(impl, name="x")


def test_bad_overrides_create_nothing(impl: Impl) -> None:
    group = make_group(impl, max_breakers=1)
    group.get("a")
    with pytest.raises(ValueError, match=r"half_open_max must be in"):
        group.get("b", half_open_max=0)
    assert list(group) == ["a"]  # and nothing was evicted to make room


def test_threads_racing_create_each_name_once(impl: Impl) -> None:
    factory, built = counting(impl)
    group = BreakerGroup(_breaker_class=factory)
    names = [f"host-{i}" for i in range(50)]
    barrier = threading.Barrier(8)
    results: list[dict[str, Any]] = [{} for _ in range(8)]
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            barrier.wait()
            order = names if index % 2 else names[::-1]
            for name in order:
                results[index][name] = group.get(name)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(switch)
    assert errors == []
    assert len(group) == 50
    for name in names:
        assert built[name] == 1
        assert all(result[name] is group[name] for result in results)


def test_threads_racing_a_bounded_group_keep_the_bound(impl: Impl) -> None:
    group = make_group(impl, max_breakers=20)
    names = [f"host-{i}" for i in range(200)]
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            barrier.wait()
            for name in names[index::2] if index % 2 else names:
                assert group.get(name).name == name
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(group) == 20  # every breaker is closed and idle: all evictable
    assert all(group[name].name == name for name in list(group))


def test_eviction_takes_the_least_recently_used_closed_breaker(
    impl: Impl, clock: FakeClock
) -> None:
    group = make_group(
        impl,
        max_breakers=3,
        max_failures=1,
        reset_timeout=10,
        half_open_max=1,
        clock=clock,
    )
    group.get("a")
    held_b = group["b"]
    c = group["c"]
    group.record_failure("a")  # open: protected
    assert held_b.allow()  # a use outside the group counts too
    group.get("d")
    assert sorted(group) == ["a", "b", "d"]  # c: closed and never used
    assert state(group, "a") is State.OPEN

    clock.advance(10)
    assert group.allow("a")  # the probe: a is half-open, still protected
    group.get("e")  # b was used before d was created, so b is older
    assert sorted(group) == ["a", "d", "e"]
    assert state(group, "a") is State.HALF_OPEN
    # An evicted name comes back as a fresh breaker.
    group.record_success("a")
    assert group["c"] is not c and group["c"].totals().allowed == 0


def test_open_half_open_and_forced_breakers_are_never_evicted(
    impl: Impl, clock: FakeClock
) -> None:
    group = make_group(impl, max_breakers=2, max_failures=1, clock=clock)
    group.record_failure("open")
    group["forced"].force_closed()
    group.get("extra")  # nothing evictable: the group grows past the bound
    assert sorted(group) == ["extra", "forced", "open"]
    group.get("more")  # "extra" is idle and closed: it goes
    assert sorted(group) == ["forced", "more", "open"]
    group["open"].force_open()
    group.get("another")  # forced open now: "more" is the idle closed one
    assert sorted(group) == ["another", "forced", "open"]

    # Back to normal operation, later creations shrink it to the bound again.
    group["open"].reset()
    group["forced"].reset()
    group.get("last")
    assert sorted(group) == ["forced", "last"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_while_another_thread_holds_the_creation_lock(impl: Impl) -> None:
    group = make_group(impl)
    group.get("before")
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with group._lock:
            held.set()
            release.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(30)
        with warnings.catch_warnings():
            # 3.12+ warns that forking a multi-threaded process may deadlock:
            # that deadlock is exactly what is under test.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the child: never return into pytest
            code = 1
            try:
                signal.alarm(30)  # a backstop, should the lock still be held
                if not group._lock.acquire(blocking=False):
                    code = 3
                else:
                    group._lock.release()
                    breaker = group.get("after")
                    ok = breaker.name == "after" and sorted(group) == [
                        "after",
                        "before",
                    ]
                    code = 0 if ok else 2
            finally:
                os._exit(code)
    finally:
        release.set()
        holder.join()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert list(group) == ["before"]  # the parent is untouched


def test_eviction_order_is_a_second_chance_ring(impl: Impl) -> None:
    # The exact order docs/usage.md promises: the hand walks the ring in
    # creation order; a breaker used since the hand last passed (or since its
    # creation) gets a second chance at the back, the first idle one goes.
    group = make_group(impl, max_breakers=3)
    for name in "abc":
        group.get(name)
    assert group.allow("a")
    group.record_success("a")
    assert group.allow("c")
    group["b"]  # a bare lookup is not a use
    group.get("d")  # a: used, to the back; b: idle, evicted
    assert sorted(group) == ["a", "c", "d"]
    group.get("e")  # ring c, a, d: c used, to the back; a idle since, evicted
    assert sorted(group) == ["c", "d", "e"]
    group.get("f")  # ring d, c, e: d never used, evicted
    assert sorted(group) == ["c", "e", "f"]


def test_hits_on_a_breaker_subclass_call_its_methods(impl: Impl) -> None:
    # The compiled hit path drives a compiled breaker inline; any other
    # class, a subclass included, gets its own methods called.
    calls: list[str] = []

    class Traced(impl.Breaker):  # type: ignore[misc, name-defined]
        def allow(self) -> bool:
            calls.append("allow")
            return bool(super().allow())

        def record_success(self) -> None:
            calls.append("success")
            super().record_success()

        def record_failure(self) -> None:
            calls.append("failure")
            super().record_failure()

    group = BreakerGroup(_breaker_class=Traced)
    a = group["a"]
    assert group.allow("a")
    group.record_success("a")
    group.record_failure("a")
    assert calls == ["allow", "success", "failure"]
    totals = a.totals()
    assert (totals.allowed, totals.successes, totals.failures) == (1, 1, 1)


def test_a_hit_runs_no_python_frame(core_c: Any) -> None:
    group = BreakerGroup(_breaker_class=core_c.CircuitBreaker, max_failures=2)
    assert isinstance(group, core_c.GroupHits)  # the compiled core's hit path
    a = group["a"]
    # A breaker's own first-need work (its event dispatcher, made on a first
    # failure; events of a transition, delivered at its next call) runs
    # Python code: done here, before the hits watched below.
    group.record_failure("a")
    group.record_success("a")
    group["b"].force_open()
    assert not group["b"].allow()
    frames: list[str] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            frames.append(frame.f_code.co_name)

    sys.setprofile(profile)
    try:
        found = group["a"]
        allowed = group.allow("a")
        group.record_success("a")
        group.record_failure("a")
        rejected = not group.allow("b")  # the open path, out of line
    finally:
        sys.setprofile(None)
    assert frames == []
    assert found is a and allowed and rejected
    totals = a.totals()
    assert (totals.allowed, totals.successes, totals.failures) == (1, 2, 2)
    assert group["b"].totals().rejected == 2
