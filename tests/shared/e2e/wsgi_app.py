"""The WSGI app the end-to-end test serves with gunicorn.

Every request calls the backend at ``QBREAKER_E2E_BACKEND`` through one
breaker per process, built at import (so in gunicorn's master with
``--preload``, in each worker otherwise):

- ``QBREAKER_E2E_SHARED`` set and not empty: a host-wide breaker,
  ``CircuitBreaker(..., shared=<that name>)``;
- empty or unset: an in-process breaker, one per worker.

``QBREAKER_E2E_MAX_FAILURES``, ``QBREAKER_E2E_RESET`` (seconds) and
``QBREAKER_E2E_HALF_OPEN`` give its policy.

The call goes through ``acquire()``/``release()``: the ticket says in which
state and generation the breaker admitted it, and the app forwards both to the
backend (``X-Breaker-Admitted``, ``X-Breaker-Generation``, ``X-Worker-Pid``),
which counts what actually reached it, by admission. The same headers come
back to the client, with ``X-Breaker-Admitted: rejected`` when the breaker
refused the call (503, the backend never saw it). A backend failure is 502.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Iterable
from typing import Any, Callable

import qbreaker
from qbreaker._impl.twin import describe_word

BACKEND = os.environ["QBREAKER_E2E_BACKEND"]
SHARED = os.environ.get("QBREAKER_E2E_SHARED") or None
BACKEND_TIMEOUT = 10.0

breaker = qbreaker.CircuitBreaker(
    max_failures=int(os.environ["QBREAKER_E2E_MAX_FAILURES"]),
    reset_timeout=float(os.environ["QBREAKER_E2E_RESET"]),
    half_open_max=int(os.environ["QBREAKER_E2E_HALF_OPEN"]),
    shared=SHARED,
)

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def admitted_by(ticket: int) -> tuple[str, int]:
    """The state and generation that admitted ``ticket``.

    A ticket is the admitting word's head (state and generation) shifted left
    once, with bit 0 set (``qbreaker._impl.twin``: "ticket = head << 1 | 1").
    """
    state, generation = describe_word(ticket >> 1)
    return str(state), generation


def call_backend(admitted: str, generation: int) -> bool:
    request = urllib.request.Request(
        BACKEND,
        headers={
            "X-Worker-Pid": str(os.getpid()),
            "X-Breaker-Admitted": admitted,
            "X-Breaker-Generation": str(generation),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=BACKEND_TIMEOUT) as response:
            response.read()
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):  # HTTPError (503) included
        return False


def application(
    environ: dict[str, Any], start_response: StartResponse
) -> Iterable[bytes]:
    headers = [("Content-Type", "text/plain"), ("X-Worker-Pid", str(os.getpid()))]
    ticket = breaker.acquire()
    if not ticket:
        status, body = "503 Service Unavailable", b"rejected"
        headers.append(("X-Breaker-Admitted", "rejected"))
    else:
        admitted, generation = admitted_by(ticket)
        ok = False
        try:
            ok = call_backend(admitted, generation)
        finally:
            breaker.release(ticket, ok)
        status, body = ("200 OK", b"ok") if ok else ("502 Bad Gateway", b"failed")
        headers.append(("X-Breaker-Admitted", admitted))
        headers.append(("X-Breaker-Generation", str(generation)))
    headers.append(("X-Breaker-State", str(breaker.state)))
    headers.append(("Content-Length", str(len(body))))
    start_response(status, headers)
    return [body]
