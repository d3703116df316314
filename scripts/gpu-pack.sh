#!/usr/bin/env bash
# Build here, carry to the lent GPU machine. That machine has CUDA 13, cmake and python3, but
# none of our Debian libraries (libmicrohttpd, jansson, OpenBLAS, PCRE2, xxHash, utf8proc,
# cmocka), no node and no network. This script:
#   1. builds $BUILD (default build-gpu/, Release, -DCMAKE_CUDA_ARCHITECTURES=90);
#   2. packs into .devcarry/ (ignored through .git/info/exclude):
#        core.tar.xz  pl/bin/pagellm (and bench_cuda_*), pl/tests/<the test binaries scripts/test-gpu.sh runs>,
#                     pl/lib/<every shared library they need per ldd, except glibc, libstdc++,
#                     libgcc and the CUDA/driver libraries that the machine has>,
#                     pl/testdata/chat-templates, pl/node_modules (openai, ajv, zod), pl/COMMIT
#        node.tar.xz  node/bin/node (this machine's node, stripped); node needs only glibc,
#                     libstdc++ and libgcc
#   3. checks the library closure: unpacks into a temporary folder and runs the binaries with a
#      clean environment (env -i, LD_LIBRARY_PATH = the packed lib/ only);
#   4. prints the sizes. The device tool sends the tracked tree plus the carried paths, 64 MiB
#      in all per call. When core + node do not fit beside the tree, node.tar.xz is split: the
#      first part goes in .devcarry/, the rest in .devcarry2/, and two calls are needed (see
#      docs/gpu/README.md):
#        call 1  carry [".devcarry2"]   command: scripts/gpu-unpack.sh --store
#        call 2  carry [".devcarry"]    command: scripts/gpu-unpack.sh      (within the 30 s
#                                       the machine stays warm; it keeps /tmp/pl-gpu)
# The engine tests are built a second time, in $BUILD-checks with -DPL_CHECKS=ON (the scheduler,
# KV cache and block pool invariants checked after every engine step, as the issue asks for the
# GPU runs); pagellm itself comes from the plain Release build, so benchmarks are not slowed.
# --no-node leaves node out (the cuda and engine stages and the benchmarks do not need it), so
# that everything travels in one call.
# Usage: scripts/gpu-pack.sh [--no-build] [--no-checks] [--no-node]    env: BUILD, JOBS (default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${BUILD:-build-gpu}
JOBS=${JOBS:-2}
LIMIT=$((64 * 1024 * 1024))
MARGIN=$((768 * 1024)) # files the lead adds between packing and the run; rounding

mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
size() { stat -c %s "$1"; }

DO_BUILD=1
CHECKS=1
NODE_TOO=1
for a in "$@"; do
  case $a in
  --no-build) DO_BUILD=0 ;;
  --no-checks) CHECKS=0 ;;
  --no-node) NODE_TOO=0 ;;
  *) echo "usage: scripts/gpu-pack.sh [--no-build] [--no-checks] [--no-node]" >&2; exit 2 ;;
  esac
done
ENGINE_TESTS=$(scripts/test-gpu.sh --list-tests)
if [ $DO_BUILD = 1 ]; then
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90
  cmake --build "$BUILD" -j "$JOBS"
  if [ $CHECKS = 1 ]; then
    cmake -S . -B "$BUILD-checks" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
      -DPL_CHECKS=ON
    # shellcheck disable=SC2086
    cmake --build "$BUILD-checks" -j "$JOBS" --target $ENGINE_TESTS
  fi
fi
TBUILD=$BUILD
if [ $CHECKS = 1 ]; then
  TBUILD=$BUILD-checks
  echo "engine tests from $TBUILD (PL_CHECKS=ON)"
fi
[ -x "$BUILD/pagellm" ] || { echo "gpu-pack: no $BUILD/pagellm (build failed?)" >&2; exit 1; }

EXCL=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$EXCL")"
for p in /.devcarry/ /.devcarry2/; do
  grep -qxF "$p" "$EXCL" 2>/dev/null || echo "$p" >>"$EXCL"
done

STAGE=$(mktemp -d /tmp/pl-gpu-pack.XXXXXX)
trap 'rm -rf "$STAGE"' EXIT
P=$STAGE/pl
mkdir -p "$P/bin" "$P/tests" "$P/lib" "$P/testdata" "$P/node_modules"

# ---- binaries (debug info stripped: Release builds carry -g) --------------------------------
cp "$BUILD/pagellm" "$P/bin/"
for b in "$BUILD"/bench/bench_cuda_*; do # kernel benchmarks (bench/bench_cuda_*.c)
  [ -x "$b" ] && [ -f "$b" ] && cp "$b" "$P/bin/"
done
n_cuda=0
for d in "$BUILD/tests" "$BUILD/tests/cuda"; do
  for t in "$d"/test_cuda_*; do
    [ -x "$t" ] && [ -f "$t" ] || continue
    cp "$t" "$P/tests/"
    n_cuda=$((n_cuda + 1))
  done
done
for n in $ENGINE_TESTS; do
  if [ -x "$TBUILD/tests/$n" ]; then
    cp "$TBUILD/tests/$n" "$P/tests/"
  else
    echo "gpu-pack: missing $TBUILD/tests/$n (run without --no-build, or with --no-checks)" >&2
    exit 1
  fi
done
if [ "$n_cuda" = 0 ]; then
  echo "gpu-pack: WARNING: no test_cuda_* binaries: $BUILD was built without CUDA (nvcc not" \
       "found, or the CUDA backend is not in this tree). The pack can still run the other stages."
fi
strip --strip-debug "$P/bin/"* "$P/tests/"*

# ---- the shared-library closure --------------------------------------------------------------
# Not carried: glibc and the loader, libstdc++/libgcc (every Linux has them), and the CUDA
# runtime/driver libraries (the device has the toolkit under /usr/local/cuda and the driver's).
skip_lib() {
  case $1 in
  linux-vdso* | ld-linux* | libc.so* | libm.so* | libpthread.so* | libdl.so* | librt.so* | \
    libresolv.so* | libutil.so* | libstdc++.so* | libgcc_s.so* | \
    libcuda.so* | libcudart.so* | libcublas.so* | libcublasLt.so* | libnvidia* | libnvrtc* | \
    libcudadevrt* | libnvJitLink*) return 0 ;;
  esac
  return 1
}
for b in "$P/bin/"* "$P/tests/"*; do
  ldd "$b" | awk '/=>/ && $3 ~ /^\// { print $1, $3 }'
done | sort -u | while read -r name path; do
  skip_lib "$name" && continue
  [ -e "$P/lib/$name" ] || cp -L "$path" "$P/lib/$name"
done
if ldd "$P/bin/pagellm" | grep -q "not found"; then
  echo "gpu-pack: pagellm has unresolved libraries here:" >&2
  ldd "$P/bin/pagellm" | grep "not found" >&2
  exit 1
fi

# ---- test data, the openai client, the commit ------------------------------------------------
if [ ! -d "$BUILD/testdata/chat-templates" ]; then
  if [ -d build/testdata/chat-templates ]; then
    mkdir -p "$BUILD/testdata" && cp -r build/testdata/chat-templates "$BUILD/testdata/"
  else
    python3 scripts/test-data.py "$BUILD/testdata"
  fi
fi
cp -r "$BUILD/testdata/chat-templates" "$P/testdata/"
# the npm packages the GPU's node tests import (scripts/test-gpu.sh NODE_TESTS), with their
# dependencies: the openai client; ajv, ajv-formats and zod for structured outputs
NODE_PKGS="openai ajv ajv-formats zod fast-deep-equal fast-uri json-schema-traverse require-from-string"
for pkg in $NODE_PKGS; do
  if [ ! -d "tests/node/node_modules/$pkg" ]; then
    echo "gpu-pack: tests/node/node_modules/$pkg is missing: run scripts/node-deps.sh" >&2
    exit 1
  fi
  cp -r "tests/node/node_modules/$pkg" "$P/node_modules/"
done
# TypeScript sources, declarations and source maps: not needed to run
find "$P/node_modules" \( -name '*.map' -o -name '*.d.ts' -o -name '*.d.mts' \
  -o -name '*.d.cts' -o -name '*.ts' \) -delete
rm -rf "$P/node_modules/openai/src" "$P/node_modules/zod/src" "$P/node_modules/ajv/lib"
COMMIT=$(git rev-parse --short=12 HEAD)
git diff --quiet HEAD -- src include CMakeLists.txt cmake tests scripts || COMMIT="$COMMIT-dirty"
echo "$COMMIT" >"$P/COMMIT"
[ $CHECKS = 1 ] && echo "engine tests built with PL_CHECKS=ON" >"$P/CHECKS"

rm -rf .devcarry .devcarry2
mkdir -p .devcarry
tar -C "$STAGE" -cf - pl | xz -9 -T "$JOBS" >.devcarry/core.tar.xz

# ---- node (cached: xz of node takes minutes) -------------------------------------------------
NODE_BIN=$(readlink -f "$(command -v node)")
KEY=$(node --version)-$(sha256sum "$NODE_BIN" | cut -c1-16)
CACHE=${PL_PACK_CACHE:-/tmp/pl-gpu-pack-cache} # shared by checkouts on this machine
mkdir -p "$CACHE"
NODE_TAR=$CACHE/node-$KEY.tar.xz
if [ ! -f "$NODE_TAR" ]; then
  if ldd "$NODE_BIN" | awk '/=>/ { print $1 }' | grep -qv -E '^(libdl|libstdc\+\+|libm|libgcc_s|libpthread|libc)\.so'; then
    echo "gpu-pack: node needs more than glibc/libstdc++/libgcc:" >&2
    ldd "$NODE_BIN" >&2
    exit 1
  fi
  mkdir -p "$STAGE/n/node/bin"
  strip -o "$STAGE/n/node/bin/node" "$NODE_BIN"
  echo "compressing node $(node --version) (a few minutes, once; cached in $NODE_TAR)"
  tar -C "$STAGE/n" -cf - node | xz -9 -T "$JOBS" >"$NODE_TAR.tmp"
  mv "$NODE_TAR.tmp" "$NODE_TAR"
fi

# ---- fit the device tool's 64 MiB per call ---------------------------------------------------
TREE=$( (git ls-files -z; git ls-files -z -o --exclude-standard) | xargs -0 stat -c %s 2>/dev/null |
  awk '{ s += $1 } END { print s + 0 }')
CORE=$(size .devcarry/core.tar.xz)
NODE=$(size "$NODE_TAR")
BUDGET=$((LIMIT - TREE - MARGIN))
sha256sum "$NODE_TAR" | awk '{ print $1 }' >.devcarry/node.sha256
if [ $NODE_TOO = 0 ]; then
  [ "$CORE" -le "$BUDGET" ] || { echo "gpu-pack: $(mib "$CORE") does not fit beside the" \
    "$(mib "$TREE") tree" >&2; exit 1; }
  CALLS=1
elif [ $((CORE + NODE)) -le "$BUDGET" ]; then
  cp "$NODE_TAR" .devcarry/node.tar.xz
  CALLS=1
else
  FIRST=$((BUDGET - CORE - 4096))
  REST=$((NODE - FIRST))
  if [ "$FIRST" -le 0 ] || [ "$REST" -gt "$BUDGET" ]; then
    echo "gpu-pack: core $(mib "$CORE") + node $(mib "$NODE") cannot travel beside the" \
         "$(mib "$TREE") tree even in two calls" >&2
    exit 1
  fi
  mkdir -p .devcarry2
  head -c "$FIRST" "$NODE_TAR" >.devcarry/node.tar.xz.part1
  tail -c "$REST" "$NODE_TAR" >.devcarry2/node.tar.xz.part2
  cp .devcarry/node.sha256 .devcarry2/
  CALLS=2
fi

# ---- check the closure from an unpacked copy with a clean environment ------------------------
CHK=$STAGE/check
mkdir -p "$CHK"
xz -dc .devcarry/core.tar.xz | tar -x -C "$CHK"
env -i LD_LIBRARY_PATH="$CHK/pl/lib" "$CHK/pl/bin/pagellm" --help >/dev/null 2>&1
env -i LD_LIBRARY_PATH="$CHK/pl/lib" "$CHK/pl/bin/pagellm" info \
  -m "$ROOT/tests/data/models/tinystories-280K.gguf" >/dev/null 2>&1
for t in "$CHK/pl/tests/"*; do
  if env -i LD_LIBRARY_PATH="$CHK/pl/lib" ldd "$t" | grep -v -E 'libcuda|libcublas|libcudart' |
    grep -q "not found"; then
    echo "gpu-pack: $(basename "$t") misses libraries:" >&2
    env -i LD_LIBRARY_PATH="$CHK/pl/lib" ldd "$t" | grep "not found" >&2
    exit 1
  fi
done
cat "$NODE_TAR" | xz -dc | tar -x -C "$CHK"
env -i "$CHK/node/bin/node" -e 'process.exit(0)'
echo "closure check: pagellm --help/info and node run with env -i and only the packed lib/"

echo "commit $COMMIT; $n_cuda test_cuda_* binaries; libs: $(ls "$P/lib" | tr '\n' ' ')"
echo "sizes: tree $(mib "$TREE") (tracked + untracked), core.tar.xz $(mib "$CORE")," \
     "node $(mib "$NODE"), limit per call $(mib "$LIMIT")"
du -b .devcarry .devcarry2 2>/dev/null | while read -r b d; do echo "  $d: $(mib "$b")"; done
if [ "$CALLS" = 1 ]; then
  echo "one call: carry [\".devcarry\"], command: scripts/gpu-unpack.sh"
else
  echo "two calls, back to back (the machine stays warm 30 s):"
  echo "  1. carry [\".devcarry2\"], command: scripts/gpu-unpack.sh --store"
  echo "  2. carry [\".devcarry\"],  command: scripts/gpu-unpack.sh [STAGE...]"
fi
