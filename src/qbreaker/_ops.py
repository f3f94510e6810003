"""``python -m qbreaker status|open|close|reset``: this user's shared breakers.

For incident response: ``open NAME`` forces a shared breaker open host-wide,
``close NAME`` forces it closed, ``reset NAME`` returns it to normal closed
operation. Every process sees the change from its next call.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    if parser.prog.endswith(" status"):
        parser.add_argument("--json", action="store_true", help="print JSON")
    else:
        parser.add_argument("name", help="the shared breaker's name")


def run(args: argparse.Namespace) -> int:
    from . import shared

    if args.command == "status":
        return _status(shared.list(), as_json=args.json)
    from ._core import CircuitBreaker

    if not shared.exists(args.name):
        print(f"no shared breaker named {args.name!r} for this user", file=sys.stderr)
        return 1
    breaker = CircuitBreaker(shared=args.name, shared_policy="adopt")
    {"open": breaker.force_open, "close": breaker.force_closed,
     "reset": breaker.reset}[args.command]()  # fmt: skip
    forced = f", forced {breaker.forced}" if breaker.forced else ""
    print(f"{args.name}: {breaker.state}{forced} (generation {breaker.generation})")
    return 0


def _status(infos: list[Any], *, as_json: bool) -> int:
    if as_json:
        records = [
            {**dataclasses.asdict(i), "state": str(i.state),
             "retry_after": None if math.isinf(i.retry_after) else i.retry_after}
            for i in infos
        ]  # fmt: skip
        print(json.dumps(records, indent=2))
        return 0
    if not infos:
        print("no shared breakers for this user on this host")
        return 0
    header = ("name", "state", "gen", "consec", "allowed", "rejected",
              "successes", "failures", "fail rate", "retry after")  # fmt: skip
    rows: list[tuple[str, ...]] = [header]
    for i in infos:
        state = f"{i.state}" + (f" (forced {i.forced})" if i.forced else "")
        retry = "until reset" if math.isinf(i.retry_after) else f"{i.retry_after:.1f}s"
        rows.append((i.name, state, str(i.generation), str(i.consecutive_failures),
                     str(i.allowed), str(i.rejected), str(i.successes),
                     str(i.failures), f"{i.failure_rate:.0%}", retry))  # fmt: skip
    widths = [max(len(r[c]) for r in rows) for c in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0
