"""``python -m qbreaker status --watch [SECONDS]``: a live view of this host's
shared breakers, redrawn in place until Ctrl-C.

Each refresh reads every segment with the read-only scan (nothing is mapped
or written) and shows, per breaker: its state (coloured on a terminal that
supports it), how long it has been in it, calls and rejections per second
since the previous refresh, the failure rate over its window, and the time
until it admits a probe. Plain ANSI escapes, no extra dependency; written to
something that is not a terminal, each refresh is printed below the last.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from collections.abc import Sequence
from typing import TextIO

from qbreaker.integrations._readings import Row, shared_rows

_COLOURS = {
    "closed": "32",  # green
    "open": "31;1",  # bold red
    "half_open": "33",  # yellow
    "forced_open": "35;1",  # bold magenta
    "forced_closed": "35",  # magenta
}
_HEADER = ("breaker", "state", "in state", "calls/s", "fail rate", "rejected/s",
           "retry after")  # fmt: skip
_RIGHT = {2, 3, 4, 5, 6}  # numeric columns, aligned right


def run(interval: float, out: TextIO = sys.stdout) -> int:
    """Redraw until interrupted; 0 on Ctrl-C."""
    live = out.isatty()
    colour = live and _supports_colour()
    previous: dict[str, tuple[int, int]] = {}
    before = time.monotonic()
    if live:
        out.write("\x1b[?25l\x1b[2J")  # hide the cursor, clear the screen
    try:
        while True:
            rows = _read()
            now = time.monotonic()
            lines = _frame(rows, previous, now - before, interval, colour)
            previous = {r.name: _counts(r) for r in rows}
            before = now
            _draw(out, lines, live)
            time.sleep(interval)
    except KeyboardInterrupt:
        return 0
    finally:
        if live:
            out.write("\x1b[?25h\n")  # the cursor back, below the table
        out.flush()


def _read() -> list[Row]:
    return sorted(shared_rows(), key=lambda r: r.name)


def _counts(r: Row) -> tuple[int, int]:
    """(every call counted, rejections): the first includes the second."""
    return r.successes + r.failures + r.neutral + r.rejected, r.rejected


def _frame(
    rows: list[Row],
    previous: dict[str, tuple[int, int]],
    elapsed: float,
    interval: float,
    colour: bool,
) -> list[str]:
    width, height = shutil.get_terminal_size()
    stamp = time.strftime("%H:%M:%S")
    lines = [
        f"qbreaker: {len(rows)} shared breakers on this host at {stamp}, "
        f"every {interval:g}s (Ctrl-C to quit)",
        "",
    ]
    if not rows:
        return [*lines, "no shared breakers for this user on this host"]
    table: list[tuple[str, ...]] = [_HEADER]
    states: list[str] = [""]
    for r in rows:
        calls, rejected = _counts(r)
        last = previous.get(r.name)
        if last is None or elapsed <= 0:
            per_second = ("-", "-")
        else:
            per_second = (
                f"{max(calls - last[0], 0) / elapsed:.1f}",
                f"{max(rejected - last[1], 0) / elapsed:.1f}",
            )
        table.append((
            r.name, r.state, _duration(r.time_in_state), per_second[0],
            f"{r.failure_rate:.0%}" if r.policy.window_kind else "-",
            per_second[1], _retry(r.retry_after),
        ))  # fmt: skip
        states.append(r.state)
    room = max(height - len(lines) - 1, 3)  # the cursor's last line stays free
    hidden = 0
    if len(table) > room:
        shown = room - 1  # the header and some rows, then a line saying so
        hidden = len(table) - shown
        table, states = table[:shown], states[:shown]
    widths = [max(len(row[c]) for row in table) for c in range(len(_HEADER))]
    for row, state in zip(table, states):
        cells = [
            cell.rjust(w) if c in _RIGHT else cell.ljust(w)
            for c, (cell, w) in enumerate(zip(row, widths))
        ]
        line = "  ".join(cells).rstrip()[:width]
        if colour and state:
            # Colour the state cell only, after cutting to the width.
            start = len(cells[0]) + 2
            end = start + len(state)
            if end <= len(line):
                code = _COLOURS[state]
                line = f"{line[:start]}\x1b[{code}m{state}\x1b[0m{line[end:]}"
        lines.append(line)
    if hidden:
        lines.append(f"... and {hidden} more (a taller terminal shows them)")
    return lines


def _draw(out: TextIO, lines: Sequence[str], live: bool) -> None:
    if live:
        # Home, each line over the old one, then clear what the last frame
        # left below: an in-place redraw without flicker.
        out.write("\x1b[H" + "".join(f"{line}\x1b[K\n" for line in lines) + "\x1b[J")
    else:
        out.write("\n".join(lines) + "\n\n")
    out.flush()


def _supports_colour() -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    return os.environ.get("TERM", "") not in ("", "dumb")


def _duration(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{seconds:.1f}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _retry(seconds: float) -> str:
    if math.isinf(seconds):
        return "until reset"
    return f"{seconds:.1f}s" if seconds > 0 else "-"
