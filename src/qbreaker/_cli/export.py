"""``python -m qbreaker export``: this host's shared breakers for monitoring.

One process per host (a sidecar, or started from the gunicorn master's
``when_ready`` hook) serves every shared breaker of this user, read from its
segment, so host-wide totals are reported once however many workers share
them: over HTTP for Prometheus (``--prometheus-port``), pushed over OTLP
(``--otlp URL --interval S``), or both. It runs until SIGTERM or SIGINT and
then exits 0; a scrape that fails logs one line and serves an error count.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

from .signals import set_on_signals

log = logging.getLogger("qbreaker.export")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--prometheus-port", type=_port, metavar="N",
        help="serve /metrics on this port (0: any free port, printed at start)",
    )  # fmt: skip
    parser.add_argument(
        "--address", default="0.0.0.0",
        help="the address to serve on (default 0.0.0.0, as prometheus_client)",
    )  # fmt: skip
    parser.add_argument(
        "--profile", default="qbreaker", choices=("qbreaker", "resilience4j"),
        help="metric names: qbreaker's own or resilience4j's (default qbreaker)",
    )  # fmt: skip
    parser.add_argument(
        "--otlp", metavar="URL",
        help="push over OTLP/HTTP to this metrics endpoint "
        "(e.g. http://collector:4318/v1/metrics)",
    )  # fmt: skip
    parser.add_argument(
        "--interval", type=_seconds, default=10.0, metavar="S",
        help="seconds between OTLP pushes (default 10)",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    if args.prometheus_port is None and args.otlp is None:
        print("error: give --prometheus-port N, --otlp URL or both", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )  # fmt: skip
    stop = threading.Event()
    set_on_signals(stop, signal.SIGTERM, signal.SIGINT)
    closers = []
    try:
        if args.prometheus_port is not None:
            closers.append(_serve(args.address, args.prometheus_port, args.profile))
        if args.otlp is not None:
            closers.append(_push(args.otlp, args.interval))
    except ImportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot serve on {args.address}: {exc}", file=sys.stderr)
        return 1
    finally:
        sys.stdout.flush()
    try:
        while not stop.wait(3600):
            pass
    finally:
        for close in reversed(closers):
            close()
    log.info("stopped")
    return 0


def _serve(address: str, port: int, profile: str) -> Any:
    try:
        from prometheus_client import CollectorRegistry, start_http_server
    except ImportError:
        raise ImportError(
            "--prometheus-port needs prometheus_client: "
            'pip install "qbreaker[prometheus]"'
        ) from None
    from qbreaker.integrations.prometheus import BreakerCollector

    registry = CollectorRegistry()
    inner = BreakerCollector(include_shared=True, registry=None, profile=profile)
    registry.register(_OneLineErrors(inner))
    server, thread = start_http_server(port, addr=address, registry=registry)
    print(
        f"serving this host's shared breakers on "
        f"http://{address}:{server.server_port}/metrics",
        flush=True,
    )

    def close() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return close


class _OneLineErrors:
    """A scrape that fails logs one line and serves what it could not read
    as a count of errors, rather than a traceback per request."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._errors = 0

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily

        try:
            metrics = list(self._inner.collect())
        except Exception as exc:  # one line for any failure, then carry on
            self._errors += 1
            why = " / ".join(str(exc).splitlines())
            log.error("scrape failed: %s: %s", type(exc).__name__, why)
            metrics = []
        errors = CounterMetricFamily(
            "qbreaker_export_scrape_errors", "Scrapes that failed to read the breakers"
        )
        errors.add_metric([], self._errors)
        yield from metrics
        yield errors


def _push(url: str, interval: float) -> Any:
    try:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
            OTLPMetricExporter,
        )
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
    except ImportError:
        raise ImportError(
            "--otlp needs opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http"
            ': pip install "qbreaker[opentelemetry]"'
        ) from None
    from qbreaker.integrations.opentelemetry import instrument

    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=url), export_interval_millis=interval * 1000
    )
    # A provider of its own, never the global one: started from a gunicorn
    # master, the global provider would be inherited by the forked workers.
    provider = MeterProvider(
        metric_readers=[reader],
        resource=Resource.create({"service.name": "qbreaker-export"}),
    )
    instrument(include_shared=True, meter_provider=provider)
    print(f"pushing this host's shared breakers to {url} every {interval:g}s",
          flush=True)  # fmt: skip

    def close() -> None:
        provider.shutdown()  # a last export

    return close


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(
            f"a port is an int in [0, 65535], got {text!r}"
        )
    return port


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0.1 or value == float("inf"):
        raise argparse.ArgumentTypeError(
            f"the interval is a number of seconds >= 0.1, got {text!r}"
        )
    return value
