"""A wheel holds the package and nothing else, and its extensions are lean.

The installed distribution's RECORD is the list of the files its wheel held,
so an install from a wheel (``pip install .``, or scripts/test_wheels.sh and
cibuildwheel installing a built one) is checked here against an explicit
list: the modules of ``src/qbreaker`` one for one, the compiled modules, the
typing files, and the ``.pxd`` and headers cimport users need
(``qbreaker.get_include()``). No C or Cython source, no tests, no build
leftovers, no grafted libraries. An editable install has no such list: it
skips, and CI installs from wheels.
"""

from __future__ import annotations

import importlib.machinery
import json
import struct
import sys
from importlib import metadata
from pathlib import Path

import pytest

import qbreaker

SOURCE = Path(__file__).resolve().parents[2] / "src" / "qbreaker"

#: Beside the modules, every wheel holds exactly these and the fleet's scripts.
TYPING_AND_CIMPORT = {
    "qbreaker/py.typed",
    "qbreaker/_core_c.pyi",
    "qbreaker/_core_c.pxd",
    "qbreaker/qb_atomic.h",
    "qbreaker/qb_cell.h",
    "qbreaker/qb_clock.h",
}
#: The fleet's Lua scripts, read by qbreaker.fleet.redis_backend at run time:
#: every one of the source tree, like the modules.
FLEET_SCRIPTS = {
    f"qbreaker/{p.relative_to(SOURCE).as_posix()}"
    for p in (SOURCE / "fleet" / "lua").glob("*.lua")
}
#: A compiled wheel also holds these, each module with its extension suffix:
#: the core, and the benchmark's floor (``python -m qbreaker bench`` on an
#: install without a compiler), and the core's build record (``info``).
COMPILED_MODULES = ("qbreaker/_core_c", "qbreaker/_cli/bench/_floor")
BUILD_RECORD = "qbreaker/_build.json"


def expected_files(source: Path, compiled_suffix: str | None) -> set[str]:
    """The files under ``qbreaker/`` of a wheel built from ``source``;
    ``compiled_suffix`` is the extension suffix, None for the pure wheel."""
    names = {
        f"qbreaker/{p.relative_to(source).as_posix()}"
        for p in source.rglob("*.py")
        if "__pycache__" not in p.parts
    }
    names |= TYPING_AND_CIMPORT | FLEET_SCRIPTS
    if compiled_suffix is not None:
        names |= {m + compiled_suffix for m in COMPILED_MODULES} | {BUILD_RECORD}
    return names


def package_files(record: list[str]) -> set[str]:
    """The wheel's files from a RECORD's names: not its .dist-info, not the
    console scripts pip writes outside site-packages, no bytecode."""
    return {
        name
        for name in record
        if not name.split("/", 1)[0].endswith(".dist-info")
        and not name.startswith("../")
        and "__pycache__" not in name.split("/")
    }


def differences(found: set[str], wanted: set[str]) -> list[str]:
    return [f"unexpected: {n}" for n in sorted(found - wanted)] + [
        f"missing: {n}" for n in sorted(wanted - found)
    ]


def _installed_from_a_wheel() -> metadata.Distribution:
    dist = metadata.distribution("qbreaker")
    direct = json.loads(dist.read_text("direct_url.json") or "{}")
    if direct.get("dir_info", {}).get("editable"):
        pytest.skip("an editable install has no wheel to check (CI installs wheels)")
    imported = Path(qbreaker.__file__).resolve()
    if imported != Path(str(dist.locate_file("qbreaker/__init__.py"))).resolve():
        pytest.skip(f"qbreaker is imported from {imported}, not from its install")
    return dist


def test_the_installed_wheel_holds_exactly_the_listed_files() -> None:
    dist = _installed_from_a_wheel()
    found = package_files([str(f) for f in dist.files or []])
    cores = [
        n[len("qbreaker/_core_c") :]
        for n in found
        if n.startswith("qbreaker/_core_c.")
        and n.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
    ]
    suffix = cores[0] if cores else None  # None: the pure wheel
    if qbreaker.IMPLEMENTATION == "cython":
        assert suffix is not None, "the compiled core is loaded, but not in RECORD"
    problems = differences(found, expected_files(SOURCE, suffix))
    assert not problems, "\n".join(problems)


SUFFIX = ".cpython-312-x86_64-linux-gnu.so"


def test_the_list_catches_strays_and_gaps() -> None:
    """The checker itself: sources, tests and leftovers are flagged, a
    missing module too; metadata, scripts and bytecode are not files of the
    package."""
    wanted = expected_files(SOURCE, SUFFIX)
    record = sorted(wanted - {"qbreaker/_cli/bench/_floor" + SUFFIX}) + [
        "qbreaker-1.0.dist-info/RECORD",
        "../../../bin/qbreaker",
        "qbreaker/__pycache__/__init__.cpython-312.pyc",
        "qbreaker/_core_c.c",
        "qbreaker/_core_c.pyx",
        "qbreaker/_native/word.pxi",
        "qbreaker.libs/libfoo.so",
        "tests/test_api.py",
        "build/lib/qbreaker/__init__.py",
    ]
    assert differences(package_files(record), wanted) == [
        "unexpected: build/lib/qbreaker/__init__.py",
        "unexpected: qbreaker.libs/libfoo.so",
        "unexpected: qbreaker/_core_c.c",
        "unexpected: qbreaker/_core_c.pyx",
        "unexpected: qbreaker/_native/word.pxi",
        "unexpected: tests/test_api.py",
        "missing: qbreaker/_cli/bench/_floor" + SUFFIX,
    ]
    pure = expected_files(SOURCE, None)
    assert "qbreaker/_core_c.pxd" in pure and "qbreaker/__init__.py" in pure
    assert not [n for n in pure if n.endswith((".so", ".json"))]


def elf_sections(path: Path) -> set[str]:
    """The section names of an ELF file (32 or 64 bit, either byte order)."""
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF", f"{path} is not an ELF file"
    wide, order = data[4] == 2, "<" if data[5] == 1 else ">"
    if wide:
        (table,) = struct.unpack_from(order + "Q", data, 0x28)
        size, count, names_index = struct.unpack_from(order + "HHH", data, 0x3A)
        header = order + "IIQQQQ"
    else:
        (table,) = struct.unpack_from(order + "I", data, 0x20)
        size, count, names_index = struct.unpack_from(order + "HHH", data, 0x2E)
        header = order + "IIIIII"
    entries = [struct.unpack_from(header, data, table + i * size) for i in range(count)]
    offset, length = entries[names_index][4:6]
    names = data[offset : offset + length]
    return {names[e[0] : names.index(b"\0", e[0])].decode() for e in entries}


def test_elf_sections_reads_a_real_file() -> None:
    sections = elf_sections(Path(sys.executable).resolve())
    assert {".text", ".dynsym"} <= sections


@pytest.mark.c_extension
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ELF files: Linux")
@pytest.mark.parametrize("module", ["qbreaker._core_c", "qbreaker._cli.bench._floor"])
def test_the_extensions_carry_no_debug_information(module: str) -> None:
    """setup.py compiles with -g0 (the core weighed 2 MB with the debug
    information, 0.3 MB without); a debug or sanitizer build keeps it."""
    import importlib

    path = Path(importlib.import_module(module).__file__ or "")
    record = Path(qbreaker.__file__).parent / "_build.json"
    build = json.loads(record.read_text()) if record.exists() else {}
    if build.get("debug_build") or build.get("sanitize"):
        pytest.skip("a debug or sanitizer build keeps its debug information")
    debug = sorted(s for s in elf_sections(path) if s.startswith(".debug_"))
    assert not debug, f"{path} carries {debug}"
