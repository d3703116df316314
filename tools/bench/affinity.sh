#!/bin/sh
# Prefix-affinity vs round-robin routing through HAProxy (deploy/haproxy.cfg), 3 replicas of
# the bundled model on 127.0.0.1, same requests (same seeds) for both routings. Each
# (workload, routing) pair gets freshly started replicas, so no run inherits another's cache.
# Usage: tools/bench/affinity.sh [OUT_DIR]   (default docs/bench)
# Knobs (environment): N (requests per run, 120), CONC (concurrency, 6), KV (per-replica KV
# cache, 16MiB), THREADS (per replica, 1), K (system prompts, 12).
set -eu
cd "$(dirname "$0")/../.."
OUT=${1:-docs/bench}
N=${N:-120} CONC=${CONC:-6} KV=${KV:-16MiB} THREADS=${THREADS:-1} K=${K:-12}
BIN=build/pagellm
P0=${P0:-18400}
mkdir -p "$OUT"
export PAGELLM_LISTEN=127.0.0.1:$P0 PAGELLM_LISTEN_RR=127.0.0.1:$((P0 + 10))
export PAGELLM_R1=127.0.0.1:$((P0 + 1)) PAGELLM_R2=127.0.0.1:$((P0 + 2)) PAGELLM_R3=127.0.0.1:$((P0 + 3))
PIDS=""
HA=""
cleanup() {
  for p in $PIDS $HA; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

start_replicas() {
  PIDS=""
  for i in 1 2 3; do
    "$BIN" serve --port $((P0 + i)) --threads "$THREADS" --kv-cache-memory "$KV" \
      >"$OUT/.replica$i.log" 2>&1 &
    PIDS="$PIDS $!"
  done
  for i in 1 2 3; do
    until curl -sf "http://127.0.0.1:$((P0 + i))/health" >/dev/null; do sleep 0.2; done
  done
  sleep 3 # HAProxy: rise 2 x inter 1s before a restarted replica counts as up
}
stop_replicas() {
  for p in $PIDS; do kill "$p"; done
  for p in $PIDS; do wait "$p" || true; done
  PIDS=""
}

haproxy -db -f deploy/haproxy.cfg -f tools/bench/haproxy-roundrobin.cfg >"$OUT/.haproxy.log" 2>&1 &
HA=$!
{
  echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo ' (+ local changes)')"
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"
  echo "haproxy: $(haproxy -v | head -1)"
  echo "replicas: 3 x pagellm serve --threads $THREADS --kv-cache-memory $KV (bundled model)"
  echo "load: N=$N requests, concurrency $CONC, K=$K system prompts"
} >"$OUT/affinity-machine.txt"
for wl in many-system-prompts multi-turn; do
  for routing in roundrobin affinity; do
    start_replicas
    port=$P0
    [ "$routing" = roundrobin ] && port=$((P0 + 10))
    "$BIN" bench serve --base-url "http://127.0.0.1:$port" --endpoint /v1/chat/completions \
      --workload "$wl" --num-system-prompts "$K" --num-prompts "$N" --max-concurrency "$CONC" \
      --seed 1 --label "$routing" --json "$OUT/affinity-$wl-$routing.json" \
      --metrics-url "http://$PAGELLM_R1" --metrics-url "http://$PAGELLM_R2" \
      --metrics-url "http://$PAGELLM_R3" >"$OUT/affinity-$wl-$routing.txt"
    stop_replicas
  done
done
# summary: hit rate, TTFT mean/p50/p99, throughput, affinity / round-robin ratios
node -e '
const fs = require("fs"), out = process.argv[1];
for (const wl of ["many-system-prompts", "multi-turn"]) {
  const r = {};
  for (const k of ["roundrobin", "affinity"]) r[k] = JSON.parse(fs.readFileSync(`${out}/affinity-${wl}-${k}.json`));
  console.log(`${wl}:`);
  for (const k of ["roundrobin", "affinity"]) {
    const j = r[k];
    console.log(`  ${k.padEnd(10)} hit rate ${(100 * j.prefix_cache_hit_rate).toFixed(1)}%  TTFT mean ${j.mean_ttft_ms.toFixed(0)} ms  p50 ${j.p50_ttft_ms.toFixed(0)} ms  p99 ${j.p99_ttft_ms.toFixed(0)} ms  ${j.request_throughput.toFixed(2)} req/s  ${j.output_throughput.toFixed(0)} out tok/s  failed ${j.failed}`);
  }
  console.log(`  affinity / round-robin: hit rate x${(r.affinity.prefix_cache_hit_rate / r.roundrobin.prefix_cache_hit_rate).toFixed(2)}, mean TTFT x${(r.roundrobin.mean_ttft_ms / r.affinity.mean_ttft_ms).toFixed(2)} lower, throughput x${(r.affinity.request_throughput / r.roundrobin.request_throughput).toFixed(2)}`);
}' "$OUT" | tee "$OUT/affinity-summary.txt"
