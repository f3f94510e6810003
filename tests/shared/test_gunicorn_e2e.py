"""End to end with a real pre-fork server: gunicorn, 4 sync workers, one breaker.

The app (``tests/shared/e2e/wsgi_app.py``) calls a local backend
(``tests/shared/e2e/backend.py``) through a breaker: one shared by every worker
(``shared=<name>``), or one per worker (``shared=None``) for comparison. The
test drives load from a few client threads and walks the backend through:

1. healthy, until every worker has answered;
2. dead (it keeps listening and answers 503, so it counts every call that
   reached it), until every worker's breaker rejects;
3. after the reset timeout, healthy again, until every worker's breaker
   admits in the closed state once more.

The app forwards, with every call, the state and generation of the breaker
that admitted it (read from its ticket) and its worker's pid, and the backend
records them. So:

- *calls that reached the dead backend before the breaker tripped* are the
  calls the backend received while dead that a closed breaker admitted;
- *probes* are the calls a half-open breaker admitted, counted per
  generation (per worker and generation for per-worker breakers).

Host-wide limits asserted for the shared breaker: at most ``max_failures``
failing calls plus those already in flight when it tripped (another worker's,
at most one per other sync worker), and at most ``half_open_max`` probes per
half-open generation. The per-worker breakers show what sharing saves:
``max_failures`` failing calls per worker, ``half_open_max`` probes per
worker. Run with ``-s`` to see the numbers the README quotes.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import qbreaker
from qbreaker import State, Totals
from qbreaker import shared as shared_mod
from qbreaker._impl import segment_format as _fmt

from .e2e.backend import Backend, Hit
from .e2e.load import Reply, drive, seen_from_every_worker

pytest.importorskip(
    "gunicorn", reason="gunicorn is not installed (pip install gunicorn)"
)

pytestmark = [
    pytest.mark.c_extension,
    pytest.mark.skipif(not _fmt.supported(), reason="POSIX shared memory in /dev/shm"),
]

E2E = Path(__file__).parent / "e2e"
WORKERS = 4  # tests/shared/e2e/gunicorn_conf.py
CLIENTS = 2 * WORKERS  # every sync worker busy, a request queued behind each
MAX_FAILURES = 5
HALF_OPEN_MAX = 2
SUCCESS_THRESHOLD = HALF_OPEN_MAX  # the default
RESET_TIMEOUT = 2.0  # long enough to see every worker open before it elapses
PHASE_SECONDS = 15.0  # per phase, bounded; a quiet machine needs well under 1 s
MAX_REQUESTS = 20_000  # per phase


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return ""


@contextlib.contextmanager
def gunicorn(env: dict[str, str], preload: bool, log: Path) -> Iterator[Server]:
    """gunicorn on a socket bound here (127.0.0.1, a free port), until the end."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        port = listener.getsockname()[1]
        fd = listener.fileno()
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            str(E2E / "gunicorn_conf.py"),
            "--bind",
            f"fd://{fd}",
            "--pythonpath",
            str(E2E),
            *(["--preload"] if preload else []),
            "wsgi_app:application",
        ]
        with log.open("wb") as out:
            process = subprocess.Popen(
                command,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                pass_fds=[fd],
                cwd=log.parent,
            )
    finally:
        listener.close()  # gunicorn holds its own descriptor
    try:
        yield Server(f"http://127.0.0.1:{port}/", process, log)
    finally:
        if process.poll() is None:
            process.terminate()  # graceful: idle sync workers exit at once
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(15)


@dataclass
class Run:
    """What one gunicorn run measured."""

    mode: str
    preload: bool
    pids: set[int]
    hits: list[Hit]  # every call that reached the backend
    dead: list[Hit]  # every call that reached the dead backend
    probes: list[Hit]  # every call a half-open breaker admitted, any phase
    recovery_probes: int  # of those, the ones that reached the healthy backend
    rejected: int  # calls refused by a breaker while the backend was dead
    totals: Totals | None  # the shared breaker's host-wide totals, at the end
    # The most probes in progress at once: per generation, per (worker,
    # generation), and host-wide in all.
    peak_by_generation: Counter[int]
    peak_by_worker: Counter[tuple[int, int]]
    peak_host: int
    seconds: float

    @property
    def failing(self) -> list[Hit]:
        """Calls a closed breaker let through to the dead backend."""
        return [h for h in self.dead if h.admitted == "closed"]

    def failing_by_worker(self) -> Counter[int]:
        return Counter(h.pid for h in self.failing)

    def probes_by_generation(self) -> Counter[tuple[int, int]]:
        """Probes per half-open generation: (pid, generation), pid 0 if shared."""
        shared = self.mode == "shared"
        return Counter((0 if shared else h.pid, h.generation) for h in self.probes)

    def peak_per_generation(self) -> Counter[tuple[int, int]]:
        """Most probes at once per half-open generation, keyed as above."""
        if self.mode == "shared":
            return Counter({(0, g): n for g, n in self.peak_by_generation.items()})
        return self.peak_by_worker

    def summary(self) -> str:
        per_gen = self.probes_by_generation()
        peak = self.peak_per_generation()
        return (
            f"{self.mode:>10} ({'--preload' if self.preload else 'no preload'}): "
            f"{len(self.failing)} failing calls reached the dead backend "
            f"(by worker {sorted(self.failing_by_worker().values())}), "
            f"{self.rejected} rejected; on recovery {self.recovery_probes} probes; "
            f"per half-open generation ({len(per_gen)}) at most "
            f"{max(per_gen.values(), default=0)} probes, "
            f"{max(peak.values(), default=0)} at once; "
            f"host-wide {self.peak_host} probes at once; {self.seconds:.1f} s"
        )


def phase(
    server: Server, name: str, want: str, pids: set[int] | None = None
) -> list[Reply]:
    """Drive load until every worker (``pids``, or any 4) answered ``want``."""

    def matches(reply: Reply) -> bool:
        ok = reply.admitted == want and (want == "rejected" or reply.status == 200)
        return ok and (pids is None or reply.pid in pids)

    goal = seen_from_every_worker(matches, WORKERS)

    def done(reply: Reply) -> bool:
        return goal(reply) or server.process.poll() is not None

    replies, reached = drive(
        server.url,
        done,
        threads=CLIENTS,
        seconds=PHASE_SECONDS,
        max_requests=MAX_REQUESTS,
    )
    if not reached or server.process.poll() is not None:
        seen = Counter((r.pid, r.admitted, r.status) for r in replies)
        errors = Counter(r.error for r in replies if r.error)
        why = "gunicorn exited" if reached else f"{PHASE_SECONDS} s passed"
        raise AssertionError(
            f"{name}: not every worker answered {want!r} ({why}; "
            f"{len(replies)} replies: {dict(seen)}; errors {dict(errors)}); "
            f"gunicorn exit {server.process.poll()}, log:\n{server.log_tail()}"
        )
    return replies


def run(mode: str, preload: bool, tmp_path: Path) -> Run:
    started = time.monotonic()
    name = f"e2e-{uuid.uuid4().hex[:12]}" if mode == "shared" else ""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUNICORN")}
    env.update(
        QBREAKER_E2E_SHARED=name,
        QBREAKER_E2E_MAX_FAILURES=str(MAX_FAILURES),
        QBREAKER_E2E_RESET=str(RESET_TIMEOUT),
        QBREAKER_E2E_HALF_OPEN=str(HALF_OPEN_MAX),
        PYTHONUNBUFFERED="1",
    )
    log = tmp_path / f"gunicorn-{mode}-{'preload' if preload else 'default'}.log"
    # The shared breaker as this process sees it: the host-wide state.
    host: qbreaker.CircuitBreaker | None = None
    try:
        with Backend() as backend:
            env["QBREAKER_E2E_BACKEND"] = backend.url
            with gunicorn(env, preload, log) as server:
                backend.switch("healthy", healthy=True)
                replies = phase(server, "healthy", "closed")
                pids = {r.pid for r in replies if r.status == 200}
                assert len(pids) == WORKERS, f"workers {pids}:\n{server.log_tail()}"
                if name:
                    host = qbreaker.CircuitBreaker(shared=name, shared_policy="adopt")

                backend.switch("dead", healthy=False)
                replies = phase(server, "dead", "rejected", pids)
                tripped = time.monotonic()
                rejected = sum(r.admitted == "rejected" for r in replies)
                assert not any(r.status == 200 for r in replies)
                assert host is None or host.state is State.OPEN, host.metrics()

                # Every breaker tripped by ``tripped``: let its reset timeout
                # pass with no traffic, bring the backend back, and drive
                # until every worker's breaker closed again.
                time.sleep(max(0.0, tripped + RESET_TIMEOUT + 0.5 - time.monotonic()))
                backend.switch("recovery", healthy=True)
                phase(server, "recovery", "closed", pids)
                assert host is None or host.state is State.CLOSED, host.metrics()
            # gunicorn has stopped: every call's outcome has been reported.
            hits = backend.hits()
            totals = None if host is None else host.totals()
    finally:
        if name:
            shared_mod.unlink(name)
    probes = [h for h in hits if h.admitted == "half-open"]
    peak_by_generation, peak_by_worker, peak_host = backend.peak_probes()
    return Run(
        mode,
        preload,
        pids,
        hits,
        [h for h in hits if h.phase == "dead"],
        probes,
        sum(h.phase == "recovery" for h in probes),
        rejected,
        totals,
        peak_by_generation,
        peak_by_worker,
        peak_host,
        time.monotonic() - started,
    )


@pytest.mark.parametrize("preload", [False, True], ids=["default", "preload"])
def test_gunicorn_host_wide_limits(preload: bool, tmp_path: Path) -> None:
    shared = run("shared", preload, tmp_path)
    per_worker = run("per-worker", preload, tmp_path)
    report = f"\n  {shared.summary()}\n  {per_worker.summary()}"
    print(report)

    # Host-wide: the M-th consecutive failure trips the one breaker; calls
    # other workers had in flight then (one per other sync worker) still
    # reach the backend and fail.
    failing = len(shared.failing)
    limit = MAX_FAILURES + (WORKERS - 1)
    assert MAX_FAILURES <= failing <= limit, (
        f"shared: {failing} failing calls reached the dead backend, "
        f"limit {MAX_FAILURES} + {WORKERS - 1} in flight = {limit}{report}"
    )
    generations = {h.generation for h in shared.failing}
    assert len(generations) == 1, f"closed generations {generations}{report}"
    # At most half_open_max probes in flight host-wide, per generation. A
    # successful probe frees its slot before the generation closes, so one
    # generation may admit up to half_open_max + success_threshold - 1 in
    # all (no neutral outcome here; probes end long before half_open_timeout).
    peak = shared.peak_per_generation()
    assert peak and max(peak.values()) <= HALF_OPEN_MAX, (
        f"shared: most probes at once per half-open generation {dict(peak)}, "
        f"limit {HALF_OPEN_MAX}{report}"
    )
    per_gen = shared.probes_by_generation()
    most = HALF_OPEN_MAX + SUCCESS_THRESHOLD - 1
    assert max(per_gen.values()) <= most, (
        f"shared: probes per half-open generation {dict(per_gen)}, "
        f"limit {HALF_OPEN_MAX} + {SUCCESS_THRESHOLD} - 1 = {most}{report}"
    )
    assert 0 < shared.recovery_probes <= most * len(per_gen), report
    # The one breaker's host-wide totals agree with what the backend saw.
    assert shared.totals is not None
    assert shared.totals.failures == len(shared.dead), (shared.totals, report)
    assert shared.totals.successes == len(shared.hits) - len(shared.dead), (
        shared.totals,
        report,
    )

    # Per worker: each sync worker handles one call at a time, so each of its
    # breakers lets exactly M failing calls through before it trips.
    by_worker = per_worker.failing_by_worker()
    assert set(by_worker) == per_worker.pids, report
    assert all(n == MAX_FAILURES for n in by_worker.values()), (
        f"per-worker: failing calls by worker {dict(by_worker)}, "
        f"expected {MAX_FAILURES} each{report}"
    )
    peak = per_worker.peak_per_generation()
    assert max(peak.values()) <= HALF_OPEN_MAX, (
        f"per-worker: most probes at once per (worker, generation) {dict(peak)}{report}"
    )
    per_gen = per_worker.probes_by_generation()
    assert max(per_gen.values()) <= most, (
        f"per-worker: probes per (worker, generation) {dict(per_gen)}{report}"
    )
    # Every worker's breaker recovers on its own: success_threshold probes each.
    assert per_worker.recovery_probes >= WORKERS * SUCCESS_THRESHOLD, report
    assert failing < len(per_worker.failing), report
