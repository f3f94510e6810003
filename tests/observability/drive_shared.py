"""A separate process that drives one shared breaker through a script.

``python drive_shared.py NAME SUCCESSES`` makes SUCCESSES successful calls,
then 3 failures (the trip, max_failures=3) and 5 rejected calls, printing
``done`` when it has finished; it then waits for its stdin to close, so the
segment has a live user while the test reads it.
"""

from __future__ import annotations

import sys

import qbreaker


def main() -> None:
    name, successes = sys.argv[1], int(sys.argv[2])
    breaker = qbreaker.CircuitBreaker(3, 600, 1, shared=name)
    print("ready", flush=True)
    for _ in range(successes):
        breaker.call(lambda: None)
    for _ in range(3):
        breaker.release(breaker.acquire(), False)
    for _ in range(5):
        assert not breaker.allow()
    print("done", flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
