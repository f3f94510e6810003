"""``python -m qbreaker``: the tour runs, traces and checks itself."""

from __future__ import annotations

import io
import subprocess
import sys

from qbreaker._cli import main, tour


def test_module_entry_point_runs_the_tour() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "qbreaker"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "qbreaker 0." in text and "core)" in text
    for phase in ("trip", "rejected", "half-open", "close"):
        assert phase in text
    assert "BAD" not in text
    assert text.rstrip().endswith("every step behaved as documented")


def test_tour_subcommand() -> None:
    assert main(["tour"]) == 0


def test_tour_reports_a_deviation(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The tour's check can fail: a breaker that never trips is caught."""

    class NeverTrips(tour.CircuitBreaker):  # type: ignore[misc]
        __slots__ = ()

        def record_failure(self) -> None:
            self.record_success()

    monkeypatch.setattr(tour, "CircuitBreaker", NeverTrips)
    buf = io.StringIO()
    assert tour.run(None, buf) == 1
    assert "UNEXPECTED behaviour" in buf.getvalue()
