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
