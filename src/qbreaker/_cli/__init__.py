"""Command line: ``python -m qbreaker [tour|demo|bench|status|open|close|reset|prune]``.

Each command lives in its own module with ``add_arguments(parser)`` and
``run(args) -> int``; it is imported only when chosen, so ``tour`` never pays
for the demo's HTTP server or the benchmark's peers.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

COMMANDS = {
    "tour": ("qbreaker._tour", "trace the seed scenario: trip, reject, probe, close"),
    "demo": ("qbreaker._demo", "a flaky local HTTP backend, with and without breaker"),
    "bench": ("qbreaker._bench", "a quick benchmark against the twin and the peers"),
    "status": ("qbreaker._ops", "this user's shared breakers on this host"),
    "open": ("qbreaker._ops", "force a shared breaker open, host-wide"),
    "close": ("qbreaker._ops", "force a shared breaker closed, host-wide"),
    "reset": ("qbreaker._ops", "return a shared breaker to normal, host-wide"),
    "prune": ("qbreaker._ops", "remove this user's shared breakers no process uses"),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m qbreaker",
        description="qbreaker: a lock-free circuit breaker. With no command, "
        "runs the tour.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(module=module_name)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:  # pragma: no cover - a command not built yet
            continue
        add_arguments = getattr(module, "add_arguments", None)
        if add_arguments is not None:
            add_arguments(sub)
    args = parser.parse_args(argv)
    module = importlib.import_module(getattr(args, "module", "qbreaker._tour"))
    return int(module.run(args))


if __name__ == "__main__":
    raise SystemExit(main())
