"""The structure of ``qbreaker.compat``: read from its source, not imported.

Its modules import one another without a cycle (an import inside a function
counts; one under ``if TYPE_CHECKING:`` does not), and none but the public
facade imports the module of the compat ``CircuitBreaker``, not even for
typing: the modules under it see the breaker through ``protocol.Breaker``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

import qbreaker.compat
import qbreaker.compat.pybreaker as pybreaker

PACKAGE = "qbreaker.compat"
ROOT = Path(qbreaker.compat.__file__).parent
FACADE = "qbreaker.compat.pybreaker"
HERE = Path(__file__).parent


def _module_name(path: Path) -> str:
    parts = [*PACKAGE.split("."), *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(
    nodes: Iterable[ast.AST], typing_too: bool
) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement in ``nodes``, at any depth; those under ``if
    TYPE_CHECKING:`` only if ``typing_too``."""
    for node in nodes:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            if typing_too:
                yield from _imports(node.body, typing_too)
            yield from _imports(node.orelse, typing_too)
        else:
            yield from _imports(ast.iter_child_nodes(node), typing_too)


def _imported(name: str, path: Path, known: set[str], typing_too: bool) -> set[str]:
    """The modules of ``known`` that module ``name`` imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in _imports(tree.body, typing_too):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            # ``from pkg import mod`` imports the submodule (its package is
            # its parent, imported first in any case); ``from pkg import name``
            # runs the package.
            submodules = [f"{base}.{alias.name}" for alias in node.names]
            targets = [m for m in submodules if m in known]
            if len(targets) < len(submodules):
                targets.append(base)
        found.update(target for target in targets if target in known)
    found.discard(name)
    return found


def _graph(typing_too: bool) -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {
        name: _imported(name, path, known, typing_too) for name, path in modules.items()
    }


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph``, as a path that ends where it starts."""
    done: set[str] = set()
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        if name in path:
            return [*path[path.index(name) :], name]
        if name in done:
            return None
        path.append(name)
        for target in sorted(graph[name]):
            found = visit(target)
            if found is not None:
                return found
        path.pop()
        done.add(name)
        return None

    for name in sorted(graph):
        found = visit(name)
        if found is not None:
            return found
    return None


def test_the_graph_sees_the_packages_modules_and_their_imports() -> None:
    # The checks below mean nothing if the parser found no edges.
    graph = _graph(typing_too=False)
    breaker_module = pybreaker.CircuitBreaker.__module__
    assert FACADE in graph and breaker_module in graph
    assert breaker_module in graph[FACADE]
    assert graph[breaker_module], "the breaker imports the modules under it"


def test_no_import_cycle_among_the_compat_modules() -> None:
    cycle = _cycle(_graph(typing_too=False))
    assert cycle is None, " -> ".join(cycle or ())


def test_only_the_facade_imports_the_breaker_module_even_for_typing() -> None:
    breaker_module = pybreaker.CircuitBreaker.__module__
    importers = {
        name
        for name, targets in _graph(typing_too=True).items()
        if breaker_module in targets
    }
    assert importers == {FACADE}


def test_listener_annotated_with_the_breaker_type_checks_under_mypy_strict() -> None:
    pytest.importorskip("mypy", reason="mypy is in the test extra")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--python-version",
            "3.11",
            str(HERE / "typing" / "check_compat_listener.py"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success" in result.stdout
