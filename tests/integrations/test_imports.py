"""The integrations stay optional: ``import qbreaker`` loads none of them, and
each module imports without its library, saying what to install when used."""

from __future__ import annotations

import subprocess
import sys

import pytest

LIBRARIES = {
    "httpx": ("qbreaker.integrations.httpx", "BreakerTransport(None)", "httpx"),
    "requests": ("qbreaker.integrations.requests", "BreakerAdapter()", "requests"),
    "aiohttp": ("qbreaker.integrations.aiohttp", "BreakerMiddleware()", "aiohttp"),
}


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-I", "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_import_qbreaker_loads_no_integration_nor_client_library() -> None:
    code = (
        "import sys, qbreaker; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('httpx', 'requests', 'aiohttp', 'urllib3') "
        "or m.startswith('qbreaker.integrations')))"
    )
    result = _run(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("library", sorted(LIBRARIES))
def test_a_module_imports_without_its_library(library: str) -> None:
    module, use, extra = LIBRARIES[library]
    # None in sys.modules makes any import of the library an ImportError.
    blocked = f"import sys; sys.modules[{library!r}] = None; "
    for name in ("urllib3", "requests.adapters"):
        blocked += f"sys.modules[{name!r}] = None; "
    code = (
        blocked + f"import {module} as m\n"
        "try:\n"
        f"    m.{use}\n"
        "except ImportError as exc:\n"
        "    print('ImportError:', exc)\n"
    )
    result = _run(code)
    assert result.returncode == 0, result.stderr
    assert f"ImportError: this needs {library}, which is not installed: " in (
        result.stdout
    )
    assert f'pip install "qbreaker[{extra}]"' in result.stdout
    # The rejection type too.
    result = _run(blocked + f"import {module} as m\nm.CircuitOpen")
    assert f'pip install "qbreaker[{extra}]"' in result.stderr
