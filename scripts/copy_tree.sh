#!/usr/bin/env bash
# Copy the working tree (tracked files, and untracked ones git does not
# ignore, as they are now) to DEST, without any in-tree build, so that a CI
# leg builds and tests it from scratch and never writes the checkout.
#   usage: scripts/copy_tree.sh DEST
set -Eeuo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEST=$1
mkdir -p "$DEST"
if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do
      if [[ -e $f ]]; then printf '%s\0' "$f"; fi  # not deleted in the tree
    done | xargs -0 cp --parents -t "$DEST")
else
  cp -r "$ROOT/." "$DEST"
fi
rm -rf "$DEST/build" "$DEST"/src/*.egg-info "$DEST"/src/qbreaker/*.so \
  "$DEST"/src/qbreaker/*.c
