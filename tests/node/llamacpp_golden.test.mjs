// pagellm against llama.cpp on a real trained model (TinyStories, 280K params): greedy
// generation from token ids must equal llama.cpp's token for token for 200 tokens, for the F32
// file and the F16 file each against its own reference (tests/golden/llamacpp/*.json, made by
// tools/llamacpp/goldens.mjs with an F32 KV cache and flash attention off). The first step's
// top-10 logits must agree too. Runs with several engine configurations (tiny KV blocks,
// chunked prefill, batched requests) since the outputs must not depend on them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { runPl, dataPath, sourcePath } from "./lib/util.mjs";

// the goldens' KV cache is F32, so ours is too (the CPU's default is F16)
const KV = ["--kv-cache-dtype", "f32"];

for (const kind of ["f32", "f16"]) {
  const gold = JSON.parse(readFileSync(sourcePath(`tests/golden/llamacpp/tinystories-${kind}.json`), "utf8"));
  const model = dataPath(gold.model);
  const configs = [
    [],
    ["--block-size", "4", "--max-num-batched-tokens", "8"],
    ["--block-size", "32", "--threads", "1"],
  ];
  for (const cfg of configs) {
    test(`tinystories ${kind} greedy == llama.cpp (${cfg.join(" ") || "defaults"})`, () => {
      for (const c of gold.cases) {
        const n = c.generated_ids.length;
        const r = runPl(["generate", "-m", model, "--prompt-ids", c.prompt_ids.join(","), "-n", String(n),
                         "--ids", "--ignore-eos", ...KV, ...cfg]);
        assert.equal(r.status, 0, r.stderr);
        const ids = r.stdout.trim().split(/\s+/).map(Number);
        const firstDiff = ids.findIndex((v, i) => v !== c.generated_ids[i]);
        assert.equal(firstDiff, -1, `prompt ${JSON.stringify(c.prompt_text)}: first difference at token ${firstDiff}`);
        assert.equal(ids.length, n);
      }
    });
  }
  // F32: both sides compute in float32 (1e-4 in probability). F16: llama.cpp rounds the
  // activations to F16 before its F16 dot products while we keep them in F32, so allow 2e-3.
  const tol = kind === "f32" ? 1e-4 : 2e-3;
  test(`tinystories ${kind} first-step top-10 probabilities == llama.cpp`, () => {
    for (const c of gold.cases) {
      const r = runPl(["generate", "-m", model, "--prompt-ids", c.prompt_ids.join(","), "-n", "1",
                       "--ids", "--logprobs", "10", ...KV]);
      assert.equal(r.status, 0, r.stderr);
      // --logprobs prints "id:logprob" pairs of the top alternatives on stderr's last line
      const line = r.stderr.trim().split("\n").find((l) => l.startsWith("top:"));
      assert.ok(line, r.stderr);
      const top = line.slice(4).trim().split(/\s+/).map((p) => p.split(":").map(Number));
      // every llama.cpp top-10 token must be in ours with the same probability; the order must
      // match exactly for F32 (for F16, near-ties under the rounding difference may swap)
      const ours = new Map(top.map(([id, lp]) => [id, Math.exp(lp)]));
      let missing = 0;
      for (let i = 0; i < 10; i++) {
        const ref = c.first_step_top[i];
        if (kind === "f32") assert.equal(top[i][0], ref.id, `rank ${i}`);
        if (!ours.has(ref.id)) { missing++; continue; }
        assert.ok(Math.abs(ours.get(ref.id) - ref.prob) < tol,
                  `token ${ref.id}: p ${ours.get(ref.id)} vs llama.cpp ${ref.prob}`);
      }
      assert.ok(missing <= (kind === "f32" ? 0 : 1), `${missing} of llama.cpp's top 10 missing`);
    }
  });
}
