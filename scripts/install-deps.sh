#!/bin/sh
# Installs the Debian packages pagellm needs to build, test and cross-test.
# Idempotent: does nothing (and needs no network) when everything is present.
# Usage: scripts/install-deps.sh [--cross|--fuzz]   (--cross adds the aarch64 toolchain + qemu;
# --fuzz adds clang 14 and its libFuzzer runtime for scripts/fuzz.sh)
set -eu
PKGS="build-essential cmake pkg-config libmicrohttpd-dev libjansson-dev libopenblas-dev \
libxxhash-dev libpcre2-dev libutf8proc-dev libcmocka-dev curl ca-certificates nodejs npm git \
python3 python3-jinja2 haproxy chromium"
if [ "${1:-}" = "--cross" ]; then
  PKGS="$PKGS gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static"
fi
if [ "${1:-}" = "--fuzz" ]; then
  PKGS="$PKGS clang-14 libclang-rt-14-dev"
fi
missing=""
for p in $PKGS; do
  # nodejs/npm may come from elsewhere (e.g. a preinstalled node); accept the binaries.
  case $p in
    nodejs) command -v node >/dev/null 2>&1 && continue ;;
    npm) command -v npm >/dev/null 2>&1 && continue ;;
    # the test data script (scripts/test-data.py) needs Jinja2; any python3 that has it will do
    python3|python3-jinja2) python3 -c 'import jinja2' >/dev/null 2>&1 && continue ;;
  esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
echo "install-deps: installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends $missing
