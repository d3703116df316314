// Bad input never crashes the server and always gets an OpenAI-shaped error
// ({"error": {"message", "type", "param", "code"}}) with the right status: 400 for malformed
// JSON / wrong types / out-of-range values (naming the parameter), 401 for a missing or wrong
// API key, 404 for unknown routes and models, 405 for wrong methods, 413 for oversized bodies,
// 503 when the waiting queue is full. Unknown fields are ignored (vLLM's behaviour; OpenAI
// would reject them). Checked with raw fetch/curl and with the openai client's error classes.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { spawnSync } from "node:child_process";
import http from "node:http";
import { startServer, post, curl, metrics, waitMetrics } from "./lib/server.mjs";
import { makeTempDir, runPl, sourcePath, spawnPl } from "./lib/util.mjs";

const MODEL = "tinystories-280K";
let srv;

before(async () => {
  srv = await startServer({ args: ["--max-body-size", "64KiB"] });
});
after(async () => {
  const r = await srv.stop();
  assert.equal(r.code, 0, srv.logs());
});

function assertError(r, status, param) {
  assert.equal(r.status, status, r.text);
  assert.ok(r.json && r.json.error, `not an error body: ${r.text}`);
  const e = r.json.error;
  assert.equal(typeof e.message, "string");
  assert.ok(e.message.length > 0);
  assert.equal(typeof e.type, "string");
  assert.ok("param" in e && "code" in e, r.text);
  if (param !== undefined) assert.equal(e.param, param, r.text);
}

const cmpl = (body, opts) => post(srv.url + "/v1/completions", body, opts);
const chat = (body, opts) => post(srv.url + "/v1/chat/completions", body, opts);

test("malformed JSON and non-object bodies are 400", async () => {
  assertError(await cmpl("{\"prompt\": \"x\""), 400, null);
  assertError(await cmpl("[1, 2, 3]"), 400, null);
  assertError(await cmpl(""), 400, null);
  assertError(await cmpl("null"), 400, null);
  assertError(await cmpl("{\"prompt\": \"x\", }"), 400, null);
});

test("invalid UTF-8, lone surrogates and NUL escapes are 400", async () => {
  const raw = Buffer.concat([Buffer.from('{"prompt": "ab'), Buffer.from([0xff, 0xc3, 0x28]), Buffer.from('"}')]);
  assertError(await cmpl(raw), 400, null);
  assertError(await cmpl('{"prompt": "\\ud800"}'), 400, null);
  assertError(await cmpl('{"prompt": "a\\u0000b"}'), 400, null);
});

test("wrong types and out-of-range values name the parameter", async () => {
  const cases = [
    [{ prompt: "x", temperature: "hot" }, "temperature"],
    [{ prompt: "x", temperature: -1 }, "temperature"],
    [{ prompt: "x", temperature: 1e9 }, "temperature"],
    [{ prompt: "x", top_p: 0 }, "top_p"],
    [{ prompt: "x", top_k: -5 }, "top_k"],
    [{ prompt: "x", min_p: 2 }, "min_p"],
    [{ prompt: "x", repetition_penalty: -1 }, "repetition_penalty"],
    [{ prompt: "x", presence_penalty: 5 }, "presence_penalty"],
    [{ prompt: "x", max_tokens: -1 }, "max_tokens"],
    [{ prompt: "x", max_tokens: 0 }, "max_tokens"],
    [{ prompt: "x", max_tokens: "many" }, "max_tokens"],
    [{ prompt: "x", max_tokens: 1e300 }, "max_tokens"],
    [{ prompt: "x", n: 0 }, "n"],
    [{ prompt: "x", n: 100000 }, "n"],
    [{ prompt: "x", logprobs: 100 }, "logprobs"],
    [{ prompt: "x", stop: 42 }, "stop"],
    [{ prompt: "x", seed: "s" }, "seed"],
    [{ prompt: "x", logit_bias: { foo: 1 } }, "logit_bias"],
    [{ prompt: "x", logit_bias: { 5: 1000 } }, "logit_bias"],
    [{ prompt: "x", logit_bias: { 99999: 1 } }, "logit_bias"], // beyond the vocabulary
    [{ prompt: "x", stop_token_ids: [1e6] }, "stop_token_ids"],
    [{ prompt: "x", stream: "yes" }, "stream"],
    [{ prompt: "x", stream_options: { include_usage: true } }, "stream_options"],
    [{ prompt: "x", suffix: "tail" }, "suffix"],
    [{ prompt: "x", response_format: { type: "xml" } }, "response_format"],
    [{ prompt: 12 }, "prompt"],
    [{ prompt: [] }, "prompt"],
    [{ prompt: [1, 2, 1000000] }, "prompt"], // token id beyond the vocabulary
    [{}, "prompt"],
  ];
  for (const [body, param] of cases) assertError(await cmpl({ model: MODEL, ...body }), 400, param);
  const chatCases = [
    [{}, "messages"],
    [{ messages: [] }, "messages"],
    [{ messages: "hi" }, "messages"],
    [{ messages: [{ role: "user" }] }, "messages[0].content"],
    [{ messages: [{ role: "robot", content: "x" }] }, "messages[0].role"],
    [{ messages: [{ content: "x" }] }, "messages[0].role"],
    [{ messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "x" } }] }] }, "messages[0].content"],
    [{ messages: [{ role: "user", content: "x" }], top_logprobs: 3 }, "top_logprobs"],
    [{ messages: [{ role: "user", content: "x" }], max_completion_tokens: -3 }, "max_completion_tokens"],
  ];
  for (const [body, param] of chatCases) assertError(await chat({ model: MODEL, ...body }), 400, param);
});

test("unknown fields are ignored (like vLLM)", async () => {
  const r = await cmpl({ model: MODEL, prompt: "x", max_tokens: 2, frobnicate: { deep: [1, 2] }, metadata: { a: "b" } });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.choices.length, 1);
});

test("prompt + max_tokens beyond max_model_len is 400 context_length_exceeded", async () => {
  const r = await cmpl({ model: MODEL, prompt: "Once upon a time", max_tokens: 1000 });
  assertError(r, 400, "max_tokens");
  assert.equal(r.json.error.code, "context_length_exceeded");
  assert.match(r.json.error.message, /maximum context length is 256/);
  const long = await cmpl({ model: MODEL, prompt: "word ".repeat(600), max_tokens: 5 });
  assertError(long, 400, "prompt");
  assert.equal(long.json.error.code, "context_length_exceeded");
});

test("a model without a chat template answers chat with a clear 400", async () => {
  const r = await chat({ model: MODEL, messages: [{ role: "user", content: "hi" }] });
  assertError(r, 400);
  assert.match(r.json.error.message, /chat template/);
  assert.match(r.json.error.message, /--chat-template/);
});

test("unknown routes, methods and models", async () => {
  const r = await fetch(srv.url + "/v1/nothing");
  assert.equal(r.status, 404);
  assert.ok((await r.json()).error);
  const m = await fetch(srv.url + "/v1/completions");
  assert.equal(m.status, 405);
  assertError(await cmpl({ model: "gpt-4", prompt: "x" }), 404, "model");
  const client = new OpenAI({ baseURL: srv.baseURL, apiKey: "x", maxRetries: 0 });
  await assert.rejects(client.completions.create({ model: "gpt-4", prompt: "x" }), (e) => {
    assert.ok(e instanceof OpenAI.NotFoundError);
    assert.equal(e.param, "model");
    assert.equal(e.code, "model_not_found");
    return true;
  });
  await assert.rejects(client.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "x" }], temperature: 7 }), (e) => {
    assert.ok(e instanceof OpenAI.BadRequestError);
    assert.equal(e.status, 400);
    assert.equal(e.param, "temperature");
    return true;
  });
});

test("oversized bodies are 413, with or without Content-Length", async () => {
  const big = JSON.stringify({ model: MODEL, prompt: "x".repeat(100 * 1024) });
  assertError(await cmpl(big), 413);
  // chunked upload (no Content-Length): curl reads the body from stdin
  const r = await curl([
    "-s", "-o", "-", "-w", "\n%{http_code}", "-H", "Transfer-Encoding: chunked", "-H", "Content-Type: application/json",
    "--data-binary", big, srv.url + "/v1/completions",
  ]);
  const out = r.stdout.toString();
  assert.match(out, /\n413$/, out.slice(-200));
  // a header block beyond the per-connection limit is refused by the HTTP layer (4xx)
  const h = await curl(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "X-Big: " + "a".repeat(100_000), srv.url + "/health"]);
  const code = Number(h.stdout.toString());
  assert.ok(code >= 400 && code < 500 || code === 0, `status ${code}`);
  assert.equal((await fetch(srv.url + "/health")).status, 200);
});

test("the server is still healthy and idle after all of that", async () => {
  assert.equal((await fetch(srv.url + "/health")).status, 200);
  const m = await waitMetrics(srv.url, (m) => m["pagellm:num_requests_running"] === 0);
  assert.equal(m["pagellm:num_requests_running"], 0);
  assert.equal(m["pagellm:kv_blocks_used"], 0);
});

test("API key: missing or wrong is 401 everywhere but /health", async () => {
  const s = await startServer({ args: ["--api-key", "sekret-123"] });
  try {
    const none = await post(s.url + "/v1/completions", { prompt: "x", max_tokens: 1 });
    assertError(none, 401, null);
    assert.equal(none.json.error.code, "invalid_api_key");
    assertError(await post(s.url + "/v1/completions", { prompt: "x" }, { headers: { authorization: "Bearer sekret-12" } }), 401);
    assertError(await post(s.url + "/v1/completions", { prompt: "x" }, { headers: { authorization: "Bearer sekret-1234" } }), 401);
    assertError(await post(s.url + "/v1/completions", { prompt: "x" }, { headers: { authorization: "Basic sekret-123" } }), 401);
    assert.equal((await fetch(s.url + "/v1/models")).status, 401);
    assert.equal((await fetch(s.url + "/health")).status, 200);
    assert.equal((await fetch(s.url + "/metrics")).status, 401);
    const auth = { headers: { authorization: "Bearer sekret-123" } };
    assert.equal((await fetch(s.url + "/metrics", auth)).status, 200);
    const ok = await post(s.url + "/v1/completions", { prompt: "x", max_tokens: 2 }, { headers: { authorization: "Bearer sekret-123" } });
    assert.equal(ok.status, 200, ok.text);
    const bad = new OpenAI({ baseURL: s.baseURL, apiKey: "wrong", maxRetries: 0 });
    await assert.rejects(bad.models.list(), (e) => e instanceof OpenAI.AuthenticationError);
    const good = new OpenAI({ baseURL: s.baseURL, apiKey: "sekret-123", maxRetries: 0 });
    const r = await good.completions.create({ model: MODEL, prompt: "x", max_tokens: 2 });
    assert.equal(r.choices.length, 1);
  } finally {
    assert.equal((await s.stop()).code, 0);
  }
  // PAGELLM_API_KEY works as well
  const e = await startServer({ env: { PAGELLM_API_KEY: "from-env" } });
  try {
    assert.equal((await fetch(e.url + "/v1/models")).status, 401);
    assert.equal((await fetch(e.url + "/v1/models", { headers: { authorization: "Bearer from-env" } })).status, 200);
  } finally {
    await e.stop();
  }
});

test("a full waiting queue with --queue-timeout 0 answers 503 (overloaded) at once, never a crash", async () => {
  const s = await startServer({ args: ["--max-num-seqs", "1", "--max-waiting", "2", "--queue-timeout", "0"] });
  try {
    const body = { model: MODEL, prompt: "Once", max_tokens: 200, ignore_eos: true };
    const rs = await Promise.all(Array.from({ length: 24 }, () => post(s.url + "/v1/completions", body)));
    const codes = rs.map((r) => r.status);
    assert.ok(codes.includes(200), codes.join(","));
    assert.ok(codes.includes(503), codes.join(","));
    for (const r of rs) {
      if (r.status === 503) {
        assertError(r, 503);
        assert.match(r.json.error.message, /overloaded/i);
      } else {
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.usage.completion_tokens, 200);
      }
    }
    const client = new OpenAI({ baseURL: s.baseURL, apiKey: "x", maxRetries: 0 });
    await client.completions.create({ model: MODEL, prompt: "x", max_tokens: 2 });
    const m = await waitMetrics(s.url, (m) => m["pagellm:num_requests_running"] === 0 && m["pagellm:kv_blocks_used"] === 0);
    assert.equal(m["pagellm:num_requests_waiting"], 0);
    assert.equal(m["pagellm:kv_blocks_used"], 0);
  } finally {
    assert.equal((await s.stop()).code, 0);
  }
});

test("a full queue is a fair line: arrivals wait in order for room, the rest get 503 after --queue-timeout", async () => {
  // One running, two waiting in the engine (--max-waiting 2); everyone after that waits in the
  // server's waiting room. Requests sent 30 ms apart must finish in the order they were sent
  // (a race for freed slots would reorder them, or turn them into 503s). The bundled model
  // takes ~0.12 s a request here (seconds under ASan: hence the long --queue-timeout), so
  // the line grows to several in the room, which num_requests_waiting counts beside the
  // engine's own queue.
  const s = await startServer({ model: sourcePath("models/pagellm-default.gguf"),
                                args: ["--max-num-seqs", "1", "--max-waiting", "2", "--queue-timeout", "600"] });
  try {
    const body = { model: "pagellm-default", prompt: "Once", max_tokens: 96, ignore_eos: true };
    const done = [];
    let maxWaiting = 0, running = true;
    const watch = (async () => {
      while (running) {
        maxWaiting = Math.max(maxWaiting, (await metrics(s.url))["pagellm:num_requests_waiting"]);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    const rs = await Promise.all(Array.from({ length: 12 }, async (_, i) => {
      await new Promise((r) => setTimeout(r, 30 * i));
      const r = await post(s.url + "/v1/completions", body);
      done.push(i);
      return r;
    }));
    running = false;
    await watch;
    for (const r of rs) {
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.usage.completion_tokens, 96);
    }
    assert.deepEqual(done, [...done].sort((a, b) => a - b), `finish order ${done}`);
    assert.ok(maxWaiting > 2, `at most ${maxWaiting} waiting: the room never held anyone`);
  } finally {
    assert.equal((await s.stop()).code, 0);
  }
  // A line that does not move within --queue-timeout: the wait ends with 503 + Retry-After.
  // The bundled model takes ~0.5 s for 400 tokens, so the running request holds the line far
  // longer than the 0.15 s timeout.
  const t = await startServer({ model: sourcePath("models/pagellm-default.gguf"),
                                args: ["--max-num-seqs", "1", "--max-waiting", "1", "--queue-timeout", "0.15",
                                       "--shutdown-timeout", "0"] });
  try {
    const long = { model: "pagellm-default", prompt: "Once", max_tokens: 400, ignore_eos: true };
    const first = [post(t.url + "/v1/completions", long), post(t.url + "/v1/completions", long)];
    await waitMetrics(t.url, (m) => m["pagellm:num_requests_running"] === 1 && m["pagellm:num_requests_waiting"] === 1);
    const t0 = Date.now();
    const late = await post(t.url + "/v1/completions", long);
    const waited = Date.now() - t0;
    assertError(late, 503);
    assert.equal(late.headers.get("retry-after"), "1");
    assert.match(late.json.error.message, /no room in the queue after waiting/);
    assert.ok(waited >= 140, `answered after ${waited} ms, before the 0.15 s --queue-timeout`);
    assert.equal((await t.stop("SIGTERM")).code, 0);
    await Promise.allSettled(first);
  } finally {
    await t.stop();
  }
});

/** POST a JSON body from a given local address (127.0.0.x: on Linux all of 127/8 is local). */
function postFrom(url, body, localAddress) {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = http.request(url, { method: "POST", localAddress, agent: false,
                                    headers: { "content-type": "application/json", "content-length": Buffer.byteLength(data) } },
      (res) => {
        let text = "";
        res.on("data", (d) => (text += d));
        res.on("end", () => resolve({ status: res.statusCode, text }));
      });
    req.on("error", reject);
    req.end(data);
  });
}

test("fair share: one client's queued batch does not hold back another client's request", async () => {
  // One sequence at a time; client A queues 6 requests, then client B sends one. With fair
  // share (the default) B's request takes the next turn: it finishes second (third if A's
  // first request, ~0.3 s, ended before B's arrived). In arrival order (--scheduling-policy
  // fcfs) it finishes last. Clients are told apart by the `user` field, else by address.
  const body = { model: "pagellm-default", prompt: "Once", max_tokens: 128, ignore_eos: true };
  for (const [policy, byUser] of [["fair", true], ["fair", false], ["fcfs", true]]) {
    const s = await startServer({ model: sourcePath("models/pagellm-default.gguf"),
                                  args: ["--max-num-seqs", "1", "--scheduling-policy", policy] });
    try {
      const order = [];
      const send = (who, addr) => postFrom(s.url + "/v1/completions",
                                           byUser ? { ...body, user: who } : body, addr)
        .then((r) => { assert.equal(r.status, 200, r.text); order.push(who); });
      const batch = Array.from({ length: 6 }, () => send("A", "127.0.0.1"));
      await waitMetrics(s.url, (m) => m["pagellm:num_requests_running"] === 1 && m["pagellm:num_requests_waiting"] === 5);
      const late = send("B", byUser ? "127.0.0.1" : "127.0.0.2");
      await Promise.all([...batch, late]);
      const at = order.indexOf("B");
      if (policy === "fair") assert.ok(at <= 2, `${policy} (${byUser ? "user" : "address"}): B finished ${at + 1}th of 7: ${order}`);
      else assert.equal(at, 6, `fcfs: B finished ${at + 1}th of 7: ${order}`);
    } finally {
      assert.equal((await s.stop()).code, 0);
    }
  }
});

test("fair share orders the waiting room too (past --max-waiting)", async () => {
  // One running, one in the engine's queue (--max-waiting 1): A's other 4 wait in the server's
  // waiting room, then B sends one. Fair share takes B right after A's first room request (it
  // finishes 4th of 7); in arrival order (fcfs) it finishes last.
  const body = { model: "pagellm-default", prompt: "Once", max_tokens: 128, ignore_eos: true };
  for (const policy of ["fair", "fcfs"]) {
    const s = await startServer({ model: sourcePath("models/pagellm-default.gguf"),
                                  args: ["--max-num-seqs", "1", "--max-waiting", "1",
                                         "--queue-timeout", "600", // ASan: 7 requests in turn
                                         "--scheduling-policy", policy] });
    try {
      const order = [];
      const send = (who) => post(s.url + "/v1/completions", { ...body, user: who })
        .then((r) => { assert.equal(r.status, 200, r.text); order.push(who); });
      const batch = Array.from({ length: 6 }, () => send("A"));
      await waitMetrics(s.url, (m) => m["pagellm:num_requests_running"] === 1 && m["pagellm:num_requests_waiting"] === 5);
      const late = send("B");
      await Promise.all([...batch, late]);
      const at = order.indexOf("B");
      if (policy === "fair") assert.ok(at <= 3, `fair: B finished ${at + 1}th of 7: ${order}`);
      else assert.equal(at, 6, `fcfs: B finished ${at + 1}th of 7: ${order}`);
    } finally {
      assert.equal((await s.stop()).code, 0);
    }
  }
});

test("binds 127.0.0.1 by default", () => {
  assert.match(srv.url, /^http:\/\/127\.0\.0\.1:\d+$/);
});

test("/health and /v1 answer 503 while the model is loading; a signal then exits", async () => {
  // A FIFO as the model file: opening it blocks until a writer appears, so the server stays
  // observably "loading" for as long as the test needs.
  const fifo = makeTempDir("pagellm-fifo-") + "/model.gguf";
  assert.equal(spawnSync("mkfifo", [fifo]).status, 0);
  const proc = spawnPl(["serve", "-m", fifo, "--port", "0"]);
  const exited = new Promise((r) => proc.on("exit", (code, signal) => r({ code, signal })));
  let out = "";
  const url = await new Promise((resolve, reject) => {
    proc.stdout.on("data", (d) => {
      out += d;
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve(m[1]);
    });
    exited.then(() => reject(new Error("exited early: " + out)));
  });
  const h = await fetch(url + "/health");
  assert.equal(h.status, 503);
  assert.match((await h.json()).error.message, /loading/);
  const c = await post(url + "/v1/completions", { prompt: "x" });
  assert.equal(c.status, 503);
  assert.equal((await fetch(url + "/metrics")).status, 200);
  proc.kill("SIGTERM");
  const r = await exited;
  assert.ok(r.code === 143 || r.signal === "SIGTERM", JSON.stringify(r));
});

test("a model that cannot be loaded exits 1 with a clear message", async () => {
  const r = runPl(["serve", "-m", "/nonexistent/model.gguf", "--port", "0"], { timeoutMs: 30_000 });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /cannot load the model/);
  const u = runPl(["serve", "--bogus-flag"], { timeoutMs: 30_000 });
  assert.equal(u.status, 2);
  assert.match(u.stderr, /unknown option/);
});

test("--served-model-name renames the model; the file stem is then unknown", async () => {
  const s = await startServer({ args: ["--served-model-name", "my-model"] });
  try {
    const models = await (await fetch(s.url + "/v1/models")).json();
    assert.deepEqual(models.data.map((m) => m.id), ["my-model"]);
    assertError(await post(s.url + "/v1/completions", { model: MODEL, prompt: "x" }), 404, "model");
    const ok = await post(s.url + "/v1/completions", { model: "my-model", prompt: "x", max_tokens: 2 });
    assert.equal(ok.status, 200);
    assert.equal(ok.json.model, "my-model");
  } finally {
    assert.equal((await s.stop()).code, 0);
  }
});
