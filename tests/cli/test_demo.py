"""``python -m qbreaker demo``: the flaky backend, the timeline, the comparison."""

from __future__ import annotations

import argparse
import io
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from qbreaker._cli import demo, main
from qbreaker._cli.demo.backend import (
    OUTAGE,
    PHASES,
    RECOVERY_FAILS_EVERY,
    Backend,
    Reply,
    phase_at,
    reply_for,
)


def test_demo_shows_the_breaker_sparing_the_failing_backend() -> None:
    began = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "qbreaker", "demo", "--seconds", "3"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert time.monotonic() - began < 30
    text = out.stdout
    assert "*** breaker closed -> open" in text
    assert re.search(r"summary.*\n\s+with breaker\s+without\n", text)
    calls = re.search(r"backend calls during the outage\s+(\d+)\s+(\d+)", text)
    assert calls is not None, text
    with_breaker, without = int(calls[1]), int(calls[2])
    assert 0 < with_breaker < without, text
    for row in ("caller latency p50", "caller latency p99"):
        assert re.search(rf"{row}\s+[\d.]+ ms\s+[\d.]+ ms", text), text


def test_run_in_process_cleans_up_after_itself() -> None:
    threads = set(threading.enumerate())
    buf = io.StringIO()
    assert demo.run(argparse.Namespace(seconds=1.0), buf) == 0
    assert set(threading.enumerate()) == threads
    assert "the breaker spared the failing backend" in buf.getvalue()


@pytest.mark.parametrize("value", ["0", "-1", "abc", "nan", "inf", "1e9", ""])
def test_seconds_must_be_a_positive_number(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--seconds", value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--seconds" in err and "positive number of seconds" in err


def test_seconds_accepts_fractions() -> None:
    assert demo.positive_seconds("2.5") == 2.5


def test_importing_the_command_does_not_import_the_network_modules() -> None:
    code = (
        "import sys, qbreaker._cli.demo\n"
        "heavy = {'http.server', 'urllib.request', 'qbreaker._cli.demo.backend'}\n"
        "assert not heavy & set(sys.modules), heavy & set(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_phases_cover_the_run_in_order() -> None:
    names = [name for name, _ in PHASES]
    assert names == ["healthy", "503s", "hanging", "recovering"]
    assert [phase_at(f) for f in (0.0, 0.2, 0.3, 0.5, 0.7, 0.99)] == [
        "healthy",
        "healthy",
        "503s",
        "hanging",
        "recovering",
        "recovering",
    ]
    assert phase_at(1.5) == "recovering"  # a late request: still the last phase
    assert set(OUTAGE) == {"503s", "hanging"}


def test_phase_boundaries_are_fractions_of_the_run() -> None:
    for (_, end), (following, _) in zip(PHASES, PHASES[1:]):
        assert phase_at(end) == following
        assert phase_at(end - 1e-9) != following


def test_replies_follow_the_phase() -> None:
    assert {reply_for("healthy", n) for n in range(1, 50)} == {Reply(200, False)}
    assert {reply_for("503s", n) for n in range(1, 50)} == {Reply(503, False)}
    assert {reply_for("hanging", n).hang for n in range(1, 50)} == {True}
    recovering = [reply_for("recovering", n).status for n in range(1, 101)]
    assert recovering.count(503) == 100 // RECOVERY_FAILS_EVERY
    assert recovering.count(200) == 100 - 100 // RECOVERY_FAILS_EVERY


def test_timing_scales_with_seconds() -> None:
    default = demo.Timing.of(30.0)
    assert (default.reset_timeout, default.interval) == (2.0, 1.0)
    short = demo.Timing.of(3.0)
    assert short.reset_timeout == 0.25 and short.interval == 0.25
    # Several open/probe cycles fit in the outage, even in a short run.
    outage = (PHASES[2][1] - PHASES[0][1]) * 3.0
    assert outage / short.reset_timeout >= 4


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert demo.percentile(values, 50) == 50.0
    assert demo.percentile(values, 99) == 99.0
    assert demo.percentile(values, 100) == 100.0
    assert demo.percentile([7.0], 1) == 7.0
    assert demo.percentile([], 50) != demo.percentile([], 50)  # nan


def _get(url: str, timeout: float) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_backend_serves_the_script_on_loopback() -> None:
    # Started 5 s into a 100 s run: healthy; 35 s in: the 503s.
    with Backend(time.monotonic() - 5, 100.0, hang=5.0) as healthy:
        assert healthy.url.startswith("http://127.0.0.1:")
        assert _get(healthy.url, 5.0) == 200
    with Backend(time.monotonic() - 35, 100.0, hang=5.0) as failing:
        assert _get(failing.url, 5.0) == 503
    assert (healthy.calls["healthy"], failing.calls["503s"]) == (1, 1)


def test_closing_the_backend_cuts_a_hanging_request_short() -> None:
    backend = Backend(time.monotonic() - 50, 100.0, hang=30.0)
    with backend:
        with pytest.raises(OSError):
            _get(backend.url, 0.2)
        began = time.monotonic()
    assert time.monotonic() - began < 5  # not the 30 s hang
    assert backend.calls["hanging"] == 1
