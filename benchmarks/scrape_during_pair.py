"""The call path is unchanged while a Prometheus collector is scraped.

    python benchmarks/scrape_during_pair.py [ROUNDS] [LOOPS]

Times the closed scenario's ``allow()`` + ``record_success()`` pair around
the bench's protected function, and the bare function, in interleaved
rounds, first with nothing else running ("quiet"), then while a thread
scrapes a ``BreakerCollector`` of the measured breaker and 100 others in a
loop as fast as it can ("scraped": far more often than any Prometheus
would). It prints ns per operation and the pair's ratio to the bare call,
best and median round for each phase.

The best round is the call path itself (a round the scraper did not
interrupt); the median also shows the scraper competing for the GIL and the
cores, which any busy thread of the process would cause. Needs
prometheus_client.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from typing import Any, Callable

from prometheus_client import CollectorRegistry, generate_latest

import qbreaker
from qbreaker._cli.bench.subjects import fresh, work
from qbreaker.integrations.prometheus import BreakerCollector


def pair_loop(b: Any, loops: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(loops):
            if b.allow():
                work()
                b.record_success()

    return fresh(run)


def bare_loop(loops: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(loops):
            work()

    return fresh(run)


def timed(run: Callable[[], None], loops: int) -> float:
    start = time.perf_counter_ns()
    run()
    return (time.perf_counter_ns() - start) / loops


def phase(
    rounds: int, loops: int, pair: Callable[[], None], bare: Callable[[], None]
) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"pair": [], "bare": []}
    for _ in range(rounds):
        times["pair"].append(timed(pair, loops))
        times["bare"].append(timed(bare, loops))
    return times


def report(name: str, times: dict[str, list[float]]) -> None:
    for how, pick in (("best", min), ("median", statistics.median)):
        pair, bare = pick(times["pair"]), pick(times["bare"])
        print(
            f"{name:>8} {how:>6}: pair {pair:6.1f} ns, bare f() {bare:6.1f} ns, "
            f"ratio {pair / bare:.3f}"
        )


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    loops = int(sys.argv[2]) if len(sys.argv) > 2 else 20_000
    b = qbreaker.CircuitBreaker(name="measured")
    others = [qbreaker.CircuitBreaker(name=f"other-{i}") for i in range(100)]
    registry = CollectorRegistry()
    BreakerCollector(breakers=[b, *others], registry=registry)
    pair, bare = pair_loop(b, loops), bare_loop(loops)
    phase(10, loops, pair, bare)  # warm up the specialised bytecode
    quiet = phase(rounds, loops, pair, bare)

    stop = threading.Event()
    scrapes = [0]

    def scraper() -> None:
        while not stop.is_set():
            generate_latest(registry)
            scrapes[0] += 1

    thread = threading.Thread(target=scraper, daemon=True)
    thread.start()
    try:
        scraped = phase(rounds, loops, pair, bare)
    finally:
        stop.set()
        thread.join()
    print(f"qbreaker {qbreaker.IMPLEMENTATION}, {rounds} rounds of {loops} calls")
    report("quiet", quiet)
    report("scraped", scraped)
    print(f"{scrapes[0]} scrapes of 101 breakers during the scraped phase")


if __name__ == "__main__":
    main()
