"""``python -m qbreaker bench``, and the pytest-benchmark suite, cannot rot.

Both run in smoke mode here: every scenario once, for correctness (each
subject's own check included), never for timing. Targets are judged only by
the real benchmark run, never by a timed test.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from qbreaker._cli.bench.targets import TARGETS

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.c_extension

SCENARIO_GROUPS = {
    "closed",
    "closed-async",
    "open-reject",
    "open-raise",
    "half-open",
    "failure-trip",
}


def _env() -> dict[str, str]:
    # The compiled core: the bench measures it against the twin.
    return {k: v for k, v in os.environ.items() if not k.startswith("QBREAKER_")}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, dict[str, Any]]:
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "qbreaker",
            "bench",
            "--quick-smoke",
            "--json",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout, out.stderr, json.loads(path.read_text())


def test_smoke_prints_a_table_per_scenario(
    smoke: tuple[str, str, dict[str, Any]],
) -> None:
    stdout, stderr, _ = smoke
    assert "SMOKE RUN" in stdout
    for group in SCENARIO_GROUPS:
        assert f"### {group}: " in stdout
    for section in (
        "### threads",
        "### native threads",
        "### BreakerGroup lookup",
        "### memory per breaker",
        "### targets",
    ):
        assert section in stdout
    header = next(line for line in stdout.splitlines() if line.startswith("| subject"))
    assert "ns/op" in header and "+ over bare f()" in header and "x floor" in header
    assert "| qbreaker-c allow+record " in stdout
    assert "| floor allow+record " in stdout
    # Progress went to stderr, one line per section without a terminal.
    starts = [line for line in stderr.splitlines() if line.endswith(" ...")]
    assert len(starts) == len(SCENARIO_GROUPS) + 3
    assert "FAILED" not in stdout


def test_smoke_json_shape(smoke: tuple[str, str, dict[str, Any]]) -> None:
    _, _, data = smoke
    assert data["meta"]["smoke"] is True and data["meta"]["statistic"] == "min"
    assert set(data["scenarios"]) == SCENARIO_GROUPS
    closed = data["scenarios"]["closed"]
    assert closed["reference"] == "bare f()" and closed["unit"] == "ns/op"
    row = closed["subjects"]["qbreaker-c allow+record"]
    assert row["family"] == "qbreaker-c" and row["floor"] == "floor allow+record"
    assert row["ns"] > 0 and len(row["samples"]) == 1
    for key in ("overhead", "x_floor", "vs", "median"):
        assert key in row
    for form in ("acquire+release", "with", "@breaker", "call(f)"):
        assert f"qbreaker-c {form}" in closed["subjects"]
        assert f"qbreaker-py {form}" in closed["subjects"]
    async_ = data["scenarios"]["closed-async"]["subjects"]
    assert (
        "qbreaker-c async @breaker" in async_ and "qbreaker-c call_async(f)" in async_
    )
    raising = data["scenarios"]["open-raise"]["subjects"]
    assert "qbreaker-c with->CircuitOpenError" in raising
    assert data["threads"]["qbreaker-c allow+record"]["scaling"] > 0
    assert set(data["native_threads"]) == {
        "1 thread",
        "2 threads, one shared breaker",
        "2 threads, separate breakers",
    }
    assert data["memory"]["qbreaker-c"]["bytes_per_breaker"] > 0
    assert data["memory"]["qbreaker-c"]["bytes_per_breaker_in_group"] > 0
    assert data["group_lookup"]["qbreaker-c"]["subjects"]["group[name]"]["ns"] > 0
    assert len(data["targets"]) == len(TARGETS)
    assert {t["status"] for t in data["targets"]} <= {"smoke", "n/a"}
    assert not data["failures"]


def test_plot_without_matplotlib_says_how_to_get_it(tmp_path: Path) -> None:
    if importlib.util.find_spec("matplotlib") is not None:
        pytest.skip("matplotlib is installed: the message cannot be provoked")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "qbreaker",
            "bench",
            "--quick-smoke",
            "--plot",
            str(tmp_path / "bench.png"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )
    assert out.returncode != 0
    assert 'pip install "qbreaker[plot]"' in out.stderr
    assert not (tmp_path / "bench.png").exists()


def test_plot_draws_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "bench.png"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "qbreaker",
            "bench",
            "--quick-smoke",
            "--plot",
            str(png),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pytest_benchmark_suite_smoke() -> None:
    """``pytest benchmarks --benchmark-disable``: every benchmark once."""
    if importlib.util.find_spec("pytest_benchmark") is None:
        pytest.skip(
            "pytest-benchmark is not installed (pip install pytest-benchmark, "
            "or the bench extra): the benchmark suite's smoke run needs it"
        )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "benchmarks",
            "--benchmark-disable",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(),
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert " passed" in out.stdout
