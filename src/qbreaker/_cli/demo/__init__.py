"""``python -m qbreaker demo``: a flaky local backend, with and without a breaker.

(``--fleet``: the same backend for several simulated hosts, fleet-wide
breakers against host-wide ones; see ``.fleet``.)

Two identical backends on 127.0.0.1 follow the same script from the same
moment: healthy, failing fast (503s), hanging past the client timeout, then
recovering. The same callers, with the same cache fallback, call one through
a breaker and the other directly, side by side: both runs share the outage
and the machine's noise, so the comparison is fair.

The network modules are imported only by ``run()``: the CLI registry imports
this module just to build ``--help``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from qbreaker import IMPLEMENTATION, CircuitBreaker, State, __version__

from .common import (
    DEFAULT_HOSTS,
    FLEET_QUORUM,
    HALF_OPEN_MAX,
    MAX_FAILURES,
    MAX_HOSTS,
    MIN_HOSTS,
    PERIOD,
    Printer,
    Timing,
    drive,
    script_text,
    timeline,
)

if TYPE_CHECKING:
    from .backend import Backend

CALLERS = 4  # per run
CLIENT_TIMEOUT = 0.3
DEFAULT_SECONDS, MAX_SECONDS = 30.0, 3600.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--seconds",
        type=positive_seconds,
        default=DEFAULT_SECONDS,
        help=f"how long the demo runs (default: {DEFAULT_SECONDS:g})",
    )
    parser.add_argument(
        "--fleet",
        action="store_true",
        help="simulated hosts sharing their trips through Redis, side by side "
        "with the same hosts in host-wide mode",
    )
    parser.add_argument(
        "--redis",
        metavar="URL",
        type=redis_url,
        help="with --fleet: the Redis to use (default: start a local "
        "redis-server for the demo)",
    )
    parser.add_argument(
        "--hosts",
        metavar="N",
        type=host_count,
        help=f"with --fleet: how many simulated hosts per mode "
        f"(default: {DEFAULT_HOSTS})",
    )


def positive_seconds(text: str) -> float:
    """A positive number, at most an hour; argparse's error names --seconds."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= MAX_SECONDS:  # also refuses nan
        raise argparse.ArgumentTypeError(
            f"must be a positive number of seconds, at most {MAX_SECONDS:g}; "
            f"got {text!r}"
        )
    return value


def redis_url(text: str) -> str:
    """A URL that qbreaker.fleet.connect() accepts; argparse's error names --redis."""
    from qbreaker.fleet.connection import check_url

    try:
        return check_url(text)
    except (TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def host_count(text: str) -> int:
    """A whole number of hosts; argparse's error names --hosts."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not MIN_HOSTS <= value <= MAX_HOSTS:
        raise argparse.ArgumentTypeError(
            f"must be a whole number of hosts from {MIN_HOSTS} to {MAX_HOSTS} "
            f"(the fleet opens on a quorum of {FLEET_QUORUM}); got {text!r}"
        )
    return value


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0-100] of sorted values; nan if none."""
    if not ordered:
        return math.nan
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


class Side:
    """One side of the comparison: a backend, and its callers' client and tally."""

    def __init__(self, backend: Backend) -> None:
        import urllib.request

        self.backend = backend
        self.breaker: CircuitBreaker | None = None
        # No proxy, whatever the environment says: the traffic stays on loopback.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self._last: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.cache = "(nothing yet)"  # the last good answer

    def count(self, *keys: str) -> None:
        with self._lock:
            self.counts.update(keys)

    def since_last(self) -> Counter[str]:
        """The counts, and the calls the backend received, since the last time."""
        with self._lock:
            now = self.counts.copy()
        now["reached"] = self.backend.served
        delta, self._last = now - self._last, now
        return delta

    def get(self) -> str:
        """One caller's request: the price, or the cached one marked stale."""
        began = time.perf_counter()
        try:
            if self.breaker is None:
                answer = self._fetch()
            else:  # a rejection returns the fallback: fail_fast()
                answer = self.breaker.call(self._fetch)
        except Exception:  # a failed call serves the cache, on both sides
            answer = self._stale()
        with self._lock:
            self.latencies.append(time.perf_counter() - began)
        return answer

    def _fetch(self) -> str:
        # Admitted while not closed: this call is one of the half-open probes.
        probe = self.breaker is not None and self.breaker.state is not State.CLOSED
        try:
            with self._opener.open(self.backend.url, timeout=CLIENT_TIMEOUT) as r:
                answer = bytes(r.read()).decode()
        except Exception:
            self.count("failed", *(["probe failed"] if probe else []))
            raise
        self.count(*(["probe ok"] if probe else []))
        self.cache = answer
        return answer

    def fail_fast(self) -> str:
        self.count("fast")
        return self._stale()

    def _stale(self) -> str:
        self.count("stale")
        return f"{self.cache} (stale)"


def protect(side: Side, timing: Timing, printer: Printer) -> None:
    notes = {
        State.OPEN: f"failing fast for {timing.reset_timeout:g} s",
        State.HALF_OPEN: f"letting up to {HALF_OPEN_MAX} probes through",
        State.CLOSED: "the backend is trusted again",
    }

    def listener(breaker: object, old: State, new: State) -> None:
        printer(f"*** breaker {old} -> {new}: {notes.get(new, '')}")

    side.breaker = CircuitBreaker(
        MAX_FAILURES,
        timing.reset_timeout,
        HALF_OPEN_MAX,
        # A probe may take the whole client timeout before it reports.
        half_open_timeout=max(timing.reset_timeout, 2 * CLIENT_TIMEOUT),
        name="demo",
        fallback=side.fail_fast,
        on_state_change=listener,
    )


HEADER = (
    "reached: calls the backend received; failed: errors and timeouts, each "
    "served\nstale; fast: rejected without a call, served stale; probes: "
    "half-open calls ok/failed\n\n"
    "                    |                with breaker                  | without\n"
    "    time  backend   |     state reached failed  fast stale  probes "
    "| reached failed"
)


def interval_line(phase: str, protected: Side, bare: Side) -> str:
    a, b = protected.since_last(), bare.since_last()
    probes = f"{a['probe ok']}/{a['probe failed']}"
    state = protected.breaker.state if protected.breaker is not None else ""
    return (
        f"{phase:<10} | {state!s:>9} {a['reached']:7} {a['failed']:6} {a['fast']:5} "
        f"{a['stale']:5} {'-' if probes == '0/0' else probes:>7} "
        f"| {b['reached']:7} {b['failed']:6}"
    )


def summary(sides: Sequence[Side], out: TextIO) -> None:
    from .backend import OUTAGE

    def row(label: str, a: object, b: object) -> None:
        print(f"  {label:<32} {a!s:>12} {b!s:>12}", file=out)

    def ms(side: Side, q: float) -> str:
        return f"{percentile(sorted(side.latencies), q) * 1000:.1f} ms"

    outage = [sum(s.backend.calls[p] for p in OUTAGE) for s in sides]
    print("\nsummary (same script, same callers, side by side):", file=out)
    row("", "with breaker", "without")
    row("backend calls during the outage", *outage)
    row("caller latency p50", ms(sides[0], 50), ms(sides[1], 50))
    row("caller latency p99", ms(sides[0], 99), ms(sides[1], 99))
    row("caller latency max", ms(sides[0], 100), ms(sides[1], 100))
    row("answers served stale", sides[0].counts["stale"], sides[1].counts["stale"])
    row("requests made by the callers", *(len(s.latencies) for s in sides))
    spared = outage[1] - outage[0]
    print(
        f"the breaker spared the failing backend {spared} calls "
        f"({spared / max(1, outage[1]):.0%} of those made without it)",
        file=out,
    )


def introduce(timing: Timing, out: TextIO) -> None:
    from .backend import RECOVERY_FAILS_EVERY

    s = timing.seconds
    print(
        f"qbreaker {__version__} demo ({IMPLEMENTATION} core), {s:g} s\n"
        f"{script_text(s)}\n"
        f"  hanging: past the {CLIENT_TIMEOUT:g} s client timeout; recovering: "
        f"1 call in {RECOVERY_FAILS_EVERY} still fails\n"
        f"{CALLERS} callers per side, each one request per {PERIOD * 1000:g} ms; "
        f"a failed call serves the last good answer, marked stale\n"
        f"breaker: CircuitBreaker(max_failures={MAX_FAILURES}, "
        f"reset_timeout={timing.reset_timeout}, half_open_max={HALF_OPEN_MAX}), "
        f"that cache as its fallback\n\n{HEADER}",
        file=out,
        flush=True,
    )


def make_callers(
    sides: Sequence[Side], start: float, end: float, stop: threading.Event
) -> list[threading.Thread]:
    return [
        threading.Thread(
            target=drive,
            # The same offsets on both sides spread each side's callers out.
            args=(side, start + i * PERIOD / CALLERS, end, stop),
            name=f"demo-caller-{i}",
        )
        for side in sides
        for i in range(CALLERS)
    ]


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from .backend import Backend

    out = out if out is not None else sys.stdout
    if getattr(args, "fleet", False):
        from . import fleet

        return fleet.run(args, out)
    if getattr(args, "redis", None) is not None or getattr(args, "hosts", None):
        print("python -m qbreaker demo: --redis and --hosts need --fleet",
              file=sys.stderr)  # fmt: skip
        return 2
    timing = Timing.of(float(getattr(args, "seconds", DEFAULT_SECONDS)))
    introduce(timing, out)
    start = time.monotonic()
    end, stop, printer = start + timing.seconds, threading.Event(), Printer(out, start)
    hang = CLIENT_TIMEOUT + 0.5  # bounded, and cut short when the backend closes
    with contextlib.ExitStack() as backends:  # closed last, even on Ctrl-C
        sides = [
            Side(backends.enter_context(Backend(start, timing.seconds, hang)))
            for _ in range(2)
        ]
        protect(sides[0], timing, printer)
        callers = make_callers(sides, start, end, stop)
        try:
            for caller in callers:
                caller.start()
            timeline(lambda phase, _: interval_line(phase, *sides), timing, printer)
        except KeyboardInterrupt:
            print("\ninterrupted: stopping the callers and the backends", file=out)
            return 130
        finally:
            stop.set()
            for caller in callers:
                if caller.ident is not None:  # started
                    caller.join()
    summary(sides, out)
    return 0
