#!/usr/bin/env bash
# The free-threaded leg of CI: the whole suite on CPython 3.13t with
# the GIL off.
#
#  1. gets the interpreter from scripts/build_freethreaded_python.sh (built
#     once from Debian's python3.13 source, then cached outside the repo);
#  2. installs the package with its test extras into a fresh venv, from a copy
#     of the tree (the checkout is never written);
#  3. asserts that importing qbreaker and every compiled module in it leaves
#     the GIL disabled, in a fresh interpreter run with -I, so PYTHON_GIL
#     cannot force it: each extension must declare itself compatible;
#  4. runs `python -m pytest -m "not stress" -p no:cacheprovider`, with the
#     warning CPython gives when an import re-enables the GIL made an error
#     (tests/concurrency/test_freethreading.py also fails if the GIL came back on).
#
# Environment: QBREAKER_FT_CACHE (see the build script), PYTEST_ADDOPTS.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

log() { echo "ci_freethreaded: $*" >&2; }

PYTHON=$(bash "$ROOT/scripts/build_freethreaded_python.sh" | tail -n1)
log "interpreter: $PYTHON ($("$PYTHON" -I -c 'import sys; print(sys.version.split()[0], "GIL enabled:", sys._is_gil_enabled())'))"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/qbreaker-ft.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

bash "$ROOT/scripts/copy_tree.sh" "$WORK/tree"

"$PYTHON" -m venv "$WORK/venv"
VPY=$WORK/venv/bin/python
# Dependencies as wheels only: for cp313t, the newest hypothesis and mypy's
# ast-serialize are sdists with a Rust extension, which would need a Rust
# toolchain and crates.io; pip then picks the newest releases that have
# wheels. The package itself, a local directory, is still built from source.
export PIP_ONLY_BINARY=:all: PIP_DISABLE_PIP_VERSION_CHECK=1
unset PYTHON_GIL
log "installing qbreaker[test] (compiled) into $WORK/venv"
"$VPY" -m pip install -q "$WORK/tree[test]"

export QBREAKER_REQUIRE_EXTENSIONS=1
log "the GIL must stay off after importing qbreaker and each compiled module"
(cd / && "$VPY" -I -W "error::RuntimeWarning" - <<'PY'
import importlib, importlib.machinery, pathlib, sys, sysconfig
assert sysconfig.get_config_var("Py_GIL_DISABLED") == 1, "not a free-threaded build"
import qbreaker
assert qbreaker.IMPLEMENTATION == "cython", qbreaker.IMPLEMENTATION
assert not sys._is_gil_enabled(), "import qbreaker enabled the GIL"
# Every compiled module of the package, subpackages included (the bench's
# floor lives in qbreaker._cli.bench), found on disk: nothing else imported.
suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
root = pathlib.Path(qbreaker.__file__).parent
compiled = sorted(
    ".".join(("qbreaker", *path.relative_to(root).parent.parts,
              path.name.split(".", 1)[0]))
    for path in root.rglob("*")
    if path.name.endswith(suffixes)
)
assert "qbreaker._core_c" in compiled, compiled
bad = []
for name in compiled:
    try:
        importlib.import_module(name)
    except RuntimeWarning as exc:  # "The global interpreter lock (GIL) has been enabled..."
        bad.append(f"{name}: {exc}")
assert not bad, "modules that do not declare free-threading support:\n" + "\n".join(bad)
assert not sys._is_gil_enabled()
print("GIL still disabled after importing", ", ".join(compiled))
PY
)

log "the whole suite, GIL off"
cd "$WORK/tree"
"$VPY" -m pytest -m "not stress" -p no:cacheprovider \
  -W "error:The global interpreter lock:RuntimeWarning"
log "passed"
