#!/usr/bin/env bash
# Which core is installed, proved from outside the tree (cd /, so the
# checkout's src/ can never be what gets imported).
#   usage: scripts/check_core.sh           the compiled core is the installed
#                                          one, from site-packages, and the
#                                          suite's import and parity tests pass
#                                          with it required
#          scripts/check_core.sh --pure    the installed package is pure Python:
#                                          no compiled core was built into it
# Environment: PYTHON, the interpreter whose install is checked (default python).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}

case ${1:-} in
  "")
    export QBREAKER_REQUIRE_EXTENSIONS=1
    (cd / && "$PYTHON" - <<'PY'
import os, sysconfig
import qbreaker, qbreaker._core_c as c
assert qbreaker.IMPLEMENTATION == "cython", qbreaker.IMPLEMENTATION
assert qbreaker.CircuitBreaker is c.CircuitBreaker
site = os.path.normcase(os.path.realpath(sysconfig.get_paths()["platlib"]))
where = os.path.normcase(os.path.realpath(c.__file__))
assert where.startswith(site + os.sep), (where, site)
print("compiled core:", c.__file__)
PY
    )
    "$PYTHON" -m pytest -q -p no:cacheprovider tests/packaging/test_import.py tests/core/test_parity.py
    ;;
  --pure)
    # Neither flag at run time: only the install itself can make the twin load.
    unset QBREAKER_NO_EXTENSIONS QBREAKER_REQUIRE_EXTENSIONS
    (cd / && "$PYTHON" - <<'PY'
import importlib.util
import qbreaker
assert importlib.util.find_spec("qbreaker._core_c") is None, "a compiled core was installed"
assert qbreaker.IMPLEMENTATION == "python", qbreaker.IMPLEMENTATION
print("pure-Python core:", qbreaker.__file__)
PY
    )
    ;;
  *)
    echo "usage: $0 [--pure]" >&2
    exit 2
    ;;
esac
