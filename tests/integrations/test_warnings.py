"""The integration tests run under ``-W error``: no library's warning at
import or collection time turns them into errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def test_the_integration_tests_collect_under_w_error() -> None:
    result = subprocess.run(
        [sys.executable, "-W", "error", "-m", "pytest", "--collect-only"]
        + ["-q", "-p", "no:cacheprovider", str(HERE)],
        cwd=HERE.parents[1],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
