"""The benchmark's sections: each measures one thing into :class:`Results`.

The loop scenarios (``scenarios``, timed by ``timing``), two Python threads
on one breaker, native threads through the cimport API, and memory with
BreakerGroup lookup (``measure``). :data:`QUICK` and :data:`SMOKE` size them.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, TextIO

from qbreaker import IMPLEMENTATION, __version__

from .measure import (
    THREAD_SUBJECTS,
    bytes_per_breaker,
    bytes_per_group_entry,
    group_lookup_loops,
    native_elapsed,
    native_op,
    peer_factory,
    thread_elapsed,
)
from .results import Results, overhead_ratio, scenario_table
from .scenarios import LOOPS
from .subjects import PEERS, PY, C, Scenario, Unavailable, breaker_class
from .timing import Timer, interleave

__all__ = (
    "QUICK",
    "SMOKE",
    "Progress",
    "Sizes",
    "meta",
    "run_memory_and_group",
    "run_native",
    "run_scenario",
    "run_threads",
)


@dataclass(frozen=True)
class Sizes:
    """How long each part runs: the quick run, or the smoke run's one pass."""

    smoke: bool
    repeats: int  # interleaved repeats of each loop subject
    sample_s: float  # at least this long per sample (timeit's autorange)
    warmup: int  # untimed rounds first: CPython specialises the loop
    round_repeats: int  # samples of one round each, where state is restored
    thread_s: float  # a one-thread run lasts about this long
    thread_repeats: int
    memory_n: int
    group_n: int
    lookup_sample: int


QUICK = Sizes(
    smoke=False,
    repeats=25,
    sample_s=0.003,
    warmup=5,
    round_repeats=300,
    thread_s=0.04,
    thread_repeats=3,
    memory_n=100_000,
    group_n=100_000,
    lookup_sample=1_000,
)

# Every scenario once, for correctness: timings are meaningless.
SMOKE = Sizes(
    smoke=True,
    repeats=1,
    sample_s=0.0,
    warmup=0,
    round_repeats=1,
    thread_s=0.0,
    thread_repeats=1,
    memory_n=500,
    group_n=500,
    lookup_sample=50,
)


class Progress:
    """Progress on stderr: a line per section; dots per repeat on a terminal."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = total
        self.stream = stream
        self.done = 0
        self.tty = stream.isatty()
        self.t0 = time.perf_counter()
        self.section_t0 = self.t0

    def start(self, title: str) -> None:
        self.done += 1
        self.section_t0 = time.perf_counter()
        end = "" if self.tty else "\n"
        self.stream.write(f"bench [{self.done}/{self.total}] {title} ...{end}")
        self.stream.flush()

    def tick(self) -> None:
        if self.tty:
            self.stream.write(".")
            self.stream.flush()

    def end(self) -> None:
        took = time.perf_counter() - self.section_t0
        if self.tty:
            self.stream.write(f" {took:.1f} s\n")
        else:
            self.stream.write(f"bench [{self.done}/{self.total}] took {took:.1f} s\n")
        self.stream.flush()

    def finish(self) -> None:
        total = time.perf_counter() - self.t0
        self.stream.write(f"bench: done in {total:.1f} s\n")
        self.stream.flush()


def run_scenario(
    scenario: Scenario, sizes: Sizes, results: Results, progress: Progress
) -> None:
    timers: list[Timer] = []
    built: dict[str, Any] = {}
    for subject in scenario.subjects:
        try:
            timed = subject.build(LOOPS)
        except Unavailable as exc:
            results.skipped[f"{scenario.group}: {subject.name}"] = str(exc)
            continue
        built[subject.name] = timed
        timers.append(Timer(subject.name, timed.run, LOOPS, timed.setup))
    repeats = sizes.round_repeats if scenario.per_round_setup else sizes.repeats
    sampled = interleave(timers, repeats, sizes.sample_s, sizes.warmup, progress.tick)
    for name, timed in built.items():
        if timed.check is not None:
            try:
                timed.check()
            except AssertionError as exc:
                results.failures.append(f"{scenario.group}: {name}: {exc}")
    table = scenario_table(
        scenario,
        {n: s.best for n, s in sampled.items()},
        {n: s.median for n, s in sampled.items()},
        repeats,
    )
    for t in timers:
        table["subjects"][t.name]["rounds_per_sample"] = t.number
        table["subjects"][t.name]["samples"] = sampled[t.name].samples
    results.scenarios[scenario.group] = table


def _calibrated_n(op: Callable[[int], None], seconds: float, smoke: bool) -> int:
    """Operations that take about ``seconds`` on one thread."""
    if smoke:
        return 200
    n = 1_000
    while True:
        start = time.perf_counter()
        op(n)
        took = time.perf_counter() - start
        if took >= seconds / 4 or n >= 1 << 26:
            return max(n, int(n * seconds / max(took, 1e-9)))
        n *= 4


def run_threads(sizes: Sizes, results: Results, progress: Progress) -> None:
    for subject in THREAD_SUBJECTS:
        try:
            op = subject.make()
        except Unavailable as exc:
            results.skipped[f"threads: {subject.name}"] = str(exc)
            continue
        n = _calibrated_n(op, sizes.thread_s, sizes.smoke)
        one, two = [], []
        for _ in range(sizes.thread_repeats):  # interleaved, as everywhere
            one.append(thread_elapsed(op, 1, n))
            two.append(thread_elapsed(op, 2, n))
            progress.tick()
        rate1, rate2 = n / min(one), 2 * n / min(two)
        results.threads[subject.name] = {
            "family": subject.family,
            "ops_per_thread": n,
            "one_thread_s": one,
            "two_threads_s": two,
            "one_thread_ops_s": rate1,
            "two_threads_ops_s": rate2,
            "scaling": rate2 / rate1,
        }


def run_native(sizes: Sizes, results: Results, progress: Progress) -> None:
    try:
        configs = {
            "1 thread": native_op(True, 1),
            "2 threads, one shared breaker": native_op(True, 2),
            "2 threads, separate breakers": native_op(False, 2),
        }
    except Unavailable as exc:
        results.skipped["native threads"] = str(exc)
        return
    n = _calibrated_n(configs["1 thread"][0], sizes.thread_s, sizes.smoke) * 4
    if sizes.smoke:
        n = 1_000
    elapsed: dict[str, list[float]] = {k: [] for k in configs}
    for _ in range(sizes.thread_repeats + 2):
        for name, ops in configs.items():
            elapsed[name].append(native_elapsed(ops, n))
        progress.tick()
    base = n / min(elapsed["1 thread"])
    for name, ops in configs.items():
        rate = len(ops) * n / min(elapsed[name])
        results.native[name] = {
            "threads": len(ops),
            "ops_per_thread": n,
            "elapsed_s": elapsed[name],
            "ops_s": rate,
            "ns_per_op_per_thread": 1e9 / (rate / len(ops)),
            "scaling": rate / base,
        }


def _named(cls: Any, name: str) -> Any:
    return cls(name=name)


def run_memory_and_group(sizes: Sizes, results: Results, progress: Progress) -> None:
    for family in (C, PY):
        try:
            cls = breaker_class(family)
        except Unavailable as exc:
            results.skipped[f"memory: {family}"] = str(exc)
            continue
        bare = bytes_per_breaker(functools.partial(_named, cls), sizes.memory_n)
        progress.tick()
        in_group, group, names = bytes_per_group_entry(cls, sizes.group_n)
        progress.tick()
        results.memory[family] = {
            "instances": sizes.memory_n,
            "bytes_per_breaker": bare,
            "group_names": sizes.group_n,
            "bytes_per_breaker_in_group": in_group,
        }
        picked, loops = group_lookup_loops(group, names, sizes.lookup_sample)
        timers = [Timer(k, v, len(picked)) for k, v in loops.items()]
        sampled = interleave(timers, sizes.repeats, sizes.sample_s, sizes.warmup)
        ref = sampled["empty loop"].best
        dict_o = sampled["dict d[name]"].best - ref
        results.group_lookup[family] = {
            "names": sizes.group_n,
            "looked_up": len(picked),
            "subjects": {
                k: {
                    "ns": s.best,
                    "median": s.median,
                    "samples": s.samples,
                    "overhead": s.best - ref,
                    "x_dict": None
                    if k == "empty loop"
                    else overhead_ratio(s.best - ref, dict_o),
                }
                for k, s in sampled.items()
            },
        }
        del group, names
        progress.tick()
    for peer in PEERS:
        try:
            make = peer_factory(peer)
        except Unavailable as exc:
            results.skipped[f"memory: {peer}"] = str(exc)
            continue
        results.memory[peer] = {
            "instances": sizes.memory_n,
            "bytes_per_breaker": bytes_per_breaker(make, sizes.memory_n),
        }
        progress.tick()


def _cpu() -> str:
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def meta(sizes: Sizes) -> dict[str, Any]:
    import platform

    return {
        "qbreaker": __version__,
        "implementation": IMPLEMENTATION,
        "python": platform.python_version(),
        "python_build": " ".join(platform.python_build()),
        "platform": platform.platform(),
        "cpu": _cpu(),
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python -m qbreaker bench"
        + (" --quick-smoke" if sizes.smoke else ""),
        "smoke": sizes.smoke,
        "statistic": "min",
        "repeats": sizes.repeats,
        "round_repeats": sizes.round_repeats,
    }
