"""A real gunicorn, 4 sync workers: every scrape reports the same host-wide
totals of a shared breaker, equal to the calls made, whichever worker serves
it (the pre-fork rule of the README's Observability section)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from qbreaker._impl import segment_format

pytest.importorskip("gunicorn", reason="gunicorn is not installed")
pytest.importorskip(
    "prometheus_client", reason='prometheus_client is not installed ("[prometheus]")'
)
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

pytestmark = [
    pytest.mark.c_extension,
    pytest.mark.skipif(
        not segment_format.supported(), reason="POSIX shared memory in /dev/shm"
    ),
]

APP = Path(__file__).parent / "gunicorn_app"
CALLS = 400
SCRAPES = 20
TIMEOUT = 30.0


@contextlib.contextmanager
def gunicorn(env: dict[str, str], log: Path) -> Iterator[str]:
    """gunicorn on a socket bound here (127.0.0.1, a free port)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        port = listener.getsockname()[1]
        fd = listener.fileno()
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", str(APP / "gunicorn_conf.py"),
                 "--bind", f"fd://{fd}", "--pythonpath", str(APP),
                 "metrics_app:application"],
                env=env, stdout=out, stderr=subprocess.STDOUT, pass_fds=[fd],
                cwd=log.parent,
            )  # fmt: skip
    finally:
        listener.close()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(TIMEOUT)


def get(url: str) -> tuple[str, str]:
    """(body, pid of the worker that served it); retries while gunicorn boots."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
                return response.read().decode(), response.headers["X-Worker"]
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def totals(text: str, breaker: str) -> dict[str, float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "qbreaker_calls_total" and s.labels["breaker"] == breaker:
                found[s.labels["outcome"]] = s.value
            elif s.name == "app_calls_total":
                found["app"] = s.value
    return found


def test_every_scrape_reports_the_same_host_totals(tmp_path: Path) -> None:
    name = f"gunicorn-scrape-{uuid.uuid4().hex[:12]}"
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    env = {**os.environ, "QB_BREAKER": name,
           "PROMETHEUS_MULTIPROC_DIR": str(multiproc)}  # fmt: skip
    with gunicorn(env, tmp_path / "gunicorn.log") as url:
        with ThreadPoolExecutor(8) as pool:
            served = list(pool.map(lambda _: get(f"{url}/call"), range(CALLS)))
        assert len({pid for _, pid in served}) > 1, "one worker served every call"
        with ThreadPoolExecutor(4) as pool:
            scrapes = list(pool.map(lambda _: get(f"{url}/metrics"), range(SCRAPES)))
    expected = {"success": CALLS, "failure": 0, "neutral": 0, "rejected": 0,
                "app": CALLS}  # fmt: skip
    for body, pid in scrapes:
        assert totals(body, name) == expected, f"scrape served by {pid}"
    assert len({pid for _, pid in scrapes}) > 1, "one worker served every scrape"
