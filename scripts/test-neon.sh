#!/bin/sh
# Cross-compiles the kernel library and tests/kernels for aarch64 (PL_NEON_ONLY build) and
# runs every kernel test under qemu user emulation. qemu's default CPU has dotprod; the tests
# themselves run each kernel with and without it (pl_kern_set_dotext).
# Needs: gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static
#        (scripts/install-deps.sh --cross).
# Usage: scripts/test-neon.sh [build-dir]   (default: build-neon)
set -eu
cd "$(dirname "$0")/.."
BUILD=${1:-build-neon}
for tool in aarch64-linux-gnu-gcc qemu-aarch64-static; do
  command -v $tool >/dev/null 2>&1 || { echo "test-neon: $tool missing (scripts/install-deps.sh --cross)" >&2; exit 2; }
done
cmake -S . -B "$BUILD" -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-toolchain.cmake \
  -DPL_NEON_ONLY=ON -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j"$(nproc)"
QEMU="qemu-aarch64-static -L /usr/aarch64-linux-gnu"
fail=0
for t in "$BUILD"/test_*; do
  [ -x "$t" ] || continue
  echo "== $(basename "$t")"
  $QEMU "$t" || fail=1
done
[ $fail -eq 0 ] && echo "test-neon: all kernel tests passed under qemu-aarch64" || echo "test-neon: FAILURES" >&2
exit $fail
