"""The package's modules import each other in floors, top to bottom, and in no cycle.

A small import-graph checker: every ``.py`` of ``src/qbreaker`` is parsed with
``ast``, and so are the Python ``import`` lines of every ``.pyx`` (and of the
``.pxi`` files it includes); ``cimport`` lines are C-level and do not count.
An import counts wherever it is written, inside a function too (it runs
sooner or later), except under ``if TYPE_CHECKING:``, which never runs.
``importlib.import_module("literal")`` counts as an import as well.

An import of ``a.b.c`` is an edge to ``a.b.c`` only: the parent packages'
``__init__`` modules it also runs are not edges, or every submodule would
import the facade. ``from a import b`` is an edge to ``a.b`` when that is a
module, else to ``a``.

FLOORS is the layout the package is built to; a module that is not in it
fails, so every new module must be given its floor here.
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import pytest

PACKAGE = "qbreaker"
SOURCE = Path(__file__).resolve().parents[2] / "src" / PACKAGE

#: Floor of each module, top (8) to bottom (0); imports may only go down or
#: sideways. A key ending in ``.*`` is a package and everything under it; any
#: other key is that one module alone, so a module added beside it must be
#: placed. The facade ``qbreaker`` sits above every library module and below
#: the integrations and the command line.
FLOORS: dict[str, float] = {
    # 8: the command line, never imported by the library.
    "qbreaker.__main__": 8,
    "qbreaker._cli.*": 8,
    # 7: integrations and compat.
    "qbreaker.compat.*": 7,
    "qbreaker.integrations.*": 7,
    # The public facade.
    "qbreaker": 6.5,
    # 6: shared, the group, the fleet.
    "qbreaker.shared": 6,
    "qbreaker.fleet.*": 6,
    "qbreaker._impl.group": 6,
    "qbreaker._impl.shared_scan": 6,
    # 5: the core selector.
    "qbreaker._impl.select": 5,
    # 4: the two cores.
    "qbreaker._core_c": 4,
    "qbreaker._impl.twin": 4,
    # 3: the Python-level methods and wrappers both cores call.
    "qbreaker._impl.methods": 3,
    "qbreaker._impl.wrappers": 3,
    # 2: segments and events.
    "qbreaker._impl.segment": 2,
    "qbreaker._impl.segment_format": 2,
    "qbreaker._impl.events": 2,
    "qbreaker._impl.probes": 2,
    # 1: policy, outcomes and metrics.
    "qbreaker._policy": 1,
    "qbreaker._outcomes": 1,
    "qbreaker._metrics": 1,
    # 0: the leaves, which import nothing of qbreaker.
    "qbreaker._impl": 0,
    "qbreaker._word": 0,
    "qbreaker._validate": 0,
    "qbreaker._errors": 0,
    "qbreaker._state": 0,
    "qbreaker._forksafe": 0,
    "qbreaker._version": 0,
    "qbreaker._lazy": 0,
    "qbreaker._log": 0,
}

Graph = dict[str, set[str]]


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Every module of the package under ``root`` (its directory): name -> file."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.suffix not in (".py", ".pyx") or "__pycache__" in path.parts:
            continue
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(node: ast.AST, typing: bool) -> Iterator[ast.AST]:
    """Every node below ``node``; without ``typing``, not the bodies of
    ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if not typing and isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield other
                yield from _statements(other, typing)
            continue
        yield child
        yield from _statements(child, typing)


def _resolve(name: str, level: int, package_of: str) -> str:
    """The absolute name of ``from <level dots><name> import``."""
    if not level:
        return name
    base = package_of.split(".")
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def _imported(
    tree: ast.AST, package_of: str, modules: Iterable[str], typing: bool
) -> set[str]:
    """The names of the modules of ``modules`` that ``tree`` imports."""
    known = set(modules)
    targets: set[str] = set()
    for node in _statements(tree, typing):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(node.module or "", node.level, package_of)
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                targets.add(sub if sub in known else source)
        elif isinstance(node, ast.Call) and (name := _import_module_arg(node)):
            dots = len(name) - len(name.lstrip("."))
            targets.add(_resolve(name[dots:], dots, package_of))
    return targets & known


def _import_module_arg(call: ast.Call) -> str | None:
    """The literal name an ``import_module(...)`` call imports, if it is one."""
    func = call.func
    called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    if called != "import_module" or not call.args:
        return None
    first = call.args[0]
    if isinstance(first, ast.Constant) and isinstance(first.value, str):
        return first.value
    return None


# A Python import line of Cython source, possibly continued in parentheses.
_PYX_IMPORT = re.compile(
    r"^[ \t]*(?:import[ \t]+[^\n]+"
    r"|from[ \t]+\S+[ \t]+import[ \t]+(?:\([^)]*\)|[^\n]+))",
    re.M,
)
_PYX_INCLUDE = re.compile(r"""^[ \t]*include[ \t]+["']([^"']+)["']""", re.M)


def _cython_source(path: Path) -> str:
    """The text of a ``.pyx`` with every file it includes, recursively."""
    text = path.read_text()
    return text + "".join(
        _cython_source(path.parent / included)
        for included in _PYX_INCLUDE.findall(text)
    )


def _parse(path: Path) -> ast.AST:
    if path.suffix == ".py":
        return ast.parse(path.read_text(), str(path))
    lines = [
        textwrap.dedent(match.group(0))
        for match in _PYX_IMPORT.finditer(_cython_source(path))
        if "cimport" not in match.group(0)
    ]
    return ast.parse("\n".join(lines), str(path))


def import_graph(root: Path, package: str, typing: bool = False) -> Graph:
    """module -> the package's modules it imports, for the package at ``root``;
    with ``typing``, the imports for type checking only as well."""
    modules = module_names(root, package)
    graph: Graph = {}
    for name, path in modules.items():
        package_of = name if path.stem == "__init__" else name.rpartition(".")[0]
        graph[name] = _imported(_parse(path), package_of, modules, typing) - {name}
    return graph


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """One cycle (first module repeated at the end) per strongly connected
    component of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(_cycle_in(graph, component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def _cycle_in(graph: Mapping[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the first module of a strongly connected component."""
    start = min(component)
    paths = {start: [start]}
    queue = [start]
    for node in queue:  # breadth first; the queue grows as it is read
        for nxt in sorted(graph.get(node, set()) & component):
            if nxt == start:
                return [*paths[node], start]
            if nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                queue.append(nxt)
    raise AssertionError(f"{sorted(component)} is not strongly connected")


def floor_of(module: str, floors: Mapping[str, float]) -> float | None:
    if module in floors:
        return floors[module]
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        key = ".".join(parts[:end]) + ".*"
        if key in floors:
            return floors[key]
    return None


def unplaced(graph: Mapping[str, set[str]], floors: Mapping[str, float]) -> list[str]:
    return sorted(m for m in graph if floor_of(m, floors) is None)


def upward(graph: Mapping[str, set[str]], floors: Mapping[str, float]) -> list[str]:
    """Every import of a module on a higher floor, as 'a (floor) -> b (floor)'."""
    found = []
    for module, imports in sorted(graph.items()):
        here = floor_of(module, floors)
        for target in sorted(imports):
            there = floor_of(target, floors)
            if here is not None and there is not None and there > here:
                found.append(f"{module} ({here:g}) -> {target} ({there:g})")
    return found


@pytest.fixture(scope="module")
def graph() -> Graph:
    assert SOURCE.is_dir(), f"no package source at {SOURCE}"
    return import_graph(SOURCE, PACKAGE)


def test_every_module_has_a_floor(graph: Graph) -> None:
    missing = unplaced(graph, FLOORS)
    assert not missing, "modules missing from FLOORS:\n" + "\n".join(missing)


def test_no_import_cycle(graph: Graph) -> None:
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_imports_only_go_down(graph: Graph) -> None:
    found = upward(graph, FLOORS)
    assert not found, "imports up the floors:\n" + "\n".join(found)


def test_the_leaves_import_only_leaves(graph: Graph) -> None:
    # The word's ticket check reads integers as every other check does; no
    # leaf imports anything above floor 0.
    above = {
        f"{module} -> {target}"
        for module, imports in graph.items()
        if floor_of(module, FLOORS) == 0
        for target in imports
        if floor_of(target, FLOORS) != 0
    }
    assert not above, above


def test_the_compiled_core_imports_floors_0_to_3_only(graph: Graph) -> None:
    imports = graph["qbreaker._core_c"]
    assert imports, "the compiled core's import block was not found"
    above = {m: floor_of(m, FLOORS) for m in imports if floor_of(m, FLOORS) > 3}
    assert not above, above


def test_the_drop_ins_parts_see_the_breaker_through_its_protocol() -> None:
    """The modules under the pybreaker drop-in's breaker use a
    ``typing.Protocol`` of it, so none imports it, not even for typing."""
    breaker = "qbreaker.compat.pybreaker.breaker"
    drop_in = "qbreaker.compat.pybreaker"
    graph = import_graph(SOURCE, PACKAGE, typing=True)
    found = sorted(
        module
        for module, imports in graph.items()
        if breaker in imports and module.startswith(drop_in + ".")
    )
    assert not found, f"import {breaker}: " + ", ".join(found)


# The checker itself, on a package made for it.

SYNTHETIC = {
    "__init__.py": "from .top import run\n",
    "top.py": "from . import low\nfrom .mid import helper\n",
    "mid.py": textwrap.dedent("""
        from typing import TYPE_CHECKING
        from pkg import low
        if TYPE_CHECKING:
            from pkg import stray  # typing only: no edge
        else:
            import pkg.leaf  # the else branch runs: an edge
        def helper() -> None:
            from .top import run  # runs when called: an edge, upward
    """),
    "low.py": "import importlib\nimportlib.import_module('pkg.sub.a')\n",
    "leaf.py": "",
    "stray.py": "",
    "sub/__init__.py": "",
    "sub/a.py": "from . import b\n",
    "sub/b.py": "from ..sub import a\n",
    "fast.pyx": textwrap.dedent("""
        from libc.stdint cimport uint64_t
        from pkg.sub cimport a
        include "inc/more.pxi"
        import os
        cdef int x = 0
    """),
    "inc/more.pxi": "from pkg.leaf import (\n    thing,\n)\n",
}
SYNTHETIC_FLOORS = {
    "pkg": 3,
    "pkg.top": 2,
    "pkg.mid": 1,
    "pkg.low": 1,
    "pkg.leaf": 0,
    "pkg.sub.*": 0,
    "pkg.fast": 1,
}


@pytest.fixture
def synthetic_root(tmp_path: Path) -> Path:
    for name, text in SYNTHETIC.items():
        path = tmp_path / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path / "pkg"


@pytest.fixture
def synthetic(synthetic_root: Path) -> Graph:
    return import_graph(synthetic_root, "pkg")


def test_the_checker_reads_every_kind_of_import(synthetic: Graph) -> None:
    assert synthetic == {
        "pkg": {"pkg.top"},
        "pkg.top": {"pkg.low", "pkg.mid"},
        "pkg.mid": {"pkg.low", "pkg.leaf", "pkg.top"},
        "pkg.low": {"pkg.sub.a"},
        "pkg.leaf": set(),
        "pkg.sub": set(),
        "pkg.sub.a": {"pkg.sub.b"},
        "pkg.sub.b": {"pkg.sub.a"},
        "pkg.fast": {"pkg.leaf"},  # cimports are C-level; the .pxi is its own
        "pkg.stray": set(),
    }


def test_the_checker_can_count_typing_imports(synthetic_root: Path) -> None:
    graph = import_graph(synthetic_root, "pkg", typing=True)
    assert graph["pkg.mid"] == {"pkg.low", "pkg.leaf", "pkg.top", "pkg.stray"}


def test_the_checker_finds_cycles(synthetic: Graph) -> None:
    assert cycles(synthetic) == [
        ["pkg.mid", "pkg.top", "pkg.mid"],
        ["pkg.sub.a", "pkg.sub.b", "pkg.sub.a"],
    ]


def test_the_checker_finds_upward_imports(synthetic: Graph) -> None:
    assert upward(synthetic, SYNTHETIC_FLOORS) == ["pkg.mid (1) -> pkg.top (2)"]
    assert unplaced(synthetic, SYNTHETIC_FLOORS) == ["pkg.stray"]
