"""Collection of the benchmark files, and the guard against timing the twin twice.

Files are named ``bench_*.py`` so the default test run (``testpaths =
tests``) never collects them; the hook below collects them when
``benchmarks/`` is named on the command line. Subjects come from
``qbreaker._cli.bench.scenarios``; a peer that is not installed is skipped
(``pip install -e ".[bench]"``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import qbreaker


def pytest_collect_file(
    file_path: Path, parent: pytest.Collector
) -> pytest.Module | None:
    # A file named on the command line is collected by pytest itself already.
    if (
        file_path.suffix == ".py"
        and file_path.name.startswith("bench_")
        and not parent.session.isinitpath(file_path)
    ):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def pytest_configure(config: pytest.Config) -> None:
    # A benchmark of "the compiled core" that silently measured the twin
    # would be worse than none: refuse to run instead.
    try:
        from qbreaker import _core_c
        from qbreaker._cli.bench import _floor  # noqa: F401
    except ImportError as exc:
        raise pytest.UsageError(
            f"qbreaker's extensions are not importable ({exc}); build them with "
            "`pip install -e .` (Cython and a C compiler needed)"
        ) from exc
    if qbreaker.CircuitBreaker is not _core_c.CircuitBreaker:
        raise pytest.UsageError(
            "qbreaker.CircuitBreaker is not on the compiled core "
            f"(IMPLEMENTATION={qbreaker.IMPLEMENTATION!r}); "
            "unset QBREAKER_NO_EXTENSIONS"
        )
