"""A WSGI app for gunicorn: one shared breaker, and /metrics as documented.

``/call`` makes one successful call through the shared breaker named by
$QB_BREAKER and counts it in a prometheus_client multiprocess counter too.
``/metrics`` builds a fresh registry per request, as prometheus_client's
multiprocess mode asks, with its MultiProcessCollector (the app's own
metrics, summed over the workers' files) and a BreakerCollector of the
shared breakers (host-wide already, so no worker's view is added twice).
Every answer names the worker that served it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    generate_latest,
    multiprocess,
)

import qbreaker
from qbreaker.integrations.prometheus import BreakerCollector

breaker = qbreaker.CircuitBreaker(5, 30, 1, shared=os.environ["QB_BREAKER"])
requests = Counter("app_calls", "Calls the app made")


def application(
    environ: dict[str, Any], start_response: Callable[..., Any]
) -> Iterable[bytes]:
    worker = ("X-Worker", str(os.getpid()))
    if environ["PATH_INFO"] == "/metrics":
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        BreakerCollector(include_shared=True, registry=registry)
        body = generate_latest(registry)
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST), worker])
        return [body]
    breaker.call(lambda: None)
    requests.inc()
    start_response("200 OK", [("Content-Type", "text/plain"), worker])
    return [b"ok"]
