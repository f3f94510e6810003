"""fork() while other threads use breakers: the child gets working breakers.

An in-process breaker is copied by fork, not shared: the child starts from
the state of the moment of the fork, and from then on the two processes'
breakers evolve apart (sharing one breaker between processes is the
shared-memory cell's job). Only the forking thread exists in the child, so
every lock another thread held at that instant must not stay held there: the
listeners' dispatcher lock (a listener was running), the module lock that
guards listener lists and names, a group's creation lock, and, on
free-threaded builds, the lock that orders transitions with their delivery.
"""

from __future__ import annotations

import os
import signal
import threading
import warnings
from typing import Any, Callable

import pytest

from qbreaker import State
from qbreaker._impl import methods as _api
from qbreaker._impl.group import BreakerGroup

from ..helpers import Impl

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")



def fork_and_check(child: Callable[[], bool]) -> int:
    """Fork; run ``child()`` in the child (exit 0 if True); the exit code."""
    with warnings.catch_warnings():
        # 3.12+ warns that forking a multi-threaded process may deadlock:
        # that deadlock is exactly what is under test.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            signal.alarm(20)  # a backstop, should a lock still be held
            code = 0 if child() else 2
        except BaseException:  # noqa: BLE001 - the exit code says it
            code = 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_fork_while_threads_hammer_a_breaker(impl: Impl) -> None:
    # Threads admit and report without pause while the main thread forks.
    b = impl.Breaker(max_failures=1_000_000, reset_timeout=60)
    seen: list[tuple[State, State]] = []
    b.add_listener(lambda br, old, new: seen.append((old, new)))
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            if b.allow():
                b.record_success()
            t = b.acquire()
            if t:
                b.release(t, True)

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()

    def child() -> bool:
        before = b.totals()
        b._trip()  # a transition in the child, delivered to its listener
        after = b.totals()
        ok = b.state is State.OPEN and seen == [(State.CLOSED, State.OPEN)]
        ok &= after.transitions == before.transitions + 1
        b.reset()
        ok &= b.allow() and b.totals().allowed == after.allowed + 1
        return bool(ok)

    try:
        code = fork_and_check(child)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert code == 0
    assert seen == [] and b.state is State.CLOSED  # the parent is untouched


def test_fork_while_locks_are_held(impl: Impl) -> None:
    parent = os.getpid()
    in_listener, release = threading.Event(), threading.Event()
    delivered: list[tuple[State, State]] = []

    def slow_listener(br: Any, old: State, new: State) -> None:
        delivered.append((old, new))
        if os.getpid() == parent and len(delivered) == 1:
            in_listener.set()
            release.wait(30)  # holds the dispatcher's lock meanwhile

    b = impl.Breaker(max_failures=1, reset_timeout=60, on_state_change=slow_listener)

    in_factory = threading.Event()

    def factory(**kwargs: Any) -> Any:
        if os.getpid() == parent and kwargs["name"] == "slow":
            in_factory.set()
            release.wait(30)  # holds the group's creation lock meanwhile
        return impl.Breaker(**kwargs)

    group = BreakerGroup(_breaker_class=factory)
    group.get("before")
    in_api_lock = threading.Event()

    def hold_api_lock() -> None:
        with _api._lock:
            in_api_lock.set()
            release.wait(30)

    stop = threading.Event()

    def hammer() -> None:
        other = group["before"]
        while not stop.is_set():
            if other.allow():
                other.record_success()

    threads = [
        threading.Thread(target=b.record_failure),  # trips: slow delivery
        threading.Thread(target=group.get, args=("slow",)),
        threading.Thread(target=hold_api_lock),
        threading.Thread(target=hammer),
    ]
    for t in threads:
        t.start()

    def child() -> bool:
        # The trip's delivery was cut short with its thread: not redelivered.
        assert delivered == [(State.CLOSED, State.OPEN)]
        b.reset()  # OPEN -> CLOSED, delivered here
        b.record_failure()  # CLOSED -> OPEN
        assert delivered[1:] == [
            (State.OPEN, State.CLOSED),
            (State.CLOSED, State.OPEN),
        ]
        b.add_listener(lambda *a: None)  # the module lock is free
        fresh = group.get("slow")  # never finished in the parent's thread
        assert fresh.name == "slow" and sorted(group) == ["before", "slow"]
        assert group.get("after").allow()
        assert group["before"].allow()
        return True

    try:
        assert in_listener.wait(30) and in_factory.wait(30) and in_api_lock.wait(30)
        code = fork_and_check(child)
    finally:
        release.set()
        stop.set()
        for t in threads:
            t.join()
    assert code == 0, {2: "a check failed", 3: "the child raised", -14: "deadlock"}.get(
        code, code
    )
    # The parent delivered its own trip, once.
    assert delivered == [(State.CLOSED, State.OPEN)]
    assert sorted(group) == ["before", "slow"]
