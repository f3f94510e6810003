# Sourced by the wheel scripts: which CPython interpreters this machine has.
# QBREAKER_WHEEL_PYTHONS overrides the list (e.g. "3.12 3.13t" for a quick run).
# shellcheck shell=bash

WHEEL_PYTHONS=(${QBREAKER_WHEEL_PYTHONS:-3.9 3.10 3.11 3.12 3.13 3.13t})

# The interpreter for version $1 ("3.12", or "3.13t" for the free-threaded
# build), or nothing. A GIL version is the newest patch release of pyenv's
# ($PYENV_ROOT, default ~/.pyenv), else python$1 on PATH; 3.13t is the one
# scripts/build_freethreaded_python.sh builds and caches (built on first use,
# several minutes; its progress goes to stderr).
find_python() {
  local found=""
  if [[ $1 == *t ]]; then
    found=$(bash "$(dirname "${BASH_SOURCE[0]}")/build_freethreaded_python.sh" | tail -n1) || found=""
  else
    found=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$1".*/bin/python 2>/dev/null |
      sort -V | tail -n1 || true)
    if [[ -z $found ]]; then found=$(command -v "python$1" || true); fi
  fi
  echo "$found"
}

# The python and ABI tags of version $1's wheels: 3.9 -> cp39-cp39,
# 3.13t -> cp313-cp313t.
wheel_tags() {
  local v=${1//./}
  echo "cp${v%t}-cp$v"
}
