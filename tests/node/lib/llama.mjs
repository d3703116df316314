// llama.cpp as an independent reference, through node-llama-cpp's prebuilt CPU binaries
// (offline: never builds or downloads). Shared by the node tests and tools/llamacpp/*.mjs
// (which import this file so that `node-llama-cpp` resolves from tests/node/node_modules).
//
// Reference settings: an F32 KV cache and flash attention off. llama.cpp's defaults (F16 KV,
// flash attention on) round Q/K/V to F16 and can flip near-ties in greedy decoding.
import { getLlama, getModuleVersion, LlamaLogLevel } from "node-llama-cpp";

let llamaPromise = null;

/** The process-wide Llama instance (CPU only, prebuilt binaries, quiet unless PL_LLAMA_LOG). */
export function loadLlama() {
  if (!llamaPromise) {
    const level = process.env.PL_LLAMA_LOG || "error";
    llamaPromise = getLlama({
      gpu: false,
      build: "never",
      usePrebuiltBinaries: true,
      skipDownload: true,
      progressLogs: false,
      logLevel: LlamaLogLevel[level] ?? level,
    });
  }
  return llamaPromise;
}

/** Version strings: the npm package, the llama.cpp release it runs (and the build type). */
export async function llamaCppVersions() {
  const llama = await loadLlama();
  return {
    node_llama_cpp: await getModuleVersion(),
    llama_cpp_release: llama.llamaCppRelease.release,
    llama_cpp_repo: llama.llamaCppRelease.repo,
    build: llama.buildType,
  };
}

/** Context options for reference runs (F32 KV cache, no flash attention). */
export function referenceContextOptions({ threads = 2, contextSize = 512, sequences = 1, batchSize } = {}) {
  return {
    contextSize,
    sequences,
    batchSize: batchSize ?? Math.min(contextSize, 512),
    threads: { ideal: threads, min: threads },
    flashAttention: false,
    experimentalKvCacheKeyType: "F32",
    experimentalKvCacheValueType: "F32",
  };
}

/** Load a GGUF on the CPU (mmap). */
export async function loadModel(path) {
  const llama = await loadLlama();
  return llama.loadModel({ modelPath: path, gpuLayers: 0 });
}

/**
 * Greedy decoding from token ids on a fresh sequence: returns the `nTokens` generated ids
 * (continues past EOS, as a fixed-length reference). With `firstStepTop > 0` also returns
 * the top next-token probabilities of the first step ([{id, p}] best first).
 */
export async function greedyDecode(sequence, promptIds, nTokens, { firstStepTop = 0 } = {}) {
  const out = [];
  let first = null;
  if (firstStepTop > 0) {
    const it = sequence.evaluateWithMetadata(promptIds, { probabilities: true }, { temperature: 0, yieldEogToken: true });
    for await (const step of it) {
      if (first === null) {
        first = [];
        for (const [id, p] of step.probabilities) {
          first.push({ id, p });
          if (first.length >= firstStepTop) break;
        }
      }
      out.push(step.token);
      if (out.length >= nTokens) break;
    }
  } else {
    for await (const tok of sequence.evaluate(promptIds, { temperature: 0, yieldEogToken: true })) {
      out.push(tok);
      if (out.length >= nTokens) break;
    }
  }
  return firstStepTop > 0 ? { ids: out, firstStepTop: first } : { ids: out };
}
