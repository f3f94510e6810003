"""Every script in docs/examples/ runs as written and prints what it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "docs" / "examples").glob("*.py"))
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# What each script's comments promise it prints (a spot-check of its output).
EXPECTED = {
    "async_service.py": "3",
    "breaker_group.py": "rejected",
    "database.py": "0",
    "http_fallback.py": "open 2",
    "pybreaker_migration.py": "open 2",
    "rates.py": "open closed",
    "shared.py": "open",
    "tickets.py": "open",
}

# shared= is the compiled core's, on Linux only (the twin refuses it).
HOST_WIDE = [
    pytest.mark.c_extension,
    pytest.mark.skipif(
        not sys.platform.startswith("linux"), reason="shared= needs Linux's /dev/shm"
    ),
]
RUNS = [
    pytest.param(
        script, id=script.name, marks=HOST_WIDE if script.name == "shared.py" else ()
    )
    for script in EXAMPLES
]


def test_every_example_has_its_expected_output() -> None:
    assert sorted(EXPECTED) == [script.name for script in EXAMPLES]


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda script: script.name)
def test_example_is_shown_or_linked_from_a_page(script: Path) -> None:
    reference = f"examples/{script.name}"
    assert any(reference in page.read_text(encoding="utf-8") for page in PAGES)


@pytest.mark.parametrize("script", RUNS)
def test_example_runs(script: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert EXPECTED[script.name] in result.stdout, result.stdout
