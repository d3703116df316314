#!/usr/bin/env bash
# The serving goals of issue 12 on a GPU machine, with random-weight models of real shapes
# (--load-format dummy: no files). Run after scripts/gpu-unpack.sh has unpacked the binaries.
#   serve8b   goal 2: Llama-3-8B shape, sharegpt-like x 1000, greedy; the tensor-core attention
#             and the SIMT one (PAGELLM_CUDA_ATTN=simt) back to back
#   static7b  goal 3: Llama-2-7B shape (MHA), max_model_len 4096, paged vs static KV, on
#             sharegpt-like and long-context (NUM prompts each, default 500)
#   prefix    goal 4: shared-prefix workload, prefix caching on vs off (Llama-3-8B shape)
#   profile   PAGELLM_PROFILE=1 on the goal-2 workload (400 prompts): GPU time per op
#   profile7b the same for goal 3's paged run (Llama-2-7B shape, NUM prompts)
#   graphs    decode steps replayed from CUDA graphs vs --enforce-eager, Llama-3-8B shape:
#             decode1, b64, then goal 2's workload eager, with graphs, and with 512 sequences
#   decode1   one stream, eager vs graphs
#   b64       64 streams, eager vs graphs, each also profiled (host overhead per step)
#   join      q/k/v and gate/up run as one GEMM each (weight_join) against apart
#             (PAGELLM_CUDA_JOIN=0), Llama-3-8B shape: one stream, 64 streams, goal 2's workload
#   specdraft issue 17: one stream of the Llama-3-8B shape alone and with a llama-3.2-1b draft
#             (random weights: acceptance is near 0, and --spec-no-backoff keeps it proposing,
#             so the run gives the cost of a step of k drafts + one verification that
#             acceptance-limited projections need), and the draft alone
#   mha       decode attention at the Llama-2-7B heads (MHA) against torch's SDPA
#   matmul    bench_cuda_matmul: the matmul op per weight type, shape and batch size against
#             the copy bandwidth and cuBLAS's peak
# Each run's output goes to $OUT/goal-*.txt (default /tmp) and its summary lines to stdout.
# Usage: scripts/gpu-bench-goals.sh [SECTION...]   (default: serve8b static7b prefix profile)
set -u
cd "$(dirname "$0")/.."
DEST=${PL_GPU_ROOT:-/tmp/pl-gpu}
O=${OUT:-/tmp}
P=${PL_GPU_BIN:-$DEST/pl/bin/pagellm} # PL_GPU_BIN: another build, e.g. a baseline carried beside
NUM=${NUM:-500}
export LD_LIBRARY_PATH=$DEST/pl/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
D="bench throughput --load-format dummy --dtype bf16 --device cuda"
run() { # name, timeout, env, args...
  local name=$1 tmo=$2 envs=$3
  shift 3
  echo "=== $envs pagellm $*"
  env $envs timeout "$tmo" "$P" "$@" >"$O/goal-$name.txt" 2>&1
  echo "(exit $?)"
  grep -E "^workload|^elapsed|throughput |decode steps|^decode  |^tail  |concurrency|kv utilisation|preemptions|ttft|prefix cache|^effective|^bandwidth" \
    "$O/goal-$name.txt"
}
for s in ${*:-serve8b static7b prefix profile}; do
  case $s in
  serve8b)
    run 8b-mma 150 "" $D --model-config llama-3-8b --workload sharegpt-like --num-prompts 1000
    run 8b-simt 150 PAGELLM_CUDA_ATTN=simt $D --model-config llama-3-8b --workload sharegpt-like \
      --num-prompts 1000 ;;
  static7b)
    for w in ${STATIC_WORKLOADS:-sharegpt-like long-context}; do
      for k in paged static; do
        run "7b-$w-$k" 150 "" $D --model-config llama-2-7b --max-model-len 4096 --workload "$w" \
          --num-prompts "$NUM" --kv-alloc "$k"
      done
    done ;;
  prefix)
    run prefix-on 120 "" $D --model-config llama-3-8b --workload shared-prefix --num-prompts "$NUM"
    run prefix-off 120 "" $D --model-config llama-3-8b --workload shared-prefix \
      --num-prompts "$NUM" --no-prefix-caching ;;
  graphs)
    "$0" decode1 b64
    for m in "--enforce-eager" "" "--max-num-seqs 512"; do
      run "8b$(echo $m | tr -d ' -')" 180 "" $D --model-config llama-3-8b --workload sharegpt-like \
        --num-prompts 1000 $m
    done ;;
  decode1)
    for m in "--enforce-eager" ""; do
      run "decode1${m:+-eager}" 120 "" bench decode --load-format dummy --dtype bf16 --device cuda \
        --model-config llama-3-8b --prompt-len 128 --gen-len 256 --repeats 2 $m
    done ;;
  b64)
    for m in "--enforce-eager" ""; do
      run "b64${m:+-eager}" 120 "" $D --model-config llama-3-8b --workload fixed --input-len 512 \
        --output-len 256 --num-prompts 64 $m
      run "b64${m:+-eager}-profile" 120 PAGELLM_PROFILE=1 $D --model-config llama-3-8b \
        --workload fixed --input-len 512 --output-len 256 --num-prompts 64 $m
      sed -n '/PAGELLM_PROFILE/,$p' "$O/goal-b64${m:+-eager}-profile.txt"
    done ;;
  join)
    for j in 0 1; do
      run "decode1-join$j" 120 PAGELLM_CUDA_JOIN=$j bench decode --load-format dummy --dtype bf16 \
        --device cuda --model-config llama-3-8b --prompt-len 128 --gen-len 256 --repeats 2
      run "b64-join$j" 120 PAGELLM_CUDA_JOIN=$j $D --model-config llama-3-8b --workload fixed \
        --input-len 512 --output-len 256 --num-prompts 64
      run "8b-join$j" 180 PAGELLM_CUDA_JOIN=$j $D --model-config llama-3-8b \
        --workload sharegpt-like --num-prompts 1000
    done ;;
  specdraft)
    S="bench decode --load-format dummy --dtype bf16 --device cuda --prompt-len 128 --gen-len 256 --repeats 2"
    run spec-target 150 "" $S --model-config llama-3-8b
    run spec-draft4 150 "" $S --model-config llama-3-8b --speculative draft \
      --draft-model llama-3.2-1b --num-speculative-tokens 4 --spec-no-backoff
    run spec-draftalone 120 "" $S --model-config llama-3.2-1b ;;
  matmul)
    echo "=== bench_cuda_matmul"
    "$DEST/pl/bin/bench_cuda_matmul" --iters 10 | tee "$O/goal-matmul.txt" ;;
  mha)  # goal 3's attention: Llama-2-7B heads (MHA, 32 / 32), against torch's SDPA
    A="--heads 32 --kv-heads 32 --batches 1,16,64,128 --contexts 1024,4096 --iters 20"
    echo "=== bench_cuda_attention $A"
    "$DEST/pl/bin/bench_cuda_attention" $A >"$O/attn-mha.txt"
    python3 tools/bench/sdpa_decode.py $A --pagellm "$O/attn-mha.txt" 2>/dev/null |
      tee "$O/attn-mha-joined.txt" ;;
  profile7b)
    run profile7b 150 PAGELLM_PROFILE=1 $D --model-config llama-2-7b --max-model-len 4096 \
      --workload sharegpt-like --num-prompts "$NUM"
    sed -n '/PAGELLM_PROFILE/,$p' "$O/goal-profile7b.txt" ;;
  profile)
    run profile 150 PAGELLM_PROFILE=1 $D --model-config llama-3-8b --workload sharegpt-like \
      --num-prompts 400
    sed -n '/PAGELLM_PROFILE/,$p' "$O/goal-profile.txt" ;;
  *) echo "unknown section $s" >&2; exit 2 ;;
  esac
done
