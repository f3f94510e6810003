#!/usr/bin/env bash
# Test every wheel of dist/ (scripts/build_wheels.sh) as installed, each in a
# fresh venv of its own interpreter:
#
#  1. qbreaker alone, from dist/ only (--no-index --find-links dist
#     --only-binary qbreaker), with no C compiler on PATH: pip must pick the
#     wheel (its tag is checked) and need no compiler;
#  2. the `test` extra's libraries from the index (wheels only on 3.13t,
#     whose newest hypothesis and mypy need Rust to build); then those of the
#     `integrations` extra, if the package has one, that this interpreter
#     has wheels for, the others reported as not installed (their tests skip);
#  3. scripts/check_installed.py on the sdist's own tests/: the install is the
#     one imported, compiled (GIL off after import on 3.13t), and the suite
#     passes with QBREAKER_REQUIRE_EXTENSIONS=1, run from outside any source
#     tree; the pure wheel runs the suite on the twin.
#
# A wheel whose interpreter this machine lacks is reported NOT TESTED and
# fails the run. Environment: QBREAKER_DIST (default dist/), PYTHON (the pure
# wheel's interpreter, default python3), PYTEST_ADDOPTS.
set -Eeuo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIST=${QBREAKER_DIST:-$ROOT/dist}
# shellcheck source=scripts/pythons.sh
source "$ROOT/scripts/pythons.sh"
log() { echo "test_wheels: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

sdists=("$DIST"/qbreaker-*.tar.gz)
[[ ${#sdists[@]} -eq 1 && -f ${sdists[0]} ]] || die "no sdist in $DIST: run scripts/build_wheels.sh"
wheels=("$DIST"/qbreaker-*.whl)
[[ -f ${wheels[0]} ]] || die "no wheels in $DIST"
VERSION=$(basename "${sdists[0]}" .tar.gz)
VERSION=${VERSION#qbreaker-}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/qbreaker-test-wheels.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
# The suite as released: the sdist's tests/ (and the sources some tests read).
tar -xzf "${sdists[0]}" -C "$WORK"
TREE=$WORK/qbreaker-$VERSION
# A PATH with no C compiler on it: only the venv's own bin/.
export PIP_DISABLE_PIP_VERSION_CHECK=1
unset QBREAKER_NO_EXTENSIONS QBREAKER_REQUIRE_EXTENSIONS PYTHONPATH

# The requirements of extra $1 of the installed qbreaker that apply here, one
# a line; an extra that names other extras of qbreaker gives theirs. pip's own
# copy of packaging reads them: a fresh venv has no other.
EXTRA_REQUIREMENTS='
import sys
from importlib.metadata import metadata, requires
from pip._vendor.packaging.requirements import Requirement
provided = set(metadata("qbreaker").get_all("Provides-Extra") or [])
def leaves(extra, seen):
    if extra not in provided or extra in seen:
        return
    seen.add(extra)
    for text in requires("qbreaker") or []:
        req = Requirement(text)
        if not (req.marker and req.marker.evaluate({"extra": extra})):
            continue
        if req.name == "qbreaker":
            for sub in req.extras:
                yield from leaves(sub, seen)
        else:
            req.marker = None
            yield str(req)
for line in dict.fromkeys(leaves(sys.argv[1], set())):
    print(line)
'

failed=() untested=() passed=()
for wheel in "${wheels[@]}"; do
  name=$(basename "$wheel")
  if [[ $name == *-py3-none-any.whl ]]; then
    kind=pure python=${PYTHON:-python3} abi=""
  else
    tags=$(cut -d- -f3,4 <<<"$name")            # cp313-cp313t
    abi=${tags#*-}                               # cp313t
    version=${abi#cp}; version=${version:0:1}.${version:1}  # 3.13t
    kind=compiled python=$(find_python "$version")
    if [[ -z $python ]]; then
      log "$name: no CPython $version on this machine: NOT TESTED"
      untested+=("$name")
      continue
    fi
  fi
  started=$SECONDS
  venv=$WORK/venv-${name%.whl}
  "$python" -m venv "$venv"
  vpy=$venv/bin/python
  log "$name: $kind, $("$vpy" -c 'import sys; print(sys.version.split()[0], sys.abiflags or "")')"
  "$vpy" -m pip install -q --upgrade pip >"$venv.log" 2>&1 || { cat "$venv.log" >&2; die "pip upgrade failed"; }

  # 1. The wheel alone, from dist/ only, with no compiler to fall back on.
  if [[ $kind == pure ]]; then
    # Every compiled wheel of dist/ would outrank it: it is named.
    target=$wheel
  else
    target=qbreaker==$VERSION
  fi
  env PATH="$venv/bin" CC=/nonexistent/cc "$vpy" -m pip install -q --no-index \
    --find-links "$DIST" --only-binary qbreaker "$target" >>"$venv.log" 2>&1 ||
    { cat "$venv.log" >&2; die "$name: did not install without a compiler"; }
  "$vpy" - "$name" <<'PY' || die "$name: pip installed another wheel"
import sys
from importlib.metadata import distribution
py, abi, platforms = sys.argv[1][: -len(".whl")].split("-")[2:]
wanted = {f"{p}-{abi}-{x}" for p in py.split(".") for x in platforms.split(".")}
wheel = distribution("qbreaker").read_text("WHEEL") or ""
got = {line[5:] for line in wheel.splitlines() if line.startswith("Tag: ")}
assert got == wanted, f"installed the wheel tagged {sorted(got)}, not {sorted(wanted)}"
PY

  # 2. The test libraries; the integrations' where this interpreter has them.
  only_binary=()
  if [[ $abi == *t && $kind == compiled ]]; then only_binary=(--only-binary :all:); fi
  mapfile -t test_reqs < <("$vpy" -c "$EXTRA_REQUIREMENTS" test)
  ((${#test_reqs[@]})) || die "$name: the wheel names no test extra"
  "$vpy" -m pip install -q "${only_binary[@]}" "${test_reqs[@]}" >>"$venv.log" 2>&1 ||
    { tail -n 30 "$venv.log" >&2; die "$name: the test libraries did not install"; }
  mapfile -t integration_reqs < <("$vpy" -c "$EXTRA_REQUIREMENTS" integrations)
  # One at a time, each bounded: all together, pip's resolver backtracked for
  # over ten minutes on 3.9 (whose newest releases of several of them have
  # no wheel); each alone resolves in seconds.
  for req in "${integration_reqs[@]}"; do
    timeout 300 "$vpy" -m pip install -q --only-binary :all: "$req" >>"$venv.log" 2>&1 ||
      log "$name: $req: not installed (no wheel for this interpreter, or no resolution in 300 s): its tests skip"
  done

  # 3. The install checked, and the suite, from outside any source tree.
  args=("$TREE/tests")
  if [[ $kind == pure ]]; then args=(--pure "$TREE/tests"); fi
  if "$vpy" "$TREE/scripts/check_installed.py" "${args[@]}" -q; then
    passed+=("$name ($((SECONDS - started)) s)")
  else
    failed+=("$name")
  fi
done

echo "== passed as installed: ${#passed[@]}"
printf '   %s\n' "${passed[@]}"
if ((${#untested[@]})); then echo "== NOT TESTED (no interpreter): ${untested[*]}" >&2; fi
if ((${#failed[@]})); then echo "== FAILED: ${failed[*]}" >&2; fi
((${#failed[@]} == 0 && ${#untested[@]} == 0))
