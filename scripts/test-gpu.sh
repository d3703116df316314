#!/usr/bin/env bash
# Every GPU check of the CUDA backend (issue 11), on a machine with an NVIDIA GPU:
#   cuda    tests/cuda/test_cuda_*: each op of the CUDA backend against the CPU backend
#   engine  the engine-level tests with PAGELLM_TEST_DEVICE=cuda (HF goldens, engine invariants,
#           paged forward, bundled model perplexity vs the CPU, speculative decoding, random
#           weights generated on the GPU == model-gen's file uploaded)
#   node    the openai-client server tests (tests/node) against `pagellm serve --device cuda`
#   smoke   `pagellm generate` and `pagellm bench throughput` on the GPU
#   bench   (not in the default set) throughput of random-weight models of real shapes
#           (PL_BENCH_PRESETS: presets of src/model/model_preset.c, default tinyllama-1.1b; also
#           llama-2-7b, llama-3-8b, qwen2.5-7b), generated on the GPU with --load-format dummy
#           (no file, no host copy), beside the peer on the same GPU: HF transformers' batched
#           generate (tools/bench/hf_generate.py). PL_BENCH_EXTRA ("sampling invariant" by
#           default) adds sharegpt-like runs with sampling and with --batch-invariant.
# Usage: scripts/test-gpu.sh [STAGE...]     (default: all four, in that order)
#        scripts/test-gpu.sh --list-tests   (the test binaries it runs, for scripts/gpu-pack.sh)
# It prints a machine line (GPU, driver, CUDA, commit) and writes the whole log to
# $PL_GPU_LOG_DIR as YYYY-MM-DD_HHMM_<gpu>_<commit>.log (default docs/gpu/, or $OUT when that
# is set: the lent device machine's output folder, which comes back; commit it under docs/gpu/). Exit status: 0 all passed,
# 1 something failed, 77 no GPU here (nothing run).
#
# Where things are (defaults: a normal build in $BUILD, default build-gpu/ else build/):
#   PL_BIN           the pagellm binary
#   PL_TEST_BIN_DIR  folder of the test binaries (test_cuda_* may also be in its cuda/ folder)
#   PL_TEST_DATA     built test data (scripts/test-data.py; only chat-templates/ is needed here)
#   NODE             the node binary (default: node on the PATH)
#   PL_COMMIT        commit to report when this is not a git checkout (scripts/gpu-pack.sh sets it)
#   PL_TEST_TIMEOUT  seconds per test binary or node test file (default 300)
#   PL_GPU_DEVICE    the --device / PAGELLM_TEST_DEVICE to test (default cuda; "cpu" with a fake
#                    nvidia-smi on the PATH is a dry run of this script on a machine without GPU)
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD

CUDA_TESTS_GLOB="test_cuda_*"
ENGINE_TESTS="test_hf_golden test_engine test_forward_paged test_default_model test_spec_decode test_model_dummy"
NODE_TESTS="server_api server_errors server_sse server_load spec_decode_server structured load_dummy"

if [ "${1:-}" = "--list-tests" ]; then
  echo "$ENGINE_TESTS"
  exit 0
fi

BUILD=${BUILD:-}
if [ -z "$BUILD" ]; then
  if [ -x build-gpu/pagellm ]; then BUILD=build-gpu; else BUILD=build; fi
fi
PL_BIN=${PL_BIN:-$ROOT/$BUILD/pagellm}
PL_TEST_BIN_DIR=${PL_TEST_BIN_DIR:-$ROOT/$BUILD/tests}
PL_TEST_DATA=${PL_TEST_DATA:-$ROOT/$BUILD/testdata}
NODE=${NODE:-node}
TMO=${PL_TEST_TIMEOUT:-300}
STAGES=${*:-cuda engine node smoke}
DEV=${PL_GPU_DEVICE:-cuda}

# ---- the machine line -------------------------------------------------------------------------
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "GPU tests skipped: no NVIDIA GPU here (nvidia-smi finds none)"
  exit 77
fi
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
DRIVER=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -1)
CUDA_VER=$(nvidia-smi | sed -n 's/.*CUDA Version: *\([0-9.]*\).*/\1/p' | head -1)
NVCC_VER=$(command -v nvcc >/dev/null 2>&1 && nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')
COMMIT=${PL_COMMIT:-$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)}
if [ -z "${PL_COMMIT:-}" ] && git rev-parse HEAD >/dev/null 2>&1 && ! git diff --quiet HEAD 2>/dev/null; then
  COMMIT="$COMMIT-dirty"
fi
SLUG=$(echo "$GPU" | tr -c 'A-Za-z0-9.\n-' '_' | tr -s '_' | sed 's/_$//')
# on the lent machine the log goes straight to $OUT, the folder that comes back
if [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ]; then
  LOGDIR=${PL_GPU_LOG_DIR:-$OUT}
else
  LOGDIR=${PL_GPU_LOG_DIR:-$ROOT/docs/gpu}
fi
mkdir -p "$LOGDIR"
LOG="$LOGDIR/$(date -u +%Y-%m-%d_%H%M)_${SLUG}_${COMMIT}.log"
exec > >(tee "$LOG") 2>&1
MACHINE="machine: GPU $GPU ($(nvidia-smi --query-gpu=memory.total --format=csv,noheader | head -1)), driver $DRIVER, CUDA $CUDA_VER (nvcc ${NVCC_VER:-none}), commit $COMMIT, $(nproc) CPU cores, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "$MACHINE"
echo "stages: $STAGES${PL_BUILD_NOTE:+ ($PL_BUILD_NOTE)}"

PASS=0
FAIL=0
FAILED=""
# run NAME CMD...: one check, its output indented, a PASS/FAIL line with the time it took.
# On a GPU machine a skip (77) is a failure: these tests exist to run here.
run() {
  local name=$1
  shift
  local t0=$(date +%s%N)
  echo "=== $name"
  timeout -k 10 "$TMO" "$@" 2>&1 | sed 's/^/    /'
  local rc=${PIPESTATUS[0]}
  local ms=$((($(date +%s%N) - t0) / 1000000))
  local dt="$((ms / 1000)).$((ms % 1000 / 100)) s"
  if [ "$rc" = 0 ]; then
    PASS=$((PASS + 1))
    echo "--- PASS $name ($dt)"
  else
    FAIL=$((FAIL + 1))
    FAILED="$FAILED $name"
    local why="exit $rc"
    [ "$rc" = 77 ] && why="skipped (exit 77) on a GPU machine"
    [ "$rc" = 124 ] && why="timed out after $TMO s"
    echo "--- FAIL $name ($why, $dt)"
  fi
}

find_test() { # the path of test binary $1, or nothing
  for d in "$PL_TEST_BIN_DIR" "$PL_TEST_BIN_DIR/cuda"; do
    [ -x "$d/$1" ] && { echo "$d/$1"; return; }
  done
}

export PL_SOURCE_DIR=$ROOT PL_TEST_DATA
WORK=$(mktemp -d /tmp/pl-gpu-work.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
# PL_BUILD_DIR: where tests write scratch files and find the pagellm binary (test_spec_decode
# runs $PL_BUILD_DIR/pagellm model-gen)
export PL_BUILD_DIR=$WORK/build
mkdir -p "$PL_BUILD_DIR"
ln -s "$PL_BIN" "$PL_BUILD_DIR/pagellm"

for stage in $STAGES; do
  case $stage in
  cuda)
    found=0
    for d in "$PL_TEST_BIN_DIR" "$PL_TEST_BIN_DIR/cuda"; do
      for t in "$d"/$CUDA_TESTS_GLOB; do
        [ -x "$t" ] || continue
        found=1
        run "cuda/$(basename "$t")" "$t"
        # the SIMT attention kernel (f32 KV, odd head sizes) on every shape too
        # and the opt-in paths not yet timed on a GPU (BENCHMARKS 13i): the decode-only
        # attention instance, the GEMV's split lanes for Q8_0 planes
        case $(basename "$t") in
        test_cuda_ops)
          run "cuda/test_cuda_ops (PAGELLM_CUDA_ATTN=simt)" env PAGELLM_CUDA_ATTN=simt "$t"
          run "cuda/test_cuda_ops (PAGELLM_CUDA_ATTN_DECODE=1)" env PAGELLM_CUDA_ATTN_DECODE=1 "$t" ;;
        test_cuda_quant)
          run "cuda/test_cuda_quant (PAGELLM_CUDA_GEMV_SPLIT=1)" env PAGELLM_CUDA_GEMV_SPLIT=1 "$t" ;;
        esac
      done
    done
    if [ $found = 0 ]; then
      FAIL=$((FAIL + 1)); FAILED="$FAILED cuda/(none)"
      echo "--- FAIL no $CUDA_TESTS_GLOB binaries in $PL_TEST_BIN_DIR (built without CUDA?)"
    fi
    ;;
  engine)
    for n in $ENGINE_TESTS; do
      t=$(find_test "$n")
      if [ -z "$t" ]; then
        FAIL=$((FAIL + 1)); FAILED="$FAILED $n"
        echo "--- FAIL $n: no binary in $PL_TEST_BIN_DIR"
        continue
      fi
      run "engine/$n ($DEV)" env PAGELLM_TEST_DEVICE="$DEV" "$t"
    done
    ;;
  node)
    if ! command -v "$NODE" >/dev/null 2>&1; then
      FAIL=$((FAIL + 1)); FAILED="$FAILED node/(no node)"
      echo "--- FAIL node tests: no node binary ($NODE)"
      continue
    fi
    if [ ! -d tests/node/node_modules/openai ]; then
      FAIL=$((FAIL + 1)); FAILED="$FAILED node/(no openai)"
      echo "--- FAIL node tests: tests/node/node_modules/openai is missing (scripts/node-deps.sh)"
      continue
    fi
    echo "node $("$NODE" --version)"
    command -v curl >/dev/null 2>&1 ||
      echo "note: no curl on this machine: server_sse and server_errors check raw SSE bytes with it"
    for n in $NODE_TESTS; do
      # PL_SERVER_ARGS: extra `pagellm serve` arguments (tests/node/lib/server.mjs).
      # server_load replays requests alone and wants the same text as amid the load: a
      # property the CPU has always and the GPU under --batch-invariant (cuBLAS picks its
      # algorithm per batch size otherwise).
      extra=""
      [ "$n" = server_load ] && extra=" --batch-invariant"
      run "node/$n (serve --device $DEV$extra)" env PL_BIN="$PL_BIN" PL_TEST_DATA="$PL_TEST_DATA" \
        PL_SOURCE_DIR="$ROOT" PL_SERVER_ARGS="--device $DEV$extra" "$NODE" --test "tests/node/$n.test.mjs"
    done
    ;;
  smoke)
    M=$ROOT/models/pagellm-default.gguf
    run "smoke/generate (default model, $DEV)" "$PL_BIN" generate -m "$M" --device "$DEV" \
      -p "Once upon a time" -n 32 --temp 0
    [ "$DEV" = cpu ] && want=CPU || want='NVIDIA\|CUDA'
    run "smoke/generate (tinystories, auto picks the GPU)" sh -c \
      "'$PL_BIN' generate -m '$ROOT/tests/data/models/tinystories-280K.gguf' -p 'Once upon a time' -n 16 --temp 0 2>&1 | tee '$WORK/auto.txt'; grep -qi 'device: .*\($want\)' '$WORK/auto.txt'"
    run "smoke/bench throughput (default model, $DEV)" "$PL_BIN" bench throughput -m "$M" \
      --device "$DEV" --num-prompts 64 --workload sharegpt-like
    ;;
  bench)
    IN=${PL_BENCH_IN:-512} OUTL=${PL_BENCH_OUT:-128} NP=${PL_BENCH_PROMPTS:-256}
    for preset in ${PL_BENCH_PRESETS:-tinyllama-1.1b}; do
      D="--load-format dummy --model-config $preset --dtype bf16"
      for kv in paged static; do
        run "bench/$preset fixed $IN/$OUTL x $NP ($kv)" "$PL_BIN" bench throughput $D \
          --device "$DEV" --workload fixed --input-len "$IN" --output-len "$OUTL" \
          --num-prompts "$NP" --kv-alloc $kv --max-model-len $((IN + OUTL))
      done
      run "bench/$preset sharegpt-like x 1000" "$PL_BIN" bench throughput $D --device "$DEV" \
        --workload sharegpt-like --num-prompts 1000
      # PL_BENCH_EXTRA: sampling steps (the device's sampling reduction) and the batch-invariant
      # mode's cost, on the same workload
      case " ${PL_BENCH_EXTRA-sampling invariant} " in *" sampling "*)
        run "bench/$preset sharegpt-like x 1000, temperature 1 top-p 0.9" "$PL_BIN" bench \
          throughput $D --device "$DEV" --workload sharegpt-like --num-prompts 1000 \
          --temperature 1 --top-p 0.9 ;;
      esac
      case " ${PL_BENCH_EXTRA-sampling invariant} " in *" invariant "*)
        run "bench/$preset sharegpt-like x 1000, --batch-invariant" "$PL_BIN" bench \
          throughput $D --device "$DEV" --workload sharegpt-like --num-prompts 1000 \
          --batch-invariant ;;
      esac
      run "bench/$preset decode 1 stream" "$PL_BIN" bench decode $D --device "$DEV" \
        --prompt-len 128 --gen-len 128 --repeats 2
      for b in ${PL_BENCH_HF_BATCH:-64 256}; do
        run "bench/peer hf-transformers $preset batch $b" env -u LD_LIBRARY_PATH python3 \
          tools/bench/hf_generate.py --preset "$preset" --num-prompts "$NP" --input-len "$IN" \
          --output-len "$OUTL" --batch "$b"
      done
    done
    ;;
  *)
    echo "unknown stage '$stage' (cuda, engine, node, smoke, bench)"
    FAIL=$((FAIL + 1)); FAILED="$FAILED $stage"
    ;;
  esac
done

echo "$MACHINE"
echo "GPU tests: $PASS passed, $FAIL failed${FAILED:+ ($FAILED )}"
echo "log: $LOG"
[ $FAIL = 0 ]
