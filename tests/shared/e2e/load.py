"""Bounded client load: a few threads of urllib requests against the app."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from typing import Callable, NamedTuple

REQUEST_TIMEOUT = 10.0


class Reply(NamedTuple):
    """What the app answered: its worker, the breaker's verdict, the status."""

    status: int  # 200 ok, 502 backend failed, 503 rejected; 0 no answer
    pid: int
    admitted: str  # "closed", "half-open", "rejected", or "" with no answer
    generation: int  # -1 when rejected or no answer
    error: str = ""


def request(url: str) -> Reply:
    try:
        with urllib.request.urlopen(url, timeout=REQUEST_TIMEOUT) as response:
            response.read()
            status, headers = response.status, response.headers
    except urllib.error.HTTPError as exc:
        exc.read()
        exc.close()
        status, headers = exc.code, exc.headers
    except (urllib.error.URLError, OSError) as exc:
        return Reply(0, 0, "", -1, repr(exc))
    return Reply(
        int(status),
        int(headers.get("X-Worker-Pid", "0")),
        headers.get("X-Breaker-Admitted", ""),
        int(headers.get("X-Breaker-Generation", "-1")),
    )


def drive(
    url: str,
    done: Callable[[Reply], bool],
    *,
    threads: int,
    seconds: float,
    max_requests: int,
) -> tuple[list[Reply], bool]:
    """Request ``url`` from ``threads`` threads until ``done`` says so.

    ``done(reply)`` sees every reply in turn (under a lock, so it may keep
    state) and returns True once the goal is reached. Stops at the first of
    that, ``seconds`` elapsed or ``max_requests`` sent, and joins every thread
    before it returns: no request of this phase is left in flight. Returns
    the replies in the order they came, and whether the goal was reached.
    """
    replies: list[Reply] = []
    lock = threading.Lock()
    stop = threading.Event()
    reached = threading.Event()
    deadline = time.monotonic() + seconds
    sent = [0]

    def client() -> None:
        while not stop.is_set() and time.monotonic() < deadline:
            with lock:
                if sent[0] >= max_requests:
                    break
                sent[0] += 1
            reply = request(url)
            with lock:
                replies.append(reply)
                if done(reply):
                    reached.set()
                    stop.set()

    workers = [
        threading.Thread(target=client, name=f"qbreaker-e2e-client-{i}", daemon=True)
        for i in range(threads)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(seconds + 2 * REQUEST_TIMEOUT)
    stop.set()
    if any(w.is_alive() for w in workers):
        raise RuntimeError("a client thread outlived its deadline and timeout")
    with lock:
        return list(replies), reached.is_set()


def seen_from_every_worker(
    want: Callable[[Reply], bool], workers: int
) -> Callable[[Reply], bool]:
    """A ``done`` for :func:`drive`: ``workers`` distinct pids gave a ``want`` reply."""
    pids: set[int] = set()

    def done(reply: Reply) -> bool:
        if want(reply):
            pids.add(reply.pid)
        return len(pids) >= workers

    return done
