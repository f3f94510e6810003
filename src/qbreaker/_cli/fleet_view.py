"""``python -m qbreaker status --fleet``: the fleet-wide view, from Redis.

One ``view`` script (and a read of the recorded policy conflicts) with the
fleet's short timeout: every fleet breaker's state, who tripped it and why,
and the probe lease holder. Redis unreachable: one clear line and exit 1;
nothing is read from this host's segments.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any


def add_groups_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fleet-groups",
        type=int,
        default=None,
        metavar="G",
        help="hash tags the namespace is split over (default: "
        "$QBREAKER_FLEET_GROUPS, else 1); every host must agree",
    )


def run(args: argparse.Namespace) -> int:
    from qbreaker import fleet

    try:
        backend = fleet.redis_backend_for(
            args.url,
            args.namespace,
            password_file=args.password_file,
            fleet_groups=getattr(args, "fleet_groups", None),
        )
    except (TypeError, ValueError, ImportError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        states = backend.view()
        read = getattr(backend, "conflicts", None)
        conflicts = () if read is None else read()
    except ValueError as exc:  # this host's fleet_groups is not the namespace's
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - Redis unreachable, refused, ...
        print(
            f"the fleet backend is unreachable ({type(exc).__name__}: "
            f"{str(exc)[:200]}): no fleet-wide view",
            file=sys.stderr,
        )
        return 1
    finally:
        close = getattr(backend, "close", None)
        if close is not None:
            close()
    if args.json:
        print(json.dumps({
            "breakers": [dataclasses.asdict(s) for s in states],
            "policy_conflicts": [dataclasses.asdict(c) for c in conflicts],
        }, indent=2))  # fmt: skip
        return 0
    for line in lines(states, conflicts):
        print(line)
    return 0


def lines(states: Any, conflicts: Any) -> list[str]:
    if not states:
        return ["no fleet breakers in this namespace"]
    header = ("name", "state", "gen", "remaining", "tripped by", "reason", "lease")
    rows = [header] + [
        (
            s.name,
            s.state,
            str(s.generation),
            f"{s.remaining_ms / 1000:.1f} s" if s.state != "closed" else "-",
            ", ".join(s.tripped_by) or "-",
            s.reason or "-",
            s.lease_holder or "-",
        )
        for s in states
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    out = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    out += [
        f"policy conflict: {c.name!r} from host {c.host_id} "
        f"(digest {c.digest}; the fleet keeps {c.stored_digest})"
        for c in conflicts
    ]
    return out
