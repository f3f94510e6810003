"""Per-call table from a ``--benchmark-json`` file.

``python benchmarks/report.py bench.json`` prints, per group, ns per protected
call (a round's time divided by its loop count), the overhead over the
group's reference (``bare f()``, or ``empty loop`` where nothing is called),
that overhead against the floor of the same form, then the headline ratios.
Medians, not means: these machines are noisy and noise only ever adds.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from typing import Any

C_PAIR = "qbreaker-c allow+record"
HEADLINES = (  # (group, numerator, denominator), ratios of overheads
    ("closed", C_PAIR, "floor allow+record"),
    ("closed", "qbreaker-c-core allow+record", "floor allow+record"),
    ("closed", "qbreaker-c acquire+release", "floor acquire+release"),
    ("closed", "pybreaker call(f)", C_PAIR),
    ("closed", "qbreaker-py allow+record", C_PAIR),
    ("closed-async", C_PAIR, "floor allow+record"),
    ("open-reject", "qbreaker-c allow()->False", "floor allow()->False"),
)

Rows = dict[str, tuple[float, float]]


def load(path: str) -> dict[str, Rows]:
    with open(path) as f:
        data = json.load(f)
    groups: dict[str, Rows] = defaultdict(dict)
    for bench in data["benchmarks"]:
        info: dict[str, Any] = bench["extra_info"]
        stats = bench["stats"]
        ns = 1e9 / info["loops"]
        groups[bench["group"]][info["subject"]] = (
            stats["median"] * ns,
            stats["min"] * ns,
        )
    return groups


def overhead(rows: Rows, subject: str) -> float:
    ref = rows.get("empty loop") or next(
        v for k, v in rows.items() if k.startswith("bare")
    )
    return rows[subject][0] - ref[0]


def main(path: str) -> None:
    groups = load(path)
    for group, rows in groups.items():
        print(f"\n### {group}\n")
        print("| subject | median ns/call | min ns/call | + over ref | x floor |")
        print("|---|---:|---:|---:|---:|")
        for subject, (median, best) in sorted(rows.items(), key=lambda kv: kv[1]):
            extra = overhead(rows, subject)
            floor = "floor " + subject.split(" ", 1)[-1]
            ratio = ""
            if floor in rows and subject != floor:
                ratio = f"{extra / overhead(rows, floor):.2f}"
            print(f"| {subject} | {median:.1f} | {best:.1f} | {extra:+.1f} | {ratio} |")

    print("\n### headline ratios (overheads over the reference, medians)\n")
    for group, num, den in HEADLINES:
        rows = groups.get(group, {})
        if num in rows and den in rows:
            value = overhead(rows, num) / overhead(rows, den)
            print(f"- {group}: {num} / {den} = {value:.2f}")


if __name__ == "__main__":
    main(sys.argv[1])
