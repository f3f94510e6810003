"""Test an installed qbreaker wheel as its users get it, then run the suite on it.

    usage: python check_installed.py [--pure] TESTS [PYTEST_ARGS...]

TESTS is the suite's directory (``tests/`` of the sdist or a checkout). From
an empty temporary directory, so no source tree is importable:

1. qbreaker imports from this interpreter's site-packages, with the compiled
   core (``IMPLEMENTATION == "cython"``), or, with ``--pure``, the twin and
   no compiled module at all;
2. on a free-threaded build, importing qbreaker and each of its compiled
   modules leaves the GIL off (the warning CPython gives when an import
   turns it on is an error);
3. the suite runs on the installed package: compiled, with
   ``QBREAKER_REQUIRE_EXTENSIONS=1``; pure, with ``--no-c-extensions``. Not
   the stress tests, nor the Redis Sentinel and Cluster topologies
   (``fleet_heavy``: several redis-server processes each), nor the fleet's
   runs of simulated hosts (``fleet_matrix``: the end-to-end test, the fault
   matrix, the fleet demo): nothing in them depends on the interpreter
   beyond what the rest of the fleet tests cover, and the main suite runs
   them once.
   The suite's own packaging tests check the installed files against their
   list, and build the cimport example against the installed headers.

scripts/test_wheels.sh runs it for every wheel of dist/, and cibuildwheel
(pyproject.toml's test-command) for every wheel it builds. Standard library
only; Windows too (cibuildwheel runs it under cmd.exe there).
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tempfile

GIL_WARNING = "error:The global interpreter lock:RuntimeWarning"
#: The tests each installed wheel runs (see 3. above).
SELECTION = "not stress and not fleet_heavy and not fleet_matrix"

# Run in a child interpreter started with -I (no PYTHON* variables, no user
# site, no script directory on sys.path) from the empty directory.
CHECK = r"""
import importlib, importlib.machinery, os, pathlib, sys, sysconfig
pure = sys.argv[1] == "pure"
import qbreaker
root = pathlib.Path(qbreaker.__file__).resolve().parent
paths = sysconfig.get_paths()
sites = {pathlib.Path(paths[k]).resolve() for k in ("purelib", "platlib")}
assert root.parent in sites, f"qbreaker from {root}, not {sorted(map(str, sites))}"
suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
compiled = sorted(
    ".".join(("qbreaker", *p.relative_to(root).parent.parts, p.name.split(".", 1)[0]))
    for p in root.rglob("*") if p.name.endswith(suffixes)
)
if pure:
    assert qbreaker.IMPLEMENTATION == "python", qbreaker.IMPLEMENTATION
    assert not compiled, f"compiled modules in a pure install: {compiled}"
else:
    assert qbreaker.IMPLEMENTATION == "cython", qbreaker.IMPLEMENTATION
    assert "qbreaker._core_c" in compiled, compiled
    for name in compiled:  # each declares free-threading support, or warns: an error
        importlib.import_module(name)
free = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
if free:
    assert not sys._is_gil_enabled(), "importing qbreaker turned the GIL on"
print(f"installed: {root} ({qbreaker.IMPLEMENTATION}; compiled: "
      f"{', '.join(compiled) or 'none'}"
      + ("; free-threaded, GIL off" if free else "") + ")")
"""


def main(argv: list[str]) -> int:
    pure = argv[:1] == ["--pure"]
    if pure:
        argv = argv[1:]
    if not argv or not os.path.isdir(argv[0]):
        print(__doc__, file=sys.stderr)
        return 2
    tests, pytest_args = os.path.abspath(argv[0]), argv[1:]
    env = dict(os.environ)
    env.pop("QBREAKER_NO_EXTENSIONS", None)
    env.pop("PYTHONPATH", None)
    if pure:
        env.pop("QBREAKER_REQUIRE_EXTENSIONS", None)
    else:
        env["QBREAKER_REQUIRE_EXTENSIONS"] = "1"
    free = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    if free:
        env.pop("PYTHON_GIL", None)  # it could turn the GIL back on
    with tempfile.TemporaryDirectory(prefix="qbreaker-installed-") as empty:
        check = [sys.executable, "-I", "-W", "error::RuntimeWarning", "-c", CHECK]
        kind = "pure" if pure else "compiled"
        if subprocess.run([*check, kind], cwd=empty, env=env).returncode:
            print(f"check_installed: not a working {kind} install", file=sys.stderr)
            return 1
        command = [sys.executable, "-m", "pytest", tests, "-m", SELECTION,
                   "-p", "no:cacheprovider"]  # fmt: skip
        if pure:
            command.append("--no-c-extensions")
        if free:
            command += ["-W", GIL_WARNING]
        command += pytest_args
        print("running:", " ".join(command), flush=True)
        return subprocess.run(command, cwd=empty, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
