#!/usr/bin/env bash
# Makes sure redis-server (the Debian package) is installed, for the Redis
# storage tests of qbreaker.compat.pybreaker (tests/compat/test_compat_pybreaker_storage.py)
# and the fleet tests (tests/fleet/, which skip without it: their Lua needs a real server).
# The tests start and stop their own server on a free port of 127.0.0.1; this
# script only installs the binary, and never starts a service. Without it the
# tests fall back to fakeredis and say so, which CI must not do: a failed
# install is an error here.
set -euo pipefail

if command -v redis-server >/dev/null 2>&1; then
    echo "== redis-server: $(redis-server --version)"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ci_redis.sh: redis-server is missing and apt-get is not available" >&2
    exit 1
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    SUDO=(sudo)
fi

echo "== installing redis-server (apt)"
"${SUDO[@]}" apt-get update -qq
# policy-rc.d-less containers may try to start the service: harmless, the
# tests use their own server and port.
DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends redis-server

if ! command -v redis-server >/dev/null 2>&1; then
    echo "ci_redis.sh: redis-server still missing after apt-get install" >&2
    exit 1
fi
echo "== redis-server: $(redis-server --version)"
