"""``python -m qbreaker bench``: a quick benchmark against the floor and the peers.

It times every scenario of ``scenarios`` (the same subjects the
pytest-benchmark suite in ``benchmarks/`` times), measures threads, memory and
BreakerGroup lookup (``measure``), prints a table per scenario (``tables``)
and checks the targets (``targets``). About 40 s on a 2-core machine.
``sections`` runs each part into ``results.Results``; this module is the
command around them.

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
import importlib.util
import sys
from typing import TextIO

__all__ = ("add_arguments", "run")

PLOT_HINT = 'pip install "qbreaker[plot]"'
HTTPX_HINT = 'pip install "qbreaker[httpx]"'


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
        "--http",
        action="store_true",
        help=f"also time httpx through BreakerTransport against a local server "
        f"({HTTPX_HINT})",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit with status 1 if a target is missed",
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
    with_http = bool(getattr(args, "http", False))
    if with_http and importlib.util.find_spec("httpx") is None:
        print(
            f"error: --http needs httpx, which is not installed; install it "
            f"with: {HTTPX_HINT}",
            file=sys.stderr,
        )
        return 2
    from .results import Results
    from .scenarios import SCENARIOS
    from .sections import (
        QUICK,
        SMOKE,
        Progress,
        meta,
        run_memory_and_group,
        run_native,
        run_scenario,
        run_threads,
    )
    from .tables import (
        print_header,
        print_memory_and_group,
        print_native,
        print_scenario,
        print_skipped,
        print_targets,
        print_threads,
    )
    from .targets import judge

    sizes = SMOKE if getattr(args, "quick_smoke", False) else QUICK
    results = Results(meta(sizes))
    print_header(results.meta, out)
    progress = Progress(len(SCENARIOS) + 3 + with_http, sys.stderr)
    for scenario in SCENARIOS:
        progress.start(scenario.title)
        run_scenario(scenario, sizes, results, progress)
        progress.end()
        print_scenario(scenario.group, results.scenarios[scenario.group], out)
        out.flush()
    progress.start("two Python threads on one breaker")
    run_threads(sizes, results, progress)
    progress.end()
    print_threads(results, out)
    progress.start("native nogil threads through the cimport API")
    run_native(sizes, results, progress)
    progress.end()
    print_native(results, out)
    progress.start(f"memory, and BreakerGroup lookup among {sizes.group_n:,} names")
    run_memory_and_group(sizes, results, progress)
    progress.end()
    print_memory_and_group(results, out)
    if with_http:
        from .http import print_http, run_http

        progress.start("httpx through BreakerTransport, against a local server")
        run_http(sizes, results, progress)
        progress.end()
        print_http(results, out)
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
        from .plot import plot

        plot(results.as_json(), plot_path)
        print(f"\nplot written to {plot_path}", file=out)
    if results.failures:
        return 1
    if getattr(args, "check", False) and any(
        t["status"] == "MISS" for t in results.targets
    ):
        return 1
    return 0
