"""The benchmark's report: a Markdown table per section, readable in a terminal.

Shared with ``benchmarks/report.py``, which prints pytest-benchmark's
figures through the same functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TextIO

from .results import Results

__all__ = (
    "print_header",
    "print_memory_and_group",
    "print_native",
    "print_scenario",
    "print_skipped",
    "print_targets",
    "print_threads",
)


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


def print_header(meta: dict[str, Any], out: TextIO) -> None:
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
            for k, s in g["subjects"].items():
                if k.startswith("group"):
                    rows.append(
                        [
                            f"{family} {k}",
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


def print_targets(results: Results, out: TextIO) -> None:
    print("\n### targets\n", file=out)
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
