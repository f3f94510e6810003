"""Build and run the nogil stress harness (qb_stress.pyx), and judge a run.

Used by tests/concurrency/test_stress.py and by scripts/tsan.sh. As a script::

    python tests/concurrency/stress/harness.py --build-dir DIR [--cflags "..."]
        [--threads 2,4,8] [--seconds 1 | --ops N] [--clock ticks,auto]

builds the harness into DIR (reusing a build already there), runs every
combination, prints one line per run and exits 1 if any run broke an
invariant. The harness compiles against the installed qbreaker's headers
(``qbreaker.get_include()``), the way any third-party cimport user would.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
N_GEN = 1 << 18
HEAD_FIELD = (1 << 20) - 1

#: The policy every run uses unless told otherwise: quick to trip, quick to
#: half-open, few probes, so that every state and edge is exercised.
POLICY = dict(
    max_failures=3,
    reset_timeout=0.004,
    half_open_max=2,
    success_threshold=3,
    half_open_timeout=0.030,
)


def build(
    build_dir: Path | str, cflags: str = "", ldflags: str = "", quiet: bool = True
) -> ModuleType:
    """Compile qb_stress.pyx into ``build_dir`` (once) and import it."""
    import qbreaker

    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    source = (HERE / "qb_stress.pyx").read_text()
    stamp = repr((source, cflags, ldflags, qbreaker.get_include(), sys.version))
    built = [*build_dir.glob("qb_stress*.so"), *build_dir.glob("qb_stress*.pyd")]
    stamp_file = build_dir / "stamp.txt"
    if not (built and stamp_file.exists() and stamp_file.read_text() == stamp):
        for old in built:
            old.unlink()
        (build_dir / "qb_stress.pyx").write_text(source)
        (build_dir / "setup.py").write_text(
            textwrap.dedent(f"""
            from setuptools import Extension, setup
            from Cython.Build import cythonize
            setup(ext_modules=cythonize(
                [Extension("qb_stress", ["qb_stress.pyx"],
                           include_dirs=[{qbreaker.get_include()!r}],
                           extra_compile_args={shlex.split(cflags)!r},
                           extra_link_args={shlex.split(ldflags)!r})],
                quiet=True, force=True))
            """)
        )
        result = subprocess.run(
            [sys.executable, "setup.py", "build_ext", "--inplace"],
            cwd=build_dir,
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "PYTHONPATH": ""},
        )
        if result.returncode != 0:
            raise RuntimeError(
                "building the stress harness failed:\n"
                + result.stdout[-2000:]
                + result.stderr[-4000:]
            )
        if not quiet:
            print(result.stderr[-2000:], file=sys.stderr)
        stamp_file.write_text(stamp)
        built = [*build_dir.glob("qb_stress*.so"), *build_dir.glob("qb_stress*.pyd")]
    (so,) = built
    spec = importlib.util.spec_from_file_location("qb_stress", so)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: Rate windows the harness can put on its breaker (README, "rate policies").
WINDOWS: dict[str, dict[str, Any]] = {
    "none": {},
    # max_failures out of reach: every trip from closed is the window's.
    "count": dict(max_failures=10**6, failure_rate_threshold=0.25, window_size=20),
    "time": dict(max_failures=10**6, failure_rate_threshold=0.25, window_seconds=0.02),
}


def breaker(window: str = "none", **overrides: Any) -> Any:
    """A fresh breaker with the harness's policy and a rate window, or none."""
    import qbreaker

    return qbreaker.CircuitBreaker(**{**POLICY, **WINDOWS[window], **overrides})


def run(
    harness: ModuleType,
    threads: int,
    ops: int = 10**18,
    seconds: float = 0.0,
    *,
    breaker: Any = None,
    **options: Any,
) -> dict[str, Any]:
    """Run the harness once on ``breaker`` (a fresh one by default).

    ``ops`` is the total number of core calls, split over the threads;
    ``seconds`` stops every thread at a deadline instead (or as well). The
    other options go to ``qb_stress.Run``: clock ("ticks"/"auto"), tickets,
    p_fail, p_neutral, p_hold, p_release_held, p_renorm, p_reset, p_tick,
    seed, capture, windowed (the breaker has a rate window), stale_guard
    (default: whether the core has the STALE_NOW_TICKS guard).
    """
    import qbreaker

    if breaker is None:
        breaker = qbreaker.CircuitBreaker(**POLICY)
    before = breaker.totals()
    word0 = breaker._word
    from qbreaker._impl import twin as _core_py

    options.setdefault("stale_guard", hasattr(_core_py, "STALE_NOW_TICKS"))
    r = harness.Run(breaker, threads, ops, seconds, **options)
    workers = [threading.Thread(target=r.work, args=(i,)) for i in range(threads)]
    start = time.perf_counter()
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    elapsed = time.perf_counter() - start
    after = breaker.totals()
    per_thread = r.workers()
    total = {
        k: sum(w[k] for w in per_thread)
        for k in per_thread[0]
        if k not in ("violations", "capture_overflow", "started_ms", "ended_ms")
    }
    delta = {f: getattr(after, f) - getattr(before, f) for f in after._fields}
    result = {
        "threads": threads,
        "options": options,
        "elapsed": elapsed,
        "calls": total["calls"],
        "ops_per_s": total["calls"] / elapsed if elapsed else 0.0,
        # How long all threads were running at once.
        "overlap_ms": min(w["ended_ms"] for w in per_thread)
        - max(w["started_ms"] for w in per_thread),
        "total": total,
        "delta": delta,
        "word0": word0,
        "word": breaker._word,
        "policy": breaker.policy,
        "per_thread": per_thread,
        "run": r,
    }
    result["problems"] = check(result)
    return result


def check(result: dict[str, Any]) -> list[str]:
    """Every invariant the run broke, as readable lines; empty if none."""
    problems: list[str] = []
    total, delta, r = result["total"], result["delta"], result["run"]
    pol = result["policy"]
    options = result["options"]
    tickets = options.get("tickets", True)

    for i, w in enumerate(result["per_thread"]):
        for what, (count, first) in w["violations"].items():
            problems.append(
                f"thread {i}: {what}: {count} times; first: "
                + ", ".join(hex(v) for v in first)
            )

    # No lost updates: the cell's totals are exactly what the threads did.
    for field, mine in (
        ("allowed", "allowed"),
        ("rejected", "rejected"),
        ("successes", "successes"),
        ("failures", "failures"),
        ("neutral", "neutral"),
        ("transitions", "won"),
    ):
        if delta[field] != total[mine]:
            problems.append(
                f"totals: {field} went up by {delta[field]}, threads counted "
                f"{total[mine]}"
            )
    idle = [i for i, w in enumerate(result["per_thread"]) if w["calls"] == 0]
    if idle:
        problems.append(f"threads {idle} made no call: no concurrency was tested")
    if total["allowed"] + total["rejected"] != total["admits"]:
        problems.append("allowed + rejected != admit calls")
    settles = total["successes"] + total["failures"] + total["neutral"]
    if total["calls"] != total["admits"] + settles + total["renorms"] + total["resets"]:
        problems.append("calls do not add up")

    # Exactly one winner per transition, generations in a gapless chain.
    transitions = delta["transitions"]
    gen0 = (result["word0"] >> 2) & (N_GEN - 1)
    gen = (result["word"] >> 2) & (N_GEN - 1)
    if gen != (gen0 + transitions) % N_GEN:
        problems.append(
            f"generation went {gen0} -> {gen} over {transitions} transitions"
        )
    bad = r.generation_counts(gen0, transitions)
    if bad:
        problems.append(f"transitions out of a generation (gen, seen, want): {bad}")

    # No half-open slot leaks once every ticket is reported.
    word = result["word"]
    if tickets and word & 3 == 2 and (word >> 20) & 0xFF:
        problems.append(
            f"half-open with {(word >> 20) & 0xFF} probes in flight at rest"
        )
    if tickets and r.probes_in_flight():
        problems.append(
            f"harness probe counts not back to 0: {r.probes_in_flight()[:5]}"
        )

    # With the transitions captured: sort them by generation and check the
    # chain word by word (heads only: other CASes change the payload).
    if options.get("capture") and transitions < N_GEN:
        captured = r.transitions()
        if any(w["capture_overflow"] for w in result["per_thread"]):
            problems.append("capture overflowed")
        elif len(captured) != transitions:
            problems.append(f"captured {len(captured)} of {transitions} transitions")
        else:
            by_index = sorted(
                (((f >> 2) - gen0) % N_GEN, f, t, op, thread)
                for f, t, op, thread in captured
            )
            head = result["word0"] & HEAD_FIELD
            for want, (index, f, t, op, thread) in enumerate(by_index):
                if index != want or f & HEAD_FIELD != head:
                    problems.append(
                        f"chain broken at transition {want}: thread {thread} won "
                        f"{f:#x} -> {t:#x} (op {op:#x}) after head {head:#x}"
                    )
                    break
                head = t & HEAD_FIELD
            else:
                if head != word & HEAD_FIELD:
                    problems.append("last captured transition is not the final word")
    del pol
    return problems


def summary(result: dict[str, Any]) -> str:
    t = result["total"]
    o = result["options"]
    return (
        f"{result['threads']} threads, clock={o.get('clock', 'ticks')}, "
        f"tickets={o.get('tickets', True)}: {result['calls']:,} calls in "
        f"{result['elapsed']:.2f} s ({result['ops_per_s'] / 1e6:.1f} M/s, all "
        f"threads at once for {result['overlap_ms']} ms); "
        f"allowed {t['allowed']:,} rejected {t['rejected']:,} "
        f"half-open admits {t['half_open_admits']:,} transitions {t['won']:,} "
        f"stale settles {t['settle_false']:,} "
        f"expiries on a stale now {t['stale_expiries']:,}; "
        + (
            "OK"
            if not result["problems"]
            else "FAILED: " + "; ".join(result["problems"])
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build-dir", required=True)
    parser.add_argument("--cflags", default="")
    parser.add_argument("--ldflags", default="")
    parser.add_argument("--threads", default="2,4,8")
    parser.add_argument("--clock", default="ticks,auto")
    parser.add_argument("--tickets", default="yes,no")
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--ops", type=int, default=10**18)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--windows",
        default="none",
        help="comma-separated rate windows to run: none, count, time",
    )
    parser.add_argument(
        "--race-canary",
        action="store_true",
        help="only run a deliberate data race (ThreadSanitizer must catch it)",
    )
    args = parser.parse_args(argv)
    harness = build(args.build_dir, args.cflags, args.ldflags)
    if args.race_canary:
        print("race canary: counted", harness.race_canary(), flush=True)
        return 0
    failed = 0
    for n in (int(x) for x in args.threads.split(",")):
        for window in args.windows.split(","):
            for clock in args.clock.split(","):
                for tickets in args.tickets.split(","):
                    result = run(
                        harness,
                        n,
                        args.ops,
                        args.seconds,
                        breaker=breaker(window),
                        windowed=window != "none",
                        clock=clock,
                        tickets=tickets == "yes",
                        seed=args.seed,
                        capture=True,
                    )
                    print(f"window={window}: {summary(result)}", flush=True)
                    failed += bool(result["problems"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
