"""The benchmark's results: what was measured, in the shape ``--json`` writes.

``benchmarks/report.py`` builds the same :class:`Results` from
pytest-benchmark's statistics, so both print and judge the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .scenarios import LOOPS
from .subjects import PEERS, Scenario

__all__ = ("Results", "overhead_ratio", "scenario_table")


@dataclass
class Results:
    """Everything measured, in the shape ``--json`` writes."""

    meta: dict[str, Any]
    scenarios: dict[str, Any] = field(default_factory=dict)
    threads: dict[str, Any] = field(default_factory=dict)
    native: dict[str, Any] = field(default_factory=dict)
    group_lookup: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)
    http: dict[str, Any] = field(default_factory=dict)  # --http only
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
            "http": self.http,
            "targets": self.targets,
            "skipped": self.skipped,
            "failures": self.failures,
        }


def overhead_ratio(a: float | None, b: float | None) -> float | None:
    """``a / b``; None if either is missing or ``b`` is noise (at most 0.05 ns):
    a ratio of overheads is meaningless once the denominator is noise."""
    if a is None or b is None or b <= 0.05:
        return None
    return a / b


def scenario_table(
    scenario: Scenario,
    best: dict[str, float],
    median: dict[str, float],
    repeats: int,
) -> dict[str, Any]:
    """One scenario's rows, from ns/op by subject (``--json``'s shape).

    Shared with ``benchmarks/report.py``, which feeds it pytest-benchmark's
    statistics, so both print and judge the same way.
    """
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
            "x_floor": None if is_ref else overhead_ratio(o, floor_o),
            "vs": {}
            if is_ref
            else {p: overhead_ratio(b, o) for p, b in peer_best.items()},
        }
    return {
        "title": scenario.title,
        "reference": scenario.reference,
        "unit": "ns/op",
        "ops_per_round": LOOPS,
        "repeats": repeats,
        "subjects": rows,
    }
