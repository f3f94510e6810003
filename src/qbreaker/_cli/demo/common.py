"""What both demos share: the breaker's settings, the timing, the callers'
pacing and the timestamped printer.

``python -m qbreaker demo`` (this package's ``__init__``) and ``demo --fleet``
(``.fleet``, and its worker processes, ``.fleet_worker``) import it; it imports
nothing of theirs.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import NamedTuple, Protocol, TextIO

PERIOD = 0.05  # each caller sends at most one request per period
MAX_FAILURES, HALF_OPEN_MAX = 5, 2
DEFAULT_HOSTS, MIN_HOSTS, MAX_HOSTS = 4, 2, 8
FLEET_QUORUM = 2  # hosts whose local trips open the fleet, in --fleet


class Timing(NamedTuple):
    """Everything that scales with ``--seconds``."""

    seconds: float
    reset_timeout: float  # how long the breaker stays open
    interval: float  # of the timeline

    @classmethod
    def of(cls, seconds: float, shortest_reset: float = 0.25) -> Timing:
        # Several open/probe cycles fit in the outage (40% of the run), and
        # the timeline has about 30 lines, however long the run.
        reset = round(min(2.0, max(shortest_reset, seconds / 15)), 2)
        return cls(seconds, reset, max(0.25, seconds / 30))


class Caller(Protocol):
    def get(self) -> object: ...


def drive(
    side: Caller,
    start: float,
    end: float,
    stop: threading.Event,
    period: float = PERIOD,
) -> None:
    """One caller: a request per ``period`` until ``end``. A slot that passed
    while a call hung is skipped, as a blocked caller would: both sides alike."""
    for slot in range(int((end - start) / period)):
        wait = start + slot * period - time.monotonic()
        if wait < -period / 2:
            continue
        if stop.wait(max(wait, 0.0)):
            return
        side.get()


class Printer:
    """Whole lines, timestamped from the start, from any thread, flushed."""

    def __init__(self, out: TextIO, start: float) -> None:
        self.out, self.start = out, start
        self._lock = threading.Lock()

    def __call__(self, text: str, at: float | None = None) -> None:
        now = time.monotonic() if at is None else at
        with self._lock:
            print(f"{now - self.start:6.2f}s  {text}", file=self.out, flush=True)


def timeline(
    line: Callable[[str, float], str], timing: Timing, printer: Printer
) -> None:
    """Every interval until the end, ``line(phase, end)`` printed at its end."""
    from .backend import phase_at

    ticks = math.ceil(timing.seconds / timing.interval)
    for tick in range(1, ticks + 1):
        at = printer.start + min(tick * timing.interval, timing.seconds)
        time.sleep(max(0.0, at - time.monotonic()))
        phase = phase_at((tick - 0.5) * timing.interval / timing.seconds)
        printer(line(phase, at), at)


def script_text(seconds: float) -> str:
    """The backend's script, its phases in seconds of the run."""
    from .backend import PHASES

    begin, script = 0.0, []
    for name, end in PHASES:
        script.append(f"{name} {begin * seconds:g}-{end * seconds:g} s")
        begin = end
    return f"backend script: {', '.join(script)}"
