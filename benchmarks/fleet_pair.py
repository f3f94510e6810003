"""The closed-path pair of a host-wide breaker, with and without ``fleet=True``.

    python benchmarks/fleet_pair.py [N]
        callgrind instructions per ``allow()`` + ``record_success()`` of both
        (two runs of each, at N and 6 N, subtracted: start-up cancels out;
        skipped without valgrind), then a same-run timing of both,
        interleaved, and the ratio fleet / shared
    python benchmarks/fleet_pair.py run SUBJECT N
        one subject (``shared`` or ``fleet``), N pairs: what callgrind runs

A fleet breaker is a shared breaker whose host agent also talks to the fleet,
beside the calls: its calls run the shared breaker's code. This measures
exactly that. Both breakers live in a private segment directory; the fleet
one is connected to an in-memory backend with ``agent="off"`` (the agent is
another thread or process; its scans are not the calls' work).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

from qbreaker._cli.bench.subjects import fresh

SUBJECTS = ("shared", "fleet")
ROUNDS = 40


def make(subject: str) -> Any:
    import qbreaker

    if subject == "shared":
        return qbreaker.CircuitBreaker(shared="bench-pair-shared")
    if subject == "fleet":
        from qbreaker import fleet
        from qbreaker.fleet.spec import MemoryBackend

        fleet.connect(namespace="bench", backend=MemoryBackend(), agent="off")
        return qbreaker.CircuitBreaker(shared="bench-pair-fleet", fleet=True)
    raise SystemExit(f"unknown subject {subject!r}; one of {SUBJECTS}")


def pair(b: Any, n: int) -> None:
    for _ in range(n):
        if b.allow():
            b.record_success()


def runner(subject: str, n: int) -> Callable[[], None]:
    b = make(subject)
    loop = fresh(pair)  # a code object per subject, as in the suite
    loop(b, 1000)  # let CPython specialise the call sites first
    return lambda: loop(b, n)


def instructions(subject: str, n: int, where: str) -> int:
    """Instructions callgrind counts for a whole run of ``subject``."""
    out = os.path.join(where, f"callgrind.{subject}.{n}")
    subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            __file__,
            "run",
            subject,
            str(n),
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},  # the same dict layouts
    )
    with open(out) as f:
        found = re.search(r"^(?:summary|totals): (\d+)", f.read(), re.MULTILINE)
    assert found is not None, f"no totals in {out}"
    return int(found.group(1))


def main(n: int) -> None:
    print(f"{sys.version.split()[0]}, {time.strftime('%Y-%m-%d')}")
    if shutil.which("valgrind"):
        per_op = {}
        with tempfile.TemporaryDirectory(prefix="qbreaker-callgrind-") as where:
            for subject in SUBJECTS:
                low = instructions(subject, n, where)
                high = instructions(subject, 6 * n, where)
                per_op[subject] = (high - low) / (5 * n)
        for subject in SUBJECTS:
            print(f"{subject:6s} pair {per_op[subject]:8.1f} instructions per op")
        print(f"fleet / shared instructions {per_op['fleet'] / per_op['shared']:.4f}")
    else:
        print("valgrind not found: instructions not counted")
    runs = {subject: runner(subject, 200_000) for subject in SUBJECTS}
    best = dict.fromkeys(SUBJECTS, float("inf"))
    for _ in range(ROUNDS):  # interleaved: noise hits both alike
        for subject, run in runs.items():
            start = time.perf_counter()
            run()
            best[subject] = min(best[subject], (time.perf_counter() - start) / 2e5)
    for subject in SUBJECTS:
        print(
            f"{subject:6s} pair {best[subject] * 1e9:8.1f} ns per op (best of {ROUNDS})"
        )
    print(f"fleet / shared time {best['fleet'] / best['shared']:.3f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "run":
        runner(sys.argv[2], int(sys.argv[3]))()
        sys.exit()
    private = "QBREAKER_SHM_DIR" not in os.environ
    if private:
        os.environ["QBREAKER_SHM_DIR"] = tempfile.mkdtemp(prefix="qbreaker-bench-")
    try:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
    finally:
        if private:
            shutil.rmtree(os.environ["QBREAKER_SHM_DIR"], ignore_errors=True)
