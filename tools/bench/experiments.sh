#!/bin/bash
# Reproduces the numbers of docs/BENCHMARKS.md: every experiment side by side in one run, on
# this machine, with JSON results and SVG plots in $OUT (default docs/bench).
#   tools/bench/experiments.sh [all|decode|paged|concurrency|prefix|attention|plots|again]
# Needs: build/pagellm (make), tests/node/node_modules (scripts/node-deps.sh) for llama.cpp.
# Random-weight models are generated under $MODELS (default /tmp/pagellm-bench, ~3.5 GB).
set -euo pipefail
cd "$(dirname "$0")/../.."
B=build/pagellm
OUT=${OUT:-docs/bench}
MODELS=${MODELS:-/tmp/pagellm-bench}
T=${THREADS:-2}
WHAT=${1:-all}
mkdir -p "$OUT" "$MODELS"
export PAGELLM_LOG=warn

gen() { # name, model-gen args...
  local f="$MODELS/$1.gguf"
  shift
  [ -f "$f" ] || $B model-gen -q -o "$f" "$@"
}
gen tinyllama-f16 --preset tinyllama-1.1b --type f16
gen tinyllama-q8_0 --preset tinyllama-1.1b --type q8_0
# A 56M-parameter Llama (Q8_0, context 2048) whose KV cache binds like a laptop's
SMALL=(--n-embd 512 --n-layer 8 --n-head 8 --n-head-kv 4 --n-ff 1408 --n-vocab 32000 --n-ctx 2048 --type q8_0)
gen small-q8_0 "${SMALL[@]}"

run_decode() { # 1 + 5: single-stream decode vs bandwidth, and llama.cpp on the same files
  for t in f16 q8_0; do
    m="$MODELS/tinyllama-$t.gguf"
    $B bench decode -m "$m" -t "$T" --prompt-len 128 --gen-len 64 --repeats 2 --max-num-seqs 32 \
      --kv-cache-memory 512MiB --max-model-len 256 --json > "$OUT/decode-pagellm-$t.json"
    for k in 1 4 16 32; do
      $B bench throughput -m "$m" -t "$T" --workload fixed --input-len 16 --output-len 32 \
        --num-prompts $k --max-num-seqs 32 --kv-cache-memory 512MiB --max-model-len 256 \
        --json > "$OUT/batched-pagellm-$t-$k.json"
    done
    node tools/llamacpp/bench.mjs --model "$m" --threads "$T" --prefill 128 --decode 64 \
      --batch 1,4,16,32 --batch-prompt 16 --batch-gen 32 --reps 2 > "$OUT/llamacpp-$t.json"
  done
}

run_paged() { # 2: paged vs static on one KV budget
  # TinyLlama-shaped Q8_0, max_model_len 2048, 320 MiB of KV (7280 tokens: 3 static slots)
  for mode in paged static; do
    $B bench throughput -m "$MODELS/tinyllama-q8_0.gguf" -t "$T" --workload sharegpt-like \
      --num-prompts 32 --max-model-len 2048 --kv-cache-memory 320MiB --kv-alloc $mode \
      --seed 1 --json > "$OUT/paged-vs-static-tinyllama-$mode.json"
  done
  # the 56M model, 64 MiB of KV (4096 tokens: 2 static slots)
  for mode in paged static; do
    $B bench throughput -m "$MODELS/small-q8_0.gguf" -t "$T" --workload sharegpt-like \
      --num-prompts 64 --max-model-len 2048 --kv-cache-memory 64MiB --kv-alloc $mode \
      --seed 1 --json > "$OUT/paged-vs-static-$mode.json"
  done
}

serve_start() { # args: extra server options
  $B serve -m "$MODELS/small-q8_0.gguf" -t "$T" --port 0 --max-model-len 2048 \
    --kv-cache-memory 256MiB --served-model-name small "$@" > "$OUT/.serve.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 100); do
    PORT=$(grep -o 'http://127.0.0.1:[0-9]*' "$OUT/.serve.log" | head -1 | sed 's/.*://') || true
    [ -n "${PORT:-}" ] && curl -sf "http://127.0.0.1:$PORT/health" > /dev/null && return 0
    sleep 0.3
  done
  echo "server did not start" >&2
  cat "$OUT/.serve.log" >&2
  return 1
}
serve_stop() { kill -INT $SERVER; wait $SERVER || true; }

run_concurrency() { # 3: continuous batching vs one at a time; throughput vs concurrency
  serve_start
  for c in 1 2 4 8 16 32 64 128; do
    n=$((c * 4 < 32 ? 32 : c * 4))
    $B bench serve --base-url "http://127.0.0.1:$PORT" --workload alpaca-like --num-prompts $n \
      --max-concurrency $c --n-vocab 32000 --seed 2 --label "pagellm continuous" \
      --json "$OUT/concurrency-$c.json" > /dev/null
  done
  serve_stop
  serve_start --max-num-seqs 1
  $B bench serve --base-url "http://127.0.0.1:$PORT" --workload alpaca-like --num-prompts 64 \
    --max-concurrency 32 --n-vocab 32000 --seed 2 --label "one request at a time" \
    --json "$OUT/concurrency-serial-32.json" > /dev/null
  serve_stop
}

run_prefix() { # 4: shared-prefix workload with and without prefix caching
  for pc in on off; do
    opt=()
    [ $pc = off ] && opt=(--no-prefix-caching)
    serve_start "${opt[@]}"
    $B bench serve --base-url "http://127.0.0.1:$PORT" --workload shared-prefix --prefix-len 1024 \
      --num-prompts 64 --max-concurrency 16 --n-vocab 32000 --seed 3 --label "prefix caching $pc" \
      --json "$OUT/prefix-$pc.json" > /dev/null
    curl -s "http://127.0.0.1:$PORT/metrics" | grep -E '^pagellm:(prefix_cache|kv_blocks)' \
      > "$OUT/prefix-$pc.metrics" || true
    serve_stop
    $B bench throughput -m "$MODELS/small-q8_0.gguf" -t "$T" --workload shared-prefix \
      --prefix-len 1024 --num-prompts 64 --max-model-len 2048 --kv-cache-memory 256MiB \
      "${opt[@]}" --seed 3 --json > "$OUT/prefix-throughput-$pc.json"
  done
}

run_attention() { # 4 (kernel): paged vs contiguous decode attention
  {
    build/bench/bench_attention 16 1024 "$T"
    build/bench/bench_attention 4 2048 "$T"
    build/bench/bench_attention 64 512 "$T"
  } > "$OUT/attention.txt"
}

run_again() { # issue 13 "measure again": paged vs static, 3 models x 3 workloads, binding budgets
  local TS=tests/data/models/tinystories-280K.gguf
  one() { # label, model, budget, max_model_len, prompts, workload args...
    local label=$1 m=$2 kv=$3 mml=$4 n=$5
    shift 5
    for mode in paged static; do
      $B bench throughput -m "$m" -t "$T" --max-model-len "$mml" --kv-cache-memory "$kv" \
        --num-prompts "$n" --kv-alloc $mode --seed 1 --json "$@" > "$OUT/again-$label-$mode.json"
    done
  }
  # TinyStories-280K: 1 MiB = 816 tokens, 3 static slots of 256 (the issue's check)
  one ts-fixed $TS 1MiB 256 64 --workload fixed --input-len 32 --output-len 96
  one ts-sharegpt $TS 1MiB 256 64 --workload sharegpt-like
  one ts-prefix $TS 1MiB 256 64 --workload shared-prefix --prefix-len 96
  # the 56M model: 64 MiB = 4096 tokens, 2 static slots of 2048
  one small-fixed "$MODELS/small-q8_0.gguf" 64MiB 2048 64 --workload fixed --input-len 128 --output-len 384
  one small-sharegpt "$MODELS/small-q8_0.gguf" 64MiB 2048 64 --workload sharegpt-like
  one small-prefix "$MODELS/small-q8_0.gguf" 64MiB 2048 64 --workload shared-prefix --prefix-len 512
  # TinyLlama shape: 320 MiB = 7280 tokens, 3 static slots of 2048
  one tinyllama-sharegpt "$MODELS/tinyllama-q8_0.gguf" 320MiB 2048 16 --workload sharegpt-like
  # online: 64 concurrent clients against the server, the 56M model on the same 64 MiB
  for mode in paged static; do
    $B serve -m "$MODELS/small-q8_0.gguf" -t "$T" --port 0 --max-model-len 2048 \
      --kv-cache-memory 64MiB --kv-alloc $mode --served-model-name small > "$OUT/.serve.log" 2>&1 &
    SERVER=$!
    PORT=
    for _ in $(seq 100); do
      PORT=$(grep -o 'http://127.0.0.1:[0-9]*' "$OUT/.serve.log" | head -1 | sed 's/.*://') || true
      [ -n "$PORT" ] && curl -sf "http://127.0.0.1:$PORT/health" > /dev/null && break
      sleep 0.3
    done
    $B bench serve --base-url "http://127.0.0.1:$PORT" --workload sharegpt-like --num-prompts 128 \
      --max-concurrency 64 --n-vocab 32000 --seed 1 --label "$mode" \
      --json "$OUT/again-small-serve64-$mode.json" > /dev/null
    serve_stop
  done
}

run_plots() {
  node tools/bench/plot.mjs --out "$OUT" "$OUT"/concurrency-*.json "$OUT"/paged-vs-static-*.json
}

case $WHAT in
  all) run_decode; run_paged; run_concurrency; run_prefix; run_attention; run_plots ;;
  decode) run_decode ;;
  paged) run_paged ;;
  concurrency) run_concurrency ;;
  prefix) run_prefix ;;
  attention) run_attention ;;
  plots) run_plots ;;
  again) run_again ;;
  *) echo "unknown experiment $WHAT" >&2; exit 2 ;;
esac
git rev-parse --short HEAD > "$OUT/commit.txt"
lscpu | grep -E 'Model name|^CPU\(s\)' > "$OUT/machine.txt"
