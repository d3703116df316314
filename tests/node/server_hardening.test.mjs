// Hostile and careless clients (issue 20): the API key guards every path but /health and is
// checked before 404/405; --metrics-no-auth opens /metrics; Content-Type must be JSON;
// duplicate keys, deep nesting and too many messages are 400; a body over the server-wide
// in-flight budget is 503 with Retry-After; a client trickling its request head is cut at the
// request deadline however steadily it sends; connections per address are limited. After all
// of it the server still answers.
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import http from "node:http";
import { startServer, post, metrics, waitMetrics, parseSSE, CHATML_TEMPLATE } from "./lib/server.mjs";
import { sourcePath } from "./lib/util.mjs";

function assertError(r, status) {
  assert.equal(r.status, status, r.text);
  assert.ok(r.json && r.json.error && typeof r.json.error.message === "string", r.text);
}

test("API key before routing; /health open; /metrics needs the key unless --metrics-no-auth", async () => {
  const s = await startServer({ args: ["--api-key", "k3y"] });
  try {
    const auth = { headers: { authorization: "Bearer k3y" } };
    assert.equal((await fetch(s.url + "/health")).status, 200);
    // unknown paths and wrong methods do not reveal the routes without the key
    assert.equal((await fetch(s.url + "/no/such/route")).status, 401);
    assert.equal((await fetch(s.url + "/v1/completions")).status, 401);
    assert.equal((await fetch(s.url + "/version")).status, 401);
    assert.equal((await fetch(s.url + "/metrics")).status, 401);
    assert.equal((await fetch(s.url + "/no/such/route", auth)).status, 404);
    assert.equal((await fetch(s.url + "/v1/completions", auth)).status, 405);
    assert.equal((await fetch(s.url + "/metrics", auth)).status, 200);
  } finally {
    assert.equal((await s.stop()).code, 0);
  }
  const o = await startServer({ args: ["--api-key", "k3y", "--metrics-no-auth"] });
  try {
    const m = await fetch(o.url + "/metrics");
    assert.equal(m.status, 200);
    assert.match(await m.text(), /pagellm:stalled_client_aborts_total/);
    assert.equal((await fetch(o.url + "/v1/models")).status, 401);
  } finally {
    assert.equal((await o.stop()).code, 0);
  }
});

test("Content-Type, duplicate keys, nesting and message count limits", async () => {
  const s = await startServer();
  try {
    const url = s.url + "/v1/completions";
    const form = await post(url, { prompt: "x", max_tokens: 1 }, { headers: { "content-type": "application/x-www-form-urlencoded" } });
    assertError(form, 415);
    assert.match(form.json.error.message, /Content-Type/);
    const ok = await post(url, { prompt: "x", max_tokens: 1 }, { headers: { "content-type": "application/json; charset=utf-8" } });
    assert.equal(ok.status, 200, ok.text);
    const dup = await post(url, '{"prompt": "x", "max_tokens": 1, "max_tokens": 2}');
    assertError(dup, 400);
    assert.match(dup.json.error.message, /duplicate/);
    const deep = await post(url, '{"prompt": "x", "user": ' + "[".repeat(100) + "]".repeat(100) + "}");
    assertError(deep, 400);
    assert.match(deep.json.error.message, /nests .* deep; the limit is 64/);
    // brackets inside strings are text, not nesting
    const str = await post(url, { prompt: "[".repeat(200), max_tokens: 1 });
    assert.equal(str.status, 200, str.text);
    const msgs = Array.from({ length: 8193 }, () => ({ role: "user", content: "a" }));
    const many = await post(s.url + "/v1/chat/completions", { messages: msgs, max_tokens: 1 });
    assertError(many, 400);
    assert.equal(many.json.error.param, "messages");
    assert.match(many.json.error.message, /8193 entries; the limit is 8192/);
  } finally {
    assert.equal((await s.stop()).code, 0);
  }
});

test("the in-flight body budget answers 503 with Retry-After", async () => {
  const s = await startServer({ args: ["--max-inflight-body", "1KiB"] });
  try {
    const big = await post(s.url + "/v1/completions", { prompt: "x".repeat(4000), max_tokens: 1 });
    assertError(big, 503);
    assert.equal(big.headers.get("retry-after"), "1");
    assert.equal(big.json.error.code, "server_overloaded");
    // the budget is returned: small requests keep working, and so does the next big one's refusal
    for (let i = 0; i < 3; i++) {
      const r = await post(s.url + "/v1/completions", { prompt: "hello", max_tokens: 1 });
      assert.equal(r.status, 200, r.text);
    }
  } finally {
    assert.equal((await s.stop()).code, 0);
  }
});

/** Open a raw connection; resolves to the socket once connected. */
function connect(url) {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: hostname, port: Number(port) }, () => resolve(sock));
    sock.on("error", reject);
  });
}

test("a trickled request head is cut at the request deadline", async () => {
  const s = await startServer({ args: ["--request-timeout", "2", "--timeout", "60"] });
  try {
    const sock = await connect(s.url);
    const t0 = Date.now();
    const closed = new Promise((resolve) => sock.on("close", () => resolve(Date.now() - t0)));
    sock.on("error", () => {});
    sock.write("GET /health HTTP/1.1\r\nHost: x\r\n");
    // one header byte every 200 ms: an idle timeout would never fire
    const timer = setInterval(() => { if (!sock.destroyed) sock.write("X"); }, 200);
    const race = await Promise.race([closed, new Promise((r) => setTimeout(() => r(-1), 15_000))]);
    clearInterval(timer);
    sock.destroy();
    assert.ok(race > 0, "the server kept the trickling connection open for 15 s");
    assert.ok(race >= 1500, `cut after ${race} ms, before the 2 s deadline`);
    // the server still answers. fetch's pooled connection from startServer sat idle past the
    // 2 s deadline too, so the server may have closed it just now: that one try may fail.
    let health;
    for (let i = 0; i < 3 && !health; i++) {
      try { health = await fetch(s.url + "/health"); } catch {}
    }
    assert.equal(health && health.status, 200);
    assert.ok((await metrics(s.url))["pagellm:request_deadline_closes_total"] >= 1);
  } finally {
    assert.equal((await s.stop()).code, 0);
  }
});

test("connections per address are limited: a new one evicts the address's oldest idle one", async () => {
  const s = await startServer({ args: ["--max-connections-per-ip", "4"] });
  const socks = [];
  try {
    for (let i = 0; i < 5; i++) {
      const k = await connect(s.url);
      k.gone = false;
      k.on("error", () => {});
      k.on("close", () => (k.gone = true));
      socks.push(k);
      await new Promise((r) => setTimeout(r, 20)); // the server takes them in this order
    }
    // the fifth connection from 127.0.0.1 is served ...
    const fifth = socks[4];
    const answer = await new Promise((resolve) => {
      let data = "";
      fifth.on("data", (d) => (data += d));
      fifth.write("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
      const t = setInterval(() => { if (/\r\n\r\n/.test(data) || fifth.gone) { clearInterval(t); resolve(data); } }, 20);
      setTimeout(() => { clearInterval(t); resolve(data); }, 5000);
    });
    assert.match(answer, /^HTTP\/1\.1 200/, `the fifth connection got ${JSON.stringify(answer)}`);
    // ... and the address holds 4 at most: its oldest idle connection was shut down for it
    const deadline = Date.now() + 5000;
    while (!socks[0].gone && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.ok(socks[0].gone, "the address's oldest idle connection was not evicted");
    assert.ok(socks.filter((k) => !k.gone).length <= 4, `${socks.filter((k) => !k.gone).length} open`);
    assert.ok((await metrics(s.url))["pagellm:idle_connection_evictions_total"] >= 1);
  } finally {
    for (const k of socks) k.destroy();
    assert.equal((await s.stop()).code, 0);
  }
});

test("a stream whose client stops reading is aborted at --stall-timeout; readers are not", async () => {
  // The bundled model (a few seconds for this request, more under ASan), 16 choices with
  // logprobs: ~3 MB of SSE, more than the stream's capped socket buffers hold. Without the
  // cap, Linux lets the server's send buffer grow to 4 MiB and the whole output fits unread.
  // A stall is noticed when the engine hands over an event, so generation must outlast the
  // full buffer by more than --stall-timeout: with 240 tokens a fast machine finished first.
  const s = await startServer({ model: sourcePath("models/pagellm-default.gguf"),
                                args: ["--stall-timeout", "1"] });
  const body = JSON.stringify({ prompt: "Once upon a time", max_tokens: 480, n: 16, logprobs: 5,
                                stream: true, ignore_eos: true });
  let req;
  try {
    // a reader with the same request gets all of it, and nothing counts as stalled
    const whole = await post(s.url + "/v1/completions", body);
    assert.equal(whole.status, 200);
    const frames = parseSSE(whole.text);
    assert.equal(frames.at(-1).data, "[DONE]");
    const tokens = frames.slice(0, -1).reduce((a, f) => a + JSON.parse(f.data).choices.length, 0);
    assert.equal(tokens, 16 * 480);
    assert.equal((await metrics(s.url))["pagellm:stalled_client_aborts_total"], 0);

    // a client that reads the response head and then nothing more
    const { hostname, port } = new URL(s.url);
    let closed = false, stalledRes;
    req = http.request({ host: hostname, port, path: "/v1/completions", method: "POST",
                         headers: { "content-type": "application/json" } }, (res) => {
      assert.equal(res.statusCode, 200);
      stalledRes = res;
      res.pause();
      res.on("error", () => {});
      res.on("close", () => (closed = true));
    });
    req.on("error", () => {});
    req.end(body);
    const m = await waitMetrics(s.url, (m) => m["pagellm:stalled_client_aborts_total"] === 1 &&
                                m["pagellm:num_requests_running"] === 0, 120_000);
    assert.equal(m["pagellm:stalled_client_aborts_total"], 1);
    assert.equal(m["pagellm:num_requests_running"], 0);
    assert.equal(m["pagellm:num_requests_waiting"], 0);
    assert.equal(m["pagellm:kv_blocks_used"], 0);
    // the server ended that response: its connection closes once the client reads again
    const r = await post(s.url + "/v1/completions", { prompt: "Once", max_tokens: 4 });
    assert.equal(r.status, 200, r.text);
    stalledRes.resume();
    for (let i = 0; i < 200 && !closed; i++) await new Promise((res) => setTimeout(res, 50));
    assert.ok(closed, "the stalled stream's connection was not closed");
  } finally {
    req?.destroy();
    assert.equal((await s.stop()).code, 0);
  }
});

test("a prompt far over the context is refused before tokenizing, with a true lower bound", async () => {
  const s = await startServer({ args: ["--chat-template", CHATML_TEMPLATE] });
  try {
    // ~4 MB: its tokens, counted by /tokenize, are many times the context
    const prompt = "Once upon a time, a little dog ran to the park. ".repeat(80_000);
    const tok = await post(s.url + "/tokenize", { prompt });
    assert.equal(tok.status, 200, tok.text.slice(0, 300));
    for (const [url, body] of [["/v1/completions", { prompt, max_tokens: 4 }],
                               ["/v1/chat/completions", { messages: [{ role: "user", content: prompt }], max_tokens: 4 }]]) {
      const r = await post(s.url + url, body);
      assertError(r, 400);
      assert.equal(r.json.error.code, "context_length_exceeded");
      const m = /maximum context length is (\d+) tokens\. However, your (prompt|messages) is at least (\d+) tokens long/.exec(r.json.error.message);
      assert.ok(m, r.json.error.message);
      const [maxLen, atLeast] = [Number(m[1]), Number(m[3])];
      assert.ok(atLeast >= maxLen, r.json.error.message);
      assert.ok(atLeast <= tok.json.count, `claimed at least ${atLeast}, /tokenize counts ${tok.json.count}`);
    }
    // just over the context still gets the exact count
    const near = await post(s.url + "/v1/completions", { prompt: prompt.slice(0, 1500), max_tokens: 4 });
    assertError(near, 400);
    assert.match(near.json.error.message, /your prompt is \d+ tokens long/);
    assert.equal((await post(s.url + "/v1/completions", { prompt: "Once", max_tokens: 2 })).status, 200);
  } finally {
    assert.equal((await s.stop()).code, 0);
  }
});
