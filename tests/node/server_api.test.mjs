// `pagellm serve` driven by the official openai npm client (an independent implementation of
// the API's wire format): completions and chat, streaming and not, n > 1, logprobs, stop,
// seed reproducibility, echo, batched prompts, token-id prompts, /v1/models, /tokenize and
// /detokenize, /metrics; greedy text equals `pagellm generate` (the engine in-process).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { startServer, metrics, post, TINY_MODEL, CHATML_TEMPLATE } from "./lib/server.mjs";
import { runPl } from "./lib/util.mjs";

const MODEL = "tinystories-280K";
let srv, client;

before(async () => {
  srv = await startServer({ args: ["--chat-template", CHATML_TEMPLATE] });
  client = new OpenAI({ baseURL: srv.baseURL, apiKey: "unused", maxRetries: 0, timeout: 60_000 });
});
after(async () => {
  const r = await srv.stop();
  assert.equal(r.code, 0, `server exit: ${JSON.stringify(r)}\n${srv.logs()}`);
});

test("GET /v1/models lists the served model", async () => {
  const models = [];
  for await (const m of client.models.list()) models.push(m);
  assert.equal(models.length, 1);
  assert.equal(models[0].id, MODEL);
  assert.equal(models[0].object, "model");
  assert.equal(models[0].max_model_len, 256);
  const one = await client.models.retrieve(MODEL);
  assert.equal(one.id, MODEL);
  await assert.rejects(client.models.retrieve("nope"), (e) => e.status === 404);
});

test("greedy completion equals `pagellm generate` and reports usage", async () => {
  const r = await client.completions.create({ model: MODEL, prompt: "Once upon a time", max_tokens: 20, temperature: 0 });
  assert.equal(r.object, "text_completion");
  assert.match(r.id, /^cmpl-/);
  assert.equal(r.model, MODEL);
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].index, 0);
  assert.equal(r.choices[0].finish_reason, "length");
  assert.equal(r.usage.completion_tokens, 20);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + 20);
  const g = runPl(["generate", "-m", TINY_MODEL, "-p", "Once upon a time", "-n", "20"]);
  assert.equal(g.status, 0, g.stderr);
  assert.equal(r.choices[0].text, g.stdout.replace(/\n$/, ""));
  // The same prompt as token ids gives the same text.
  const tok = await post(srv.url + "/tokenize", { model: MODEL, prompt: "Once upon a time" });
  assert.equal(tok.status, 200);
  assert.equal(tok.json.count, r.usage.prompt_tokens);
  assert.equal(tok.json.max_model_len, 256);
  const byIds = await client.completions.create({ model: MODEL, prompt: tok.json.tokens, max_tokens: 20, temperature: 0 });
  assert.equal(byIds.choices[0].text, r.choices[0].text);
});

test("streaming completion: the chunks concatenate to the non-streaming text", async () => {
  const params = { model: MODEL, prompt: "The cat", max_tokens: 30, temperature: 0 };
  const whole = await client.completions.create(params);
  const stream = await client.completions.create({ ...params, stream: true, stream_options: { include_usage: true } });
  let text = "";
  let finish = null;
  let usage = null;
  let chunks = 0;
  for await (const c of stream) {
    chunks++;
    if (c.usage) {
      usage = c.usage;
      assert.equal(c.choices.length, 0);
      continue;
    }
    assert.equal(c.object, "text_completion");
    assert.equal(c.choices.length, 1);
    text += c.choices[0].text;
    if (c.choices[0].finish_reason) finish = c.choices[0].finish_reason;
  }
  assert.ok(chunks > 5);
  assert.equal(text, whole.choices[0].text);
  assert.equal(finish, whole.choices[0].finish_reason);
  assert.deepEqual(usage.completion_tokens, whole.usage.completion_tokens);
  assert.deepEqual(usage.prompt_tokens, whole.usage.prompt_tokens);
});

test("seed makes sampling reproducible; n > 1 returns n choices", async () => {
  const params = { model: MODEL, prompt: "One day", max_tokens: 24, temperature: 1.0, seed: 1234, n: 3 };
  const a = await client.completions.create(params);
  const b = await client.completions.create(params);
  assert.equal(a.choices.length, 3);
  assert.deepEqual(a.choices.map((c) => c.index).sort(), [0, 1, 2]);
  for (let i = 0; i < 3; i++) assert.equal(a.choices[i].text, b.choices[i].text, `choice ${i}`);
  const texts = new Set(a.choices.map((c) => c.text));
  assert.ok(texts.size > 1, "three samples at temperature 1 should not all be equal");
  assert.equal(a.usage.completion_tokens, a.choices.length * 24);
  const c = await client.completions.create({ ...params, seed: 99, n: 1 });
  assert.equal(c.choices.length, 1);
  // streaming with n > 1: every index finishes once
  const s = await client.completions.create({ ...params, stream: true });
  const got = ["", "", ""];
  const fin = [0, 0, 0];
  for await (const ch of s) for (const x of ch.choices) {
    got[x.index] += x.text;
    if (x.finish_reason) fin[x.index]++;
  }
  assert.deepEqual(fin, [1, 1, 1]);
  assert.deepEqual(got, a.choices.map((x) => x.text));
});

test("stop strings end the text before the stop", async () => {
  const base = await client.completions.create({ model: MODEL, prompt: "Once upon a time", max_tokens: 40, temperature: 0 });
  assert.ok(base.choices[0].text.includes("Lily"), base.choices[0].text);
  const r = await client.completions.create({ model: MODEL, prompt: "Once upon a time", max_tokens: 40, temperature: 0, stop: ["Lily"] });
  assert.equal(r.choices[0].finish_reason, "stop");
  assert.equal(r.choices[0].text, base.choices[0].text.slice(0, base.choices[0].text.indexOf("Lily")));
});

test("completion logprobs: one entry per token, sampled token is the greedy maximum", async () => {
  const r = await client.completions.create({ model: MODEL, prompt: "Once upon a time", max_tokens: 8, temperature: 0, logprobs: 3 });
  const lp = r.choices[0].logprobs;
  assert.equal(lp.tokens.length, 8);
  assert.equal(lp.token_logprobs.length, 8);
  assert.equal(lp.top_logprobs.length, 8);
  assert.equal(lp.text_offset.length, 8);
  assert.equal(lp.tokens.join(""), r.choices[0].text);
  for (let i = 0; i < 8; i++) {
    assert.ok(lp.token_logprobs[i] <= 0);
    const tops = Object.values(lp.top_logprobs[i]);
    assert.ok(tops.length >= 1 && tops.length <= 4);
    assert.ok(Math.abs(Math.max(...tops) - lp.token_logprobs[i]) < 1e-5, "greedy picks the most likely token");
    if (i > 0) assert.ok(lp.text_offset[i] >= lp.text_offset[i - 1]);
  }
});

test("echo and batched prompts", async () => {
  const r = await client.completions.create({ model: MODEL, prompt: "Once upon a time", max_tokens: 5, temperature: 0, echo: true });
  assert.ok(r.choices[0].text.startsWith("Once upon a time"), r.choices[0].text);
  const b = await client.completions.create({ model: MODEL, prompt: ["Once upon a time", "The dog"], max_tokens: 6, temperature: 0, n: 2 });
  assert.equal(b.choices.length, 4);
  assert.deepEqual(b.choices.map((c) => c.index), [0, 1, 2, 3]);
  assert.equal(b.choices[0].text, b.choices[1].text); // greedy: both samples agree
  assert.notEqual(b.choices[0].text, b.choices[2].text);
  const single = await client.completions.create({ model: MODEL, prompt: "The dog", max_tokens: 6, temperature: 0 });
  assert.equal(b.choices[2].text, single.choices[0].text);
});

test("chat completion with a ChatML template, streaming and not", async () => {
  const messages = [
    { role: "system", content: "You tell stories." },
    { role: "user", content: "Tell me about a cat." },
  ];
  const r = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 16, temperature: 0 });
  assert.equal(r.object, "chat.completion");
  assert.match(r.id, /^chatcmpl-/);
  assert.equal(r.choices[0].message.role, "assistant");
  assert.equal(typeof r.choices[0].message.content, "string");
  assert.ok(r.choices[0].message.content.length > 0);
  assert.ok(["stop", "length"].includes(r.choices[0].finish_reason));
  // the prompt is the rendered template tokenized without BOS (vLLM): /tokenize agrees
  const tok = await post(srv.url + "/tokenize", { model: MODEL, messages });
  assert.equal(tok.status, 200);
  assert.equal(tok.json.count, r.usage.prompt_tokens);
  assert.notEqual(tok.json.tokens[0], 1, "no BOS added to a rendered chat");

  const s = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 16, temperature: 0, stream: true, stream_options: { include_usage: true } });
  let content = "";
  let role = null;
  let finish = null;
  let usage = null;
  for await (const c of s) {
    assert.equal(c.object, "chat.completion.chunk");
    if (c.usage) usage = c.usage;
    for (const ch of c.choices) {
      if (ch.delta.role) role = ch.delta.role;
      if (ch.delta.content) content += ch.delta.content;
      if (ch.finish_reason) finish = ch.finish_reason;
    }
  }
  assert.equal(role, "assistant");
  assert.equal(content, r.choices[0].message.content);
  assert.equal(finish, r.choices[0].finish_reason);
  assert.equal(usage.completion_tokens, r.usage.completion_tokens);
});

test("chat logprobs and max_completion_tokens", async () => {
  const r = await client.chat.completions.create({
    model: MODEL,
    messages: [{ role: "user", content: "Hi" }],
    max_completion_tokens: 6,
    temperature: 0,
    ignore_eos: true,
    logprobs: true,
    top_logprobs: 2,
  });
  assert.equal(r.usage.completion_tokens, 6);
  const content = r.choices[0].logprobs.content;
  assert.equal(content.length, 6);
  for (const t of content) {
    assert.equal(typeof t.token, "string");
    assert.ok(Array.isArray(t.bytes));
    assert.ok(t.logprob <= 0);
    assert.ok(t.top_logprobs.length <= 2 && t.top_logprobs.length >= 1);
    assert.ok(Math.abs(t.top_logprobs[0].logprob - t.logprob) < 1e-5);
  }
  const bytes = Buffer.from(content.flatMap((t) => t.bytes)).toString("utf8");
  assert.equal(bytes.trimStart(), r.choices[0].message.content.trimStart());
});

test("/tokenize and /detokenize round-trip (vLLM shapes)", async () => {
  const t = await post(srv.url + "/tokenize", { prompt: "Hello world", return_token_strs: true });
  assert.equal(t.status, 200);
  assert.equal(t.json.count, t.json.tokens.length);
  assert.equal(t.json.tokens[0], 1, "BOS added by default for a text prompt");
  assert.equal(t.json.token_strs.length, t.json.count);
  const t2 = await post(srv.url + "/tokenize", { prompt: "Hello world", add_special_tokens: false });
  assert.deepEqual(t2.json.tokens, t.json.tokens.slice(1));
  const d = await post(srv.url + "/detokenize", { tokens: t2.json.tokens });
  assert.equal(d.status, 200);
  assert.equal(d.json.prompt, "Hello world");
  const bad = await post(srv.url + "/detokenize", { tokens: [1, 999999] });
  assert.equal(bad.status, 400);
  assert.equal(bad.json.error.param, "tokens");
});

test("/metrics: vLLM-named series move with the traffic", async () => {
  const before = await metrics(srv.url);
  await client.completions.create({ model: MODEL, prompt: "A bird", max_tokens: 10, temperature: 0, ignore_eos: true });
  const m = await metrics(srv.url);
  for (const k of [
    "pagellm:num_requests_running",
    "pagellm:num_requests_waiting",
    "pagellm:kv_cache_usage_perc",
    "pagellm:kv_blocks_total",
    "pagellm:kv_cache_bytes_per_token",
    "pagellm:kv_blocks_used",
    "pagellm:kv_blocks_cached",
    "pagellm:prefix_cache_queries_total",
    "pagellm:prefix_cache_hits_total",
    "pagellm:num_preemptions_total",
    "pagellm:prompt_tokens_total",
    "pagellm:generation_tokens_total",
    "pagellm:time_to_first_token_seconds_count",
    "pagellm:inter_token_latency_seconds_count",
    "pagellm:e2e_request_latency_seconds_count",
  ])
    assert.ok(k in m, `missing ${k}`);
  assert.equal(m["pagellm:num_requests_running"], 0);
  assert.equal(m["pagellm:kv_blocks_used"], 0);
  // TinyStories-280K: 5 layers, 4 KV heads of 8 dims (its model card); K and V in f16, the
  // CPU's default KV dtype
  assert.equal(m["pagellm:kv_cache_bytes_per_token"], 2 * 5 * 4 * 8 * 2);
  assert.ok(m["pagellm:generation_tokens_total"] >= before["pagellm:generation_tokens_total"] + 10);
  assert.ok(m["pagellm:prompt_tokens_total"] > before["pagellm:prompt_tokens_total"]);
  assert.equal(m["pagellm:e2e_request_latency_seconds_count"], before["pagellm:e2e_request_latency_seconds_count"] + 1);
  assert.equal(m["pagellm:time_to_first_token_seconds_count"], before["pagellm:time_to_first_token_seconds_count"] + 1);
  assert.ok(m["pagellm:inter_token_latency_seconds_count"] >= before["pagellm:inter_token_latency_seconds_count"] + 9);
  assert.equal(m['pagellm:request_success_total{finished_reason="length"}'], before['pagellm:request_success_total{finished_reason="length"}'] + 1);
  assert.equal(m['pagellm:e2e_request_latency_seconds_bucket{le="+Inf"}'], m["pagellm:e2e_request_latency_seconds_count"]);
});
