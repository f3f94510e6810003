"""``python -m qbreaker agent`` and ``python -m qbreaker fleet open|close|reset NAME``.

``agent`` runs this host's fleet agent in the foreground (a sidecar): it
waits for the host's agent lease, then syncs while it holds it, until
SIGTERM or SIGINT. Its settings come from the environment
(QBREAKER_FLEET_URL, _NAMESPACE, _HOST_ID, _GROUPS, QBREAKER_SHM_DIR) or
options.
Workers then connect with ``agent="sidecar"``.

``fleet ACTION NAME`` changes a breaker fleet-wide, in Redis only: it needs
no segment on the host where it runs. With Redis unreachable it exits 1 and
says so; nothing is queued for later. ``--host-only`` changes this host's
cell instead (as ``python -m qbreaker open|close|reset NAME`` does) and
needs no Redis.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading

from . import fleet_view
from .signals import set_on_signals

_ACTIONS = ("open", "close", "reset")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    command = parser.prog.rpartition(" ")[2]
    if command == "fleet":
        parser.add_argument("action", choices=_ACTIONS, help="what to do fleet-wide")
        parser.add_argument("name", help="the fleet breaker's name")
        parser.add_argument(
            "--host-only",
            action="store_true",
            help="change this host's shared breaker only (no Redis)",
        )
    parser.add_argument("--url", help="Redis URL (default: $QBREAKER_FLEET_URL)")
    parser.add_argument(
        "--namespace", help="fleet namespace (default: $QBREAKER_FLEET_NAMESPACE)"
    )
    parser.add_argument(
        "--password-file", help="a file holding the Redis password", default=None
    )
    fleet_view.add_groups_argument(parser)
    if command == "agent":
        parser.add_argument(
            "--host-id", help="this host's id (default: $QBREAKER_FLEET_HOST_ID)"
        )


def run(args: argparse.Namespace) -> int:
    if args.command == "agent":
        return _agent(args)
    return _fleet(args)


def _agent(args: argparse.Namespace) -> int:
    from qbreaker import fleet

    for option, variable in (
        ("url", fleet.ENV_URL),
        ("namespace", fleet.ENV_NAMESPACE),
        ("host_id", fleet.ENV_HOST_ID),
        ("fleet_groups", fleet.ENV_GROUPS),
    ):
        value = getattr(args, option, None)
        if value is not None:
            os.environ[variable] = str(value)
    stop = threading.Event()
    set_on_signals(stop, signal.SIGTERM, signal.SIGINT)
    try:
        print(f"qbreaker fleet agent: pid {os.getpid()}", flush=True)
        fleet.run_agent(stop=stop, password_file=args.password_file)
    except (TypeError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _fleet(args: argparse.Namespace) -> int:
    if args.host_only:
        from . import admin

        host_args = argparse.Namespace(command=args.action, name=args.name)
        return int(admin.run(host_args))
    from qbreaker import fleet

    try:
        backend = fleet.redis_backend_for(
            args.url,
            args.namespace,
            password_file=args.password_file,
            fleet_groups=args.fleet_groups,
        )
    except (TypeError, ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    by = f"cli@{os.environ.get(fleet.ENV_HOST_ID) or socket.gethostname()}"
    try:
        state = backend.force(args.name, args.action, by=by)
    except (TypeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - Redis unreachable, refused, ...
        print(
            f"the fleet backend is unreachable ({type(exc).__name__}: "
            f"{str(exc)[:200]}): nothing changed and nothing is queued; "
            f"use --host-only to change this host only",
            file=sys.stderr,
        )
        return 1
    print(
        f"{state.name}: fleet {state.state} (generation {state.generation}, "
        f"by {', '.join(state.tripped_by) or '-'})"
    )
    return 0
