"""``python -m qbreaker bench``: a quick benchmark against the floor and the peers.

It times every scenario of ``_bench_scenarios`` (the same subjects the
pytest-benchmark suite in ``benchmarks/`` times), measures threads, memory and
BreakerGroup lookup (``_bench_measure``), prints a table per scenario and
checks the targets of issue 4. About 40 s on a 2-core machine.

Statistic: each figure is the minimum over interleaved repeats (timeit's rule:
noise on a shared machine only ever adds); ``--json`` keeps every repeat and
the median too. Overheads are over the scenario's reference (``bare f()``, or
``empty loop`` where nothing is called), so the loop itself cancels out.

Only light standard modules are imported at module level: ``python -m
qbreaker`` imports this module to list its options, whatever the command;
the scenarios, the peers and matplotlib are imported by ``run()``.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, TextIO

__all__ = (
    "Results",
    "add_arguments",
    "judge",
    "print_memory_and_group",
    "print_native",
    "print_scenario",
    "print_skipped",
    "print_targets",
    "print_threads",
    "run",
    "scenario_table",
)

PLOT_HINT = 'pip install "qbreaker[plot]"'


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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", metavar="PATH", help="write the raw results (every repeat) here"
    )
    parser.add_argument(
        "--plot",
        metavar="PATH.png",
        help=f"draw the comparison with matplotlib ({PLOT_HINT})",
    )
    parser.add_argument(
        "--quick-smoke",
        action="store_true",
        help="run every scenario once, for correctness only (a few seconds)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit with status 1 if a target is missed",
    )


# -- results ---------------------------------------------------------------------


@dataclass
class Results:
    """Everything measured, in the shape ``--json`` writes."""

    meta: dict[str, Any]
    scenarios: dict[str, Any] = field(default_factory=dict)
    threads: dict[str, Any] = field(default_factory=dict)
    native: dict[str, Any] = field(default_factory=dict)
    group_lookup: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)
    targets: list[dict[str, Any]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "meta": self.meta,
            "scenarios": self.scenarios,
            "threads": self.threads,
            "native_threads": self.native,
            "group_lookup": self.group_lookup,
            "memory": self.memory,
            "targets": self.targets,
            "skipped": self.skipped,
            "failures": self.failures,
        }


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


# -- formatting ------------------------------------------------------------------


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], out: TextIO) -> None:
    """A Markdown table, padded so it also reads well in a terminal."""
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row)]

    def line(cells: Sequence[str]) -> str:
        padded = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths))
        ]
        return "| " + " | ".join(padded) + " |"

    print(line(header), file=out)
    # Markdown alignment: the first column left, the figures right.
    rule = ["-" * widths[0]] + ["-" * (w - 1) + ":" for w in widths[1:]]
    print("| " + " | ".join(rule) + " |", file=out)
    for row in rows:
        print(line(row), file=out)


def _ns(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.1f}" if abs(value) < 1000 else f"{value:,.0f}"


def _ratio(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def _div(a: float | None, b: float | None) -> float | None:
    # A ratio of overheads is meaningless once the denominator is noise.
    if a is None or b is None or b <= 0.05:
        return None
    return a / b


# -- the loop scenarios ----------------------------------------------------------


def scenario_table(
    scenario: Any,
    best: dict[str, float],
    median: dict[str, float],
    repeats: int,
) -> dict[str, Any]:
    """One scenario's rows, from ns/op by subject (``--json``'s shape).

    Shared with ``benchmarks/report.py``, which feeds it pytest-benchmark's
    statistics, so both print and judge the same way.
    """
    from ._bench_scenarios import LOOPS, PEERS

    ref = best.get(scenario.reference)
    overhead = {n: (v - ref if ref is not None else None) for n, v in best.items()}
    peer_best: dict[str, float] = {}
    for subject in scenario.subjects:
        o = overhead.get(subject.name)
        if subject.family in PEERS and o is not None:
            peer_best[subject.family] = min(peer_best.get(subject.family, o), o)
    rows: dict[str, Any] = {}
    for subject in scenario.subjects:
        if subject.name not in best:
            continue
        o = overhead[subject.name]
        is_ref = subject.name == scenario.reference
        floor_o = overhead.get(subject.floor) if subject.floor else None
        rows[subject.name] = {
            "family": subject.family,
            "floor": subject.floor,
            "ns": best[subject.name],
            "median": median.get(subject.name),
            "overhead": o,
            "x_floor": None if is_ref else _div(o, floor_o),
            "vs": {} if is_ref else {p: _div(b, o) for p, b in peer_best.items()},
        }
    return {
        "title": scenario.title,
        "reference": scenario.reference,
        "unit": "ns/op",
        "ops_per_round": LOOPS,
        "repeats": repeats,
        "subjects": rows,
    }


def _run_scenario(
    scenario: Any, sizes: Sizes, results: Results, progress: Progress
) -> None:
    from ._bench_scenarios import LOOPS, Unavailable
    from ._bench_timing import Timer, interleave

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


def print_scenario(group: str, data: dict[str, Any], out: TextIO) -> None:
    rows = data["subjects"]
    peers = sorted({p for r in rows.values() for p in r["vs"]})
    print(f"\n### {group}: {data['title']}\n", file=out)
    header = ["subject", "ns/op", f"+ over {data['reference']}", "x floor"]
    header += [f"vs {p}" for p in peers]
    table = []
    for name, r in rows.items():
        line = [name, _ns(r["ns"]), _ns(r["overhead"]), _ratio(r["x_floor"])]
        line += [_ratio(r["vs"].get(p)) for p in peers]
        table.append(line)
    _table(header, table, out)


# -- threads -------------------------------------------------------------------


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


def _run_threads(sizes: Sizes, results: Results, progress: Progress) -> None:
    from ._bench_measure import THREAD_SUBJECTS, thread_elapsed
    from ._bench_scenarios import Unavailable

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


def print_threads(results: Results, out: TextIO) -> None:
    if not results.threads:
        return
    print("\n### threads: two Python threads on one breaker\n", file=out)
    print(
        "Throughput (protected calls per second, all threads together) of two "
        "threads each making N calls, against one thread making N. With the GIL "
        "the best possible is 1.0.\n",
        file=out,
    )
    rows = [
        [
            name,
            f"{r['one_thread_ops_s'] / 1e6:.2f}",
            f"{r['two_threads_ops_s'] / 1e6:.2f}",
            f"{r['scaling']:.2f}",
        ]
        for name, r in results.threads.items()
    ]
    _table(["subject", "1 thread Mcalls/s", "2 threads Mcalls/s", "2 vs 1"], rows, out)


def _run_native(sizes: Sizes, results: Results, progress: Progress) -> None:
    from ._bench_measure import native_elapsed, native_op
    from ._bench_scenarios import Unavailable

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


def print_native(results: Results, out: TextIO) -> None:
    if not results.native:
        return
    print(
        "\n### native threads: qb_admit + qb_settle without the GIL (cimport API)\n",
        file=out,
    )
    rows = [
        [
            name,
            f"{r['ops_s'] / 1e6:.1f}",
            f"{r['ns_per_op_per_thread']:.1f}",
            f"{r['scaling']:.2f}",
        ]
        for name, r in results.native.items()
    ]
    _table(
        ["configuration", "Mcalls/s", "ns/call per thread", "vs 1 thread"], rows, out
    )


# -- memory and BreakerGroup -----------------------------------------------------


def _named(cls: Any, name: str) -> Any:
    return cls(name=name)


def _run_memory_and_group(sizes: Sizes, results: Results, progress: Progress) -> None:
    from ._bench_measure import (
        breaker_class,
        bytes_per_breaker,
        bytes_per_group_entry,
        group_lookup_loops,
        peer_factory,
    )
    from ._bench_scenarios import PEERS, PY, C, Unavailable
    from ._bench_timing import Timer, interleave

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
                    "x_dict": None if k == "empty loop" else _div(s.best - ref, dict_o),
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


def print_memory_and_group(results: Results, out: TextIO) -> None:
    if results.group_lookup:
        print("\n### BreakerGroup lookup: group[name] among many names\n", file=out)
        # The loop and the plain dict once (from the first group measured),
        # then group[name] for each core.
        first = next(iter(results.group_lookup.values()))["subjects"]
        rows = [
            [
                k,
                _ns(first[k]["ns"]),
                _ns(first[k]["overhead"]),
                _ratio(first[k]["x_dict"]),
            ]
            for k in ("empty loop", "dict d[name]")
        ]
        for family, g in results.group_lookup.items():
            s = g["subjects"]["group[name]"]
            rows.append(
                [
                    f"{family} group[name]",
                    _ns(s["ns"]),
                    _ns(s["overhead"]),
                    _ratio(s["x_dict"]),
                ]
            )
        names = next(iter(results.group_lookup.values()))["names"]
        print(
            f"{names:,} names created beforehand; each round looks up "
            "names spread over the whole group.\n",
            file=out,
        )
        _table(["subject", "ns/lookup", "+ over empty loop", "x dict"], rows, out)
    if not results.memory:
        return
    print("\n### memory per breaker (tracemalloc, name string excluded)\n", file=out)
    rows = []
    for family, m in results.memory.items():
        rows.append(
            [
                family,
                f"{m['instances']:,}",
                f"{m['bytes_per_breaker']:.0f}",
                f"{m['bytes_per_breaker_in_group']:.0f}"
                if "bytes_per_breaker_in_group" in m
                else "",
            ]
        )
    _table(
        ["implementation", "instances", "bytes each", "bytes each in a BreakerGroup"],
        rows,
        out,
    )


# -- targets -----------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    text: str
    op: str  # "<=" or ">="
    limit: float
    value: Callable[[Results], float | None]


def _overhead(r: Results, group: str, subject: str) -> float | None:
    data = r.scenarios.get(group, {}).get("subjects", {}).get(subject)
    return None if data is None else data["overhead"]


def _ratio_of(group: str, num: str, den: str) -> Callable[[Results], float | None]:
    return lambda r: _div(_overhead(r, group, num), _overhead(r, group, den))


def _get(*keys: str) -> Callable[[Results], float | None]:
    def value(r: Results) -> float | None:
        node: Any = r.as_json()
        for k in keys:
            if not isinstance(node, dict) or k not in node:
                return None
            node = node[k]
        return float(node)

    return value


TARGETS: tuple[Target, ...] = (
    Target(
        "count-window pair / consecutive pair (compiled)",
        "<=",
        1.5,
        _ratio_of(
            "closed", "qbreaker-c count-window allow+record", "qbreaker-c allow+record"
        ),
    ),
    Target(
        "time-window pair / consecutive pair (compiled)",
        "<=",
        1.5,
        _ratio_of(
            "closed", "qbreaker-c time-window allow+record", "qbreaker-c allow+record"
        ),
    ),
    Target(
        "shared-memory pair / in-process pair (compiled)",
        "<=",
        1.2,
        _ratio_of(
            "closed", "qbreaker-c shared allow+record", "qbreaker-c allow+record"
        ),
    ),
    Target(
        "compiled allow()+record_success() pair / floor pair",
        "<=",
        1.25,
        _ratio_of("closed", "qbreaker-c allow+record", "floor allow+record"),
    ),
    Target(
        "compiled call(f) overhead / floor pair's",
        "<=",
        2.0,
        _ratio_of("closed", "qbreaker-c call(f)", "floor allow+record"),
    ),
    Target(
        "compiled @breaker overhead / floor pair's",
        "<=",
        2.0,
        _ratio_of("closed", "qbreaker-c @breaker", "floor allow+record"),
    ),
    Target(
        "compiled `with breaker:` / trivial compiled CM's `with`",
        "<=",
        1.5,
        _ratio_of("closed", "qbreaker-c with", "floor with"),
    ),
    Target(
        "compiled non-raising rejection / one floor call",
        "<=",
        2.0,
        _ratio_of("open-reject", "qbreaker-c allow()->False", "floor allow()->False"),
    ),
    Target(
        "pybreaker call(f) overhead / compiled call(f)'s",
        ">=",
        30.0,
        _ratio_of("closed", "pybreaker call(f)", "qbreaker-c call(f)"),
    ),
    Target(
        "twin call(f) overhead / compiled call(f)'s",
        ">=",
        10.0,
        _ratio_of("closed", "qbreaker-py call(f)", "qbreaker-c call(f)"),
    ),
    Target(
        "twin pair overhead / compiled pair's",
        ">=",
        10.0,
        _ratio_of("closed", "qbreaker-py allow+record", "qbreaker-c allow+record"),
    ),
    Target(
        "two Python threads / one thread, compiled pair",
        ">=",
        0.9,
        _get("threads", "qbreaker-c allow+record", "scaling"),
    ),
    Target(
        "native nogil threads, separate breakers: 2 threads / 1",
        ">=",
        1.8,
        _get("native_threads", "2 threads, separate breakers", "scaling"),
    ),
    Target(
        "bytes per compiled breaker (bare instances)",
        "<=",
        256.0,
        _get("memory", "qbreaker-c", "bytes_per_breaker"),
    ),
    Target(
        "bytes per compiled breaker in a BreakerGroup",
        "<=",
        256.0,
        _get("memory", "qbreaker-c", "bytes_per_breaker_in_group"),
    ),
)


def judge(results: Results) -> None:
    for t in TARGETS:
        value = t.value(results)
        if value is None:
            status = "n/a"
        elif results.meta["smoke"]:
            status = "smoke"  # one unwarmed pass: timings mean nothing
        elif (value <= t.limit) if t.op == "<=" else (value >= t.limit):
            status = "PASS"
        else:
            status = "MISS"
        results.targets.append(
            {
                "target": t.text,
                "op": t.op,
                "limit": t.limit,
                "value": value,
                "status": status,
            }
        )


def print_targets(results: Results, out: TextIO) -> None:
    print("\n### targets (issue 4)\n", file=out)
    rows = [
        [
            t["target"],
            "" if t["value"] is None else f"{t['value']:.2f}",
            f"{t['op']} {t['limit']:g}",
            t["status"],
        ]
        for t in results.targets
    ]
    _table(["target", "measured", "goal", "result"], rows, out)


def print_skipped(results: Results, out: TextIO) -> None:
    """What could not run, once per reason (a missing peer, no compiled core)."""
    by_reason: dict[str, list[str]] = {}
    for what, why in results.skipped.items():
        by_reason.setdefault(why, []).append(what)
    if by_reason:
        print("\nskipped:", file=out)
    for why, whats in by_reason.items():
        shown = ", ".join(whats[:3]) + (", ..." if len(whats) > 3 else "")
        print(f"- {why}: {len(whats)} subjects ({shown})", file=out)


# -- the command -------------------------------------------------------------------


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


def _meta(sizes: Sizes) -> dict[str, Any]:
    import platform

    from . import IMPLEMENTATION, __version__

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


def _header(meta: dict[str, Any], out: TextIO) -> None:
    print(
        f"qbreaker {meta['qbreaker']} bench ({meta['implementation']} core), "
        f"{meta['date']}\n"
        f"CPU: {meta['cpu']} x {meta['cpus']}; Python {meta['python']} "
        f"({meta['python_build']}); {meta['platform']}",
        file=out,
    )
    if meta["smoke"]:
        print("SMOKE RUN: every scenario once; the numbers mean nothing.", file=out)
    else:
        print(
            f"ns/op: the minimum of {meta['repeats']} interleaved repeats "
            f"({meta['round_repeats']} single-round samples where state is "
            "restored before each round). '+ over' is the overhead over the "
            "reference; 'x floor' divides it by the floor's overhead for the same "
            "form (the floor pair for call/decorator forms); 'vs PEER' divides the "
            "peer's overhead (its cheapest form in the scenario) by the row's: "
            "how many times cheaper the row is.",
            file=out,
        )


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out if out is not None else sys.stdout
    plot_path: str | None = getattr(args, "plot", None)
    if plot_path:
        # Before the run, not after a minute of it.
        if importlib.util.find_spec("matplotlib") is None:
            print(
                f"error: --plot needs matplotlib, which is not installed; "
                f"install it with: {PLOT_HINT}",
                file=sys.stderr,
            )
            return 2
    from ._bench_scenarios import SCENARIOS

    sizes = SMOKE if getattr(args, "quick_smoke", False) else QUICK
    results = Results(_meta(sizes))
    _header(results.meta, out)
    progress = Progress(len(SCENARIOS) + 3, sys.stderr)
    for scenario in SCENARIOS:
        progress.start(scenario.title)
        _run_scenario(scenario, sizes, results, progress)
        progress.end()
        print_scenario(scenario.group, results.scenarios[scenario.group], out)
        out.flush()
    progress.start("two Python threads on one breaker")
    _run_threads(sizes, results, progress)
    progress.end()
    print_threads(results, out)
    progress.start("native nogil threads through the cimport API")
    _run_native(sizes, results, progress)
    progress.end()
    print_native(results, out)
    progress.start(f"memory, and BreakerGroup lookup among {sizes.group_n:,} names")
    _run_memory_and_group(sizes, results, progress)
    progress.end()
    print_memory_and_group(results, out)
    judge(results)
    print_targets(results, out)
    print_skipped(results, out)
    if results.failures:
        print("\nFAILED checks (these numbers measured the wrong path):", file=out)
        for failure in results.failures:
            print(f"- {failure}", file=out)
    progress.finish()

    if getattr(args, "json", None):
        import json

        with open(args.json, "w") as f:
            json.dump(results.as_json(), f, indent=1)
            f.write("\n")
    if plot_path:
        from ._bench_plot import plot

        plot(results.as_json(), plot_path)
        print(f"\nplot written to {plot_path}", file=out)
    if results.failures:
        return 1
    if getattr(args, "check", False) and any(
        t["status"] == "MISS" for t in results.targets
    ):
        return 1
    return 0
