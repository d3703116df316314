// Soak, CI form (issue 20): 200 clients stream for 60 s without pause. Of their requests, 20%
// disconnect at a random point, 5% are malformed and 5% read their stream slowly; the rest read
// normally with the official openai client. Afterwards:
//  - every finished response is valid: greedy streams equal the text the same request gives
//    alone before the soak, finish_reason is stop or length, usage adds up; malformed requests
//    got a 4xx OpenAI error object; no request failed on the server's side (5xx, cut stream);
//  - the server is healthy with 0 running, 0 waiting and 0 KV blocks in use (cached allowed),
//    and no request finished with "error";
//  - the live heap is back to where it was (within caches that fill once), and RSS grew less
//    than RSS_LIMIT from after the warm-up (the first quarter) to the end.
// The assertions are invariants, not timings: a loaded CI machine only does fewer requests.
// PL_SOAK_SECONDS and PL_SOAK_CLIENTS make the long form (docs/RELIABILITY.md has its figures).
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import http from "node:http";
import OpenAI from "openai";
import { startServer, metrics, waitMetrics, CHATML_TEMPLATE } from "./lib/server.mjs";

const SECONDS = Number(process.env.PL_SOAK_SECONDS || 60);
const CLIENTS = Number(process.env.PL_SOAK_CLIENTS || 200);
// RSS growth allowed. Alone on this shared machine it measured +2.3% and +7.7%, amid the
// parallel suite +12.7%, each time with the live heap flat: thread stacks
// (a thread per connection then, cached by glibc) and arena pages followed how many connections
// happened to be open; with the epoll pool a 120 s run of 500 clients grew 0.5%, a 30-minute one
// 2.4% (docs/RELIABILITY.md, "Long soak"). So CI catches gross leaks outside our heap at 25%, the live-heap check below
// catches ours to the byte, and PL_SOAK_RSS_LIMIT=0.05 is the strict form.
const RSS_LIMIT = Number(process.env.PL_SOAK_RSS_LIMIT || 0.25);
const MODEL = "tinystories-280K";
const PROMPTS = ["Once upon a time", "The little dog", "Lily and Tom went to", "One day, a bird", "The sun was"];
const MAX_TOKENS = [8, 24, 48];

let rng = 20;
const rand = () => ((rng = (rng * 1103515245 + 12345) >>> 0) / 2 ** 32);
const pick = (a) => a[Math.floor(rand() * a.length)];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Sanitizer builds hold freed memory in quarantine, so their RSS says nothing about leaks.
const SANITIZED = fs.readFileSync(process.env.PL_BIN).includes("__asan_init");

function rssKiB(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m[1]);
}

// Requests a careless or hostile client sends; each must get a 4xx with an error object.
const MALFORMED = [
  { path: "/v1/completions", body: '{"prompt": "x", "max_tokens": 4', status: 400 },
  { path: "/v1/completions", body: '{"prompt": "x", "max_tokens": 4, "max_tokens": 5}', status: 400 },
  { path: "/v1/completions", body: '{"prompt": "x", "temperature": "hot"}', status: 400 },
  { path: "/v1/completions", body: '{"prompt": "x", "max_tokens": -3}', status: 400 },
  { path: "/v1/completions", body: '{"prompt": "x", "n": ' + "[".repeat(80) + "]".repeat(80) + "}", status: 400 },
  { path: "/v1/chat/completions", body: '{"messages": "hello"}', status: 400 },
  { path: "/v1/chat/completions", body: '{"messages": [{"role": "wizard", "content": "hi"}]}', status: 400 },
  { path: "/v1/completions", body: "prompt=x", type: "application/x-www-form-urlencoded", status: 415 },
  { path: "/v1/completions", body: '{"model": "gpt-9", "prompt": "x"}', status: 404 },
];

function params(chat, prompt, maxTokens) {
  return {
    model: MODEL,
    max_tokens: maxTokens,
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
    ...(chat ? { messages: [{ role: "user", content: prompt }] } : { prompt }),
  };
}

const refKey = (chat, prompt, maxTokens) => `${chat}|${prompt}|${maxTokens}`;

// Parse an SSE body into {text, finish, usage, role, done}; throws on a malformed frame.
function parseSse(body, chat) {
  const r = { text: "", finish: null, usage: null, role: null, done: false };
  for (const ev of body.split("\n\n")) {
    if (!ev.trim() || ev.startsWith(":")) continue;
    assert.ok(ev.startsWith("data: "), `bad SSE frame ${JSON.stringify(ev)}`);
    assert.ok(!r.done, "data after [DONE]");
    const data = ev.slice(6);
    if (data === "[DONE]") {
      r.done = true;
      continue;
    }
    const c = JSON.parse(data);
    assert.ok(!c.error, `error frame: ${data}`);
    if (c.usage) r.usage = c.usage;
    for (const ch of c.choices) {
      if (chat) {
        if (ch.delta.role) r.role = ch.delta.role;
        r.text += ch.delta.content ?? "";
      } else {
        r.text += ch.text;
      }
      if (ch.finish_reason) r.finish = ch.finish_reason;
    }
  }
  return r;
}

// A client that stops reading after the headers for 1-3 s, then reads in small sips.
function slowStream(url, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: "POST", agent: false, headers: { "content-type": "application/json" } }, (res) => {
      res.pause();
      let data = "";
      res.setEncoding("utf8");
      res.on("data", (d) => {
        data += d;
        res.pause();
        setTimeout(() => res.resume(), 20);
      });
      res.on("end", () => resolve({ status: res.statusCode, data }));
      res.on("error", reject);
      setTimeout(() => res.resume(), 1000 + rand() * 2000);
    });
    req.on("error", reject);
    req.end(JSON.stringify(body));
  });
}

function checkStream(r, p, chat, refs, label) {
  assert.ok(["stop", "length"].includes(r.finish), `${label}: finish ${r.finish}`);
  assert.ok(r.usage, `${label}: no usage chunk`);
  assert.ok(r.usage.completion_tokens >= 1 && r.usage.completion_tokens <= p.max_tokens, `${label}: usage ${JSON.stringify(r.usage)}`);
  if (r.finish === "length") assert.equal(r.usage.completion_tokens, p.max_tokens, label);
  if (chat) assert.equal(r.role, "assistant", label);
  const prompt = chat ? p.messages[0].content : p.prompt;
  assert.equal(r.text, refs.get(refKey(chat, prompt, p.max_tokens)), `${label}: text differs from the request alone`);
}

test(`soak: ${CLIENTS} streaming clients for ${SECONDS} s with disconnects, malformed requests and slow readers`, { timeout: (SECONDS + 600) * 1000 }, async () => {
  // All clients share one address, and their keep-alive pools hold idle connections beside the
  // busy ones (up to ~870 server-side for 500 clients, sampled): the limits are set above that,
  // so that this test is about churn, and checked below to have cut nothing.
  const srv = await startServer({ args: ["--chat-template", CHATML_TEMPLATE, "--kv-cache-memory", "8MiB",
                                         "--max-connections", "4096", "--max-connections-per-ip", "4096"] });
  const client = new OpenAI({ baseURL: srv.baseURL, apiKey: "x", maxRetries: 0, timeout: 300_000 });
  try {
    // References: each request alone, before any load.
    const refs = new Map();
    for (const chat of [false, true])
      for (const prompt of PROMPTS)
        for (const mt of MAX_TOKENS) {
          const p = { ...params(chat, prompt, mt), stream: false, stream_options: undefined };
          const r = chat ? await client.chat.completions.create(p) : await client.completions.create(p);
          refs.set(refKey(chat, prompt, mt), chat ? r.choices[0].message.content : r.choices[0].text);
        }

    const before = await metrics(srv.url);
    const count = { normal: 0, disconnected: 0, malformed: 0, slow: 0 };
    const t0 = Date.now();
    const end = t0 + SECONDS * 1000;
    // RSS twelve times during the run: the second quarter's mean (after the warm-up) against
    // the last quarter's (a leak grows steadily; allocator noise of a few MiB averages out).
    const rssSeries = [];
    const rssTimer = setInterval(() => rssSeries.push(rssKiB(srv.proc.pid)), (SECONDS * 1000) / 12);

    async function worker(w) {
      await sleep(rand() * 1000); // do not all start in the same millisecond
      while (Date.now() < end) {
        const x = rand();
        const chat = rand() < 0.5;
        const p = params(chat, pick(PROMPTS), pick(MAX_TOKENS));
        const label = `client ${w} request ${JSON.stringify(p)}`;
        if (x < 0.05) {
          const m = pick(MALFORMED);
          const r = await fetch(srv.url + m.path, { method: "POST", body: m.body, headers: { "content-type": m.type || "application/json" } });
          const j = await r.json();
          assert.equal(r.status, m.status, `${m.body}: ${JSON.stringify(j)}`);
          assert.equal(typeof j.error.message, "string");
          count.malformed++;
        } else if (x < 0.10) {
          const r = await slowStream(srv.baseURL + (chat ? "/chat/completions" : "/completions"), p);
          assert.equal(r.status, 200, `${label}: ${r.data}`);
          const s = parseSse(r.data, chat);
          assert.ok(s.done, `${label}: no [DONE]`);
          checkStream(s, p, chat, refs, label);
          count.slow++;
        } else {
          const ac = new AbortController();
          const disconnectAfter = x < 0.30 ? Math.floor(rand() * 6) : -1; // 0: while queued
          if (disconnectAfter === 0) setTimeout(() => ac.abort(), Math.floor(rand() * 30));
          const r = { text: "", finish: null, usage: null, role: null };
          let chunks = 0;
          try {
            const stream = await (chat ? client.chat.completions : client.completions).create(p, { signal: ac.signal });
            for await (const c of stream) {
              if (c.usage) r.usage = c.usage;
              for (const ch of c.choices) {
                if (chat) {
                  if (ch.delta.role) r.role = ch.delta.role;
                  r.text += ch.delta.content ?? "";
                } else {
                  r.text += ch.text;
                }
                if (ch.finish_reason) r.finish = ch.finish_reason;
              }
              if (disconnectAfter > 0 && ++chunks >= disconnectAfter) {
                ac.abort();
                break;
              }
            }
          } catch (e) {
            if (!ac.signal.aborted) throw e; // a failure the client did not cause
          }
          if (disconnectAfter >= 0) {
            count.disconnected++;
          } else {
            checkStream(r, p, chat, refs, label);
            count.normal++;
          }
        }
      }
    }
    await Promise.all(Array.from({ length: CLIENTS }, (_, w) => worker(w)));
    clearInterval(rssTimer);
    console.log(`soak: RSS every ${SECONDS / 12} s (MiB): ${rssSeries.map((k) => (k / 1024).toFixed(0)).join(" ")}`);
    const total = count.normal + count.disconnected + count.malformed + count.slow;
    console.log(`soak: ${total} requests in ${((Date.now() - t0) / 1000).toFixed(0)} s: ${JSON.stringify(count)}`);
    assert.ok(count.normal > 0 && count.disconnected > 0 && count.malformed > 0 && count.slow > 0, JSON.stringify(count));

    // Nothing is held for anyone, and no request ended in an error.
    assert.equal((await fetch(srv.url + "/health")).status, 200);
    const m = await waitMetrics(srv.url, (m) => m["pagellm:num_requests_running"] === 0 && m["pagellm:num_requests_waiting"] === 0 && m["pagellm:kv_blocks_used"] === 0, 60_000);
    assert.equal(m["pagellm:num_requests_running"], 0);
    assert.equal(m["pagellm:num_requests_waiting"], 0);
    assert.equal(m["pagellm:kv_blocks_used"], 0);
    const key = 'pagellm:request_success_total{finished_reason="error"}';
    assert.equal(m[key] - before[key], 0);
    // no connection was cut for a limit or refused unanswered (a client's "socket hang up")
    for (const k of ["pagellm:idle_connection_evictions_total", "pagellm:http_connections_refused_total"])
      assert.equal(m[k] - before[k], 0, k);

    // Our allocator's live bytes: back to where they were, up to caches that fill once (about
    // 30 KiB in 30 s and in 60 s runs alike: the KV map and prefix index reaching their size).
    const heap0 = before["pagellm:heap_live_bytes"], heap1 = m["pagellm:heap_live_bytes"];
    console.log(`soak: heap ${heap0} bytes before, ${heap1} after (${heap1 - heap0 >= 0 ? "+" : ""}${heap1 - heap0})`);
    assert.ok(heap1 - heap0 < 256 * 1024, `live heap grew by ${heap1 - heap0} bytes`);
    const mean = (a) => a.reduce((x, y) => x + y, 0) / a.length;
    assert.ok(rssSeries.length >= 8, `${rssSeries.length} RSS samples`);
    const q = Math.floor(rssSeries.length / 4);
    const rssWarm = mean(rssSeries.slice(q, 2 * q)), rssEnd = mean(rssSeries.slice(-q));
    const growth = (rssEnd - rssWarm) / rssWarm;
    console.log(`soak: RSS ${(rssWarm / 1024).toFixed(1)} MiB after warm-up, ${(rssEnd / 1024).toFixed(1)} MiB at the end (${(growth * 100).toFixed(1)}%)${SANITIZED ? "; not checked under a sanitizer" : ""}`);
    if (!SANITIZED) assert.ok(growth < RSS_LIMIT, `RSS grew ${(growth * 100).toFixed(1)}% (limit ${RSS_LIMIT * 100}%)`);
  } finally {
    const r = await srv.stop();
    assert.equal(r.code, 0, srv.logs().slice(-2000));
  }
});
