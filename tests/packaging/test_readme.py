"""Every ``python`` block of the README runs as written, in a fresh interpreter."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_the_readme_has_examples() -> None:
    assert len(BLOCKS) >= 5


# Shared segments exist on the compiled core only (the twin refuses them), so
# an example that makes one is deselected by --no-c-extensions.
NEEDS_COMPILED = re.compile(r"\bshared=")
EXAMPLES = [
    pytest.param(
        index,
        marks=[pytest.mark.c_extension] if NEEDS_COMPILED.search(block) else [],
    )
    for index, block in enumerate(BLOCKS)
]


@pytest.mark.parametrize("index", EXAMPLES)
def test_readme_example_runs(index: int) -> None:
    result = subprocess.run(
        [sys.executable, "-c", BLOCKS[index]],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    # Each example prints what its comments promise; spot-check a few.
    expected = {
        0: "open 2",
        1: "0",
        2: "3",
        3: "rejected",
        4: "open",
        5: "open closed",
        6: "open",
        7: "open 2",
    }
    if index in expected:
        assert expected[index] in result.stdout, result.stdout
