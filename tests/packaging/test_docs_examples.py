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
    "aiohttp_middleware.py": "open",
    "async_service.py": "3",
    "breaker_group.py": "rejected",
    "database.py": "0",
    "grpc_client.py": "3 UNAVAILABLE rejected",
    "http_fallback.py": "open 2",
    "httpx_client.py": "open",
    "pybreaker_migration.py": "open 2",
    "rates.py": "open closed",
    "requests_adapter.py": "open",
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
# The examples of an integration need its client libraries, optional extras:
# without them they skip, as the integration's own tests do.
LIBRARIES = {
    "aiohttp_middleware.py": ("aiohttp",),
    "grpc_client.py": ("grpc",),
    "httpx_client.py": ("httpx",),
    "requests_adapter.py": ("requests",),
    "retries.py": ("tenacity", "stamina"),
    "starlette_503.py": ("fastapi", "httpx"),
}


def _marks(script: Path) -> tuple[pytest.MarkDecorator, ...]:
    if script.name == "shared.py":
        return tuple(HOST_WIDE)
    libraries = LIBRARIES.get(script.name, ())
    missing = [name for name in libraries if importlib.util.find_spec(name) is None]
    if missing:
        names = ", ".join(missing)
        return (pytest.mark.skip(reason=f"{names} (an optional extra) is missing"),)
    return ()


RUNS = [
    pytest.param(script, id=script.name, marks=_marks(script)) for script in EXAMPLES
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
