"""Every script in docs/examples/ runs as written and prints what it promises."""

from __future__ import annotations

import importlib.util
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
    "grpc_client.py": "3 UNAVAILABLE rejected",
    "http_fallback.py": "open 2",
    "pybreaker_migration.py": "open 2",
    "rates.py": "open closed",
    "retries.py": "7 6",
    "shared.py": "open",
    "starlette_503.py": "503 30",
    "tickets.py": "open",
}

# shared= is the compiled core's, on Linux only (the twin refuses it).
HOST_WIDE = [
    pytest.mark.c_extension,
    pytest.mark.skipif(
        not sys.platform.startswith("linux"), reason="shared= needs Linux's /dev/shm"
    ),
]
# The integrations' examples need their optional libraries (the integrations
# extra); grpcio has no free-threaded 3.13t wheel.
NEEDS = {
    "grpc_client.py": ("grpc",),
    "retries.py": ("tenacity", "stamina"),
    "starlette_503.py": ("fastapi", "httpx"),
}


def _marks(name: str) -> list[pytest.MarkDecorator]:
    marks = list(HOST_WIDE) if name == "shared.py" else []
    missing = [m for m in NEEDS.get(name, ()) if importlib.util.find_spec(m) is None]
    if missing:
        marks.append(pytest.mark.skip(reason=f"needs {', '.join(missing)}"))
    return marks


RUNS = [
    pytest.param(script, id=script.name, marks=_marks(script.name))
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
