"""``python -m qbreaker export``: a real process, scraped over HTTP."""

from __future__ import annotations

import contextlib
import logging
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from qbreaker._impl import segment_format

prometheus_client = pytest.importorskip(
    "prometheus_client", reason='prometheus_client is not installed ("[prometheus]")'
)
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

pytestmark = [
    pytest.mark.c_extension,
    pytest.mark.skipif(
        not segment_format.supported(), reason="POSIX shared memory in /dev/shm"
    ),
]

HERE = Path(__file__).parent
TIMEOUT = 30.0


@contextlib.contextmanager
def exporter(*args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "qbreaker", "export", "--address", "127.0.0.1",
         "--prometheus-port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)/metrics", line)
        assert found, f"no address in {line!r}; stderr: {process.stderr.read()}"  # type: ignore[union-attr]
        yield process, f"http://127.0.0.1:{found.group(1)}/metrics"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(TIMEOUT)


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def calls(samples: dict, name: str, outcome: str) -> float | None:  # type: ignore[type-arg]
    key = ("qbreaker_calls_total", (("breaker", name), ("outcome", outcome)))
    return samples.get(key)


def test_scrape_while_another_process_drives_a_shared_breaker() -> None:
    name = f"export-{uuid.uuid4().hex[:12]}"
    successes = 20_000
    driver = subprocess.Popen(
        [sys.executable, str(HERE / "drive_shared.py"), name, str(successes)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert driver.stdout is not None and driver.stdin is not None
        assert driver.stdout.readline() == "ready\n"
        with exporter() as (process, url):
            seen: list[float] = []
            deadline = time.monotonic() + TIMEOUT
            while driver.poll() is None and time.monotonic() < deadline:
                value = calls(scrape(url), name, "success")
                seen.append(-1.0 if value is None else value)
                if value == successes:
                    break
            assert driver.stdout.readline() == "done\n"
            final = scrape(url)
            # Counters never went back while the driver ran.
            assert seen == sorted(seen), seen
            assert {o: calls(final, name, o) for o in
                    ("success", "failure", "neutral", "rejected")} == {
                "success": successes, "failure": 3, "neutral": 0, "rejected": 5,
            }  # fmt: skip
            b = (("breaker", name),)
            assert final[("qbreaker_state", (*b, ("state", "open")))] == 1.0
            assert final[("qbreaker_opens_total", b)] == 1.0
            assert final[("qbreaker_transitions_total", b)] == 1.0
            assert final[("qbreaker_export_scrape_errors_total", ())] == 0.0
            process.send_signal(signal.SIGTERM)
            assert process.wait(TIMEOUT) == 0
            assert process.stderr is not None
            assert "stopped" in process.stderr.read()
    finally:
        if driver.stdin:
            driver.stdin.close()
        driver.wait(TIMEOUT)


def test_resilience4j_profile_over_http() -> None:
    with exporter("--profile", "resilience4j") as (process, url):
        samples = scrape(url)
        assert not any(name.startswith("qbreaker_calls") for name, _ in samples)
        process.send_signal(signal.SIGINT)
        assert process.wait(TIMEOUT) == 0


def test_scrape_errors_log_one_line_each(caplog: pytest.LogCaptureFixture) -> None:
    from qbreaker._cli.export import _OneLineErrors

    class Broken:
        def collect(self) -> Iterator[object]:
            raise OSError("the segment directory went away\nsecond line")

    registry = prometheus_client.CollectorRegistry()
    registry.register(_OneLineErrors(Broken()))  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR, logger="qbreaker.export"):
        for _ in range(3):
            text = prometheus_client.generate_latest(registry).decode()
    assert "qbreaker_export_scrape_errors_total 3.0" in text
    assert [r.getMessage() for r in caplog.records] == [
        "scrape failed: OSError: the segment directory went away / second line"
    ] * 3


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ([], "--prometheus-port N, --otlp URL or both"),
        (["--prometheus-port", "70000"], "a port is an int in [0, 65535]"),
        (["--otlp", "http://127.0.0.1:1/v1/metrics", "--interval", "0"],
         "the interval is a number of seconds >= 0.1"),
    ],
)  # fmt: skip
def test_bad_arguments(args: list[str], words: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "qbreaker", "export", *args],
        capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert result.returncode == 2
    assert words in result.stderr


class OtlpSink:
    """An OTLP/HTTP metrics receiver on 127.0.0.1 that keeps every request."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.bodies: list[bytes] = []
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                sink.bodies.append(self.rfile.read(length))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1/metrics"

    def calls(self, name: str) -> dict[str, int]:
        """The latest push's qbreaker.calls points of breaker ``name``."""
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
            ExportMetricsServiceRequest,
        )

        found: dict[str, int] = {}
        for body in self.bodies[-1:]:
            request = ExportMetricsServiceRequest.FromString(body)
            for resource in request.resource_metrics:
                for scope in resource.scope_metrics:
                    for metric in scope.metrics:
                        if metric.name != "qbreaker.calls":
                            continue
                        for point in metric.sum.data_points:
                            attributes = {
                                a.key: a.value.string_value for a in point.attributes
                            }
                            if attributes["qbreaker.breaker"] == name:
                                found[attributes["qbreaker.outcome"]] = point.as_int
        return found


@contextlib.contextmanager
def pusher(url: str, interval: str) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "qbreaker", "export", "--otlp", url,
         "--interval", interval],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("pushing this host's")
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(TIMEOUT)


def test_otlp_push_of_a_shared_breaker() -> None:
    pytest.importorskip(
        "opentelemetry.exporter.otlp.proto.http",
        reason='the OTLP exporter is not installed ("[opentelemetry]")',
    )
    name = f"otlp-{uuid.uuid4().hex[:12]}"
    sink = OtlpSink()
    driver = subprocess.Popen(
        [sys.executable, str(HERE / "drive_shared.py"), name, "1000"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert driver.stdout is not None
        assert driver.stdout.readline() == "ready\n"
        assert driver.stdout.readline() == "done\n"
        want = {"success": 1000, "failure": 3, "neutral": 0, "rejected": 5}
        # Every 0.2 s: pushes arrive while it runs.
        with pusher(sink.url, "0.2") as process:
            deadline = time.monotonic() + TIMEOUT
            while sink.calls(name) != want and time.monotonic() < deadline:
                time.sleep(0.05)
            assert sink.calls(name) == want
            process.send_signal(signal.SIGTERM)
            assert process.wait(TIMEOUT) == 0
        # Every hour: the only push is the last one, made on SIGTERM.
        sink.bodies.clear()
        with pusher(sink.url, "3600") as process:
            time.sleep(0.5)
            assert sink.bodies == []
            process.send_signal(signal.SIGTERM)
            assert process.wait(TIMEOUT) == 0
        assert len(sink.bodies) == 1 and sink.calls(name) == want
    finally:
        sink.server.shutdown()
        if driver.stdin:
            driver.stdin.close()
        driver.wait(TIMEOUT)
