#!/usr/bin/env bash
# On the lent GPU machine, from the repository root: unpack what scripts/gpu-pack.sh carried
# (.devcarry/, .devcarry2/) into $PL_GPU_ROOT (default /tmp/pl-gpu, which stays while the
# machine is warm), point LD_LIBRARY_PATH/PATH at it, then run scripts/test-gpu.sh.
# Usage: scripts/gpu-unpack.sh [STAGE...]   unpack and run test-gpu.sh STAGE... (default all)
#        scripts/gpu-unpack.sh --store      only unpack/store what this call carried (the first
#                                           of two calls when node travels in two parts)
#        scripts/gpu-unpack.sh --env        print the environment test-gpu.sh gets, run nothing
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
DEST=${PL_GPU_ROOT:-/tmp/pl-gpu}
mkdir -p "$DEST/parts"
# xz -dc, or python3's lzma where the image has no xz binary
unxz_cat() {
  if command -v xz >/dev/null 2>&1; then
    xz -dc "$1"
  else
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' "$1"
  fi
}

# node, whole or in parts: keep what came, unpack once it is complete
for f in .devcarry/node.tar.xz .devcarry/node.tar.xz.part1 .devcarry2/node.tar.xz.part2 \
  .devcarry/node.sha256 .devcarry2/node.sha256; do
  [ -f "$f" ] && cp "$f" "$DEST/parts/"
done
if [ ! -x "$DEST/node/bin/node" ]; then
  src=""
  if [ -f "$DEST/parts/node.tar.xz" ]; then
    src="$DEST/parts/node.tar.xz"
  elif [ -f "$DEST/parts/node.tar.xz.part1" ] && [ -f "$DEST/parts/node.tar.xz.part2" ]; then
    cat "$DEST/parts/node.tar.xz.part1" "$DEST/parts/node.tar.xz.part2" >"$DEST/parts/node.tar.xz"
    src="$DEST/parts/node.tar.xz"
  fi
  if [ -n "$src" ]; then
    want=$(cat "$DEST/parts/node.sha256" 2>/dev/null)
    got=$(sha256sum "$src" | cut -d' ' -f1)
    if [ -n "$want" ] && [ "$want" != "$got" ]; then
      echo "gpu-unpack: node.tar.xz checksum mismatch (parts from different packs?)"
      rm -f "$src"
    else
      unxz_cat "$src" | tar -x -C "$DEST" && echo "gpu-unpack: node unpacked"
    fi
  else
    echo "gpu-unpack: node incomplete so far (have: $(ls "$DEST/parts" | tr '\n' ' '))"
  fi
fi

if [ -f .devcarry/core.tar.xz ]; then
  rm -rf "$DEST/pl"
  unxz_cat .devcarry/core.tar.xz | tar -x -C "$DEST" && echo "gpu-unpack: binaries unpacked ($(cat "$DEST/pl/COMMIT"))"
fi
[ "${1:-}" = "--store" ] && { echo "gpu-unpack: stored in $DEST"; exit 0; }
if [ ! -x "$DEST/pl/bin/pagellm" ]; then
  echo "gpu-unpack: no binaries in $DEST: carry .devcarry (made by scripts/gpu-pack.sh)"
  exit 1
fi

export LD_LIBRARY_PATH="$DEST/pl/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# cuBLAS is the machine's own (not carried): its toolkit folder, in case ldconfig lacks it
for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -d "$d" ] && LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$d"
done
[ -x "$DEST/node/bin/node" ] && export PATH="$DEST/node/bin:$PATH" NODE="$DEST/node/bin/node"
export PL_BIN="$DEST/pl/bin/pagellm" PL_TEST_BIN_DIR="$DEST/pl/tests" \
  PL_TEST_DATA="$DEST/pl/testdata" PL_COMMIT="$(cat "$DEST/pl/COMMIT")" \
  PL_BUILD_NOTE="$(cat "$DEST/pl/CHECKS" 2>/dev/null || echo "engine tests without PL_CHECKS")"
# node resolves packages from tests/node/node_modules (ESM ignores NODE_PATH)
mkdir -p tests/node/node_modules
for pkg in "$DEST"/pl/node_modules/*; do
  [ -e "tests/node/node_modules/${pkg##*/}" ] || ln -sfn "$pkg" "tests/node/node_modules/${pkg##*/}"
done
if [ "${1:-}" = "--env" ]; then
  env | grep -E '^(LD_LIBRARY_PATH|PATH|NODE|PL_)='
  exit 0
fi
if ! "$PL_BIN" --help >/dev/null 2>&1; then
  echo "gpu-unpack: $PL_BIN does not start:"
  "$PL_BIN" --help 2>&1 | head -5
  ldd "$PL_BIN" | grep "not found"
  exit 1
fi
exec scripts/test-gpu.sh "$@"
