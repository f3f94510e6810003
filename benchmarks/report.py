"""Tables and targets from a ``--benchmark-json`` file of this suite.

``python benchmarks/report.py bench.json`` prints what ``python -m qbreaker
bench`` prints, from pytest-benchmark's statistics: per scenario, ns per
operation (a round's time divided by its loop count), the overhead over the
scenario's reference, the ratio to the floor and to each peer; then threads,
memory, BreakerGroup lookup and the targets. The tables and the
targets are computed by ``qbreaker._cli.bench`` itself, so the two cannot
disagree. ``--stat median`` (default: min, as the command) picks the statistic.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from typing import Any

from qbreaker._cli.bench import tables
from qbreaker._cli.bench.results import Results, scenario_table
from qbreaker._cli.bench.scenarios import SCENARIOS
from qbreaker._cli.bench.targets import judge


def load(path: str, stat: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The file's machine info, and per group: subject -> (ns/op, median, info)."""
    with open(path) as f:
        data = json.load(f)
    groups: dict[str, dict[str, Any]] = defaultdict(dict)
    for bench in data["benchmarks"]:
        info: dict[str, Any] = bench["extra_info"]
        stats = bench["stats"]
        per_op = 1e9 / info["loops"]
        groups[bench["group"]][info["subject"]] = (
            stats[stat] * per_op,
            stats["median"] * per_op,
            info,
        )
    return data, groups


def build(path: str, stat: str) -> Results:
    data, groups = load(path, stat)
    machine = data.get("machine_info", {})
    results = Results(
        {
            "qbreaker": data.get("version", "?"),
            "implementation": "cython",
            "python": machine.get("python_version", "?"),
            "cpu": machine.get("cpu", {}).get("brand_raw", "?"),
            "date": data.get("datetime", "?"),
            "smoke": False,
            "statistic": stat,
        }
    )
    for sc in SCENARIOS:
        rows = groups.get(sc.group)
        if rows:
            best = {k: v[0] for k, v in rows.items()}
            median = {k: v[1] for k, v in rows.items()}
            results.scenarios[sc.group] = scenario_table(sc, best, median, 0)
    threads = groups.get("threads", {})
    for key, (ns1, _, _) in threads.items():
        name, _, k = key.rpartition(" x")
        if k != "1" or f"{name} x2" not in threads:
            continue
        ns2 = threads[f"{name} x2"][0]  # ns per call, both threads together
        results.threads[name] = {
            "family": name.split(" ")[0],
            "one_thread_ops_s": 1e9 / ns1,
            "two_threads_ops_s": 1e9 / ns2,
            "scaling": ns1 / ns2,
        }
    native = groups.get("native-threads", {})
    if "1 thread" in native:
        base = native["1 thread"][0]
        for config, (ns, _, info) in native.items():
            results.native[config] = {
                "threads": info["threads"],
                "ops_s": 1e9 / ns,
                "ns_per_op_per_thread": ns * info["threads"],
                "scaling": base / ns,
            }
    lookup = groups.get("group-lookup", {})
    if lookup:
        ref = lookup["empty loop"][0] if "empty loop" in lookup else 0.0
        dict_o = lookup["dict d[name]"][0] - ref if "dict d[name]" in lookup else None
        subjects = {
            k: {
                "ns": v[0],
                "overhead": v[0] - ref,
                "x_dict": None
                if dict_o is None or k == "empty loop"
                else (v[0] - ref) / dict_o,
            }
            for k, v in lookup.items()
        }
        for family in ("qbreaker-c", "qbreaker-py"):
            key = f"{family} group[name]"
            if key in subjects:
                results.group_lookup[family] = {
                    "names": lookup[key][2].get("names", 0),
                    "subjects": {
                        "empty loop": subjects.get("empty loop", subjects[key]),
                        "dict d[name]": subjects.get("dict d[name]", subjects[key]),
                        "group[name]": subjects[key],
                    },
                }
    for family, (_, _, info) in groups.get("memory", {}).items():
        results.memory[family] = {
            k: info[k]
            for k in ("instances", "bytes_per_breaker", "bytes_per_breaker_in_group")
            if k in info
        }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", help="a pytest-benchmark --benchmark-json file")
    parser.add_argument("--stat", choices=("min", "median"), default="min")
    args = parser.parse_args(argv)
    results = build(args.path, args.stat)
    out = sys.stdout
    meta = results.meta
    print(
        f"qbreaker {meta['qbreaker']}, {meta['date']}: {meta['cpu']}, "
        f"Python {meta['python']}; ns/op: the {args.stat} of the rounds",
        file=out,
    )
    for group, table in results.scenarios.items():
        tables.print_scenario(group, table, out)
    tables.print_threads(results, out)
    tables.print_native(results, out)
    tables.print_memory_and_group(results, out)
    judge(results)
    tables.print_targets(results, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
