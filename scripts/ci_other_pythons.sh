#!/usr/bin/env bash
# CI leg: the whole suite, compiled, on the oldest and newest GIL builds of
# CPython this machine has besides the main one (3.9, the oldest supported,
# and 3.12/3.13). The extension's C-API use differs across versions
# (vectorcall, type slots set at import), and wheels are built for them all.
#
# Interpreters come from pyenv ($PYENV_ROOT, default ~/.pyenv) or PATH. A
# version this machine lacks is reported as not run, never as passed.
set -Eeuo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
log() { echo "ci_other_pythons: $*" >&2; }

find_python() {  # the newest patch release of $1, or nothing
  local found
  found=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$1".*/bin/python 2>/dev/null |
    sort -V | tail -n1 || true)
  if [[ -z $found ]]; then found=$(command -v "python$1" || true); fi
  echo "$found"
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/qbreaker-pythons.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
bash "$ROOT/scripts/copy_tree.sh" "$WORK/tree"
export QBREAKER_REQUIRE_EXTENSIONS=1 PIP_DISABLE_PIP_VERSION_CHECK=1

ran=0
for version in ${QBREAKER_CI_PYTHONS:-3.9 3.12 3.13}; do
  python=$(find_python "$version")
  if [[ -z $python ]]; then
    log "CPython $version: no interpreter on this machine: NOT RUN"
    continue
  fi
  log "CPython $version: $python"
  "$python" -m venv "$WORK/venv-$version"
  vpy=$WORK/venv-$version/bin/python
  "$vpy" -m pip install -q "$WORK/tree[test]"
  (cd "$WORK/tree" && "$vpy" - <<'PY'
import qbreaker, qbreaker._core_c as c, sysconfig
assert qbreaker.IMPLEMENTATION == "cython", qbreaker.IMPLEMENTATION
assert c.__file__.startswith(sysconfig.get_paths()["platlib"]), c.__file__
print("compiled core:", c.__file__)
PY
  )
  (cd "$WORK/tree" && "$vpy" -m pytest -q -m "not stress" -p no:cacheprovider)
  ran=$((ran + 1))
done
log "$ran version(s) run"
