"""Times the fleet's sync script: N syncs of B breakers each, on loopback.

    python scripts/fleet_latency.py [--url redis://127.0.0.1:6379/0] [--syncs 1000]
                                    [--breakers 100]

Without --url it starts its own redis-server (no persistence) on a free port
of 127.0.0.1 and stops it at the end. Each sync is one EVALSHA from one
client, round trip included, timed with perf_counter; every breaker has
counts in every sync (the busiest case: a quiet breaker is not sent), one
namespace per run, deleted at the end. Prints p50, p99 and the slowest, and
the script's own time from Redis' commandstats. docs/fleet.md keeps the figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

from qbreaker.fleet._protocol import BreakerDelta, FleetPolicy, SyncRequest
from qbreaker.fleet.redis_backend import RedisBackend, connect_redis


def start_server() -> tuple[subprocess.Popen[bytes], str, str]:
    exe = shutil.which("redis-server")
    if exe is None:
        sys.exit("redis-server is not installed (scripts/ci_redis.sh installs it)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    workdir = tempfile.mkdtemp(prefix="qbreaker-latency-")
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return proc, f"redis://127.0.0.1:{port}/0", workdir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url")
    parser.add_argument("--syncs", type=int, default=1000)
    parser.add_argument("--breakers", type=int, default=100)
    args = parser.parse_args()
    proc = None
    url = args.url
    if url is None:
        proc, url, workdir = start_server()
    try:
        client = connect_redis(url, timeout=2.0)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        backend = RedisBackend(client, f"latency-{uuid.uuid4().hex[:8]}")
        policy = FleetPolicy(2, 20, 10_000, 5_000, 0.5, 0.8, 20)
        names = [f"breaker-{i:03d}" for i in range(args.breakers)]

        def request(seq: int) -> SyncRequest:
            return SyncRequest(
                "host-1",
                seq,
                tuple(
                    BreakerDelta(name, policy, 50, 1, 2, 49, False, None)
                    for name in names
                ),
            )

        for seq in range(1, 51):  # warm-up: the script loaded, the keys made
            backend.sync(request(seq))
        client.config_resetstat()
        times = []
        for seq in range(51, 51 + args.syncs):
            req = request(seq)
            started = time.perf_counter()
            backend.sync(req)
            times.append((time.perf_counter() - started) * 1000)
        stats = client.info("commandstats").get("cmdstat_evalsha", {})
        times.sort()
        p50 = statistics.median(times)
        p99 = times[min(len(times) - 1, round(0.99 * len(times)) - 1)]
        print(
            json.dumps(
                {
                    "syncs": args.syncs,
                    "breakers_per_sync": args.breakers,
                    "p50_ms": round(p50, 3),
                    "p99_ms": round(p99, 3),
                    "max_ms": round(times[-1], 3),
                    "redis_usec_per_call": stats.get("usec_per_call"),
                    "redis_server": client.info("server")["redis_version"],
                }
            )
        )
        client.delete(*backend.keys)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
