"""``python -m qbreaker demo --fleet``: fleet-wide breakers against host-wide ones.

Two groups of the same simulated hosts run at once, each against its own
copy of the demo's flaky backend (same script, same moment): in one the
hosts join a fleet through Redis, in the other each host's breaker is
host-wide only. A host is a segment directory (QBREAKER_SHM_DIR), a host id
and WORKERS worker processes (``fleet_worker``); the hosts call at different
rates, so the busy ones trip first and, in the fleet, open the quiet ones.

Redis: ``--redis URL``, else a redis-server started for the demo (loopback,
a free port, nothing on disk) and stopped at the end, also on Ctrl-C and
SIGTERM. Every worker is stopped by the time ``run`` returns.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import qbreaker
from qbreaker import IMPLEMENTATION, __version__

from .backend import OUTAGE, Backend
from .common import (
    DEFAULT_HOSTS,
    FLEET_QUORUM,
    HALF_OPEN_MAX,
    MAX_FAILURES,
    PERIOD,
    Printer,
    Timing,
    script_text,
    timeline,
)

NAME = "demo"  # the shared breaker of every host
WORKERS = 2  # processes per host
LATENCY = 0.02  # seconds every answer of the backend takes
HANG = 0.3  # seconds a "hanging" answer takes (then 504)
CLIENT_TIMEOUT = 1.0  # longer than HANG: a probe ends when its answer comes
# The fleet's probe lease needs a few agent ticks (250 ms) per open.
SHORTEST_RESET = 1.0
READY_SECONDS = 60.0  # for every worker to start (a loaded machine)
STOP_SECONDS = 10.0  # for the workers to end after the run, each
MODES = ("fleet", "host-wide")
HOW_TO_GET_REDIS = "apt install redis-server (or pass --redis URL)"
HOW_TO_GET_REDIS_PY = 'pip install "qbreaker[fleet]"'


class Terminated(Exception):
    """SIGTERM: the demo stops as on Ctrl-C."""


class WorkerFailed(Exception):
    """A worker did not start, exited early, or did not stop."""


OnLine = Callable[["Host", dict[str, Any]], None]


class Host:
    """One simulated host of one mode: a directory, an id, its workers."""

    def __init__(
        self, mode: str, index: int, base: Path, config: dict[str, Any]
    ) -> None:
        self.mode, self.host_id = mode, f"host{index + 1}"
        self.directory = base / mode / self.host_id
        self.directory.mkdir(mode=0o700, parents=True)
        # Host i calls half as often as host i-1 (down to an eighth).
        self.period = PERIOD * min(2**index, 8)
        self.state = "closed"
        self.opened: list[tuple[float, str]] = []  # (when, why) of each open
        self.summaries: list[dict[str, Any]] = []
        self.workers: list[subprocess.Popen[str]] = []
        self.readers: list[threading.Thread] = []
        self._config = config

    def start(self, on_line: OnLine) -> None:
        env = {
            **os.environ,
            "QBREAKER_SHM_DIR": str(self.directory),
            # The workers import this qbreaker, however the demo found it.
            "PYTHONPATH": os.pathsep.join(
                filter(None, [_package_root(), os.environ.get("PYTHONPATH")])
            ),
        }
        for index in range(WORKERS):
            config = {
                **self._config,
                "host": self.host_id,
                "fleet": self.mode == "fleet",
                "monitor": index == 0,
                "period": self.period,
                "offset": index * self.period / WORKERS,
            }
            with open(self.directory / f"worker-{index}.log", "wb") as stderr:
                worker = subprocess.Popen(
                    [sys.executable, "-m", f"{__package__}.fleet_worker",
                     json.dumps(config)],
                    env=env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                    text=True,
                    # A Ctrl-C in the terminal reaches the demo alone.
                    start_new_session=True,
                )  # fmt: skip
            self.workers.append(worker)
            reader = threading.Thread(
                target=_read_lines,
                args=(worker, self, on_line),
                name=f"demo-fleet-{self.mode}-{self.host_id}-{index}",
            )
            reader.start()
            self.readers.append(reader)

    def errors(self) -> str:
        """The tail of its workers' stderr."""
        text = "".join(
            path.read_text(errors="replace")
            for path in sorted(self.directory.glob("worker-*.log"))
        )
        return text.strip()[-1500:]


def _read_lines(worker: subprocess.Popen[str], host: Host, on_line: OnLine) -> None:
    assert worker.stdout is not None
    for line in worker.stdout:
        if line.startswith("{"):
            on_line(host, json.loads(line))


def _package_root() -> str:
    return str(Path(qbreaker.__file__).resolve().parents[1])


class Demo:
    """Both modes' hosts and backends, and what their workers report."""

    def __init__(
        self, hosts: int, timing: Timing, redis_url: str, namespace: str
    ) -> None:
        config: dict[str, Any] = {
            "name": NAME,
            "redis": redis_url,
            "namespace": namespace,
            "max_failures": MAX_FAILURES,
            "reset_timeout": timing.reset_timeout,
            "half_open_max": HALF_OPEN_MAX,
            # A probe may take the whole client timeout before it reports.
            "half_open_timeout": max(timing.reset_timeout, 2 * CLIENT_TIMEOUT),
            "quorum": FLEET_QUORUM,
            "timeout": CLIENT_TIMEOUT,
        }
        self.timing = timing
        self.base = Path(tempfile.mkdtemp(prefix="qbreaker-demo-fleet-", dir=_shm()))
        try:
            self.hosts = {
                mode: [Host(mode, i, self.base, config) for i in range(hosts)]
                for mode in MODES
            }
        except BaseException:
            shutil.rmtree(self.base, ignore_errors=True)
            raise
        self.backends: dict[str, Backend] = {}
        self.printer: Printer | None = None
        self._ready = threading.Semaphore(0)
        # Event lines, (when, text), printed in time order at the next
        # interval's end: a host's open waits for its agent to say why, so
        # they come in out of order.
        self._events: list[tuple[float, str]] = []
        self._events_lock = threading.Lock()
        self._last = {mode: (0, 0) for mode in MODES}  # (reached, probes) so far

    @property
    def all_hosts(self) -> list[Host]:
        return [host for mode in MODES for host in self.hosts[mode]]

    def workers(self) -> list[subprocess.Popen[str]]:
        return [worker for host in self.all_hosts for worker in host.workers]

    # -- the workers' lines (their reader threads) ---------------------------

    def on_line(self, host: Host, message: dict[str, Any]) -> None:
        if "ready" in message:
            self._ready.release()
        elif "state" in message:
            self._changed(host, message["state"], message["at"], message["why"])
        elif "calls" in message:
            host.summaries.append(message)

    def _changed(self, host: Host, state: str, at: float, why: str) -> None:
        was, host.state = host.state, state
        if was == "closed" and state != "closed":
            host.opened.append((at, why))
            text = f"open: {why}"
        elif state == "closed":
            text = "closed: the backend is trusted again"
        else:
            return  # a probe's half-open and its verdict: the probe columns
        with self._events_lock:
            self._events.append((at, f"*** {host.mode:<9} {host.host_id} {text}"))

    def print_events(self, until: float = float("inf")) -> None:
        """The event lines up to ``until``, in time order."""
        assert self.printer is not None
        with self._events_lock:
            self._events.sort()
            due = [event for event in self._events if event[0] <= until]
            del self._events[: len(due)]
        for at, text in due:
            self.printer(text, at)

    # -- the run ----------------------------------------------------------------

    def start(self) -> None:
        for host in self.all_hosts:
            host.start(self.on_line)
        deadline = time.monotonic() + READY_SECONDS
        for _ in self.workers():
            while not self._ready.acquire(timeout=0.1):
                self._check_alive()
                if time.monotonic() > deadline:
                    raise WorkerFailed(
                        f"the workers did not start within {READY_SECONDS:g} s"
                    )

    def _check_alive(self) -> None:
        for host in self.all_hosts:
            for worker in host.workers:
                if worker.poll() is not None:
                    raise WorkerFailed(
                        f"a worker of {host.mode} {host.host_id} exited "
                        f"({worker.returncode}):\n{host.errors()}"
                    )

    def go(self, start: float, backends: contextlib.ExitStack) -> None:
        for mode in MODES:
            self.backends[mode] = backends.enter_context(
                Backend(start, self.timing.seconds, HANG, LATENCY)
            )
        end = start + self.timing.seconds
        for host in self.all_hosts:
            url = self.backends[host.mode].url
            for worker in host.workers:
                assert worker.stdin is not None
                worker.stdin.write(f"go {start!r} {end!r} {url}\n")
                worker.stdin.flush()

    def interval_line(self, phase: str, at: float) -> str:
        """The interval ending ``at``, after the events it saw."""
        self.print_events(at)
        cells = []
        for mode in MODES:
            backend = self.backends[mode]
            reached, probes = backend.served, sum(backend.probes.values())
            last, self._last[mode] = self._last[mode], (reached, probes)
            peak = backend.take_peak_probes()
            hosts = self.hosts[mode]
            not_closed = sum(host.state != "closed" for host in hosts)
            cells.append(
                f"{reached - last[0]:7} {probes - last[1] or '-':>6} "
                f"{peak or '-':>7} {not_closed:>3}/{len(hosts)}"
            )
        return f"{phase:<10} | {cells[0]} | {cells[1]}"

    def finish(self) -> None:
        """Wait for the workers to end on their own (they stop at the end)."""
        for host in self.all_hosts:
            for worker in host.workers:
                try:
                    worker.wait(STOP_SECONDS)
                except subprocess.TimeoutExpired:
                    raise WorkerFailed(
                        f"a worker of {host.mode} {host.host_id} did not stop"
                    ) from None
            for reader in host.readers:
                reader.join()
            if len(host.summaries) != WORKERS:
                raise WorkerFailed(
                    f"a worker of {host.mode} {host.host_id} ended without its "
                    f"summary:\n{host.errors()}"
                )

    def stop(self) -> None:
        """Every worker gone: stdin closed (they stop), then SIGTERM, SIGKILL."""
        workers = self.workers()
        for worker in workers:
            if worker.stdin is not None:
                with contextlib.suppress(OSError):
                    worker.stdin.close()
        _wait_all(workers, 3.0)
        for worker in workers:
            if worker.poll() is None:
                worker.terminate()
        _wait_all(workers, 3.0)
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        for host in self.all_hosts:
            for reader in host.readers:
                reader.join()
            for worker in host.workers:
                if worker.stdout is not None:
                    worker.stdout.close()
        shutil.rmtree(self.base, ignore_errors=True)

    def summary(self, out: TextIO) -> list[str]:
        """Print the comparison; the errors qbreaker raised in the workers."""
        fleet, host_wide = (self.backends[mode] for mode in MODES)

        def row(label: str, a: object, b: object) -> None:
            print(f"  {label:<42} {a!s:>12} {b!s:>12}", file=out)

        def both(figure: Any) -> tuple[object, object]:
            return figure(MODES[0]), figure(MODES[1])

        def outage(mode: str) -> int:
            return sum(self.backends[mode].calls[p] for p in OUTAGE)

        def outage_probes(mode: str) -> int:
            return sum(self.backends[mode].probes[p] for p in OUTAGE)

        def opened_by(mode: str) -> str:
            whys = [host.opened[0][1] for host in self.hosts[mode] if host.opened]
            local = sum(why == "local trip" for why in whys)
            return f"{local} / {len(whys) - local}"

        def spread(mode: str) -> str:
            times = [host.opened[0][0] for host in self.hosts[mode] if host.opened]
            return f"{max(times) - min(times):.2f} s" if times else "-"

        print("\nsummary (same script, same hosts, side by side):", file=out)
        row("", "fleet", "host-wide")
        row("calls to the dead backend", *both(outage))
        row("  failures before the host opened",
            *both(lambda m: outage(m) - outage_probes(m)))  # fmt: skip
        row("  probes while it was down", *both(outage_probes))
        row("probes during recovery", fleet.probes["recovering"],
            host_wide.probes["recovering"])  # fmt: skip
        row(
            "most probes in flight at once, recovery",
            fleet.peak_probes["recovering"],
            host_wide.peak_probes["recovering"],
        )
        row(
            "most probes in flight at once, whole run",
            *both(lambda m: max(self.backends[m].peak_probes.values(), default=0)),
        )
        row("hosts opened: by a local trip / the fleet", *both(opened_by))
        row("first host open to the last", *both(spread))
        row("hosts that sent probes",
            *both(lambda m: sum(1 for h, n in self.backends[m].probes_by_host.items()
                                if h and n)))  # fmt: skip
        spared = outage(MODES[1]) - outage(MODES[0])
        print(
            f"the fleet spared the dead backend {spared} calls "
            f"({spared / max(1, outage(MODES[1])):.0%} of those made host-wide)",
            file=out,
        )
        return [
            f"{host.mode} {host.host_id}: {error}"
            for host in self.all_hosts
            for summary in host.summaries
            for error in summary["unexpected"]
        ]


def _wait_all(workers: list[subprocess.Popen[str]], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    for worker in workers:
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.wait(max(0.0, deadline - time.monotonic()))


def _shm() -> str | None:
    return "/dev/shm" if os.path.isdir("/dev/shm") else None


HEADER = (
    "reached: calls the backend received; probes: half-open calls among them; "
    "at once:\nthe most probes in flight at one instant; open: hosts whose "
    "breaker is not closed\n\n"
    "                    |            fleet             |          host-wide\n"
    "    time  backend   | reached probes at once  open | reached probes at once  open"
)


def introduce(hosts: int, timing: Timing, where: str, out: TextIO) -> None:
    rates = ", ".join(f"{WORKERS / (PERIOD * min(2**i, 8)):g}" for i in range(hosts))
    print(
        f"qbreaker {__version__} demo --fleet ({IMPLEMENTATION} core), "
        f"{timing.seconds:g} s; Redis: {where}\n"
        f"{script_text(timing.seconds)}\n"
        f"  503s: failing fast; hanging: a 504 after {HANG:g} s; recovering: "
        f"mostly healthy\n"
        f"{hosts} simulated hosts per mode (each its own segment directory and "
        f"host id), {WORKERS} worker processes each;\n"
        f"  calls per second, host1 to host{hosts}: {rates}\n"
        f"breaker on every host: CircuitBreaker(max_failures={MAX_FAILURES}, "
        f"reset_timeout={timing.reset_timeout}, half_open_max={HALF_OPEN_MAX}, "
        f"shared={NAME!r})\n"
        f"  fleet: the same with fleet=True, fleet_quorum={FLEET_QUORUM} (one "
        f"namespace in Redis); host-wide: not joined\n"
        f"both modes run at once, each against its own copy of the backend\n\n"
        f"{HEADER}",
        file=out,
        flush=True,
    )


def run(args: argparse.Namespace, out: TextIO) -> int:
    """The demo; 0 when it ran, 2 when it cannot (a line on stderr says why)."""
    problem = _missing(getattr(args, "redis", None))
    if problem is not None:
        print(f"python -m qbreaker demo --fleet: {problem}", file=sys.stderr)
        return 2
    hosts = getattr(args, "hosts", None) or DEFAULT_HOSTS
    timing = Timing.of(float(args.seconds), SHORTEST_RESET)
    with _stopped_by_sigterm(), contextlib.ExitStack() as stack:
        try:
            return _run(args.redis, hosts, timing, out, stack)
        except (KeyboardInterrupt, Terminated) as exc:
            print("\ninterrupted: stopping the hosts, the backends and Redis",
                  file=out)  # fmt: skip
            return 143 if isinstance(exc, Terminated) else 130
        except WorkerFailed as exc:
            print(f"python -m qbreaker demo --fleet: {exc}", file=sys.stderr)
            return 1


def _missing(redis_url: str | None) -> str | None:
    """What the demo lacks to run, and how to get it; None if nothing."""
    if IMPLEMENTATION != "cython":
        return (
            "it needs the compiled core (shared breakers): unset "
            "QBREAKER_NO_EXTENSIONS, or install a qbreaker wheel"
        )
    needs = []
    if importlib.util.find_spec("redis") is None:
        needs.append(f"redis-py ({HOW_TO_GET_REDIS_PY})")
    if redis_url is None and shutil.which("redis-server") is None:
        needs.append(f"a Redis: no redis-server on PATH ({HOW_TO_GET_REDIS})")
    return f"it needs {' and '.join(needs)}" if needs else None


def _run(
    redis_url: str | None,
    hosts: int,
    timing: Timing,
    out: TextIO,
    stack: contextlib.ExitStack,
) -> int:
    from .local_redis import LocalRedis, RedisServerError

    given = redis_url is not None
    if redis_url is None:
        exe = shutil.which("redis-server")
        assert exe is not None
        try:
            server = stack.enter_context(LocalRedis(exe))
        except RedisServerError as exc:
            print(f"python -m qbreaker demo --fleet: {exc}", file=sys.stderr)
            return 2
        redis_url = server.url
        where = f"a redis-server started for the demo, {server.url}"
    else:
        error = _unreachable(redis_url)
        if error is not None:
            print(f"python -m qbreaker demo --fleet: --redis: {error}",
                  file=sys.stderr)  # fmt: skip
            return 2
        where = _redacted(redis_url)
    namespace = f"demo-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    if given:  # a Redis of the user's: the demo's keys are removed at the end
        stack.callback(_forget, redis_url, namespace)
    demo = Demo(hosts, timing, redis_url, namespace)
    stack.callback(demo.stop)
    introduce(hosts, timing, where, out)
    demo.start()
    start = time.monotonic() + 0.05
    demo.printer = Printer(out, start)
    demo.go(start, stack)
    timeline(demo.interval_line, timing, demo.printer)
    demo.finish()
    demo.print_events()
    errors = demo.summary(out)
    if errors:
        print("qbreaker raised in the workers (a bug):", *errors, sep="\n  ",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


def _unreachable(url: str) -> str | None:
    """Why ``url``'s Redis does not answer a PING; None if it does."""
    from qbreaker.fleet.redis_backend import connect_redis

    try:
        client = connect_redis(url, timeout=2.0)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - any failure is the answer
        return f"{_redacted(url)} does not answer: {type(exc).__name__}: {exc}"
    return None


def _redacted(url: str) -> str:
    from qbreaker.fleet.connection import redacted_url

    return str(redacted_url(url))


def _forget(url: str, namespace: str) -> None:
    """Remove the demo's keys from a Redis it did not start (best effort)."""
    from qbreaker.fleet._protocol import key_prefix
    from qbreaker.fleet.redis_backend import connect_redis

    with contextlib.suppress(Exception):
        client = connect_redis(url, timeout=2.0)
        try:
            keys = list(client.scan_iter(match=f"{key_prefix(namespace)}*"))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


@contextlib.contextmanager
def _stopped_by_sigterm() -> Iterator[None]:
    """SIGTERM raises Terminated in the main thread, so that everything the
    demo started is stopped as on Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        # Once: a second SIGTERM must not cut the clean-up short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
