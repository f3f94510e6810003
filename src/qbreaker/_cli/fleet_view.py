"""``python -m qbreaker status --fleet``: the fleet-wide view, from Redis.

One ``view`` script (and a read of the recorded policy conflicts) with the
fleet's short timeout: every fleet breaker's state, who tripped it and why,
the probe lease holder, and the hosts whose agents synced within the last 3
ticks. Redis unreachable: one clear line and exit 1; nothing is read from
this host's segments.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from qbreaker.fleet.redis_backend import RedisBackend


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
        # A URL's backend: a RedisBackend, whose view has the active hosts.
        overview = cast("RedisBackend", backend).overview()
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
            "breakers": [dataclasses.asdict(s) for s in overview.states],
            "active_hosts": [dataclasses.asdict(h) for h in overview.active_hosts],
            "active_within_ms": overview.active_within_ms,
            "policy_conflicts": [dataclasses.asdict(c) for c in conflicts],
        }, indent=2))  # fmt: skip
        return 0
    for line in lines(overview.states, conflicts) + active_lines(overview):
        print(line)
    return 0


def active_lines(overview: Any) -> list[str]:
    """One line: how many hosts synced within the window, and which."""
    hosts = overview.active_hosts
    listed = ", ".join(f"{h.host_id} ({h.ms_ago / 1000:.1f} s ago)" for h in hosts)
    return [
        f"active hosts (synced within {overview.active_within_ms / 1000:g} s): "
        f"{len(hosts)}{': ' + listed if hosts else ''}"
    ]


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
