"""The targets the benchmark checks, and the verdict on each.

Each target is a ratio of overheads, or a figure, read from :class:`Results`;
``judge`` fills ``Results.targets``. A smoke run judges nothing: its one
unwarmed pass means nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .results import Results, overhead_ratio

__all__ = ("TARGETS", "Target", "judge")


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
    return lambda r: overhead_ratio(_overhead(r, group, num), _overhead(r, group, den))


def _get(*keys: str) -> Callable[[Results], float | None]:
    def value(r: Results) -> float | None:
        node: Any = r.as_json()
        for k in keys:
            if not isinstance(node, dict) or k not in node:
                return None
            node = node[k]
        return float(node)

    return value


def _group_overhead(subject: str) -> Callable[[Results], float | None]:
    return _get("group_lookup", "qbreaker-c", "subjects", subject, "overhead")


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
    # -- async forms: overheads over a bare ``await f()`` --------------------
    Target(
        "compiled async @breaker overhead / floor pair's",
        "<=",
        4.0,
        _ratio_of("closed-async", "qbreaker-c async @breaker", "floor allow+record"),
    ),
    Target(
        "compiled call_async(f) overhead / floor pair's",
        "<=",
        4.0,
        _ratio_of("closed-async", "qbreaker-c call_async(f)", "floor allow+record"),
    ),
    Target(
        "compiled `async with` overhead / floor pair's",
        "<=",
        5.0,
        _ratio_of("closed-async", "qbreaker-c async with", "floor allow+record"),
    ),
    Target(
        "aiobreaker async @breaker overhead / compiled async @breaker's",
        ">=",
        15.0,
        _ratio_of(
            "closed-async", "aiobreaker async @breaker", "qbreaker-c async @breaker"
        ),
    ),
    Target(
        "compiled non-raising rejection / one floor call",
        "<=",
        2.0,
        _ratio_of("open-reject", "qbreaker-c allow()->False", "floor allow()->False"),
    ),
    Target(
        "compiled raising rejection / compiled `with` raising a plain exception",
        "<=",
        2.0,
        _ratio_of(
            "open-raise", "qbreaker-c with->CircuitOpenError", "floor with->raise"
        ),
    ),
    Target(
        "circuitbreaker raising rejection / compiled raising rejection",
        ">=",
        1.0,
        _ratio_of(
            "open-raise",
            "circuitbreaker @circuit->error",
            "qbreaker-c call(f)->CircuitOpenError",
        ),
    ),
    Target(
        "purgatory raising rejection / compiled raising rejection",
        ">=",
        1.0,
        _ratio_of(
            "open-raise", "purgatory with->error", "qbreaker-c with->CircuitOpenError"
        ),
    ),
    Target(
        "pybreaker raising rejection / compiled raising rejection",
        ">=",
        1.0,
        _ratio_of(
            "open-raise",
            "pybreaker call(f)->error",
            "qbreaker-c call(f)->CircuitOpenError",
        ),
    ),
    # A fallback called from C costs about twice a call that the interpreter
    # makes itself (it inlines Python-to-Python calls): "floor call(f)" in
    # the same table. 3.0 leaves the breaker one direct call's worth on top.
    Target(
        "compiled fallback rejection / the fallback called directly",
        "<=",
        3.0,
        _ratio_of("open-reject", "qbreaker-c @breaker->fallback", "bare f()"),
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
    Target(
        "group[name] hit overhead / dict lookup overhead (compiled)",
        "<=",
        1.5,
        lambda r: overhead_ratio(
            _group_overhead("group[name]")(r), _group_overhead("dict d[name]")(r)
        ),
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
