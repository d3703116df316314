// `pagellm bench serve` conversation workloads against the fake OpenAI server (lib/fake_openai.mjs,
// which records every request body and when its chunks were written): multi-turn requests resend
// their conversation's history with the answers actually streamed, and are sent only after the
// previous turn finished; many-system-prompts spreads users over K distinct system prompts of
// the asked length. Then --metrics-url against a real `pagellm serve`: the reported prefix-cache
// hits and queries are the deltas of the server's own counters over the run.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { plBin, spawnPl, makeTempDir, sourcePath } from "./lib/util.mjs";
import { startFakeOpenAI } from "./lib/fake_openai.mjs";
import { startServer, metrics } from "./lib/server.mjs";

const bin = plBin();
const skip = !bin && "pagellm binary not found";
const dir = makeTempDir("pagellm-bench-conv-");
let nJson = 0;

function bench(url, args) {
  const file = join(dir, `r${nJson++}.json`);
  return new Promise((resolve) => {
    const p = spawnPl(["bench", "serve", "--base-url", url, "--endpoint", "/v1/chat/completions", "--json", file, ...args]);
    let stdout = "", stderr = "";
    p.stdout.on("data", (d) => (stdout += d));
    p.stderr.on("data", (d) => (stderr += d));
    const t = setTimeout(() => p.kill("SIGKILL"), 120_000);
    p.on("close", (status) => {
      clearTimeout(t);
      resolve({ status, stdout, stderr, json: existsSync(file) ? JSON.parse(readFileSync(file, "utf8")) : null });
    });
  });
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

test("multi-turn: each turn resends its history with the streamed answers, after the previous turn", { skip }, async () => {
  const srv = await startFakeOpenAI({ ttftMs: 5, itlMs: 1, maxModelLen: 1024 });
  try {
    const r = await bench(srv.url, ["--workload", "multi-turn", "--num-prompts", "40", "--max-concurrency", "4"]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.json.completed, 40);
    const reqs = srv.state.requests;
    assert.equal(reqs.length, 40);
    const sys = reqs[0].body.messages[0];
    assert.equal(sys.role, "system");
    assert.equal(sys.content.split(" ").length, 24);
    let later = 0;
    const convs = new Set();
    for (const q of reqs) {
      const m = q.body.messages;
      assert.ok(same(m[0], sys), "one system prompt for every conversation");
      assert.equal(m.length % 2, 0);
      m.slice(1).forEach((x, k) => assert.equal(x.role, k % 2 ? "assistant" : "user"));
      if (m.length === 2) {
        convs.add(q.i);
        continue;
      }
      later++;
      // the previous turn: the request whose messages are this one's minus the last two
      const prev = reqs.filter((p) => same(p.body.messages, m.slice(0, -2)));
      assert.equal(prev.length, 1, `turn ${q.i} has one previous turn`);
      const p = prev[0];
      assert.equal(m.at(-2).content, "tok ".repeat(p.body.max_tokens), "the answer as streamed");
      assert.ok(q.t >= p.chunkTimes.at(-1), `turn ${q.i} was sent before turn ${p.i} finished`);
    }
    assert.ok(later >= 15 && convs.size >= 7, `${convs.size} conversations, ${later} later turns`);
    assert.ok(srv.state.maxInFlight <= 4);
  } finally {
    await srv.close();
  }
});

test("many-system-prompts: K system prompts of the given length, users spread over them", { skip }, async () => {
  const srv = await startFakeOpenAI({ ttftMs: 5, itlMs: 1, maxModelLen: 1024 });
  try {
    const r = await bench(srv.url, ["--workload", "many-system-prompts", "--num-system-prompts", "5", "--system-prompt-len", "300", "--num-prompts", "60", "--max-concurrency", "8"]);
    assert.equal(r.status, 0, r.stderr);
    const reqs = srv.state.requests;
    assert.equal(reqs.length, 60);
    const count = new Map();
    for (const q of reqs) {
      const m = q.body.messages;
      assert.equal(m.length, 2);
      assert.equal(m[0].role, "system");
      assert.equal(m[0].content.split(" ").length, 300);
      const n = m[1].content.split(" ").length;
      assert.ok(n >= 20 && n <= 40, `question of ${n} words`);
      count.set(m[0].content, (count.get(m[0].content) ?? 0) + 1);
    }
    assert.equal(count.size, 5);
    for (const c of count.values()) assert.ok(c >= 4, `a system prompt with only ${c} users`);
    // conversation workloads need a chat endpoint
    const bad = await new Promise((resolve) => {
      const p = spawnPl(["bench", "serve", "--base-url", srv.url, "--workload", "multi-turn"]);
      let e = "";
      p.stderr.on("data", (d) => (e += d));
      p.on("close", (status) => resolve({ status, e }));
    });
    assert.equal(bad.status, 2);
    assert.match(bad.e, /needs --endpoint \/v1\/chat\/completions/);
  } finally {
    await srv.close();
  }
});

test("--metrics-url: hit rate from the server's own prefix-cache counters", { skip }, async () => {
  const srv = await startServer({ model: sourcePath("models/pagellm-default.gguf"), args: ["--threads", "1"] });
  try {
    const m0 = await metrics(srv.url);
    const r = await bench(srv.url, ["--workload", "many-system-prompts", "--num-system-prompts", "2", "--num-prompts", "12", "--max-concurrency", "3", "--metrics-url", srv.url]);
    assert.equal(r.status, 0, r.stderr);
    const m1 = await metrics(srv.url);
    const q = m1["pagellm:prefix_cache_queries_total"] - m0["pagellm:prefix_cache_queries_total"];
    const h = m1["pagellm:prefix_cache_hits_total"] - m0["pagellm:prefix_cache_hits_total"];
    assert.equal(r.json.prefix_cache_queries, q);
    assert.equal(r.json.prefix_cache_hits, h);
    assert.ok(h > 0, "12 users of 2 system prompts share prefixes");
    assert.ok(Math.abs(r.json.prefix_cache_hit_rate - h / q) < 1e-8); // JSON keeps 9 digits
    assert.match(r.stdout, new RegExp(`Prefix cache hit rate \\(%\\): +${((100 * h) / q).toFixed(2)}`));
    assert.ok(Math.abs(m1["pagellm:prefix_cache_hit_rate"] - m1["pagellm:prefix_cache_hits_total"] / m1["pagellm:prefix_cache_queries_total"]) < 1e-9);
  } finally {
    await srv.stop();
  }
});
