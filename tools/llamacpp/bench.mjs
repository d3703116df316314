#!/usr/bin/env node
// llama.cpp side-by-side benchmark driver (prebuilt llama.cpp through node-llama-cpp, CPU).
// Prints one JSON object with:
//   prefill  - single stream: one batch of --prefill random prompt tokens, tokens/s
//   decode   - single stream after that prompt: --decode greedy tokens one by one, tokens/s
//   batched  - for each K in --batch: K sequences in one context, each first prefilled with its
//              own --batch-prompt tokens (not timed), then all decode --batch-gen tokens in
//              parallel (llama.cpp batches one token of every sequence per llama_decode);
//              aggregate generated tokens/s and the speed-up over K = 1.
// Every phase runs --reps times (fresh context) and reports the best. Generation never stops
// at EOS. Token ids are fixed pseudo-random picks from the normal (non-special) range.
//
// usage: node tools/llamacpp/bench.mjs --model FILE.gguf [--threads 2] [--prefill 128]
//          [--decode 128] [--batch 1,4,16,32] [--batch-prompt 16] [--batch-gen 32]
//          [--kv f16|f32] [--flash auto|on|off] [--reps 1] [--skip prefill,decode,batched]
// Defaults are llama.cpp's own (F16 KV cache, flash attention auto): what a user gets.
import { statSync } from "node:fs";
import { parseArgs } from "node:util";
import { performance } from "node:perf_hooks";
import { loadModel, llamaCppVersions } from "../../tests/node/lib/llama.mjs";

const { values: a } = parseArgs({
  options: {
    model: { type: "string" },
    threads: { type: "string", default: "2" },
    prefill: { type: "string", default: "128" },
    decode: { type: "string", default: "128" },
    batch: { type: "string", default: "1,4,16,32" },
    "batch-prompt": { type: "string", default: "16" },
    "batch-gen": { type: "string", default: "32" },
    kv: { type: "string", default: "f16" },
    flash: { type: "string", default: "auto" },
    reps: { type: "string", default: "1" },
    skip: { type: "string", default: "" },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (a.help || !a.model) {
  console.error("usage: node tools/llamacpp/bench.mjs --model FILE.gguf [--threads N] [--prefill N] [--decode N]\n" +
    "        [--batch 1,4,16,32] [--batch-prompt N] [--batch-gen N] [--kv f16|f32] [--flash auto|on|off] [--reps N]\n" +
    "        [--skip prefill,decode,batched]");
  process.exit(a.help ? 0 : 2);
}
const threads = Number(a.threads);
const nPrefill = Number(a.prefill);
const nDecode = Number(a.decode);
const ks = a.batch.split(",").filter(Boolean).map(Number);
const bPrompt = Number(a["batch-prompt"]);
const bGen = Number(a["batch-gen"]);
const reps = Math.max(1, Number(a.reps));
const skip = new Set(a.skip.split(",").filter(Boolean));
const kvType = a.kv.toUpperCase();
const flash = a.flash === "on" ? true : a.flash === "off" ? false : "auto";

// Deterministic token picks (LCG), skipping the first 259 ids (specials and byte tokens of
// SentencePiece vocabularies; harmless for others).
function tokens(n, vocab, seed) {
  let s = BigInt(seed) * 6364136223846793005n + 1442695040888963407n;
  const out = [];
  const lo = Math.min(259, vocab - 1);
  for (let i = 0; i < n; i++) {
    s = (s * 6364136223846793005n + 1442695040888963407n) & 0xffffffffffffffffn;
    out.push(lo + Number((s >> 33n) % BigInt(vocab - lo)));
  }
  return out;
}

const model = await loadModel(a.model);
const meta = model.fileInfo.metadata;
const vocab = meta?.tokenizer?.ggml?.tokens?.length || meta?.[meta?.general?.architecture]?.vocab_size || 32000;

function ctxOptions(contextSize, sequences) {
  return {
    contextSize,
    sequences,
    batchSize: Math.max(512, Math.min(2048, nPrefill, contextSize)),
    threads: { ideal: threads, min: threads },
    flashAttention: flash,
    experimentalKvCacheKeyType: kvType,
    experimentalKvCacheValueType: kvType,
  };
}

const result = {
  model: a.model,
  file_bytes: statSync(a.model).size,
  architecture: meta?.general?.architecture,
  vocab,
  llama_cpp_version: await llamaCppVersions(),
  settings: { threads, kv_cache_type: kvType.toLowerCase(), flash_attention: String(flash), reps },
};
result.n_params = model.fileInfo.tensorInfo?.reduce((s, t) => s + t.dimensions.reduce((p, d) => p * Number(d), 1), 0);

async function warmup(seq) {
  await seq.evaluateWithoutGeneratingNewTokens(tokens(4, vocab, 99));
  await seq.clearHistory();
}

if (!skip.has("prefill") || !skip.has("decode")) {
  let bestPrefill = Infinity, bestDecode = Infinity;
  for (let r = 0; r < reps; r++) {
    const ctx = await model.createContext(ctxOptions(nPrefill + nDecode + 8, 1));
    const seq = ctx.getSequence();
    await warmup(seq);
    const prompt = tokens(nPrefill, vocab, 1);
    let t0 = performance.now();
    await seq.evaluateWithoutGeneratingNewTokens(prompt.slice(0, -1));
    const tPrefill = (performance.now() - t0) / 1000;
    bestPrefill = Math.min(bestPrefill, tPrefill);
    if (!skip.has("decode")) {
      // the first generated token needs the last prompt token's logits; time only the
      // steps that each evaluate exactly one new token
      const it = seq.evaluate([prompt[prompt.length - 1]], { temperature: 0, yieldEogToken: true });
      await it.next();
      let n = 0;
      t0 = performance.now();
      while (n < nDecode) {
        const s = await it.next();
        if (s.done) break;
        n++;
      }
      const tDecode = (performance.now() - t0) / 1000;
      await it.return();
      if (n === nDecode) bestDecode = Math.min(bestDecode, tDecode);
    }
    await ctx.dispose();
  }
  if (!skip.has("prefill"))
    result.prefill = { tokens: nPrefill - 1, seconds: +bestPrefill.toFixed(4), tok_s: +((nPrefill - 1) / bestPrefill).toFixed(2) };
  if (!skip.has("decode"))
    result.decode = {
      tokens: nDecode, context_start: nPrefill, seconds: +bestDecode.toFixed(4),
      tok_s: +(nDecode / bestDecode).toFixed(2), ms_per_token: +((bestDecode * 1000) / nDecode).toFixed(2),
    };
}

if (!skip.has("batched")) {
  result.batched = [];
  let base = null;
  for (const k of ks) {
    let best = Infinity;
    for (let r = 0; r < reps; r++) {
      const ctx = await model.createContext(ctxOptions(bPrompt + bGen + 8, k));
      const seqs = Array.from({ length: k }, () => ctx.getSequence());
      await warmup(seqs[0]);
      const prompts = seqs.map((_, i) => tokens(bPrompt, vocab, 1000 + i));
      await Promise.all(seqs.map((s, i) => s.evaluateWithoutGeneratingNewTokens(prompts[i].slice(0, -1))));
      // first token of every sequence (evaluates each prompt's last token) is not timed
      const its = seqs.map((s, i) => s.evaluate([prompts[i][bPrompt - 1]], { temperature: 0, yieldEogToken: true }));
      await Promise.all(its.map((it) => it.next()));
      const t0 = performance.now();
      await Promise.all(its.map(async (it) => {
        for (let n = 0; n < bGen; n++) {
          const s = await it.next();
          if (s.done) throw new Error("generation ended early");
        }
      }));
      best = Math.min(best, (performance.now() - t0) / 1000);
      await Promise.all(its.map((it) => it.return()));
      await ctx.dispose();
    }
    const tokS = (k * bGen) / best;
    if (base === null && k === 1) base = tokS;
    result.batched.push({
      k, prompt: bPrompt, gen: bGen, seconds: +best.toFixed(4), tok_s: +tokS.toFixed(2),
      speedup_vs_k1: base ? +(tokS / base).toFixed(2) : null,
    });
  }
}

await model.dispose();
console.log(JSON.stringify(result, null, 1));
process.exit(0);
