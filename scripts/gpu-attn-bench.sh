#!/usr/bin/env bash
# The attention benchmarks of issue 12 on a GPU machine, peers in the same run: pagellm's
# tensor-core kernel ("mma"), its SIMT kernel (PAGELLM_CUDA_ATTN=simt) and torch's SDPA (the best
# of cuDNN / flash / memory-efficient, tools/bench/sdpa_decode.py), at decode shapes (L2
# flushed, against the copy bandwidth) and at causal prefill shapes (against FLOPs).
# Run after scripts/gpu-unpack.sh has unpacked the binaries (it puts bench_cuda_attention in
# $PL_GPU_ROOT/pl/bin). Writes attn-*.txt and the joined tables to $OUT (default /tmp).
# Usage: scripts/gpu-attn-bench.sh [extra bench_cuda_attention options, e.g. --kv f16]
set -u
cd "$(dirname "$0")/.."
DEST=${PL_GPU_ROOT:-/tmp/pl-gpu}
O=${OUT:-/tmp}
B=$DEST/pl/bin/bench_cuda_attention
export LD_LIBRARY_PATH=$DEST/pl/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
DEC="--batches 1,4,16,64,128 --contexts 1024,4096 --iters 20"
PRE="--batches 1,4 --contexts 512,2048 --iters 10 --prefill"
run() { # name, env, args
  echo "=== $2 bench_cuda_attention $3 $*" | cut -c1-200
  env $2 "$B" $3 "${@:4}" | tee "$O/attn-$1.txt"
}
run dec-mma "" "$DEC" "$@"
run dec-simt PAGELLM_CUDA_ATTN=simt "$DEC" "$@"
run dec-mma-fixed "" "$DEC --fixed-split" "$@"
run pre-mma "" "$PRE" "$@"
run pre-simt PAGELLM_CUDA_ATTN=simt "$PRE" "$@"
echo "=== sdpa_decode.py (decode), joined"
python3 tools/bench/sdpa_decode.py --batches 1,4,16,64,128 --contexts 1024,4096 --iters 20 \
  --pagellm "$O/attn-dec-mma.txt" --pagellm "$O/attn-dec-simt.txt" 2>/dev/null | tee "$O/attn-dec-joined.txt"
echo "=== sdpa_decode.py --prefill, joined"
python3 tools/bench/sdpa_decode.py --batches 1,4 --contexts 512,2048 --iters 10 --prefill \
  --pagellm "$O/attn-pre-mma.txt" --pagellm "$O/attn-pre-simt.txt" 2>/dev/null | tee "$O/attn-pre-joined.txt"
