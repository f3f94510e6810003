"""Command line: ``python -m qbreaker [tour]``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m qbreaker",
        description="qbreaker: a lock-free circuit breaker. With no command, "
        "runs the tour.",
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser(
        "tour", help="trace the seed scenario: trip, reject, probe, close"
    )
    args = parser.parse_args(argv)
    if args.command in (None, "tour"):
        from . import _tour

        return _tour.run()
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover


if __name__ == "__main__":
    raise SystemExit(main())
