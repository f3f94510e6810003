"""Per-call table from a ``--benchmark-json`` file.

``python benchmarks/report.py bench.json`` prints, per group, ns per protected
call (a round's time divided by its loop count), the overhead over ``bare``,
and that overhead against the floor of the same form, then the headline
ratios. Medians, not means: these machines are noisy and the noise only adds.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from typing import Any

HEADLINES = (
    # (label, group, numerator subject, denominator subject)
    (
        "compiled pair / floor pair",
        "closed",
        "qbreaker-c allow+record",
        "floor allow+record",
    ),
    (
        "compiled ticket / floor ticket",
        "closed",
        "qbreaker-c acquire+release",
        "floor acquire+release",
    ),
    (
        "pybreaker call(f) / compiled pair",
        "closed",
        "pybreaker call(f)",
        "qbreaker-c allow+record",
    ),
    (
        "twin pair / compiled pair",
        "closed",
        "qbreaker-py allow+record",
        "qbreaker-c allow+record",
    ),
    (
        "compiled reject / floor reject",
        "open-reject",
        "qbreaker-c allow()->False",
        "floor allow()->False",
    ),
)


def per_call(bench: dict[str, Any]) -> tuple[float, float]:
    loops = bench["extra_info"]["loops"]
    stats = bench["stats"]
    return stats["median"] / loops * 1e9, stats["min"] / loops * 1e9


def main(path: str) -> None:
    with open(path) as f:
        data = json.load(f)
    groups: dict[str, dict[str, tuple[float, float]]] = defaultdict(dict)
    for bench in data["benchmarks"]:
        groups[bench["group"]][bench["extra_info"]["subject"]] = per_call(bench)

    def overhead(group: str, subject: str) -> float:
        rows = groups[group]
        bare = next(v for k, v in rows.items() if k.startswith("bare"))
        return rows[subject][0] - bare[0]

    for group, rows in groups.items():
        print(f"\n### {group}\n")
        print("| subject | median ns/call | min ns/call | + over bare | x floor |")
        print("|---|---:|---:|---:|---:|")
        for subject, (median, best) in sorted(rows.items(), key=lambda kv: kv[1]):
            extra = overhead(group, subject)
            form = subject.split(" ", 1)[-1]
            floor = f"floor {form}"
            ratio = ""
            if floor in rows and subject != floor and not subject.startswith("bare"):
                ratio = f"{extra / overhead(group, floor):.2f}"
            print(f"| {subject} | {median:.1f} | {best:.1f} | {extra:+.1f} | {ratio} |")

    print("\n### headline ratios (of overheads over bare, medians)\n")
    for label, group, num, den in HEADLINES:
        if num in groups[group] and den in groups[group]:
            value = overhead(group, num) / overhead(group, den)
            print(f"- {label}: {value:.2f}")


if __name__ == "__main__":
    main(sys.argv[1])
