"""``python -m qbreaker status|open|close|reset|prune``: this user's shared breakers.

For incident response: ``open NAME`` forces a shared breaker open host-wide,
``close NAME`` forces it closed, ``reset NAME`` returns it to normal closed
operation. Every process sees the change from its next call. These act on
an existing segment only; ``status`` reads segments without changing them;
``prune`` removes those no live process uses. The library's read-only scan
of the segments does the work; this module only prints.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from typing import Any

from qbreaker._impl.shared_scan import Listing, PruneResult


def add_arguments(parser: argparse.ArgumentParser) -> None:
    command = parser.prog.rpartition(" ")[2]
    if command == "status":
        parser.add_argument("--json", action="store_true", help="print JSON")
        parser.add_argument(
            "--watch", nargs="?", const=1.0, type=_interval, metavar="SECONDS",
            help="redraw a live view every SECONDS (default 1) until Ctrl-C",
        )  # fmt: skip
        parser.add_argument(
            "--fleet", action="store_true",
            help="the fleet-wide view, asked of Redis (--url, --namespace)",
        )  # fmt: skip
        parser.add_argument("--url", help="Redis URL (default: $QBREAKER_FLEET_URL)")
        parser.add_argument(
            "--namespace", help="fleet namespace (default: $QBREAKER_FLEET_NAMESPACE)"
        )
        parser.add_argument(
            "--password-file", help="a file holding the Redis password", default=None
        )
        from .fleet_view import add_groups_argument

        add_groups_argument(parser)
    elif command == "prune":
        parser.add_argument(
            "--dry-run", action="store_true", help="list what would go; remove nothing"
        )
    else:
        parser.add_argument("name", help="the shared breaker's name")


def run(args: argparse.Namespace) -> int:
    from qbreaker import shared
    from qbreaker._impl import shared_scan as _shm_scan

    if args.command == "status" and args.fleet:
        if args.watch is not None:
            print("error: --fleet prints one view, without --watch", file=sys.stderr)
            return 2
        from . import fleet_view

        return fleet_view.run(args)
    if args.command == "status" and args.watch is not None:
        if args.json:
            print("error: --watch draws a table; it takes no --json", file=sys.stderr)
            return 2
        from qbreaker._cli import watch

        return watch.run(args.watch)
    if args.command == "status":
        from . import fleet_status

        fleet = fleet_status.load()
        return _status(_shm_scan.listing(), as_json=args.json, fleet=fleet)
    if args.command == "prune":
        return _prune(_shm_scan.prune(args.dry_run))
    name: str = args.name
    try:
        breaker = shared.open_existing(name)
    except FileNotFoundError:
        print(f"no shared breaker named {name!r} for this user", file=sys.stderr)
        return 1
    except shared.SharedStateError as exc:
        print(f"shared breaker {name!r} cannot be opened: {exc}", file=sys.stderr)
        return 1
    except (TypeError, ValueError) as exc:  # an invalid name
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"shared breaker {name!r} cannot be opened: {exc}", file=sys.stderr)
        return 1
    {"open": breaker.force_open, "close": breaker.force_closed,
     "reset": breaker.reset}[args.command]()  # fmt: skip
    forced = f", forced {breaker.forced}" if breaker.forced else ""
    print(f"{name}: {breaker.state}{forced} (generation {breaker.generation})")
    return 0


def _status(found: Listing, *, as_json: bool, fleet: Any = None) -> int:
    from . import fleet_status

    if as_json:
        print(json.dumps({**_as_json(found), "fleet": fleet_status.as_json(fleet)},
                         indent=2))  # fmt: skip
        return 0
    for line in fleet_status.lines(fleet):
        print(line)
    if found.breakers:
        _print_table(found.breakers, fleet)
    else:
        print("no shared breakers for this user on this host")
    if found.unusable:
        print(f"unusable segments ({len(found.unusable)}):")
        for u in found.unusable:
            age = f", {u.age:.1f}s old" if u.half_made else ""
            print(f"  {u.path}: {u.reason}{age}")
    if not found.supported:
        print(f"shared breakers need POSIX shared memory in {found.directory} (Linux)")
        return 0
    print(
        f"{found.segments} segments, {found.size_bytes} bytes "
        f"({_size(found.allocated_bytes)} allocated) in {found.directory}; "
        f"{_size(found.free_bytes)} free"
    )
    if found.low_space:
        print(
            f"warning: less than one segment ({_size(found.segment_bytes)}) free "
            f"in {found.directory}: a new shared breaker fails, or falls back "
            f"to a process-local one in a BreakerGroup"
        )
    return 0


def _as_json(found: Listing) -> dict[str, Any]:
    return {
        "breakers": [
            {
                **dataclasses.asdict(i),
                "state": str(i.state),
                "retry_after": None if math.isinf(i.retry_after) else i.retry_after,
            }
            for i in found.breakers
        ],  # fmt: skip
        "unusable": [dataclasses.asdict(u) for u in found.unusable],
        "directory": found.directory,
        "segments": found.segments,
        "size_bytes": found.size_bytes,
        "allocated_bytes": found.allocated_bytes,
        "free_bytes": found.free_bytes,
        "segment_bytes": found.segment_bytes,
        "low_space": found.low_space,
        "supported": found.supported,
    }


def _print_table(infos: list[Any], fleet: Any = None) -> None:
    from . import fleet_status

    header: tuple[str, ...]
    header = ("name", "state", "gen", "consec", "allowed", "rejected",
              "successes", "failures", "fail rate", "opens",
              "retry after")  # fmt: skip
    if fleet is not None:
        header += ("fleet", "fleet gen", "origin")
    rows: list[tuple[str, ...]] = [header]
    for i in infos:
        state = f"{i.state}" + (f" (forced {i.forced})" if i.forced else "")
        retry = "until reset" if math.isinf(i.retry_after) else f"{i.retry_after:.1f}s"
        row: tuple[str, ...]
        row = (i.name, state, str(i.generation), str(i.consecutive_failures),
               str(i.allowed), str(i.rejected), str(i.successes),
               str(i.failures), f"{i.failure_rate:.0%}", str(i.opens),
               retry)  # fmt: skip
        if fleet is not None:
            row += fleet_status.columns(fleet, i.name)
        rows.append(row)
    widths = [max(len(r[c]) for r in rows) for c in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.1 <= value <= 3600:
        raise argparse.ArgumentTypeError(
            f"SECONDS is a number in [0.1, 3600], got {text!r}"
        )
    return value


def _prune(result: PruneResult) -> int:
    verb = "would remove" if result.dry_run else "removed"
    for r in result.removed:
        print(f"{verb} {r.path}{_named(r.name)}: {r.reason}")
    for k in result.kept:
        print(f"kept {k.path}{_named(k.name)}: {k.reason}")
    print(f"{len(result.removed)} {verb}, {len(result.kept)} kept")
    return 0


def _named(name: str | None) -> str:
    return f" ({name!r})" if name is not None else ""


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} bytes"
    value = count / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
