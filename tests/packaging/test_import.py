"""Which core does a plain import load? Proved in fresh interpreters."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = (
    "import qbreaker, qbreaker._impl.select as core; "
    "print(qbreaker.IMPLEMENTATION, core.CircuitBreaker.__module__, "
    "type(qbreaker.CircuitBreaker.allow).__name__)"
)


def _run(env_updates: dict[str, str]) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QBREAKER_")}
    env.update(env_updates)
    # -I: no cwd or PYTHON* variables on the path, so the installed package is
    # what gets imported; -W error: an import-time warning fails the probe.
    out = subprocess.run(
        [sys.executable, "-I", "-W", "error", "-c", PROBE],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout.split()


@pytest.mark.c_extension
def test_plain_import_loads_the_compiled_core() -> None:
    assert _run({}) == ["cython", "qbreaker._core_c", "method_descriptor"]


def test_env_var_selects_the_twin() -> None:
    assert _run({"QBREAKER_NO_EXTENSIONS": "1"}) == [
        "python",
        "qbreaker._impl.twin",
        "function",
    ]


@pytest.mark.parametrize("value", ["", "0"])
@pytest.mark.c_extension
def test_empty_or_zero_env_var_keeps_the_compiled_core(value: str) -> None:
    assert _run({"QBREAKER_NO_EXTENSIONS": value})[0] == "cython"


def test_public_names() -> None:
    import qbreaker

    assert set(qbreaker.__all__) <= set(dir(qbreaker))
    assert qbreaker.IMPLEMENTATION in ("cython", "python")
    assert str(qbreaker.State.HALF_OPEN) == "half-open"
    assert f"{qbreaker.State.OPEN}" == "open"
    assert f"{qbreaker.State.CLOSED:>8}" == "  closed"
    assert qbreaker.State.HALF_OPEN == 2
