"""``import qbreaker`` leaves the heavy standard-library modules unloaded.

Each check runs ``python -X importtime`` in a fresh interpreter, on each core,
and reads which modules were imported in each phase of a script: the import,
plain use of a breaker, then one feature at a time that needs a module.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from qbreaker._lazy import LazyModule

#: Loaded only by the features that need them.
LAZY = (
    "logging",
    "inspect",
    "dataclasses",
    "hashlib",
    "pickle",
    "asyncio",
    "ast",
    "dis",
)
#: What classifying a decorated callable needs: inspect and what it imports
#: (re too, where typing has not loaded it already: 3.12 and later).
INSPECT = {"inspect", "ast", "dis", "re"}

CORES = [
    pytest.param(
        {"QBREAKER_REQUIRE_EXTENSIONS": "1"},
        "cython",
        id="c",
        marks=pytest.mark.c_extension,
    ),
    pytest.param({"QBREAKER_NO_EXTENSIONS": "1"}, "python", id="py"),
]

SCRIPT = textwrap.dedent(
    """
    import sys

    def phase(name):
        sys.stderr.write(f"@@ {name}\\n")
        sys.stderr.flush()

    import qbreaker

    phase("import")
    print(qbreaker.IMPLEMENTATION)
    breaker = qbreaker.CircuitBreaker(max_failures=2)
    breaker.allow()
    breaker.record_success()
    breaker.allow()
    breaker.record_failure()
    with breaker:
        pass
    breaker.call(lambda: 1)
    phase("plain use")

    @breaker
    def decorated():
        return 1

    decorated()
    phase("decorator")
    breaker.metrics()
    phase("metrics")

    def listener(b, old, new):
        raise RuntimeError("listener")

    listening = qbreaker.CircuitBreaker(max_failures=1, on_state_change=listener)
    listening.allow()
    listening.record_failure()
    phase("raising listener")
    import logging

    handlers = logging.getLogger("qbreaker").handlers
    assert any(isinstance(h, logging.NullHandler) for h in handlers), handlers
    """
)


def child_env(env: dict[str, str]) -> dict[str, str]:
    """This environment with the core's flags set to ``env``'s."""
    kept = {
        k: v for k, v in os.environ.items() if not k.startswith(("QBREAKER_", "PYTHON"))
    }
    return {**kept, **env}


def imports_by_phase(env: dict[str, str], implementation: str) -> dict[str, set[str]]:
    """Modules first imported in each phase of SCRIPT, by ``-X importtime``."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", SCRIPT],
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == [implementation]
    phases: dict[str, set[str]] = {}
    current: set[str] = set()
    for line in done.stderr.splitlines():
        if line.startswith("@@ "):
            phases[line[3:]] = current
            current = set()
        elif line.startswith("import time:") and "[us]" not in line:
            current.add(line.rsplit("|", 1)[1].strip())
    return phases


def typing_imports_re() -> bool:
    """Whether ``typing`` itself imports ``re`` (3.11 does), which the package needs."""
    done = subprocess.run(
        [sys.executable, "-c", "import sys, typing; print('re' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip() == "True"


@pytest.mark.parametrize(("env", "implementation"), CORES)
def test_heavy_modules_load_only_when_a_feature_needs_them(
    env: dict[str, str], implementation: str
) -> None:
    phases = imports_by_phase(env, implementation)
    lazy = set(LAZY) if typing_imports_re() else {*LAZY, "re"}
    # Importing and plain use (allow/record, with, call) load none of them.
    assert not lazy & phases["import"]
    assert not lazy & phases["plain use"]
    # Decorating classifies the callable once (sync, coroutine, generator):
    # inspect, nothing else; calling the decorated function loads nothing.
    assert lazy & phases["decorator"] <= INSPECT
    assert "inspect" in phases["decorator"]
    # Metrics are dataclasses.
    assert "dataclasses" in phases["metrics"]
    # A listener that raises is logged through logging, which the package
    # loads then, with the NullHandler the script checks.
    assert "logging" in phases["raising listener"]
    assert "qbreaker._log" in phases["raising listener"]
    loaded_early = set().union(
        *(phases[p] for p in ("import", "plain use", "decorator"))
    )
    assert not {"logging", "dataclasses", "hashlib", "pickle", "asyncio"} & loaded_early


@pytest.mark.parametrize(("env", "implementation"), CORES)
def test_every_way_in_to_the_qbreaker_logger_gives_it_its_null_handler(
    env: dict[str, str], implementation: str
) -> None:
    # The pybreaker drop-in logs through a child of the qbreaker logger
    # without going through qbreaker._log: loading it must attach the
    # handler too, or its records would reach stderr through logging's last
    # resort. (The library's own modules log through qbreaker._log.)
    for load in ("import qbreaker.compat.pybreaker",):
        script = textwrap.dedent(
            f"""
            import logging, qbreaker
            print(qbreaker.IMPLEMENTATION)
            assert not logging.getLogger("qbreaker").handlers
            {load}
            handlers = logging.getLogger("qbreaker").handlers
            assert any(isinstance(h, logging.NullHandler) for h in handlers), handlers
            """
        )
        done = subprocess.run(
            [sys.executable, "-c", script],
            env=child_env(env),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, (load, done.stderr[-3000:])
        assert done.stdout.split() == [implementation]


@pytest.fixture
def fresh_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The name of a module that exists on disk and is not imported yet."""
    name = f"lazy_probe_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text("VALUE = object()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_a_lazy_module_imports_at_first_read_and_then_reads_like_a_module(
    fresh_module: str,
) -> None:
    stand_in = LazyModule(fresh_module)
    assert fresh_module not in sys.modules
    first = stand_in.VALUE
    assert first is sys.modules[fresh_module].VALUE
    # Kept on the stand-in: later reads never reach __getattr__ again.
    assert vars(stand_in)["VALUE"] is first
    assert stand_in.VALUE is first
    with pytest.raises(AttributeError):
        stand_in.no_such_attribute  # noqa: B018


def test_a_lazy_module_read_first_by_many_threads_gives_one_object(
    fresh_module: str,
) -> None:
    stand_in = LazyModule(fresh_module)
    barrier = threading.Barrier(8)
    seen: list[object] = []

    def read() -> None:
        barrier.wait(timeout=10)
        seen.append(stand_in.VALUE)

    threads = [threading.Thread(target=read) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(seen) == 8
    assert all(value is sys.modules[fresh_module].VALUE for value in seen)


def test_the_spelt_out_stand_ins_equal_what_inspect_says() -> None:
    import inspect

    from qbreaker._impl import methods, twin

    assert twin._SUSPENDABLE == (
        inspect.CO_GENERATOR
        | inspect.CO_COROUTINE
        | inspect.CO_ITERABLE_COROUTINE
        | inspect.CO_ASYNC_GENERATOR
    )
    assert methods.PARAMETERS == tuple(
        inspect.signature(methods.make_config).parameters
    )
