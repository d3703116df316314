// `--load-format dummy` through the command line: the options reach the engine (--model-config,
// --dtype, --seed as the weights' seed), `pagellm generate` on the random model prints the same
// greedy ids as on the GGUF that `pagellm model-gen` writes for that shape, type and seed (and a
// different seed gives different ids), `serve` answers the openai client with it, and bad
// options or configs fail with a message that names the problem.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import OpenAI from "openai";
import { plBin, runPl, makeTempDir } from "./lib/util.mjs";
import { startServer } from "./lib/server.mjs";

const bin = plBin();
const dir = makeTempDir("pagellm-dummy-");
const cfgDir = join(dir, "Tiny-Qwen2");
mkdirSync(cfgDir);
const CONFIG = {
  model_type: "qwen2", hidden_size: 128, intermediate_size: 256, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 700, max_position_embeddings: 256,
  rms_norm_eps: 1e-6, rope_theta: 1000000.0, tie_word_embeddings: false,
};
writeFileSync(join(cfgDir, "config.json"), JSON.stringify(CONFIG));
const MG = ["--arch", "qwen2", "--n-embd", "128", "--n-ff", "256", "--n-layer", "2", "--n-head", "4",
  "--n-head-kv", "2", "--n-vocab", "700", "--n-ctx", "256", "-q"];
const GEN = ["generate", "-p", "The quick brown fox jumps over", "-n", "16", "--temp", "0", "--ids",
  "--device", "cpu", "--threads", "2", "--kv-cache-memory", "16MiB"];

function ids(r) {
  assert.equal(r.status, 0, r.stderr);
  const line = r.stdout.trim().split("\n")[0];
  const v = line.split(/\s+/).map(Number);
  assert.equal(v.length, 16, r.stdout);
  return v;
}

const servers = [];
after(async () => {
  for (const s of servers) await s.stop();
});

test("dummy == model-gen's GGUF through the CLI (seed, dtype, default seed)", { skip: !bin }, () => {
  for (const [type, seed] of [["f16", "7"], ["bf16", null]]) {
    const f = join(dir, `mg-${type}.gguf`);
    const seedArgs = seed ? ["--seed", seed] : [];
    const g = runPl(["model-gen", "-o", f, ...MG, "--type", type, ...seedArgs]);
    assert.equal(g.status, 0, g.stderr);
    const fromFile = ids(runPl([...GEN, "-m", f, ...seedArgs]));
    const dtype = type === "bf16" ? [] : ["--dtype", type]; // bf16 is --dtype auto's
    const dummy = ids(runPl([...GEN, "--load-format", "dummy", "--model-config", cfgDir, ...dtype,
      ...seedArgs]));
    assert.deepEqual(dummy, fromFile, `${type} seed ${seed ?? "default"}`);
    // -m DIR is the config when --model-config is absent (vLLM's way)
    assert.deepEqual(ids(runPl([...GEN, "--load-format", "dummy", "-m", cfgDir, ...dtype, ...seedArgs])),
      fromFile);
  }
  const other = ids(runPl([...GEN, "--load-format", "dummy", "--model-config", cfgDir, "--dtype", "f16",
    "--seed", "8"]));
  const seven = ids(runPl([...GEN, "--load-format", "dummy", "--model-config", cfgDir, "--dtype", "f16",
    "--seed", "7"]));
  assert.notDeepEqual(other, seven, "another seed, other weights");
});

test("serve --load-format dummy answers the openai client", { skip: !bin }, async () => {
  const s = await startServer({ args: ["--load-format", "dummy", "--model-config", join(cfgDir, "config.json"),
    "--device", "cpu", "--kv-cache-memory", "16MiB"] });
  servers.push(s);
  const client = new OpenAI({ baseURL: s.baseURL, apiKey: "x" });
  const models = await client.models.list();
  assert.equal(models.data[0].id, "Tiny-Qwen2");
  const r = await client.completions.create({ model: "Tiny-Qwen2", prompt: "Hello", max_tokens: 8,
    temperature: 0 });
  assert.equal(r.usage.completion_tokens, 8);
  assert.ok(r.choices[0].text.length > 0);
});

test("bad options and configs are refused with a precise message", { skip: !bin }, () => {
  const bad = join(dir, "bad.json");
  const cases = [
    [["--load-format", "safetensors"], 2, /--load-format expects 'auto' or 'dummy'/],
    [["--load-format", "dummy", "--model-config", "llama-3-8b", "--dtype", "q8_0"], 2, /--dtype expects/],
    [["--load-format", "dummy"], 1, /needs --model-config/],
    [["--load-format", "dummy", "--model-config", "gpt-5"], 1, /neither a preset \(tinyllama-1.1b/],
    [["--model-config", "llama-3-8b"], 1, /--model-config applies to --load-format dummy only/],
    [["--dtype", "f16"], 1, /--dtype applies to --load-format dummy only/],
  ];
  for (const [args, status, re] of cases) {
    const r = runPl(["generate", "-p", "x", "-n", "1", "--device", "cpu", ...args]);
    assert.equal(r.status, status, `${args.join(" ")}: ${r.status} ${r.stderr}`);
    assert.match(r.stderr, re, args.join(" "));
  }
  const { hidden_size, ...noHidden } = CONFIG;
  for (const [cfg, re] of [
    [noHidden, /missing field 'hidden_size'/],
    [{ ...CONFIG, num_key_value_heads: 3 }, /num_attention_heads 4 is not a multiple of num_key_value_heads 3/],
    ["{\"model_type\": \"llama\",", /cannot parse/],
  ]) {
    writeFileSync(bad, typeof cfg === "string" ? cfg : JSON.stringify(cfg));
    const r = runPl(["generate", "-p", "x", "-n", "1", "--device", "cpu", "--load-format", "dummy",
      "--model-config", bad]);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, re);
    assert.ok(r.stderr.includes(bad), "the message names the file");
  }
});
