"""The benchmark's measurements that are not a timed loop, written once.

Threads (Python and native), the memory of a breaker and BreakerGroup lookup
are measured by functions here, used by ``python -m qbreaker bench`` and by
``benchmarks/`` alike.
"""

from __future__ import annotations

import functools
import gc
import threading
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable

from qbreaker import BreakerGroup

from .subjects import (
    PY,
    C,
    Unavailable,
    compiled_class,
    floor_module,
    fresh,
    peer_module,
    twin_class,
    work,
)

__all__ = (
    "GROUP_NAMES",
    "MEMORY_INSTANCES",
    "THREAD_SUBJECTS",
    "ThreadSubject",
    "bytes_per_breaker",
    "bytes_per_group_entry",
    "group_lookup_loops",
    "native_elapsed",
    "native_op",
    "peer_factory",
    "thread_elapsed",
    "thread_workload",
)

# The sizes: memory per breaker over this many instances, and lookup
# among this many names.
MEMORY_INSTANCES = 100_000
GROUP_NAMES = 100_000


# -- Python threads on one breaker ------------------------------------------------


@dataclass(frozen=True)
class ThreadSubject:
    """``make()`` gives ``op(n)``, which performs ``n`` protected calls."""

    name: str
    family: str
    make: Callable[[], Callable[[int], None]]


def _pair_ops(b: Any) -> Callable[[int], None]:
    def op(n: int) -> None:
        for _ in range(n):
            if b.allow():
                work()
                b.record_success()

    return fresh(op)


def _call_ops(b: Any) -> Callable[[int], None]:
    def op(n: int) -> None:
        for _ in range(n):
            b.call(work)

    return fresh(op)


def _pybreaker() -> Any:
    return peer_module("pybreaker").CircuitBreaker(fail_max=5, reset_timeout=60)


THREAD_SUBJECTS: tuple[ThreadSubject, ...] = (
    ThreadSubject(
        "floor allow+record", "floor", lambda: _pair_ops(floor_module().Floor())
    ),
    ThreadSubject(f"{C} allow+record", C, lambda: _pair_ops(compiled_class()())),
    ThreadSubject(f"{C} call(f)", C, lambda: _call_ops(compiled_class()())),
    ThreadSubject(f"{PY} allow+record", PY, lambda: _pair_ops(twin_class()())),
    ThreadSubject("pybreaker call(f)", "pybreaker", lambda: _call_ops(_pybreaker())),
)


def thread_workload(family: str) -> int:
    """Calls per thread for the pytest suite: about 15-40 ms of one thread here.

    Long enough for several GIL switches (every 5 ms): pybreaker's lock only
    serialises the threads when a switch lands while one of them holds it.
    """
    return 400_000 if family in ("floor", C) else 50_000


def _run_threads(targets: Sequence[Callable[[], None]]) -> float:
    """Seconds from the first thread's start of work to the last one's end.

    Each thread stamps its own start and end around its work, after a barrier
    that releases them together, so thread creation is not timed.
    """
    barrier = threading.Barrier(len(targets))
    stamps: list[tuple[float, float]] = []
    lock = threading.Lock()

    def body(target: Callable[[], None]) -> None:
        barrier.wait()
        start = time.perf_counter()
        target()
        end = time.perf_counter()
        with lock:
            stamps.append((start, end))

    threads = [threading.Thread(target=body, args=(t,)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if len(stamps) != len(targets):
        raise RuntimeError("a benchmark thread failed")
    return max(e for _, e in stamps) - min(s for s, _ in stamps)


def thread_elapsed(op: Callable[[int], None], threads: int, n: int) -> float:
    """Seconds for ``threads`` Python threads to run ``op(n)`` each."""
    return _run_threads([functools.partial(op, n)] * threads)


# -- native threads through the cimport API --------------------------------------


def native_op(shared: bool, threads: int) -> list[Callable[[int], None]]:
    """One ``hammer`` per thread: on one breaker, or on one breaker each.

    ``hammer`` (``_floor.pyx``) releases the GIL and loops over
    ``qb_admit``/``qb_settle`` on the breaker's cell, as a Cython user would.
    """
    hammer = floor_module().hammer
    cls = compiled_class()
    if shared:
        breakers = [cls()] * threads
    else:
        breakers = [cls() for _ in range(threads)]
    ops: list[Callable[[int], None]] = []
    for b in breakers:

        def op(n: int, b: Any = b) -> None:
            if hammer(b, n) != n:
                raise AssertionError("a closed breaker rejected a call")

        ops.append(op)
    return ops


def native_elapsed(ops: Sequence[Callable[[int], None]], n: int) -> float:
    """Seconds for one native thread per op to run ``op(n)`` at once."""
    return _run_threads([functools.partial(op, n) for op in ops])


# -- memory ----------------------------------------------------------------------


def _traced(fill: Callable[[], None]) -> int:
    """Bytes that ``fill()`` allocated and kept, as tracemalloc sees them.

    tracemalloc sees every allocation through CPython's allocators, so the
    compiled breaker's cell (PyMem_Malloc) is counted with its object.
    """
    gc.collect()
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        fill()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        if not was_tracing:
            tracemalloc.stop()


def bytes_per_breaker(make: Callable[[str], Any], n: int = MEMORY_INSTANCES) -> float:
    """Bytes per instance over ``n`` instances made by ``make(name)``.

    The names and the list that holds the instances exist before tracing
    starts, so a breaker's name string is excluded, as the target says.
    """
    names = [f"svc-{i:06d}" for i in range(n)]
    keep: list[Any] = [None] * n

    def fill() -> None:
        for i, name in enumerate(names):
            keep[i] = make(name)

    # The instances are freed on return, not before the total is read.
    return _traced(fill) / n


def bytes_per_group_entry(
    cls: Any, n: int = GROUP_NAMES
) -> tuple[float, Any, list[str]]:
    """Bytes per breaker created by ``group[name]``, the group and its names.

    Counts what a group of ``n`` breakers really costs per name: the breaker,
    the group's entry and its share of the group's dict; not the names.
    """
    names = [f"svc-{i:06d}" for i in range(n)]
    group = BreakerGroup(_breaker_class=cls)

    def fill() -> None:
        for name in names:
            group[name]

    total = _traced(fill)
    if len(group) != n:
        raise AssertionError(f"the group holds {len(group)} breakers, not {n}")
    return total / n, group, names


def peer_factory(peer: str) -> Callable[[str], Any]:
    """How ``peer`` makes one named breaker, its closest to ``CircuitBreaker(name=)``.

    purgatory has no free-standing breaker: its factory keeps each one by
    name, much as a BreakerGroup does.
    """
    module = peer_module(peer)
    if peer == "purgatory":
        factory = module.SyncCircuitBreakerFactory()
        return lambda name: factory.get_breaker(name)
    cls = module.CircuitBreaker
    return lambda name: cls(name=name)


# -- BreakerGroup lookup --------------------------------------------------------


def group_lookup_loops(
    group: Any, names: Sequence[str], sample: int
) -> tuple[list[str], dict[str, Callable[[], None]]]:
    """Loops looking up ``sample`` names spread over the whole group.

    Returns the names looked up and, by subject, a round that looks each up
    once: ``group[name]``, a plain dict's ``d[name]`` on the same names (the
    floor of any name lookup), and the loop alone (the reference); and, for
    what a hit costs with its call, ``group.allow(name)`` and
    ``group.record_success(name)``.
    """
    step = max(1, len(names) // sample)
    picked = list(names[::step][:sample])
    plain = {name: None for name in names}

    def empty() -> None:
        for _ in picked:
            pass

    def dict_lookup() -> None:
        for name in picked:
            plain[name]

    def lookup() -> None:
        for name in picked:
            group[name]

    def allow() -> None:
        for name in picked:
            group.allow(name)

    def record_success() -> None:
        for name in picked:
            group.record_success(name)

    return picked, {
        "empty loop": fresh(empty),
        "dict d[name]": fresh(dict_lookup),
        "group[name]": fresh(lookup),
        "group.allow(name)": fresh(allow),
        "group.record_success(name)": fresh(record_success),
    }


def unavailable_reason(make: Callable[[], object]) -> str | None:
    """None if ``make()`` works, else why not (for the skip notes)."""
    try:
        make()
    except Unavailable as exc:
        return str(exc)
    return None
