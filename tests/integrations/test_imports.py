"""The integrations stay optional: ``import qbreaker`` loads none of them nor
any of their libraries, and every integration module imports without its
library, saying which extra to install when it is used."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import qbreaker.integrations

# Every public integration module: the libraries to hide from it, what to
# use, and the extra the ImportError names (None: the use needs no library).
MODULES = {
    "aiohttp": (("aiohttp",), ["m.BreakerMiddleware()", "m.CircuitOpen"], "aiohttp"),
    # A FastAPI dependency is a plain callable: nothing of FastAPI is needed.
    "fastapi": (("fastapi", "starlette"), ["m.require(qbreaker.CircuitBreaker())"],
                None),
    "grpc": (
        ("grpc", "grpc.aio"),
        [
            "m.BreakerInterceptor(target='a:1')",
            "m.AioBreakerInterceptor(target='a:1')",
            "m.CircuitOpenRpcError",
            "m.AioCircuitOpenRpcError",
            "m.DEFAULT_FAILURE_CODES",
        ],
        "grpc",
    ),
    "httpx": (("httpx",), ["m.BreakerTransport(None)", "m.CircuitOpen"], "httpx"),
    "opentelemetry": (("opentelemetry",), ["m.instrument()"], "opentelemetry"),
    "prometheus": (("prometheus_client",), ["m.BreakerCollector()"], "prometheus"),
    "requests": (
        ("requests", "requests.adapters", "urllib3"),
        ["m.BreakerAdapter()", "m.CircuitOpen"],
        "requests",
    ),
    "starlette": (
        ("starlette", "starlette.responses"),
        [
            "m.circuit_open_response("
            "qbreaker.CircuitOpenError('x', qbreaker.State.OPEN, 1.0), "
            "show_breaker=False)"
        ],
        "starlette",
    ),
    "tenacity": (("tenacity", "tenacity.wait"), ["m.wait_retry_after()"], "tenacity"),
}  # fmt: skip

LIBRARIES = sorted({name.partition(".")[0] for hidden, _, _ in MODULES.values()
                    for name in hidden} | {"stamina"})  # fmt: skip


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-I", "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_every_integration_module_is_checked() -> None:
    found = {
        info.name
        for info in pkgutil.iter_modules(qbreaker.integrations.__path__)
        if not info.name.startswith("_")
    }
    assert found == set(MODULES)


def test_import_qbreaker_loads_no_integration_nor_library() -> None:
    code = (
        "import sys, qbreaker\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{LIBRARIES!r} or m.startswith('qbreaker.integrations')))"
    )
    result = _run(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("module", "use"),
    [(module, use) for module, (_, uses, _) in MODULES.items() for use in uses],
)
def test_a_module_imports_without_its_library(module: str, use: str) -> None:
    hidden, _, extra = MODULES[module]
    # None in sys.modules makes any import of that name an ImportError.
    code = "import sys\n" + "".join(f"sys.modules[{n!r}] = None\n" for n in hidden)
    code += f"import qbreaker, qbreaker.integrations.{module} as m\n{use}\n"
    result = _run(code)
    if extra is None:
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode == 1
    library = hidden[0]
    assert (
        f"ImportError: this needs {library}, which is not installed: "
        f'pip install "qbreaker[{extra}]"'
    ) in result.stderr, result.stderr
