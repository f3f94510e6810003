"""The library's floors: imports only go down, and nothing imports in a circle.

Read from the source: every import of a qbreaker module, those inside
functions included, except under ``if TYPE_CHECKING:``. A lazy import that
closes a cycle fails here, not at some first call in production. The compiled
core's imports are its top block of Python imports.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "qbreaker"

# The target layout's floors (0 at the bottom); the facade sits above the
# library and below the integrations and the command line.
FLOORS: dict[str, float] = {
    "qbreaker._version": 0,
    "qbreaker._word": 0,
    "qbreaker._validate": 0,
    "qbreaker._errors": 0,
    "qbreaker._state": 0,
    "qbreaker._forksafe": 0,
    "qbreaker._impl": 0,
    "qbreaker._policy": 1,
    "qbreaker._outcomes": 1,
    "qbreaker._metrics": 1,
    "qbreaker._impl.events": 2,
    "qbreaker._impl.probes": 2,
    "qbreaker._impl.segment": 2,
    "qbreaker._impl.segment_format": 2,
    "qbreaker._impl.methods": 3,
    "qbreaker._impl.wrappers": 3,
    "qbreaker._core_c": 4,
    "qbreaker._impl.twin": 4,
    "qbreaker._impl.select": 5,
    "qbreaker._impl.group": 6,
    "qbreaker._impl.shared_scan": 6,
    "qbreaker.shared": 6,
    "qbreaker": 6.5,
}
LEAVES = (
    "qbreaker._errors",
    "qbreaker._state",
    "qbreaker._forksafe",
    "qbreaker._validate",
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for statement in node.body:
                skipped.update(id(n) for n in ast.walk(statement))
    return skipped


def _imports_of(path: Path, modules: set[str]) -> set[str]:
    """The qbreaker modules that ``path`` imports at run time."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    skipped = _type_checking_nodes(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("qbreaker"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("qbreaker"):
                continue
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                found.add(submodule if submodule in modules else target)
    found.discard(name)
    return found


def _compiled_core_imports(modules: set[str]) -> set[str]:
    found: set[str] = set()
    source = (PACKAGE / "_core_c.pyx").read_text()
    for module, names in re.findall(
        r"^from (qbreaker[\w.]*) import (\w+)", source, re.M
    ):
        submodule = f"{module}.{names}"
        found.add(submodule if submodule in modules else module)
    return found


def _graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(p) for p in paths} | {"qbreaker._core_c"}
    graph = {_module_name(p): _imports_of(p, modules) for p in paths}
    graph["qbreaker._core_c"] = _compiled_core_imports(modules)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    done: set[str] = set()
    path: list[str] = []

    def visit(module: str) -> None:
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if target in path:
                found.append([*path[path.index(target) :], target])
            elif target not in done:
                visit(target)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        if module not in done:
            visit(module)
    return found


def test_no_import_cycle() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_lazy_import_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [
        ["a", "b", "c", "a"]
    ]


def test_every_library_module_has_a_floor_and_imports_only_down() -> None:
    graph = _graph()
    upward = []
    for module, floor in FLOORS.items():
        assert module in graph, f"{module} is gone: update FLOORS"
        for target in graph[module]:
            assert target in FLOORS, (
                f"{module} imports {target}, which is above the library"
            )
            if FLOORS[target] > floor:
                upward.append(f"{module} ({floor}) -> {target} ({FLOORS[target]})")
    assert upward == []
    unplaced = {m for m in graph if m.startswith("qbreaker._impl") and m not in FLOORS}
    assert unplaced == set(), "a module of _impl without a floor"


def test_the_leaves_import_nothing_of_qbreaker() -> None:
    graph = _graph()
    for leaf in LEAVES:
        assert graph[leaf] == set(), leaf
    # The word's ticket check reads integers as every other check does.
    assert graph["qbreaker._word"] == {"qbreaker._validate"}


def test_the_compiled_core_imports_floors_0_to_3_only() -> None:
    imports = _graph()["qbreaker._core_c"]
    assert imports, "the compiled core's import block was not found"
    assert {m: FLOORS[m] for m in imports if FLOORS[m] > 3} == {}
