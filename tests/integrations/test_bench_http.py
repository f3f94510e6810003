"""``python -m qbreaker bench --http`` cannot rot: its section, in smoke mode.

Smoke mode runs each subject once, for correctness; the figures mean nothing
and no test judges them.
"""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from qbreaker._cli.bench.http import print_http, run_http
from qbreaker._cli.bench.results import Results
from qbreaker._cli.bench.sections import SMOKE, Progress

pytest.importorskip("httpx", reason="the httpx extra is not installed")


def test_the_http_section_measures_every_pair() -> None:
    results = Results({})
    run_http(SMOKE, results, Progress(1, io.StringIO()))
    assert set(results.http) == {"over loopback", "in process", "handle_request alone"}
    for figures in results.http.values():
        assert figures["bare_ns"] > 0 and figures["breaker_ns"] > 0
        assert figures["overhead_ns"] == figures["breaker_ns"] - figures["bare_ns"]
    out = io.StringIO()
    print_http(results, out)
    assert "BreakerTransport over a bare transport" in out.getvalue()
    assert out.getvalue().count("\n| ") == 5  # header, rule and three rows


def test_http_without_httpx_says_how_to_get_it() -> None:
    # httpx made unimportable in a child: the command refuses before running.
    code = (
        "import sys; sys.modules['httpx'] = None; "
        "import importlib.util, unittest.mock as m; "
        "m.patch.object(importlib.util, 'find_spec', lambda name: None).start(); "
        "from qbreaker._cli import main; sys.exit(main(['bench', '--http']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert 'pip install "qbreaker[httpx]"' in result.stderr
