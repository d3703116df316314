#!/usr/bin/env node
// Greedy-decoding goldens from llama.cpp (prebuilt, through node-llama-cpp) for the TinyStories
// GGUFs in tests/data/models: for each prompt (token ids, BOS included) the ids of N greedily
// generated tokens, plus the top raw logits of the first step. Written to
// tests/golden/llamacpp/tinystories-{f32,f16}.json. See tests/golden/llamacpp/README.md.
//
// Reference settings: F32 KV cache, flash attention off, 2 threads, a fresh context per prompt,
// the whole prompt in one batch, then one token per step. Generation continues past EOS (id 2)
// (ignore_eos), so every case has exactly N ids; `first_eos` gives the index of the first EOS.
//
// usage: node tools/llamacpp/goldens.mjs [--data DIR] [--out DIR] [--n 200] [--check]
//   --check: regenerate and compare with the files in --out instead of writing them.
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { loadModel, referenceContextOptions, llamaCppVersions } from "../../tests/node/lib/llama.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const { values: args } = parseArgs({
  options: {
    data: { type: "string", default: join(root, "tests/data") },
    out: { type: "string", default: join(root, "tests/golden/llamacpp") },
    n: { type: "string", default: "200" },
    threads: { type: "string", default: "2" },
    check: { type: "boolean", default: false },
  },
});
const N = Number(args.n);
const THREADS = Number(args.threads);
const CONTEXT = 256; // the model's training context: prompt + N must fit
const TOP = 10;

const MODELS = [
  { tag: "f32", file: "models/tinystories-280K.gguf" },
  { tag: "f16", file: "models/tinystories-280K-f16.gguf" },
];

// Prompts as text, tokenized once with llama.cpp (BOS + SentencePiece) on the F32 model; the
// ids are what the goldens record. Two more cases are cut from the longest prompt at exactly
// 16 and 17 tokens: one fills a 16-token KV block exactly, the next spills into a second one.
const TEXTS = [
  null, // BOS only
  "Once upon a time",
  "The cat",
  "One day, a little boy named Tim went to the park with his mom. He saw a big red ball.",
  "Lily and Ben were best friends. They liked to play in the garden. One day, they found a shiny box. They opened it and",
];

async function promptIds(model) {
  const cases = TEXTS.map((t) => (t === null ? [1] : [1, ...model.tokenize(t)]));
  const longest = cases[cases.length - 1];
  cases.push(longest.slice(0, 16), longest.slice(0, 17));
  return cases;
}

async function runCase(model, ids) {
  const ctx = await model.createContext(referenceContextOptions({ threads: THREADS, contextSize: CONTEXT, sequences: 1 }));
  try {
    const seq = ctx.getSequence();
    // Step 1 through the controlled API to read the raw logits of the best tokens.
    const items = ids.map((t, i) =>
      i === ids.length - 1
        ? [t, { generateNext: { token: true, options: { temperature: 0 }, logits: { filter: { tokens: [], includeTop: TOP } }, probabilities: true } }]
        : t,
    );
    const res = await seq.controlledEvaluate(items);
    const next = res[ids.length - 1].next;
    const logits = [...next.logits.entries()].sort((a, b) => b[1] - a[1]).slice(0, TOP);
    const probs = next.probabilities;
    const top = logits.map(([id, logit]) => ({ id, logit, prob: probs.get(id) }));
    const generated = [next.token];
    // The rest: greedy, one token per step, continuing past EOS.
    if (N > 1) {
      for await (const tok of seq.evaluate([next.token], { temperature: 0, yieldEogToken: true })) {
        generated.push(tok);
        if (generated.length >= N) break;
      }
    }
    return { generated, top };
  } finally {
    await ctx.dispose();
  }
}

const versions = await llamaCppVersions();
let failures = 0;
let ids0 = null;
for (const m of MODELS) {
  const path = join(args.data, m.file);
  const model = await loadModel(path);
  if (!ids0) ids0 = await promptIds(model);
  const cases = [];
  for (const ids of ids0) {
    if (ids.length + N > CONTEXT) throw new Error(`prompt of ${ids.length} + ${N} exceeds ${CONTEXT}`);
    const { generated, top } = await runCase(model, ids);
    const eos = generated.indexOf(2);
    cases.push({
      prompt_ids: ids,
      prompt_text: model.detokenize(ids.slice(1)),
      generated_ids: generated,
      first_eos: eos,
      generated_text: model.detokenize(eos >= 0 ? generated.slice(0, eos) : generated),
      first_step_top: top,
    });
  }
  await model.dispose();
  const doc = {
    model: m.file,
    llama_cpp_version: versions,
    settings: {
      threads: THREADS,
      context_size: CONTEXT,
      batch_size: Math.min(CONTEXT, 512),
      kv_cache_type: "f32",
      flash_attention: false,
      sampling: "greedy (temperature 0)",
      n_generate: N,
      past_eos: "continues (ignore_eos); first_eos = index of the first id 2, -1 if none",
      first_step_top: `top ${TOP} raw logits of the first step, with softmax probabilities over the full vocabulary`,
    },
    cases,
  };
  const outPath = join(args.out, `tinystories-${m.tag}.json`);
  if (args.check) {
    const old = JSON.parse(readFileSync(outPath, "utf8"));
    old.cases.forEach((c, i) => {
      const now = cases[i];
      const same = now && JSON.stringify(c.prompt_ids) === JSON.stringify(now.prompt_ids) &&
        JSON.stringify(c.generated_ids) === JSON.stringify(now.generated_ids);
      if (!same) {
        failures++;
        console.error(`${outPath}: case ${i} differs`);
      }
    });
    console.log(`${outPath}: ${old.cases.length} cases checked`);
  } else {
    mkdirSync(args.out, { recursive: true });
    // one line per id array, so diffs stay readable
    const text = JSON.stringify(doc, null, 1).replace(/\[\s*(-?\d+(?:,\s*-?\d+)*)\s*\]/g, (_, xs) => `[${xs.split(/,\s*/).join(", ")}]`);
    writeFileSync(outPath, text + "\n");
    console.log(`wrote ${outPath} (${cases.length} cases x ${N} tokens)`);
  }
}
process.exit(failures ? 1 : 0);
