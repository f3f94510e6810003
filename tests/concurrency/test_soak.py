"""Soak: minutes of mixed load, and the process's memory and open files stay flat.

``python -m pytest -m soak tests/concurrency/test_soak.py`` runs each core for
``QBREAKER_SOAK_SECONDS`` seconds (default 180); outside ``-m soak`` the test
skips, like the stress run. Five threads at once, for the whole run:

- transitions: a breaker with a 2 ms reset timeout driven through closed,
  open and half-open in phases of failures and successes, by the decorator,
  ``call()``, ``with`` and tickets (stale ones included), with a fallback, a
  state listener and the outcome hooks; replaced by a fresh breaker now and
  then, listeners added and removed;
- asyncio: an event loop per batch (``asyncio.run``) with coroutine calls
  through the decorator, ``async with`` and ``call_async``, an async
  fallback, and calls cancelled mid-flight;
- a bounded ``BreakerGroup(max_breakers=...)`` fed an endless stream of new
  names, some of which trip (so eviction runs all the time and must skip the
  open ones);
- shared breakers (compiled core only): ``shared=`` names that are opened,
  used, dropped, unlinked and created again, and a ``BreakerGroup(shared=True)``
  that evicts and re-attaches them; every name is unlinked at the end;
- the pybreaker drop-in on the same core: trips, trials, listeners,
  ``open()``/``close()`` and ``opened_at`` set by hand.

The sampler reads VmRSS from /proc/self/status and counts /proc/self/fd every
few seconds, after ``gc.collect()`` (cyclic garbage, such as an exception and
its traceback, is not a leak). Judged after the warm-up (the first quarter of
the run, at least 3 s: pymalloc arenas, thread stacks, the interpreter's
caches and the shared segments' pages settle there):

- RSS may grow by at most RSS_BOUND_MIB between the end of the warm-up and
  any later sample. Runs without a leak grow by 0.1 MiB or less here, on
  either core; 4 MiB leaves room for a few of pymalloc's 1 MiB arenas
  (fragmentation, a busier instant at a sample) on a loaded machine. The
  load makes about 10**5 calls and creates about 10**3 breakers a second
  on a shared 2-core machine: 4 MiB over the 2 * 10**6 calls after the
  warm-up of a 30-second run is 2 bytes a call, and keeping one evicted
  group breaker in ten (tried: a deliberate leak in BreakerGroup) grew RSS
  by 18 MiB and the open files by 1,500 in 30 seconds.
- Open files may never exceed the count before the threads started by more
  than FD_SLACK (what the load may hold at once: see there), and after the
  threads end it is exactly that count again.

On failure the samples are printed, with what each thread did.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import random
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

import qbreaker
import qbreaker.compat.pybreaker as pybreaker
from qbreaker._impl import segment_format as _fmt

pytestmark = pytest.mark.soak

RSS_BOUND_MIB = 4
SHARED_NAMES = 8
# The files the load may hold at once: an event loop's three (its epoll and
# self-pipe), one per mapped segment (Python's mmap keeps its file open: at
# most SHARED_NAMES), and the one shared.list() reads at a time.
FD_SLACK = 3 + SHARED_NAMES + 1
DEFAULT_SECONDS = 180.0


def _soak_selected(config: pytest.Config) -> bool:
    return "soak" in (config.getoption("markexpr") or "")


def _seconds() -> float:
    raw = os.environ.get("QBREAKER_SOAK_SECONDS", str(DEFAULT_SECONDS))
    try:
        seconds = float(raw)
    except ValueError:
        raise ValueError(
            f"QBREAKER_SOAK_SECONDS must be seconds, got {raw!r}"
        ) from None
    if not seconds >= 4:
        raise ValueError(f"QBREAKER_SOAK_SECONDS must be at least 4, got {raw!r}")
    return seconds


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


def open_files() -> int:
    return len(os.listdir("/proc/self/fd")) - 1  # the listing's own


@dataclass
class Sample:
    at: float
    rss_kib: int
    fds: int


@dataclass
class Load:
    """What the threads share: the deadline, counts, and their errors."""

    deadline: float
    stop: threading.Event = field(default_factory=threading.Event)
    counts: Counter[str] = field(default_factory=Counter)
    gauges: dict[str, int] = field(default_factory=dict)
    errors: list[BaseException] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def running(self) -> bool:
        return not self.stop.is_set() and time.monotonic() < self.deadline

    def add(self, counts: Counter[str]) -> None:
        with self.lock:
            self.counts.update(counts)
        counts.clear()

    def gauge(self, name: str, value: int) -> None:
        """Keep the largest ``value`` seen for ``name``."""
        with self.lock:
            self.gauges[name] = max(value, self.gauges.get(name, value))


class Boom(Exception):
    pass


def down_if(fail: bool) -> str:
    if fail:
        raise Boom("down")
    return "ok"


# -- the threads ----------------------------------------------------------------------


def transitions(load: Load, impl: Any) -> None:
    rng = random.Random(1)
    seen: Counter[str] = Counter()

    def on_change(breaker: Any, old: Any, new: Any) -> None:
        seen[f"{old}->{new}"] += 1

    def build() -> Any:
        return impl.Breaker(
            3,
            0.002,
            2,
            success_threshold=2,
            fallback=lambda *args: "fallback",
            on_state_change=on_change,
            on_reject=lambda breaker: None,
            on_failure=lambda breaker, exc: None,
        )

    iteration = 0
    while load.running():
        breaker = build()
        extra = lambda breaker, old, new: None  # noqa: E731 - added, then removed
        breaker.add_listener(extra)

        work = breaker(down_if)
        for _ in range(2000):
            iteration += 1
            # Phases of 50 calls: mostly failing, then mostly succeeding.
            fail = rng.random() < (0.9 if iteration // 50 % 2 else 0.05)
            form = iteration % 4
            try:
                if form == 0:
                    seen[work(fail)] += 1
                elif form == 1:
                    seen[breaker.call(down_if, fail)] += 1
                elif form == 2:
                    with breaker:
                        if fail:
                            raise Boom("down")
                    seen["ok"] += 1
                else:
                    ticket = breaker.acquire()
                    if not ticket:
                        seen["rejected"] += 1
                        continue
                    if iteration % 7 == 0:
                        breaker.record_failure()  # may make the ticket stale
                    breaker.release(ticket, None if iteration % 5 == 0 else not fail)
            except Boom:
                seen["failed"] += 1
            except qbreaker.CircuitOpenError:
                seen["rejected"] += 1
            if iteration % 500 == 0:
                time.sleep(0.003)  # let the reset timeout elapse now and then
        breaker.remove_listener(extra)
        seen["breakers"] += 1
        load.add(seen)


async def _async_batch(impl: Any, rng: random.Random, seen: Counter[str]) -> None:
    async def fallback(*args: object) -> str:
        return "fallback"

    breaker = impl.Breaker(
        2, 0.002, 1, fallback=fallback, on_state_change=lambda *a: None
    )

    @breaker
    async def work(fail: bool) -> str:
        await asyncio.sleep(0)
        if fail:
            raise Boom("down")
        return "ok"

    async def plain(fail: bool) -> str:
        await asyncio.sleep(0)
        if fail:
            raise Boom("down")
        return "ok"

    async def guarded(fail: bool) -> str:
        async with breaker:
            return await plain(fail)

    async def one(i: int) -> None:
        fail = rng.random() < 0.5
        try:
            if i % 3 == 0:
                seen[await work(fail)] += 1
            elif i % 3 == 1:
                seen[await breaker.call_async(plain, fail)] += 1
            else:
                seen[await guarded(fail)] += 1
        except Boom:
            seen["failed"] += 1
        except qbreaker.CircuitOpenError:
            seen["rejected"] += 1

    for _ in range(5):
        await asyncio.gather(*(one(i) for i in range(60)))
        # Cancelled mid-call: neutral, and nothing may stay behind.
        task = asyncio.ensure_future(work(False))
        await asyncio.sleep(0)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            seen["cancelled"] += 1
        except qbreaker.CircuitOpenError:
            pass
        await asyncio.sleep(0.003)


def asyncio_calls(load: Load, impl: Any) -> None:
    rng = random.Random(2)
    seen: Counter[str] = Counter()
    while load.running():
        asyncio.run(_async_batch(impl, rng, seen))
        seen["loops"] += 1
        load.add(seen)


def group_eviction(load: Load, impl: Any) -> None:
    seen: Counter[str] = Counter()
    group = qbreaker.BreakerGroup(
        max_breakers=32,
        max_failures=2,
        reset_timeout=0.005,
        half_open_max=1,
        on_state_change=lambda *a: None,
        _breaker_class=impl.Breaker,
    )
    serial = 0
    while load.running():
        for _ in range(500):
            serial += 1
            name = f"tenant-{serial}"
            if serial % 10 == 0:  # trips: open, so never evicted while open
                for _ in range(2):
                    if group.allow(name):
                        group.record_failure(name)
            elif group.allow(name):
                group.record_success(name)
            # An earlier one again: half-open or closed by now, or evicted.
            earlier = f"tenant-{max(1, serial - 40)}"
            if group.allow(earlier):
                group.record_success(earlier)
            else:
                seen["rejected"] += 1
        seen["metrics"] += len(group.metrics())
        load.add(seen)
        load.gauge("created", serial)
        load.gauge("most kept", len(group))
        time.sleep(0.002)


def shared_breakers(load: Load, impl: Any, names: list[str]) -> None:
    seen: Counter[str] = Counter()
    singles, grouped = names[:4], names[4:]
    group = qbreaker.BreakerGroup(
        shared=True, max_breakers=2, max_failures=2, reset_timeout=0.005
    )
    round_ = 0
    while load.running():
        round_ += 1
        for name in singles:
            breaker = impl.Breaker(2, 0.005, 1, shared=name)
            for i in range(200):
                if breaker.allow():
                    if (i + round_) % 9 < 3:
                        breaker.record_failure()
                    else:
                        breaker.record_success()
                else:
                    seen["rejected"] += 1
            seen["attached"] += 1
            del breaker
            if round_ % 3 == 0:
                qbreaker.shared.unlink(name)  # the next round creates it afresh
                seen["unlinked"] += 1
        for i, name in enumerate(grouped * 3):
            if group.allow(name):
                if (i + round_) % 5 == 0:
                    group.record_failure(name)
                else:
                    group.record_success(name)
        if round_ % 10 == 0:
            seen["listed"] += len(qbreaker.shared.list())
        load.add(seen)
        time.sleep(0.002)


def compat_pybreaker(load: Load, impl: Any) -> None:
    seen: Counter[str] = Counter()

    class Listener(pybreaker.CircuitBreakerListener):
        def state_change(self, cb: Any, old: Any, new: Any) -> None:
            seen[f"compat {old.name}->{new.name}"] += 1

        def failure(self, cb: Any, exc: BaseException) -> None:
            seen["compat failure"] += 1

    round_ = 0
    while load.running():
        round_ += 1
        breaker = pybreaker.CircuitBreaker(
            fail_max=3,
            reset_timeout=0.002,
            listeners=[Listener()],
            state_storage=pybreaker.CircuitMemoryStorage(
                "closed", core_class=impl.Breaker
            ),
        )

        work = breaker(down_if)
        for i in range(1000):
            fail = (i // 20) % 2 == 1
            try:
                seen[work(fail) if i % 2 else breaker.call(down_if, fail)] += 1
            except (Boom, pybreaker.CircuitBreakerError):
                seen["compat raised"] += 1
            if i % 250 == 0:
                breaker.open()
                breaker._state_storage.opened_at = None  # trial at once
                breaker.close()
            if i % 100 == 0:
                time.sleep(0.003)
        load.add(seen)


# -- the run --------------------------------------------------------------------------


def _guard(load: Load, target: Callable[..., None], *args: Any) -> None:
    try:
        target(load, *args)
    except BaseException as exc:  # noqa: BLE001 - reported by the test
        with load.lock:
            load.errors.append(exc)
        load.stop.set()


def _report(samples: list[Sample], warm: Sample, load: Load, fds0: int) -> str:
    lines = [f"open files before the threads: {fds0}; warm-up ended at {warm}"]
    lines += [
        f"  t={s.at:7.1f}s  rss={s.rss_kib / 1024:8.1f} MiB  "
        f"(+{(s.rss_kib - warm.rss_kib) / 1024:6.1f})  fds={s.fds}"
        for s in samples
    ]
    counts = {**load.counts, **load.gauges}
    lines.append("counts: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    return "\n".join(lines)


class FormatAndDrop(logging.Handler):
    """Formats each record, as a real handler would, and keeps nothing."""

    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)


@contextlib.contextmanager
def transition_log_dropped() -> Iterator[None]:
    """The qbreaker logger's records go to a handler that keeps none.

    pytest's log capture keeps every record of a test: here a warning per
    transition, which would grow without bound. It attaches to the loggers
    that do not propagate when the test starts, so this is entered inside
    the test, after that."""
    logger = logging.getLogger("qbreaker")
    handler = FormatAndDrop()
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.propagate = True
        logger.removeHandler(handler)


@pytest.fixture
def private_segments(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Segments in a directory of their own on the same tmpfs, so that
    ``shared.list()`` sees this run's only (other runs of this user may be
    creating and unlinking theirs meanwhile)."""
    where = tempfile.mkdtemp(prefix="qbreaker-soak-", dir=_fmt.directory())
    monkeypatch.setattr(_fmt, "DIRECTORY", where)
    yield where
    shutil.rmtree(where, ignore_errors=True)


def test_soak(
    impl: Any,
    request: pytest.FixtureRequest,
    private_segments: str,
) -> None:
    if not _soak_selected(request.config):
        pytest.skip("long run: select it with -m soak")
    seconds = _seconds()
    warmup = max(seconds / 4, 3.0)
    every = min(max(seconds / 40, 0.5), 5.0)
    shared = impl.name == "c" and _fmt.supported()
    names = [f"qb-soak-{os.getpid()}-{impl.name}-{i}" for i in range(SHARED_NAMES)]

    gc.collect()
    fds0 = open_files()
    start = time.monotonic()
    load = Load(deadline=start + seconds)
    targets: list[tuple[Callable[..., None], tuple[Any, ...]]] = [
        (transitions, (impl,)),
        (asyncio_calls, (impl,)),
        (group_eviction, (impl,)),
        (compat_pybreaker, (impl,)),
    ]
    if shared:
        targets.append((shared_breakers, (impl, names)))
    threads = [
        threading.Thread(target=_guard, args=(load, fn, *args), name=fn.__name__)
        for fn, args in targets
    ]
    samples: list[Sample] = []
    with transition_log_dropped():
        try:
            for thread in threads:
                thread.start()
            while time.monotonic() < load.deadline and not load.stop.is_set():
                time.sleep(min(every, max(load.deadline - time.monotonic(), 0)))
                gc.collect()
                samples.append(
                    Sample(time.monotonic() - start, rss_kib(), open_files())
                )
        finally:
            load.stop.set()
            for thread in threads:
                thread.join(60)
            if shared:
                for name in names:
                    qbreaker.shared.unlink(name)
    assert not any(t.is_alive() for t in threads), "a load thread did not stop"
    if load.errors:
        raise load.errors[0]
    gc.collect()
    fds_end = open_files()

    after = [s for s in samples if s.at >= warmup]
    assert len(after) >= 3, f"too few samples after the warm-up: {samples}"
    warm = after[0]
    report = _report(samples, warm, load, fds0)
    growth_mib = (max(s.rss_kib for s in after) - warm.rss_kib) / 1024
    assert growth_mib < RSS_BOUND_MIB, (
        f"RSS grew {growth_mib:.1f} MiB after the warm-up (bound "
        f"{RSS_BOUND_MIB} MiB)\n{report}"
    )
    assert max(s.fds for s in samples) <= fds0 + FD_SLACK, (
        f"open files above {fds0} + {FD_SLACK}\n{report}"
    )
    assert fds_end == fds0, f"{fds_end - fds0} files left open\n{report}"

    print(report)  # the run's record, shown with -s or -rP
    # The load did what it says: every thread ran, every path was taken.
    c = load.counts
    assert c["breakers"] and c["closed->open"] and c["open->half-open"], report
    assert c["half-open->closed"] and c["fallback"] and c["rejected"], report
    assert c["loops"] and c["cancelled"], report
    # Eviction kept up: far more names than max_breakers went through.
    assert load.gauges["created"] > 10 * 32, report
    assert load.gauges["most kept"] <= 32 + 50, report
    assert c["compat closed->open"] and c["compat half-open->closed"], report
    if shared:
        assert c["attached"] and c["unlinked"], report
        assert not any(qbreaker.shared.exists(name) for name in names)
        assert os.listdir(private_segments) == []
