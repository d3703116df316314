#!/usr/bin/env bash
# On the lent GPU machine: the opt-in kernels of BENCHMARKS 13i against the default paths,
# one binary switched by environment variables, every pair in this one call; then the GPU
# tests and goal 2.
#   attention  bench_cuda_attention: default, and with the decode-only instance
#              (PAGELLM_CUDA_ATTN_DECODE=1); twice, alternating; torch SDPA beside
#   GEMV       bench_cuda_matmul Q8_0 at n = 1, 2, 8: default, and with split lanes
#              (PAGELLM_CUDA_GEMV_SPLIT=1); twice, alternating
#   tests      scripts/test-gpu.sh cuda engine (test-gpu.sh runs test_cuda_ops and
#              test_cuda_quant with the opt-ins on too)
#   goal 2     bench throughput, Llama-3-8B shape, sharegpt-like x 1000: default, opt-ins on
#   ncu        the decode instance at 64 x 4096 (when ncu is there)
#   specdraft  issue 17's draft-model timing with --spec-no-backoff (gpu-bench-goals.sh)
# The most important measurement comes first: a call can end early (10 minutes a command).
# Here: scripts/gpu-pack.sh --no-node; device: carry [".devcarry"], command scripts/gpu-ab.sh.
# Writes to $OUT (default /tmp/ab) and prints the key lines.
set -u
cd "$(dirname "$0")/.."
T0=$(date +%s)
el() { echo "[t+$(($(date +%s) - T0))s] $*"; }
O=${OUT:-/tmp/ab}
mkdir -p "$O"
scripts/gpu-unpack.sh --store >"$O/unpack.log" 2>&1
D=${PL_GPU_ROOT:-/tmp/pl-gpu}/pl
export LD_LIBRARY_PATH=$D/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$O/gpu.txt"
echo "binaries of $(cat "$D/COMMIT")"

DEC="--batches 1,4,16,64,128 --contexts 1024,4096 --iters 20"
el "attention"
for r in 1 2; do
  "$D/bin/bench_cuda_attention" $DEC >"$O/attn-new-$r.txt" 2>&1
  PAGELLM_CUDA_ATTN_DECODE=1 "$D/bin/bench_cuda_attention" $DEC >"$O/attn-dec-$r.txt" 2>&1
done
for f in "$O"/attn-*-1.txt; do echo "== $f"; grep -E "^mma" "$f"; done
timeout 150 python3 tools/bench/sdpa_decode.py $DEC --pagellm "$O/attn-dec-1.txt" \
  >"$O/attn-sdpa.txt" 2>&1
tail -14 "$O/attn-sdpa.txt"

el "GEMV"
MM="--types q8_0 --batches 1,2,8 --iters 20"
for r in 1 2; do
  "$D/bin/bench_cuda_matmul" $MM >"$O/mm-new-$r.txt" 2>&1
  PAGELLM_CUDA_GEMV_SPLIT=1 "$D/bin/bench_cuda_matmul" $MM >"$O/mm-split-$r.txt" 2>&1
done
for f in "$O"/mm-*-1.txt; do echo "== $f"; grep -iE "q8_0" "$f" | head -20; done

el "tests"
timeout 240 scripts/gpu-unpack.sh cuda engine >"$O/tests.log" 2>&1
grep -E "^--- |passed|failed" "$O/tests.log" | tail -24

G="bench throughput --load-format dummy --dtype bf16 --device cuda --model-config llama-3-8b --workload sharegpt-like --num-prompts 1000"
goal2() { # name, binary, env...
  local name=$1 bin=$2
  shift 2
  el "goal 2: $name"
  env "$@" timeout 120 "$bin" $G >"$O/goal2-$name.txt" 2>&1
  echo "(exit $?)"
  grep -E "throughput|^elapsed|decode steps" "$O/goal2-$name.txt"
}
goal2 new "$D/bin/pagellm"
goal2 opt-in "$D/bin/pagellm" PAGELLM_CUDA_ATTN_DECODE=1 PAGELLM_CUDA_GEMV_SPLIT=1

if command -v ncu >/dev/null; then
  el "ncu"
  PAGELLM_CUDA_ATTN_DECODE=1 timeout 120 ncu --clock-control none --section SpeedOfLight \
    --section Occupancy --section LaunchStats --launch-count 3 -k regex:attn_mma_k \
    "$D/bin/bench_cuda_attention" --batches 64 --contexts 4096 --iters 2 >"$O/ncu-attn.txt" 2>&1
  grep -E "attn_mma_k|Duration|DRAM Throughput|Achieved Occupancy|Registers Per|Block Limit" \
    "$O/ncu-attn.txt" | head -30
fi
el "specdraft"
OUT=$O timeout 300 scripts/gpu-bench-goals.sh specdraft
el "done"
