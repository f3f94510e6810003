"""The load that fleet mode puts on Redis, from ``INFO commandstats``.

    python benchmarks/fleet_redis_load.py [--seconds 60] [--hosts 6]
        [--breakers 100] [--idle 0] [--redis URL] [--json]

Starts a redis-server without persistence on a free port of 127.0.0.1
(or uses ``--redis``, which should be a quiet one: its commandstats are
read server-wide), then HOSTS simulated hosts: each a process with its own
segment directory and host id that joins the fleet (it runs its host's
agent), makes BREAKERS fleet breakers and calls each one ten times a second,
every call a success (a quiet fleet: the agents sync once per tick), but for
the last IDLE, which get no calls once the run starts. Once
every agent has synced, it reads ``INFO commandstats`` before and after
SECONDS, and prints each command's calls and microseconds, the commands per
second, and an extrapolation to 200 hosts x 32 workers x 1,000 breakers.

The model behind the extrapolation: one agent per host syncs all of the
host's breakers in one EVALSHA per tick, and keeps one blocking XREAD of
the event stream going; a host's worker processes only write their
breakers' shared segments, which the agent reads. So the commands per
second scale with the hosts, not with the workers, and Redis time scales
with hosts x the breakers a sync carries: every breaker with calls, and an
idle, closed one every FULL_SYNC_TICKS ticks (qbreaker.fleet.agent). Two
extrapolations are printed, to 1,000 breakers with the same share idle: the
measured time per sync scaled by the breakers a sync carries (an upper
bound: a sync's fixed part scales too), and a calibrated one, a sync's
script time fitted as fixed + per breaker from syncs of 1 and of BREAKERS
breakers sent after the run by one client.
commandstats' usec is wall time inside Redis: on a loaded machine it
counts time redis-server waited for a CPU, so quote it with the load.

    python benchmarks/fleet_redis_load.py host HOST_ID URL NAMESPACE BREAKERS IDLE
        one simulated host (what the command above starts); prints "ready"
        once its agent has synced every breaker, then, on SIGTERM, its
        agent's counters as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

#: The extrapolation's fleet.
TARGET_HOSTS = 200
TARGET_WORKERS = 32
TARGET_BREAKERS = 1000
#: Calls per breaker per second on every host.
CALL_RATE = 10
#: Commands the benchmark itself sends (left out of the figures).
OWN_COMMANDS = ("info", "ping", "config|resetstat")
START_TIMEOUT = 60.0
#: How long Redis's idle CPU is measured before the hosts start.
IDLE_SECONDS = 2.0
#: Syncs per calibration point (after as many to warm up).
CALIBRATION_SYNCS = 50


def main(argv: list[str]) -> int:
    if argv[:1] == ["host"]:
        return run_host(*argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--hosts", type=int, default=6)
    parser.add_argument("--breakers", type=int, default=100)
    parser.add_argument(
        "--idle", type=int, default=0, help="of the breakers, how many get no calls"
    )
    parser.add_argument("--redis", help="a quiet Redis to use (default: start one)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.hosts < 1 or args.breakers < 1:
        parser.error("--seconds, --hosts and --breakers must be positive")
    if not 0 <= args.idle <= args.breakers:
        parser.error(f"--idle must be from 0 to --breakers, got {args.idle}")
    base = tempfile.mkdtemp(prefix="qbreaker-redis-load-")
    server = None
    try:
        if args.redis:
            url = args.redis
        else:
            server, url = start_redis(base)
        result = measure(url, base, args.hosts, args.breakers, args.idle, args.seconds)
    finally:
        if server is not None:
            server.kill()
            server.wait(10)
        shutil.rmtree(base, ignore_errors=True)
    if args.json:
        print(json.dumps(result))
    else:
        report(result)
    return 0


def start_redis(base: str) -> tuple[subprocess.Popen[bytes], str]:
    exe = shutil.which("redis-server")
    if exe is None:
        sys.exit("redis-server is not installed (scripts/ci_redis.sh installs it)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", base],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    client = _client(url)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            client.ping()
            break
        except Exception:  # noqa: BLE001 - not up yet
            if time.monotonic() > deadline:
                server.kill()
                raise
            time.sleep(0.05)
    client.close()
    return server, url


def _client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_timeout=5)


def redis_cpu(client: Any) -> float:
    """The CPU seconds redis-server has used (its main thread and others)."""
    cpu = client.info("cpu")
    return float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])


def commandstats(client: Any) -> dict[str, tuple[int, int]]:
    """(calls, usec) per command, the benchmark's own left out."""
    stats = client.info("commandstats")
    return {
        key.removeprefix("cmdstat_"): (int(value["calls"]), int(value["usec"]))
        for key, value in stats.items()
        if key.removeprefix("cmdstat_") not in OWN_COMMANDS
    }


def measure(
    url: str, base: str, hosts: int, breakers: int, idle: int, seconds: float
) -> dict[str, Any]:
    namespace = f"load-{os.getpid()}"
    # Redis's own CPU with no fleet (its timers), taken off the fleet's.
    client = _client(url)
    idle_before = redis_cpu(client)
    time.sleep(IDLE_SECONDS)
    idle_cpu = (redis_cpu(client) - idle_before) / IDLE_SECONDS
    client.close()
    procs = []
    try:
        for index in range(1, hosts + 1):
            directory = os.path.join(base, f"host{index}")
            os.mkdir(directory, 0o700)
            env = {**os.environ, "QBREAKER_SHM_DIR": directory}
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        __file__,
                        "host",
                        f"host{index}",
                        url,
                        namespace,
                        str(breakers),
                        str(idle),
                    ],
                    env=env,
                    stdout=subprocess.PIPE,
                    text=True,
                )  # fmt: skip
            )
        for proc in procs:
            _await_ready(proc)
        client = _client(url)
        cpu_before = redis_cpu(client)
        before = commandstats(client)
        started = time.monotonic()
        time.sleep(seconds)
        after = commandstats(client)
        took = time.monotonic() - started
        cpu = max(0.0, redis_cpu(client) - cpu_before - idle_cpu * seconds)
        client.close()
    finally:
        agents = _stop(procs)
    fit = calibrate(url, breakers)
    commands = {}
    for name, (calls, usec) in after.items():
        was_calls, was_usec = before.get(name, (0, 0))
        if calls > was_calls:
            commands[name] = {"calls": calls - was_calls, "usec": usec - was_usec}
    carried = sync_carries(breakers, idle)
    return {
        "hosts": hosts,
        "breakers": breakers,
        "idle": idle,
        "carried_per_sync": carried,
        "seconds": took,
        "commands": commands,
        "agents": agents,
        "redis_cpu_s": cpu,
        "load_average": os.getloadavg()[0],
        "date": time.strftime("%Y-%m-%d"),
        "calibration": fit,
        "extrapolation": extrapolate(
            commands, cpu, fit, hosts, breakers, carried, took
        ),
    }


def sync_carries(breakers: int, idle: int) -> float:
    """The breakers one quiet sync carries on average, by the agent's rule:
    the busy ones each time, an idle closed one every FULL_SYNC_TICKS ticks."""
    from qbreaker.fleet.agent import FULL_SYNC_TICKS

    return breakers - idle + idle / FULL_SYNC_TICKS


#: The commands a client sends; the others run inside the scripts, whose
#: time EVALSHA's includes (the conflicts' HGET, one per conflict, is none
#: in a quiet fleet).
CLIENT_COMMANDS = ("evalsha", "xread", "xrevrange", "hgetall", "script|load")


def extrapolate(
    commands: dict[str, dict[str, int]],
    cpu: float,
    fit: dict[str, float],
    hosts: int,
    breakers: int,
    carried: float,
    seconds: float,
) -> dict[str, float]:
    """Per host and second, then at TARGET_HOSTS x TARGET_BREAKERS (the
    workers do not enter: one agent per host). Two estimates of Redis's
    busy time: commandstats' (wall time inside the commands: it counts the
    time redis-server waited for a CPU on a loaded machine) and its CPU
    time less its idle time (which also counts accepting, parsing and
    replying); each scaled by hosts x breakers, an upper bound (a sync's
    fixed part scales too); and the calibrated one: a sync costs fixed + per
    breaker x the breakers it carries (``calibrate``), once per host and
    tick. ``carried``: the breakers a sync carries (``sync_carries``); at
    TARGET_BREAKERS, the same share of them."""
    sent = sum(commands.get(c, {}).get("calls", 0) for c in CLIENT_COMMANDS)
    usec = sum(commands.get(c, {}).get("usec", 0) for c in CLIENT_COMMANDS)
    evalsha = commands.get("evalsha", {"calls": 0, "usec": 0})
    syncs_per_host_s = evalsha["calls"] / hosts / seconds
    sync_usec = evalsha["usec"] / max(1, evalsha["calls"])
    per_breaker_usec = sync_usec / carried
    target_carried = carried * TARGET_BREAKERS / breakers
    # Everything but the syncs (XREAD, conflicts) per host, as measured.
    other_usec_per_host_s = (usec - evalsha["usec"]) / hosts / seconds
    target_sync_usec = per_breaker_usec * target_carried
    busy = TARGET_HOSTS * (syncs_per_host_s * target_sync_usec + other_usec_per_host_s)
    return {
        "client_commands_per_s": sent / seconds,
        "client_commands_per_host_s": sent / hosts / seconds,
        "syncs_per_host_s": syncs_per_host_s,
        "sync_usec": sync_usec,
        "per_breaker_usec": per_breaker_usec,
        "redis_usec_per_s": usec / seconds,
        "target_client_commands_per_s": TARGET_HOSTS * sent / hosts / seconds,
        "target_syncs_per_s": TARGET_HOSTS * syncs_per_host_s,
        "target_sync_usec": target_sync_usec,
        "target_redis_core_fraction": busy / 1e6,
        "fitted_sync_usec": fit["fixed_usec"]
        + fit["per_breaker_usec"] * target_carried,
        "fitted_redis_core_fraction": TARGET_HOSTS
        * (
            syncs_per_host_s
            * (fit["fixed_usec"] + fit["per_breaker_usec"] * target_carried)
            + other_usec_per_host_s
        )
        / 1e6,
        "redis_cpu_per_s": cpu / seconds,
        "target_redis_cpu_fraction": cpu
        / seconds
        * (TARGET_HOSTS / hosts)
        * (TARGET_BREAKERS / breakers),
    }


def calibrate(url: str, breakers: int) -> dict[str, float]:
    """A sync's script time (commandstats' usec) as fixed + per breaker:
    CALIBRATION_SYNCS syncs of 1 and of ``breakers`` quiet breakers from one
    client in a namespace of their own, after the measured run."""
    from qbreaker.fleet._protocol import BreakerDelta, FleetPolicy, SyncRequest
    from qbreaker.fleet.redis_backend import RedisBackend

    client = _client(url)
    policy = FleetPolicy(2, 5, 10_000, 30_000, None, None, 100)
    usec = {}
    for count in (1, breakers):
        backend = RedisBackend(client, f"calibrate-{os.getpid()}-{count}")
        deltas = tuple(
            BreakerDelta(f"b{i}", policy, 10, 0, 0, 10, False, None)
            for i in range(count)
        )
        seq = 0
        for warm in (True, False):
            before = commandstats(client).get("evalsha", (0, 0))[1]
            for _ in range(CALIBRATION_SYNCS):
                seq += 1
                backend.sync(SyncRequest("calibrate", seq, deltas))
            if not warm:
                after = commandstats(client)["evalsha"][1]
                usec[count] = (after - before) / CALIBRATION_SYNCS
    client.close()
    per_breaker = max(0.0, (usec[breakers] - usec[1]) / max(1, breakers - 1))
    return {"fixed_usec": usec[1] - per_breaker, "per_breaker_usec": per_breaker}


def _await_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    timer = threading.Timer(START_TIMEOUT, proc.kill)
    timer.start()
    try:
        line = proc.stdout.readline()
    finally:
        timer.cancel()
    if line.strip() != "ready":
        raise RuntimeError(f"a host did not start (it said {line!r})")


def _stop(procs: list[subprocess.Popen[str]]) -> list[dict[str, Any]]:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    agents = []
    for proc in procs:
        try:
            out, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        agents += [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    return agents


def report(result: dict[str, Any]) -> None:
    x = result["extrapolation"]
    seconds = result["seconds"]
    print(
        f"Redis load of a quiet fleet: {result['hosts']} hosts x "
        f"{result['breakers']} breakers ({result['idle']} idle: a sync carries "
        f"{result['carried_per_sync']:.1f} on average), {seconds:.1f} s, "
        f"{result['date']}, load average {result['load_average']:.1f}"
    )
    print(f"  {'command':<14}{'calls':>9}{'calls/s':>10}{'usec':>11}{'usec/call':>11}")
    for name, c in sorted(result["commands"].items(), key=lambda kv: -kv[1]["usec"]):
        print(
            f"  {name:<14}{c['calls']:>9}{c['calls'] / seconds:>10.1f}"
            f"{c['usec']:>11}{c['usec'] / c['calls']:>11.1f}"
        )
    errors = sum(sum(a["errors"].values()) for a in result["agents"])
    print(
        f"  client commands/s {x['client_commands_per_s']:.1f} "
        f"({x['client_commands_per_host_s']:.2f} per host); syncs per host and "
        f"second {x['syncs_per_host_s']:.2f}; {x['sync_usec']:.0f} usec per sync "
        f"({x['per_breaker_usec']:.1f} per breaker carried); Redis busy "
        f"{x['redis_usec_per_s'] / 1e4:.2f} % of a core "
        f"(commandstats), CPU {x['redis_cpu_per_s']:.2%} of a core; agents' sync "
        f"errors {errors}"
    )
    print(
        f"  extrapolated to {TARGET_HOSTS} hosts x {TARGET_WORKERS} workers x "
        f"{TARGET_BREAKERS} breakers, {result['idle'] / result['breakers']:.0%} "
        f"idle (one agent per host: the workers add no commands): "
        f"{x['target_client_commands_per_s']:.0f} client commands/s, "
        f"{x['target_syncs_per_s']:.0f} syncs/s of {x['target_sync_usec'] / 1000:.1f}"
        f" ms each, Redis busy {x['target_redis_core_fraction']:.0%} of a core "
        f"(commandstats) / {x['target_redis_cpu_fraction']:.0%} (CPU time), "
        f"scaled linearly"
    )
    fit = result["calibration"]
    print(
        f"  calibrated (one client, {CALIBRATION_SYNCS} syncs of 1 and of "
        f"{result['breakers']} breakers): a sync costs {fit['fixed_usec']:.0f} usec"
        f" + {fit['per_breaker_usec']:.1f} usec per breaker, so "
        f"{x['fitted_sync_usec'] / 1000:.1f} ms a sync at {TARGET_BREAKERS}: "
        f"Redis busy "
        f"{x['fitted_redis_core_fraction']:.0%} of a core at {TARGET_HOSTS} hosts"
    )


def run_host(host_id: str, url: str, namespace: str, breakers: str, idle: str) -> int:
    import qbreaker
    from qbreaker import fleet
    from qbreaker._cli.signals import set_on_signals

    stop = threading.Event()
    set_on_signals(stop, signal.SIGTERM)
    fleet.connect(url, namespace=namespace, host_id=host_id, timeout=0.25)
    made = [
        qbreaker.CircuitBreaker(5, 30.0, shared=f"b{i}", fleet=True)
        for i in range(int(breakers))
    ]
    names = {f"b{i}" for i in range(int(breakers))}
    deadline = time.monotonic() + START_TIMEOUT
    while not stop.is_set() and time.monotonic() < deadline:
        status = fleet.status()
        if status.connected and names <= {
            n for n, v in status.breakers.items() if v.state is not None
        }:
            break
        _sweep(made)
        stop.wait(1 / CALL_RATE)
    print("ready", flush=True)
    busy = made[: len(made) - int(idle)]
    while not stop.is_set():
        _sweep(busy)
        stop.wait(1 / CALL_RATE)
    metrics = fleet.metrics()
    print(json.dumps({"host": host_id, "syncs": metrics.syncs,
                      "errors": dict(metrics.errors)}), flush=True)  # fmt: skip
    return 0


def _sweep(breakers: list[Any]) -> None:
    for breaker in breakers:
        if breaker.allow():
            breaker.record_success()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
