"""The fault matrix's backend faults: recovery, a dead backend at a high call
rate, a hanging backend, and a 30 s Redis outage.

Each test runs HOSTS simulated hosts of WORKERS worker processes
(tests/fleet/probe_worker.py) in fleet mode and as many in host-wide mode
(the same breaker, no fleet) in the same run, against one local backend
(e2e_support.CountingBackend) that records each call's caller, start and
end, and whether it was a probe (a call a half-open cell admitted) and of
which generation: the fleet's in fleet mode, the cell's host-wide. Every
figure is printed with its bound (run with ``-s``).
``QBREAKER_MATRIX_HOSTS`` / ``QBREAKER_MATRIX_WORKERS`` size the runs.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from qbreaker import State

from . import probe_worker
from .e2e_support import (
    Call,
    CountingBackend,
    Host,
    RedisProcess,
    make_world,
    most_at_once,
    outage_warnings,
    wait_for,
    wait_synced,
    world_fixture,  # noqa: F401 - the ``world`` fixture
)

pytestmark = [pytest.mark.fleet_matrix, pytest.mark.c_extension]
redis = pytest.importorskip("redis", reason="the fleet extra (redis-py) is missing")

from qbreaker.fleet.redis_backend import RedisBackend  # noqa: E402 - needs redis

HOSTS = int(os.environ.get("QBREAKER_MATRIX_HOSTS", "6"))
WORKERS = int(os.environ.get("QBREAKER_MATRIX_WORKERS", "3"))
MODES = ("fleet", "host")
PROBE_WORKER = Path(__file__).with_name("probe_worker.py")
RESET_TIMEOUT = 1.0
#: Each call to the backend takes this long, so that overlapping probes show.
PROBE_SLEEP = 0.05
#: How long the backend stays dead once every host is open, in recovery.
DEAD_FOR = 2.5 * RESET_TIMEOUT
#: The agents' ticks (qbreaker.fleet.agent): quiet, and while anything fails.
TICK = 1.0
HOT_TICK = 0.25
#: The high call rate: each worker calls every HIGH_RATE_PAUSE s.
HIGH_RATE_PAUSE = 0.001
DEAD_WINDOW = 6.0
#: The hanging backend: the callers' timeout, and how long it is measured.
CALL_TIMEOUT = 0.2
HANG_WINDOW = 6.0
#: The issue's Redis outage whose WARNING lines are counted.
OUTAGE = 30.0


def start_hosts(
    world: dict[str, Any], config: dict[str, float], pause: float
) -> dict[str, list[Host]]:
    """HOSTS hosts of each mode (named ``fleet1``.., ``host1``..), WORKERS
    workers each, running probe_worker with ``config``: every worker calling,
    every fleet host's agent synced."""
    redis_proc: RedisProcess = world["redis"]
    backend: CountingBackend = world["backend"]
    hosts: dict[str, list[Host]] = {mode: [] for mode in MODES}
    for mode, made in hosts.items():
        for index in range(1, HOSTS + 1):
            host = Host(f"{mode}{index}", world["base"], "", "", backend.port)
            host.worker = PROBE_WORKER
            host.env[probe_worker.CONFIG_ENV] = json.dumps(config)
            host.args = [mode, redis_proc.url, world["namespace"],
                         str(backend.port), str(pause)]  # fmt: skip
            world["hosts"].append(host)
            made.append(host)
            host.start(WORKERS)
    for made in hosts.values():
        for host in made:
            host.await_ready(60)
    wait_synced(hosts["fleet"])
    return hosts


def stop_all(hosts: dict[str, list[Host]]) -> list[dict[str, Any]]:
    """Stop every worker; their summaries (each must have exited on SIGTERM
    and reported no error that qbreaker raised)."""
    summaries = [s for made in hosts.values() for h in made for s in h.stop()]
    exits = {h.host_id: h.exits for made in hosts.values() for h in made}
    assert len(summaries) == len(MODES) * HOSTS * WORKERS, exits
    assert all(not s["unexpected"] for s in summaries), summaries
    return summaries


def all_in(hosts: list[Host], state: State) -> bool:
    return all(h.cell.state == state for h in hosts)


def per_generation(probes: list[Call], mode: str) -> Counter[tuple[str, int]]:
    """Probes per half-open generation: the fleet's (fleet-wide) in fleet
    mode, each host's own cell's host-wide."""
    return Counter(("" if mode == "fleet" else c.host, c.generation) for c in probes)


@dataclass
class Recovery:
    """What one recovery run measured, per mode."""

    half_open_max: int
    success_threshold: int
    #: Per mode: the probes of the half-open generations before the fleet
    #: closed (host-wide: every probe), the probes made after it closed.
    probes: dict[str, list[Call]]
    after_close: list[Call]
    closed_after: dict[str, float]

    @property
    def bound_gen(self) -> int:
        return self.half_open_max + self.success_threshold - 1


@pytest.fixture(
    scope="module",
    params=[pytest.param((1, 1), id="1x1"), pytest.param((2, 3), id="2x3")],
)
def recovery(request: pytest.FixtureRequest) -> Recovery:
    """Dead backend, every host open, then the backend recovers: the probes
    of each mode. One run per (half_open_max, success_threshold), read by
    the tests below."""
    half_open_max, success_threshold = request.param
    config = {
        "reset_timeout": RESET_TIMEOUT,
        "half_open_max": half_open_max,
        "success_threshold": success_threshold,
    }
    with make_world() as world:
        backend: CountingBackend = world["backend"]
        hosts = start_hosts(world, config, probe_worker.CALL_PAUSE)
        every = [h for made in hosts.values() for h in made]
        backend.delay = PROBE_SLEEP
        backend.fail_all = True
        wait_for(lambda: all_in(every, State.OPEN), 30, "every host to open")
        opened = time.monotonic()
        time.sleep(DEAD_FOR)
        backend.fail_all = False
        recovered = time.monotonic()
        closed_after: dict[str, float] = {}
        for mode, made in hosts.items():
            wait_for(lambda m=made: all_in(m, State.CLOSED), 30, f"{mode} to close")
            closed_after[mode] = time.monotonic() - recovered
        stop_all(hosts)
        client = redis.Redis(port=world["redis"].port, socket_timeout=5)
        (final,) = RedisBackend(client, world["namespace"]).view()
        client.close()
    assert final.state == "closed"
    probes = {
        m: [c for c in backend.between(opened, prefix=m) if c.probe] for m in MODES
    }
    # A probe tagged with the fleet's closed generation was made after the
    # probing host's verdict closed the fleet (its host had seen that).
    after = [c for c in probes["fleet"] if c.generation >= final.generation]
    probes["fleet"] = [c for c in probes["fleet"] if c.generation < final.generation]
    result = Recovery(half_open_max, success_threshold, probes, after, closed_after)
    _print_recovery(result)
    return result


def _print_recovery(run: Recovery) -> None:
    print(
        f"\nrecovery ({HOSTS} hosts x {WORKERS} workers of each mode, "
        f"reset_timeout {RESET_TIMEOUT:g} s, half_open_max {run.half_open_max}, "
        f"success_threshold {run.success_threshold}, the backend dead "
        f"{DEAD_FOR:g} s after every host opened, each call "
        f"{PROBE_SLEEP * 1000:.0f} ms, {time.strftime('%Y-%m-%d')}, load "
        f"{os.getloadavg()[0]:.1f}):"
    )
    for mode, label in (("fleet", "fleet (probe lease)"), ("host", "host-wide")):
        probes = run.probes[mode]
        generations = per_generation(probes, mode)
        print(
            f"  {label}: {len(probes)} probes from {len({c.host for c in probes})} "
            f"hosts, most in flight {most_at_once(probes)} (fleet bound "
            f"{run.half_open_max}), most per half-open generation "
            f"{max(generations.values(), default=0)} over {len(generations)} "
            f"generations (bound {run.bound_gen}), every host closed "
            f"{run.closed_after[mode] * 1000:.0f} ms after the backend recovered"
        )
    fleet, host = run.probes["fleet"], run.probes["host"]
    print(
        f"  host-wide / fleet: probes {len(host) / max(1, len(fleet)):.1f}x, most "
        f"in flight {most_at_once(host)} / {most_at_once(fleet)} (about {HOSTS}x "
        f"expected)\n"
        f"  fleet: probes after its verdict closed it (bound 0): "
        f"{len(run.after_close)} from {len({c.host for c in run.after_close})} "
        f"hosts, most in flight {most_at_once(run.after_close)}"
    )


@pytest.mark.fleet
def test_recovery_probes_fleet_wide(recovery: Recovery) -> None:
    """The fleet's probes until its verdict closes it: at most half_open_max
    in flight at every instant, at most half_open_max + success_threshold - 1
    per fleet half-open generation; host-wide about HOSTS times as many."""
    fleet, host = recovery.probes["fleet"], recovery.probes["host"]
    assert fleet and host
    assert most_at_once(fleet) <= recovery.half_open_max
    assert max(per_generation(fleet, "fleet").values()) <= recovery.bound_gen
    # Each host's own cell keeps the same bound host-wide: a check of the
    # recording (probes told apart correctly), not of the fleet.
    assert max(per_generation(host, "host").values()) <= recovery.bound_gen
    # Host-wide, every host probes in every round: about HOSTS times the
    # fleet's one host, held to half of that.
    assert len(host) >= len(fleet) * HOSTS / 2
    assert len({c.host for c in host}) == HOSTS
    # The lease does not slow recovery: the probing host's verdict closes
    # the fleet within a reset_timeout, a lease request and a few hot ticks.
    assert recovery.closed_after["fleet"] <= RESET_TIMEOUT + 1.5 + 4 * HOT_TICK


@pytest.mark.fleet
def test_no_host_probes_alone_after_the_fleet_closed(recovery: Recovery) -> None:
    assert not recovery.after_close


@pytest.mark.fleet
def test_dead_backend_at_a_high_call_rate(world: dict[str, Any]) -> None:
    """Calls that reach a dead backend, each worker calling every
    HIGH_RATE_PAUSE s: fleet mode no worse than host-wide."""
    backend: CountingBackend = world["backend"]
    hosts = start_hosts(world, {"reset_timeout": RESET_TIMEOUT}, HIGH_RATE_PAUSE)
    died = time.monotonic()
    backend.fail_all = True
    time.sleep(DEAD_WINDOW)
    ended = time.monotonic()
    # The call rate before the outage, per mode (printed: the fleet's workers
    # share their CPU with an agent, so it may be lower).
    before = {m: len(backend.between(died - 1.0, died, prefix=m)) for m in MODES}
    calls = {m: len(backend.between(died, ended, prefix=m)) for m in MODES}
    stop_all(hosts)
    print(
        f"\ndead backend at a high call rate ({HOSTS} hosts x {WORKERS} workers of "
        f"each mode, a call every {HIGH_RATE_PAUSE * 1000:g} ms per worker: "
        f"{before['fleet']} and {before['host']} calls/s before; over "
        f"{DEAD_WINDOW:g} s, {time.strftime('%Y-%m-%d')}, load "
        f"{os.getloadavg()[0]:.1f}; bound: fleet no worse than host-wide): "
        f"fleet {calls['fleet']}, host-wide {calls['host']} "
        f"({calls['fleet'] / max(1, calls['host']):.0%})"
    )
    assert before["fleet"] > 0 and before["host"] > 0
    assert calls["host"] >= HOSTS * (DEAD_WINDOW / RESET_TIMEOUT - 1)
    assert calls["fleet"] <= calls["host"]


@pytest.mark.fleet
def test_hanging_backend(world: dict[str, Any]) -> None:
    """A backend that accepts every call and never answers within the
    callers' CALL_TIMEOUT: every host trips, the calls that reach it are
    bounded, no call outlives its timeout, every worker stops."""
    backend: CountingBackend = world["backend"]
    config = {"reset_timeout": RESET_TIMEOUT, "call_timeout": CALL_TIMEOUT}
    hosts = start_hosts(world, config, probe_worker.CALL_PAUSE)
    backend.hang = True
    hung = time.monotonic()
    tripped: dict[str, float] = {}
    for mode, made in hosts.items():
        wait_for(lambda m=made: all_in(m, State.OPEN), 30, f"every {mode} host open")
        tripped[mode] = time.monotonic() - hung
    time.sleep(max(0.0, hung + HANG_WINDOW - time.monotonic()))
    ended = time.monotonic()
    calls = {m: len(backend.between(hung, ended, prefix=m)) for m in MODES}
    summaries = stop_all(hosts)
    longest = {
        m: max(s["longest_call_s"] for s in summaries if s["host"].startswith(m))
        for m in MODES
    }
    slowest_op = max(s["longest_breaker_s"] for s in summaries)
    print(
        f"\nhanging backend ({HOSTS} hosts x {WORKERS} workers of each mode, "
        f"callers' timeout {CALL_TIMEOUT * 1000:.0f} ms, over {HANG_WINDOW:g} s, "
        f"reset_timeout {RESET_TIMEOUT:g} s, {time.strftime('%Y-%m-%d')}, load "
        f"{os.getloadavg()[0]:.1f}):\n"
        f"  calls that reached it (bound: fleet no more than host-wide): fleet "
        f"{calls['fleet']}, host-wide {calls['host']}\n"
        f"  every host open after: fleet {tripped['fleet'] * 1000:.0f} ms, "
        f"host-wide {tripped['host'] * 1000:.0f} ms\n"
        f"  longest call (bound: the timeout + 1 s): fleet "
        f"{longest['fleet'] * 1000:.0f} ms, host-wide {longest['host'] * 1000:.0f}"
        f" ms; slowest breaker operation {slowest_op * 1000:.3f} ms; every worker "
        f"stopped on SIGTERM, nothing raised"
    )
    assert calls["fleet"] <= calls["host"]
    # Host-wide, each host probes once per reset_timeout, a few calls each.
    assert calls["fleet"] <= HOSTS * WORKERS * (HANG_WINDOW / RESET_TIMEOUT + 2)
    assert max(longest.values()) <= CALL_TIMEOUT + 1.0


@pytest.mark.fleet_heavy
def test_thirty_second_redis_outage_warnings(world: dict[str, Any]) -> None:
    """At most 2 WARNING lines per host, every logger's, over a 30 s Redis
    outage and its end (the 5 s one is in test_fault_matrix.py)."""
    redis_proc: RedisProcess = world["redis"]
    hosts = []
    for index in range(1, HOSTS + 1):
        host = Host(
            f"host{index}",
            world["base"],
            redis_proc.url,
            world["namespace"],
            world["backend"].port,
        )
        world["hosts"].append(host)
        hosts.append(host)
        host.start(WORKERS, log_stderr=True)
    wait_synced(hosts)
    warned = outage_warnings(hosts, redis_proc, OUTAGE)
    print(
        f"\nWARNING lines per host over a {OUTAGE:g} s Redis outage and its end "
        f"({HOSTS} hosts x {WORKERS} workers, every logger, "
        f"{time.strftime('%Y-%m-%d')}; bound 2): most {max(warned.values())} "
        f"({warned})"
    )
    assert max(warned.values()) <= 2, [h.stderr_lines()[-6:] for h in hosts]
