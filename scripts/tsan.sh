#!/usr/bin/env bash
# ThreadSanitizer run of the nogil stress harness.
#
# Builds the core (QBREAKER_SANITIZE=thread, see setup.py) and the stress
# harness (tests/concurrency/stress/qb_stress.pyx) with -fsanitize=thread, in a throwaway
# virtual environment and a copy of the tree (the checkout is never written),
# and runs the harness under the ordinary, uninstrumented interpreter with the
# TSAN runtime preloaded: an instrumented extension cannot be dlopen()ed into
# a process whose runtime was not there from the start.
#
# Exit status: 0 when every run is clean; non-zero when TSAN reports anything
# (its exit code, 66), when an invariant breaks, or when the race canary (a
# deliberate data race in the harness) is NOT reported, which would mean the
# tooling, not the code, is broken.
#
# Environment: PYTHON (default python3), CC (default gcc; clang works too),
# QBREAKER_TSAN_SECONDS per run (default 1; 2, 4, 8 threads x no/count/time
# rate window x 2 clocks x tickets/seed form = 36 runs, about 1.5 minutes in
# all here), QBREAKER_TSAN_KEEP=1 keeps the work directory.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
CC=${CC:-gcc}
PER_RUN=${QBREAKER_TSAN_SECONDS:-1}
SUPP=$ROOT/scripts/tsan.supp

log() { echo "tsan.sh: $*" >&2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/qbreaker-tsan.XXXXXX")
if [[ ${QBREAKER_TSAN_KEEP:-} == 1 ]]; then
  log "work directory: $WORK"
else
  trap 'rm -rf "$WORK"' EXIT
fi

# The runtime to preload: the one the compiler links against.
TSAN_LIB=$("$CC" -print-file-name=libtsan.so)
if [[ $TSAN_LIB != /* ]]; then
  # gcc prints the bare name when it has no TSAN runtime: install it.
  log "no libtsan for $CC; installing it from apt"
  apt-get install -y --no-install-recommends libtsan2 >&2
  TSAN_LIB=$("$CC" -print-file-name=libtsan.so)
fi
TSAN_LIB=$(readlink -f "$TSAN_LIB")
[[ -f $TSAN_LIB ]] || { log "no TSAN runtime found for $CC"; exit 2; }
log "runtime: $TSAN_LIB; compiler: $("$CC" --version | head -n1)"

# A copy of the tree, so no build output lands in the checkout.
bash "$ROOT/scripts/copy_tree.sh" "$WORK/tree"

"$PYTHON" -m venv "$WORK/venv"
VPY=$WORK/venv/bin/python
"$VPY" -m pip install -q --prefer-binary "Cython>=3.1,<4" "setuptools>=77" >&2
log "building the core with -fsanitize=thread"
(cd "$WORK/tree" && CC=$CC QBREAKER_SANITIZE=thread \
  "$VPY" -m pip install -q --no-build-isolation . >&2)
CORE=$(cd / && LD_PRELOAD=$TSAN_LIB "$VPY" -c 'import qbreaker._core_c as c; print(c.__file__)')
ldd "$CORE" | grep tsan >/dev/null || { log "$CORE is not instrumented"; exit 2; }

export TSAN_OPTIONS="halt_on_error=0 exitcode=66 second_deadlock_stack=1 suppressions=$SUPP ${TSAN_OPTIONS:-}"
FLAGS="-fsanitize=thread -fno-omit-frame-pointer -g -O1"
run_harness() {
  (cd "$WORK" && CC=$CC LD_PRELOAD=$TSAN_LIB "$VPY" "$WORK/tree/tests/concurrency/stress/harness.py" \
    --build-dir "$WORK/harness" "--cflags=$FLAGS" "--ldflags=-fsanitize=thread" "$@")
}

log "race canary: a deliberate data race that TSAN must report"
set +e
run_harness --race-canary >"$WORK/canary.log" 2>&1
rc=$?
set -e
if ((rc != 66)) || ! grep -q "WARNING: ThreadSanitizer: data race" "$WORK/canary.log"; then
  cat "$WORK/canary.log" >&2
  log "FAILED: the canary race was not reported (exit $rc): TSAN is not working here"
  exit 3
fi
log "canary caught (exit $rc), as it must be"

log "stress harness under TSAN: 36 runs of ${PER_RUN}s"
set +e
run_harness --threads 2,4,8 --windows none,count,time --clock ticks,auto \
  --tickets yes,no --seconds "$PER_RUN" 2>&1 | tee "$WORK/run.log"
rc=${PIPESTATUS[0]}
set -e
races=$(grep -c "WARNING: ThreadSanitizer" "$WORK/run.log" || true)
if ((rc != 0 || races != 0)); then
  log "FAILED: exit $rc, $races ThreadSanitizer report(s)"
  exit $((rc ? rc : 1))
fi
log "clean: no ThreadSanitizer report, every invariant held"
