#!/usr/bin/env bash
# Obtain a free-threaded ("no GIL") CPython 3.13 and print its path as the last
# stdout line. No free-threaded binary is reachable from the registries here, so
# it is built from Debian trixie's python3.13 source package and cached outside
# the repository; later runs reuse the cache. Progress goes to stderr, build
# noise to $CACHE_DIR/build.log. Meant to run as root, non-interactively.
set -Eeuo pipefail

CACHE_DIR="${QBREAKER_FT_CACHE:-$HOME/.cache/qbreaker/python3.13t}"
PREFIX="$CACHE_DIR/install"
PYTHON="$PREFIX/bin/python3.13t"
LOG="$CACHE_DIR/build.log"
# Enough for pip to work (ssl, _hashlib, zlib, ctypes) plus bz2/lzma for archives.
BUILD_DEPS=(build-essential pkg-config xz-utils libssl-dev zlib1g-dev libffi-dev libbz2-dev liblzma-dev)
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
export DEBIAN_FRONTEND=noninteractive
WORK=""

log() { echo "build_freethreaded_python: $*" >&2; }

die() { log "ERROR: $*"; exit 1; }

# Any failure ends up here: drop the temp build tree, show why it failed.
on_exit() {
  local rc=$?
  if [[ -n $WORK ]]; then rm -rf "$WORK"; fi
  if ((rc != 0)) && [[ -s $LOG ]]; then
    log "FAILED (exit $rc); last 40 lines of $LOG:"
    tail -n 40 "$LOG" >&2
  fi
  exit "$rc"
}

trap 'log "command failed (line $LINENO): $BASH_COMMAND"' ERR
trap on_exit EXIT

# True only for a complete install: GIL really off, pip and TLS importable.
# -I ignores PYTHON* variables (PYTHON_GIL=1 would re-enable the GIL).
interpreter_ok() {
  [[ -x $1 ]] && "$1" -I -c '
import sys, sysconfig, ssl, _hashlib, zlib, ctypes, bz2, lzma, pip
assert sysconfig.get_config_var("Py_GIL_DISABLED") == 1
assert sys._is_gil_enabled() is False
' >/dev/null 2>&1
}

# Install only the missing build deps, so cache-warm CI machines skip apt.
install_build_deps() {
  local missing=() pkg
  for pkg in "${BUILD_DEPS[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
  done
  ((${#missing[@]} == 0)) && return 0
  log "installing build dependencies: ${missing[*]}"
  apt-get update >>"$LOG" 2>&1
  apt-get install -y --no-install-recommends "${missing[@]}" >>"$LOG" 2>&1
}

# The Debian mirror this machine already uses (one-line .list or deb822 .sources).
debian_mirror() {
  local files=() f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] && files+=("$f")
  done
  ((${#files[@]})) || return 0
  awk '/^[[:space:]]*#/ { next }
       $1 == "deb" || $1 == "deb-src" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z0-9+]+:\/\//) { print $i; break } }
       tolower($1) == "uris:" { for (i = 2; i <= NF; i++) print $i }' "${files[@]}" |
    sed 's:/*$::' | grep -m1 -E '/debian$' || true
}

# Download trixie's python3.13 source with a private apt config, leaving the
# system's sources and lists untouched. apt verifies it against the signed index.
fetch_source() {
  local mirror apt="$WORK/apt"
  mirror="${QBREAKER_DEBIAN_MIRROR:-$(debian_mirror)}"
  [[ -n $mirror ]] || die "no Debian mirror found in apt sources (set QBREAKER_DEBIAN_MIRROR)"
  mkdir -p "$apt"/{lists/partial,cache/archives/partial,state,parts,prefs} "$WORK/src"
  echo "deb-src [signed-by=$KEYRING] $mirror trixie main" >"$apt/sources.list"
  cat >"$apt/apt.conf" <<EOF
Dir::Etc::SourceList "$apt/sources.list";
Dir::Etc::SourceParts "$apt/parts";
Dir::Etc::Preferences "$apt/preferences";
Dir::Etc::PreferencesParts "$apt/prefs";
Dir::State "$apt/state";
Dir::State::Lists "$apt/lists";
Dir::Cache "$apt/cache";
APT::Sandbox::User "root";
EOF
  log "downloading python3.13 source from Debian trixie"
  APT_CONFIG="$apt/apt.conf" apt-get update --error-on=any >>"$LOG" 2>&1
  (cd "$WORK/src" && APT_CONFIG="$apt/apt.conf" apt-get source --download-only python3.13) >>"$LOG" 2>&1
}

# Build the pristine upstream orig tarball (Debian's patches change install
# layouts, e.g. dist-packages), staging the install via DESTDIR so the final prefix is baked in correctly.
# `make install` also runs ensurepip into the staging root.
build_python() {
  local src
  tar -xJf "$WORK"/src/python3.13_*.orig.tar.xz -C "$WORK/src"
  src=$(find "$WORK/src" -maxdepth 1 -type d -name 'Python-3.13*' | head -n1)
  [[ -n $src ]] || die "no Python-3.13 directory in the orig tarball"
  log "building $(basename "$src") with --disable-gil (several minutes; log: $LOG)"
  (cd "$src" && ./configure --disable-gil --prefix="$PREFIX" &&
    make -j"$(nproc)" && make install DESTDIR="$WORK/stage") >>"$LOG" 2>&1
}

main() {
  mkdir -p "$CACHE_DIR"
  # Serialise concurrent runs on one machine; the loser reuses the winner's build.
  exec 9>"$CACHE_DIR/.lock"
  flock 9
  if interpreter_ok "$PYTHON"; then
    echo "$PYTHON"
    return 0
  fi
  : >"$LOG"
  rm -rf "$CACHE_DIR"/tmp.*  # leftovers of a killed build; we hold the lock
  WORK=$(mktemp -d "$CACHE_DIR/tmp.XXXXXX")  # same filesystem, so mv is atomic
  install_build_deps
  fetch_source
  build_python
  # Swap in only a finished install; a half-built one never reaches $PREFIX.
  rm -rf "$PREFIX"
  mv "$WORK/stage$PREFIX" "$PREFIX"
  "$PYTHON" -I -m pip --version >/dev/null 2>&1 || "$PYTHON" -I -m ensurepip >>"$LOG" 2>&1
  interpreter_ok "$PYTHON" || die "$PYTHON is not a working free-threaded interpreter"
  log "ready: $("$PYTHON" -I -c 'import sys; print(sys.version)')"
  echo "$PYTHON"
}

main "$@"
