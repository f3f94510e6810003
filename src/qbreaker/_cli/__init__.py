"""Command line: ``python -m qbreaker [tour|demo|bench|status|open|close|reset|prune]``.

Each command lives in its own module of this package with
``add_arguments(parser)`` and ``run(args) -> int``. ``main()`` imports every
command module to build ``--help``, so each keeps its module level light and
imports its heavy parts (the demo's HTTP server, the benchmark's peers) in
``run()``: ``tour`` never pays for them.

The library never imports this package: it sits above everything else.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence
from types import ModuleType

# Each command, with its module in this package and its one-line help.
COMMANDS = {
    "tour": ("tour", "trace the seed scenario: trip, reject, probe, close"),
    "demo": (
        "demo",
        "a flaky local HTTP backend, with and without breaker "
        "(--fleet: simulated hosts, fleet-wide against host-wide)",
    ),
    "bench": ("bench", "a quick benchmark against the twin and the peers"),
    "status": ("admin", "this user's shared breakers on this host"),
    "open": ("admin", "force a shared breaker open, host-wide"),
    "close": ("admin", "force a shared breaker closed, host-wide"),
    "reset": ("admin", "return a shared breaker to normal, host-wide"),
    "prune": ("admin", "remove this user's shared breakers no process uses"),
    "export": ("export", "serve this host's shared breakers to Prometheus or OTLP"),
    "agent": ("fleet", "run this host's fleet agent (a sidecar)"),
    "fleet": ("fleet", "open, close or reset a fleet breaker fleet-wide"),
    "info": ("info", "what a bug report needs: versions, build, platform"),
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
            module = _command_module(module_name)
        except ModuleNotFoundError:  # pragma: no cover - a command not built yet
            continue
        add_arguments = getattr(module, "add_arguments", None)
        if add_arguments is not None:
            add_arguments(sub)
    args = parser.parse_args(argv)
    module = _command_module(getattr(args, "module", COMMANDS["tour"][0]))
    return int(module.run(args))


def _command_module(name: str) -> ModuleType:
    return importlib.import_module(f"{__name__}.{name}")
