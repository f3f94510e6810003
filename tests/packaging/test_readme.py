"""Every ``python`` block of README.md and docs/*.md is checked, each in its own way.

- A block preceded by ``<!-- example: docs/examples/NAME.py -->`` shows that
  script and must equal it; tests/packaging/test_docs_examples.py runs the script.
- A block whose info string is ``python no-run: REASON`` is not run, and must
  give its reason.
- Any other ``python`` block runs as written, in a fresh interpreter; one
  that imports an optional extra's library skips, naming the extra, when that
  library is missing (as the integrations' own tests do). One that makes a
  host-wide breaker (a ``shared=`` argument) skips on the pure-Python core,
  which refuses them.

Every relative link of these pages names a file that exists, and a heading of
it where the link has an anchor.
"""

from __future__ import annotations

import ast
import importlib
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import qbreaker

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(
    r"^(?:<!-- example: (?P<include>\S+) -->\n)?"
    r"```(?P<info>[^\n`]*)\n(?P<body>.*?)^```[ \t]*$",
    re.M | re.S,
)
NO_RUN = "no-run:"
# Info strings that highlight as Python but would silently escape the checks.
PYTHON_ALIASES = {"py", "py3", "python3", "pycon", "ipython"}
# The libraries of optional extras that a block may import, and the extra
# that installs each: without it the block skips. Any other missing import
# fails the block.
OPTIONAL_LIBRARIES = {
    "aiohttp": "aiohttp",
    "fastapi": "fastapi",
    "grpc": "grpc",
    "httpx": "httpx",
    "opentelemetry": "opentelemetry",
    "prometheus_client": "prometheus",
    "redis": "fleet",
    "requests": "requests",
    "stamina": "integrations",
    "starlette": "starlette",
    "tenacity": "tenacity",
    "urllib3": "requests",
}


def page_id(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


LINK = re.compile(r"\]\((?P<path>[^)\s#]*)(?:#(?P<anchor>[^)\s]*))?\)")
HEADING = re.compile(r"^#+ (.*)$", re.M)


def prose_of(page: Path) -> str:
    return FENCE.sub("", page.read_text(encoding="utf-8"))


def anchors_of(page: Path) -> set[str]:
    """The anchors GitHub gives the page's headings."""
    return {
        re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        for heading in HEADING.findall(prose_of(page))
    }


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    info: str
    body: str
    include: str | None

    @property
    def where(self) -> str:
        return f"{page_id(self.page)}:{self.line}"

    @property
    def language(self) -> str:
        return self.info.split()[0] if self.info.strip() else ""


def blocks_of(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    return [
        Block(
            page=page,
            line=text.count("\n", 0, match.start("info")) + 1,
            info=match["info"].strip(),
            body=match["body"],
            include=match["include"],
        )
        for match in FENCE.finditer(text)
    ]


def missing_libraries(body: str) -> list[str]:
    """The optional libraries ``body`` imports that cannot be imported here,
    each with the extra that installs it."""
    imported = set()
    for node in ast.walk(ast.parse(body)):
        if isinstance(node, ast.Import):
            imported.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            imported.add(node.module.partition(".")[0])
    missing = []
    for name in sorted(imported & OPTIONAL_LIBRARIES.keys()):
        try:
            importlib.import_module(name)
        except ImportError:
            extra = OPTIONAL_LIBRARIES[name]
            missing.append(f'{name} (pip install "qbreaker[{extra}]")')
    return missing


def makes_a_shared_breaker(body: str) -> bool:
    """Whether ``body`` passes ``shared=`` to a call: only the compiled core
    shares a breaker between processes."""
    return any(
        isinstance(node, ast.Call) and any(kw.arg == "shared" for kw in node.keywords)
        for node in ast.walk(ast.parse(body))
    )


BLOCKS = [block for page in PAGES for block in blocks_of(page)]
PYTHON = [block for block in BLOCKS if block.language == "python"]


def test_the_readme_shows_an_example() -> None:
    assert any(block.page.name == "README.md" for block in PYTHON)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_fence_opens_a_block_the_parser_sees(page: Path) -> None:
    # An indented or otherwise unusual fence would hide its block from the checks.
    text = page.read_text(encoding="utf-8")
    fences = [line for line in text.splitlines() if line.lstrip().startswith("```")]
    assert len(fences) == 2 * len(blocks_of(page)), f"{page_id(page)}: a stray fence"


def test_python_blocks_are_marked_python() -> None:
    aliased = [block.where for block in BLOCKS if block.language in PYTHON_ALIASES]
    assert not aliased, f"use ```python (or ```python no-run: reason): {aliased}"


@pytest.mark.parametrize("block", PYTHON, ids=lambda block: block.where)
def test_python_block(block: Block) -> None:
    options = block.info[len("python") :].strip()
    if block.include is not None:
        assert not options, f"{block.where}: a shown script has no options"
        script = ROOT / block.include
        assert script.is_file(), f"{block.where}: {block.include} does not exist"
        assert block.body == script.read_text(encoding="utf-8"), (
            f"{block.where} differs from {block.include}"
        )
    elif options.startswith(NO_RUN):
        assert options[len(NO_RUN) :].strip(), f"{block.where}: no-run needs a reason"
    else:
        assert not options, f"{block.where}: unknown info string {block.info!r}"
        missing = missing_libraries(block.body)
        if missing:
            pytest.skip(f"{block.where} needs {', '.join(missing)}")
        if makes_a_shared_breaker(block.body) and qbreaker.IMPLEMENTATION != "cython":
            pytest.skip(f"{block.where} uses shared=: compiled core only")
        result = subprocess.run(
            [sys.executable, "-c", block.body],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"{block.where}\n{result.stderr}"


def test_a_block_whose_extra_is_missing_skips_naming_it(tmp_path: Path) -> None:
    # A prometheus_client that cannot be imported, first on the child's path.
    hidden = tmp_path / "prometheus_client"
    hidden.mkdir()
    (hidden / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    runnable = [b for b in PYTHON if not b.include and NO_RUN not in b.info]
    needing = [b.where for b in runnable if "prometheus_client" in b.body]
    assert needing, "no block imports prometheus_client any more: pick another"
    tests = [f"{Path(__file__).name}::test_python_block[{where}]" for where in needing]
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *tests],
        cwd=Path(__file__).parent,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(needing)} skipped" in result.stdout, result.stdout
    assert 'pip install "qbreaker[prometheus]"' in result.stdout


def test_shared_breaker_blocks_are_found() -> None:
    assert makes_a_shared_breaker('qbreaker.CircuitBreaker(5, 1.0, shared="a")')
    assert not makes_a_shared_breaker("qbreaker.CircuitBreaker(5, 1.0)")
    readme = [b for b in PYTHON if b.page.name == "README.md" and NO_RUN not in b.info]
    assert any(makes_a_shared_breaker(b.body) for b in readme), "none runs shared="


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for link in LINK.finditer(prose_of(page)):
        path, anchor = link["path"], link["anchor"]
        if path.startswith(("http://", "https://", "mailto:")):
            continue
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            broken.append(link[0])
        elif anchor and target.suffix == ".md" and anchor not in anchors_of(target):
            broken.append(link[0])
    assert not broken, f"{page_id(page)}: {broken}"
