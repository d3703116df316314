// `pagellm model-gen` against independent readers: node-llama-cpp's own GGUF parser checks the
// metadata and tensor table, and llama.cpp (prebuilt) must load every generated file and
// evaluate tokens with it, for every architecture and weight type. Also: the weight
// statistics (std ~0.02, norms ~1), determinism in --seed, F16 = F32 values rounded, bad
// arguments, and `pagellm info --json` on the result when that command exists.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync, existsSync, openSync, readSync, closeSync } from "node:fs";
import { join } from "node:path";
import { readGgufFileInfo } from "node-llama-cpp";
import { plBin, runPl, makeTempDir } from "./lib/util.mjs";
import { loadModel, referenceContextOptions } from "./lib/llama.mjs";

const bin = plBin();
const dir = makeTempDir("pagellm-model-gen-");

// ggml type ids
const F32 = 0, F16 = 1, Q4_0 = 2, Q8_0 = 8, Q4_K = 12, Q6_K = 14, BF16 = 30;

const SMALL = ["--n-embd", "256", "--n-layer", "2", "--n-head", "4", "--n-head-kv", "2", "--n-ff", "512",
  "--n-vocab", "384", "--n-ctx", "128", "-q"];

const CASES = [
  { name: "llama-f32", arch: "llama", type: "f32", ggml: F32, args: [] },
  { name: "llama-f16-tied", arch: "llama", type: "f16", ggml: F16, args: ["--tied"] },
  { name: "mistral-bf16", arch: "mistral", type: "bf16", ggml: BF16, args: [] },
  { name: "qwen2-q8_0", arch: "qwen2", type: "q8_0", ggml: Q8_0, args: [] },
  { name: "qwen3-q4_0-hd128", arch: "qwen3", type: "q4_0", ggml: Q4_0, args: ["--head-dim", "128"] },
  { name: "llama-q4_k", arch: "llama", type: "q4_k", ggml: Q4_K, args: ["--n-head", "8", "--n-head-kv", "1"] },
  { name: "qwen3-q6_k-tied", arch: "qwen3", type: "q6_k", ggml: Q6_K, args: ["--tied"] },
];

function gen(file, args) {
  return runPl(["model-gen", "-o", file, ...SMALL, ...args]);
}

function sha256(path) {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

function readTensor(path, info, name) {
  const t = info.tensorInfo.find((x) => x.name === name);
  assert.ok(t, `tensor ${name}`);
  const n = t.dimensions.reduce((a, d) => a * Number(d), 1);
  const bytes = t.ggmlType === F32 ? 4 * n : 2 * n;
  const buf = Buffer.alloc(bytes);
  const fd = openSync(path, "r");
  readSync(fd, buf, 0, bytes, Number(t.fileOffset));
  closeSync(fd);
  if (t.ggmlType === F32) return new Float32Array(buf.buffer, buf.byteOffset, n);
  return new Uint16Array(buf.buffer, buf.byteOffset, n);
}

function halfToFloat(h) {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 31, m = h & 1023;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

function expectedTensors(arch, tied, nLayer) {
  const names = ["token_embd.weight", "output_norm.weight"];
  if (!tied) names.push("output.weight");
  for (let i = 0; i < nLayer; i++) {
    for (const t of ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_down", "ffn_up"])
      names.push(`blk.${i}.${t}.weight`);
    if (arch === "qwen2") for (const t of ["attn_q", "attn_k", "attn_v"]) names.push(`blk.${i}.${t}.bias`);
    if (arch === "qwen3") names.push(`blk.${i}.attn_q_norm.weight`, `blk.${i}.attn_k_norm.weight`);
  }
  return names.sort();
}

test("pagellm binary is available", () => {
  assert.ok(bin, "PL_BIN not set or missing: build the pagellm target");
  const r = runPl(["model-gen", "--help"]);
  assert.equal(r.status, 0, `model-gen --help failed (is the command wired into main.c?): ${r.stderr}`);
  assert.match(r.stdout, /model-gen/);
});

for (const c of CASES) {
  test(`model-gen ${c.name}: valid GGUF that llama.cpp loads and runs`, { skip: !bin }, async () => {
    const file = join(dir, `${c.name}.gguf`);
    const r = gen(file, ["--arch", c.arch, "--type", c.type, "--seed", "7", ...c.args]);
    assert.equal(r.status, 0, r.stderr);
    assert.ok(existsSync(file));

    // independent GGUF parser (node-llama-cpp, JS)
    const info = await readGgufFileInfo(file, { readTensorInfo: true });
    const llArch = c.arch === "mistral" ? "llama" : c.arch;
    const tied = c.args.includes("--tied");
    const nHead = c.args.includes("--n-head") ? 8 : 4;
    const nKv = c.args.includes("--n-head-kv") ? 1 : 2;
    const headDim = c.args.includes("--head-dim") ? 128 : 256 / nHead;
    assert.equal(info.version, 3);
    assert.equal(info.metadata.general.architecture, llArch);
    const am = info.metadata[llArch];
    assert.equal(am.block_count, 2);
    assert.equal(am.embedding_length, 256);
    assert.equal(am.feed_forward_length, 512);
    assert.equal(am.context_length, 128);
    assert.equal(am.attention.head_count, nHead);
    assert.equal(am.attention.head_count_kv, nKv);
    assert.equal(am.attention.key_length, headDim);
    assert.equal(am.rope.dimension_count, headDim);
    const tok = info.metadata.tokenizer.ggml;
    assert.equal(tok.model, "llama");
    assert.equal(tok.tokens.length, 384);
    assert.equal(new Set(tok.tokens).size, 384, "token pieces are unique");
    assert.deepEqual(tok.tokens.slice(0, 4), ["<unk>", "<s>", "</s>", "<0x00>"]);
    assert.equal(tok.tokens[3 + 0x0a], "<0x0A>");
    assert.deepEqual(tok.token_type.slice(0, 4), [2, 3, 3, 6]);
    assert.equal(tok.token_type[258], 6);
    assert.equal(tok.token_type[259], 1);
    assert.equal(tok.scores.length, 384);
    assert.equal(tok.bos_token_id, 1);
    assert.equal(tok.eos_token_id, 2);
    assert.deepEqual(info.tensorInfo.map((t) => t.name).sort(), expectedTensors(c.arch, tied, 2));
    for (const t of info.tensorInfo) {
      const vector = t.dimensions.length === 1;
      assert.equal(t.ggmlType, vector ? F32 : c.ggml, `${t.name} type`);
      assert.equal(Number(t.fileOffset) % 32, 0, `${t.name} aligned`);
    }
    const byName = Object.fromEntries(info.tensorInfo.map((t) => [t.name, t.dimensions.map(Number)]));
    assert.deepEqual(byName["token_embd.weight"], [256, 384]);
    assert.deepEqual(byName["blk.0.attn_q.weight"], [256, nHead * headDim]);
    assert.deepEqual(byName["blk.0.attn_k.weight"], [256, nKv * headDim]);
    assert.deepEqual(byName["blk.1.attn_output.weight"], [nHead * headDim, 256]);
    assert.deepEqual(byName["blk.1.ffn_down.weight"], [512, 256]);
    if (c.arch === "qwen3") assert.deepEqual(byName["blk.0.attn_k_norm.weight"], [headDim]);
    if (c.arch === "qwen2") assert.deepEqual(byName["blk.0.attn_v.bias"], [nKv * headDim]);

    // llama.cpp: load, evaluate a prompt, greedy-decode a few tokens
    const model = await loadModel(file);
    try {
      assert.equal(model.fileInfo.metadata.general.architecture, llArch);
      const ctx = await model.createContext(referenceContextOptions({ threads: 1, contextSize: 128 }));
      const seq = ctx.getSequence();
      const out = [];
      let probs = null;
      for await (const step of seq.evaluateWithMetadata([1, 300, 301, 302, 303], { probabilities: true }, { temperature: 0, yieldEogToken: true })) {
        if (!probs) probs = step.probabilities;
        out.push(step.token);
        if (out.length >= 6) break;
      }
      assert.equal(out.length, 6);
      for (const t of out) assert.ok(Number.isInteger(t) && t >= 0 && t < 384, `token ${t}`);
      let sum = 0;
      for (const p of probs.values()) {
        assert.ok(Number.isFinite(p));
        sum += p;
      }
      assert.ok(Math.abs(sum - 1) < 1e-3, `probabilities sum to ${sum}`);
      await ctx.dispose();
    } finally {
      await model.dispose();
    }
  });
}

test("model-gen: weight statistics, determinism, F16 = rounded F32", { skip: !bin }, async () => {
  const a = join(dir, "det-a.gguf"), b = join(dir, "det-b.gguf"), c = join(dir, "det-c.gguf"), h = join(dir, "det-h.gguf");
  for (const [f, seed, type] of [[a, "5", "f32"], [b, "5", "f32"], [c, "6", "f32"], [h, "5", "f16"]]) {
    const r = gen(f, ["--seed", seed, "--type", type]);
    assert.equal(r.status, 0, r.stderr);
  }
  assert.equal(sha256(a), sha256(b), "same seed, same file");
  assert.notEqual(sha256(a), sha256(c), "other seed, other weights");

  const info = await readGgufFileInfo(a, { readTensorInfo: true });
  const emb = readTensor(a, info, "token_embd.weight");
  let s = 0, s2 = 0;
  for (const x of emb) {
    s += x;
    s2 += x * x;
  }
  const mean = s / emb.length, std = Math.sqrt(s2 / emb.length - mean * mean);
  assert.ok(Math.abs(mean) < 1e-3, `mean ${mean}`);
  assert.ok(Math.abs(std - 0.02) < 1e-3, `std ${std}`);
  const norm = readTensor(a, info, "blk.1.ffn_norm.weight");
  const nm = norm.reduce((p, x) => p + x, 0) / norm.length;
  assert.ok(Math.abs(nm - 1) < 0.01, `norm mean ${nm}`);

  const infoH = await readGgufFileInfo(h, { readTensorInfo: true });
  const q32 = readTensor(a, info, "blk.0.attn_q.weight");
  const q16 = readTensor(h, infoH, "blk.0.attn_q.weight");
  assert.equal(q16.length, q32.length);
  // round to nearest: error <= half an ulp (2^-11 relative; 2^-25 absolute for subnormals)
  let bad = 0;
  for (let i = 0; i < q32.length; i++)
    if (Math.abs(halfToFloat(q16[i]) - q32[i]) > Math.max(Math.abs(q32[i]) * 2 ** -11, 2 ** -25)) bad++;
  assert.equal(bad, 0, "F16 values are the F32 values rounded");
});

test("model-gen: bad arguments are refused", { skip: !bin }, () => {
  const f = join(dir, "bad.gguf");
  const cases = [
    [["--arch", "gpt2"], /unknown --arch/],
    [["--type", "q5_0"], /unknown --type/],
    [["--preset", "llama-70b"], /unknown --preset/],
    [["--type", "q4_k", "--n-embd", "64", "--n-head", "2", "--n-head-kv", "1"], /multiples of 256/],
    [["--n-vocab", "100"], /n_vocab/],
    [["--n-head", "4", "--n-head-kv", "3"], /multiple of n_head_kv/],
    [["--arch", "qwen2", "--head-dim", "128"], /qwen2/],
    [["--n-embd", "abc"], /--n-embd/],
    [["--bogus"], /unknown option/],
  ];
  for (const [args, re] of cases) {
    const r = runPl(["model-gen", "-o", f, ...args]);
    assert.equal(r.status, 2, `${args.join(" ")}: status ${r.status}`);
    assert.match(r.stderr, re, args.join(" "));
    assert.ok(!existsSync(f), "no file written");
  }
  const r = runPl(["model-gen", "--n-layer", "1"]);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /-o/);
  const io = runPl(["model-gen", "-q", "-o", join(dir, "no-such-dir", "x.gguf")]);
  assert.equal(io.status, 1);
  assert.match(io.stderr, /no-such-dir/);
});

test("pagellm info --json reads a generated file", { skip: !bin }, async (t) => {
  const f = join(dir, "info.gguf");
  assert.equal(gen(f, ["--arch", "qwen3", "--type", "q8_0", "--head-dim", "128", "--tied"]).status, 0);
  const r = runPl(["info", "-m", f, "--json"]);
  if (r.status !== 0 && /unknown|usage|not (yet )?implemented|command/i.test(r.stderr + r.stdout) && !r.stdout.trim().startsWith("{")) {
    t.skip(`info not available yet: ${(r.stderr || r.stdout).split("\n")[0]}`);
    return;
  }
  assert.equal(r.status, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.equal(j.architecture, "qwen3");
  const want = { n_layer: 2, n_embd: 256, n_head: 4, n_head_kv: 2, head_dim: 128, n_ff: 512, n_vocab: 384, n_ctx_train: 128 };
  for (const [k, v] of Object.entries(want)) if (k in j) assert.equal(j[k], v, k);
  if ("tied_embeddings" in j) assert.equal(j.tied_embeddings, true);
  if ("n_params" in j) {
    const info = await readGgufFileInfo(f, { readTensorInfo: true });
    const n = info.tensorInfo.reduce((s, x) => s + x.dimensions.reduce((p, d) => p * Number(d), 1), 0);
    assert.equal(j.n_params, n, "n_params = sum of tensor elements");
  }
  assert.match(JSON.stringify(j), /Q8_0|q8_0/);
});
