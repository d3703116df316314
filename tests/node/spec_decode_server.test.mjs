// Speculative decoding through the server with the official openai client: greedy text
// (plain and streamed, several requests at once) equals `pagellm generate` without
// speculation, and /metrics shows vLLM's spec_decode series moving.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { startServer, metrics } from "./lib/server.mjs";
import { runPl, sourcePath } from "./lib/util.mjs";

const MODEL_PATH = sourcePath("models/pagellm-default.gguf");
const MODEL = "pagellm-default";
const PROMPTS = [
  "And the LORD said unto Moses, Go in unto Pharaoh. And the LORD said unto Moses, Go",
  "The quick brown fox jumps over the lazy dog. The quick brown fox jumps over the lazy dog. The quick brown fox",
  "In the beginning God created the heaven and the earth.",
];
let srv, client;

before(async () => {
  srv = await startServer({ model: MODEL_PATH, args: ["--speculative", "ngram", "--num-speculative-tokens", "5", "--kv-cache-memory", "64MiB"] });
  client = new OpenAI({ baseURL: srv.baseURL, apiKey: "unused", maxRetries: 0, timeout: 60_000 });
});
after(async () => {
  if (srv) await srv.stop();
});

test("greedy text with n-gram speculation equals generate without it; metrics move", async () => {
  const before = await metrics(srv.url);
  const got = await Promise.all(PROMPTS.map((p) =>
    client.completions.create({ model: MODEL, prompt: p, max_tokens: 60, temperature: 0 })));
  const streamed = [];
  const s = await client.completions.create({ model: MODEL, prompt: PROMPTS[0], max_tokens: 60, temperature: 0, stream: true });
  for await (const c of s) streamed.push(c.choices[0]?.text ?? "");
  for (let i = 0; i < PROMPTS.length; i++) {
    const g = runPl(["generate", "-m", MODEL_PATH, "-p", PROMPTS[i], "-n", "60"]);
    assert.equal(g.status, 0, g.stderr);
    assert.equal(got[i].choices[0].text, g.stdout.replace(/\n$/, ""), `prompt ${i}`);
  }
  assert.equal(streamed.join(""), got[0].choices[0].text);
  const m = await metrics(srv.url);
  const drafts = m["pagellm:spec_decode_num_draft_tokens_total"];
  const acc = m["pagellm:spec_decode_num_accepted_tokens_total"];
  assert.ok(drafts > (before["pagellm:spec_decode_num_draft_tokens_total"] ?? 0), JSON.stringify(m));
  assert.ok(acc > 0 && acc <= drafts);
  const pos = [0, 1, 2, 3, 4].map((i) => m[`pagellm:spec_decode_num_accepted_tokens_per_pos_total{position="${i}"}`]);
  assert.ok(pos.every((v) => v >= 0), "five positions are reported");
  assert.equal(m['pagellm:spec_decode_num_accepted_tokens_per_pos_total{position="5"}'], undefined);
  assert.equal(pos.reduce((x, y) => x + y, 0), acc, "per-position counts add up to the accepted tokens");
  for (let i = 1; i < 5; i++) assert.ok(pos[i] <= pos[i - 1], "acceptance at position i needs it at i-1");
});
