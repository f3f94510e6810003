"""The gRPC integration stays optional: its module imports without grpc (as
grpcio has no free-threaded 3.13t wheel), and using it then says what to
install. Runs with or without grpc: the child blocks it."""

from __future__ import annotations

import subprocess
import sys

import pytest

# None in sys.modules makes any import of grpc an ImportError.
BLOCKED = "import sys; sys.modules['grpc'] = None; sys.modules['grpc.aio'] = None\n"
INSTALL = 'pip install "qbreaker[grpc]"'


def _run(code: str, blocked: str = BLOCKED) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-I", "-W", "error", "-c", blocked + code],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "use",
    [
        "m.BreakerInterceptor(target='a:1')",
        "m.AioBreakerInterceptor(target='a:1')",
        "m.CircuitOpenRpcError",
        "m.AioCircuitOpenRpcError",
        "m.DEFAULT_FAILURE_CODES",
    ],
)
def test_the_module_imports_without_grpc_and_names_the_extra(use: str) -> None:
    result = _run(f"import qbreaker.integrations.grpc as m\n{use}")
    assert result.returncode == 1
    assert "ImportError: this needs grpc, which is not installed" in result.stderr
    assert INSTALL in result.stderr


def test_import_qbreaker_loads_no_grpc() -> None:
    result = _run(
        "import qbreaker, sys\n"
        "print(sorted(m for m in sys.modules if m.startswith('qbreaker.integrations')"
        " or m.split('.')[0] in ('grpc', 'starlette', 'fastapi', 'tenacity')))",
        blocked="",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
