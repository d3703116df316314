// Load: 200 streaming requests (completions and chat), 64 in flight at once, a fifth of the
// clients disconnecting at random points (before the first byte, i.e. while queued, or
// mid-stream). Every completed stream must be well formed and, for greedy requests, equal to
// the text the same request gives alone; afterwards the server is healthy and /metrics shows
// nothing running, nothing waiting and zero KV blocks in use (only cached ones).
import { test } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { startServer, metrics, waitMetrics, CHATML_TEMPLATE } from "./lib/server.mjs";

const MODEL = "tinystories-280K";
const TOTAL = 200;
const CONCURRENCY = 64;
const PROMPTS = ["Once upon a time", "The little dog", "Lily and Tom went to", "One day, a bird", "The sun was"];

// Deterministic pseudo-random numbers so a failure can be replayed.
let rng = 12345;
const rand = () => ((rng = (rng * 1103515245 + 12345) >>> 0) / 2 ** 32);

test("200 streams, 64 concurrent, 20% random disconnects: results valid, nothing leaks", { timeout: 600_000 }, async () => {
  // seeded outputs are compared with the same request alone: --batch-invariant makes that hold
  // on a GPU too (cuBLAS rounds a row differently per batch size); the CPU is invariant anyway
  const srv = await startServer({
    args: ["--chat-template", CHATML_TEMPLATE, "--max-num-seqs", "32", "--batch-invariant"],
  });
  const client = new OpenAI({ baseURL: srv.baseURL, apiKey: "x", maxRetries: 0, timeout: 120_000 });
  try {
    const jobs = Array.from({ length: TOTAL }, (_, i) => {
      const chat = i % 4 === 0;
      const greedy = i % 2 === 0;
      const prompt = PROMPTS[i % PROMPTS.length];
      const params = {
        model: MODEL,
        max_tokens: 8 + Math.floor(rand() * 56),
        temperature: greedy ? 0 : 0.9,
        seed: greedy ? undefined : 1000 + i,
        stream: true,
        stream_options: { include_usage: true },
        ...(chat ? { messages: [{ role: "user", content: prompt }] } : { prompt }),
      };
      const disconnect = rand() < 0.2 ? { afterChunks: Math.floor(rand() * 6) } : null; // 0 = while queued
      return { i, chat, greedy, params, disconnect };
    });

    const before = await metrics(srv.url);
    const results = [];
    let next = 0;
    async function worker() {
      while (next < jobs.length) {
        const job = jobs[next++];
        const ac = new AbortController();
        const res = { job, text: "", finish: null, usage: null, chunks: 0, aborted: false, role: null };
        try {
          const api = job.chat ? client.chat.completions : client.completions;
          if (job.disconnect && job.disconnect.afterChunks === 0) setTimeout(() => ac.abort(), Math.floor(rand() * 20));
          const stream = await api.create(job.params, { signal: ac.signal });
          for await (const c of stream) {
            if (c.usage) {
              res.usage = c.usage;
              continue;
            }
            res.chunks++;
            const ch = c.choices[0];
            assert.equal(ch.index, 0);
            if (job.chat) {
              if (ch.delta.role) res.role = ch.delta.role;
              res.text += ch.delta.content ?? "";
            } else {
              res.text += ch.text;
            }
            if (ch.finish_reason) res.finish = ch.finish_reason;
            if (job.disconnect && res.chunks >= job.disconnect.afterChunks) {
              ac.abort();
              break;
            }
          }
        } catch (e) {
          if (!(e instanceof OpenAI.APIUserAbortError || e.name === "AbortError" || ac.signal.aborted)) throw e;
          res.aborted = true;
        }
        if (job.disconnect) res.aborted = true;
        results.push(res);
      }
    }
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    assert.equal(results.length, TOTAL);

    // Every completed stream is complete and well formed.
    const completed = results.filter((r) => !r.aborted);
    const disconnected = results.length - completed.length;
    assert.ok(disconnected >= 20 && disconnected <= 60, `disconnected ${disconnected}`);
    for (const r of completed) {
      assert.ok(["stop", "length"].includes(r.finish), `request ${r.job.i}: finish ${r.finish}`);
      assert.ok(r.usage, `request ${r.job.i}: no usage chunk`);
      assert.ok(r.usage.completion_tokens >= 1 && r.usage.completion_tokens <= r.job.params.max_tokens);
      if (r.finish === "length") assert.equal(r.usage.completion_tokens, r.job.params.max_tokens);
      if (r.job.chat) assert.equal(r.role, "assistant");
    }

    // The server is healthy and everything was released.
    assert.equal((await fetch(srv.url + "/health")).status, 200);
    const m = await waitMetrics(srv.url, (m) => m["pagellm:num_requests_running"] === 0 && m["pagellm:num_requests_waiting"] === 0 && m["pagellm:kv_blocks_used"] === 0);
    assert.equal(m["pagellm:num_requests_running"], 0);
    assert.equal(m["pagellm:num_requests_waiting"], 0);
    assert.equal(m["pagellm:kv_blocks_used"], 0);
    const aborts = m['pagellm:request_success_total{finished_reason="abort"}'] - before['pagellm:request_success_total{finished_reason="abort"}'];
    assert.ok(aborts >= 1 && aborts <= disconnected, `aborts ${aborts} for ${disconnected} disconnects`);
    const finished = ["stop", "length", "abort", "error"].reduce(
      (n, k) => n + m[`pagellm:request_success_total{finished_reason="${k}"}`] - before[`pagellm:request_success_total{finished_reason="${k}"}`], 0);
    assert.ok(finished <= TOTAL && finished >= completed.length, `finished ${finished}`);
    assert.equal(m[`pagellm:request_success_total{finished_reason="error"}`], 0);

    // Results do not depend on who shared the batch: greedy and seeded requests, replayed one
    // at a time without streaming, give the same text.
    const check = completed.filter((r) => r.job.i % 5 === 0).slice(0, 30);
    for (const r of check) {
      const api = r.job.chat ? client.chat.completions : client.completions;
      const alone = await api.create({ ...r.job.params, stream: false, stream_options: undefined });
      const text = r.job.chat ? alone.choices[0].message.content : alone.choices[0].text;
      assert.equal(r.text, text, `request ${r.job.i} (${r.job.greedy ? "greedy" : "seeded"}) differs when run alone`);
    }
  } finally {
    const r = await srv.stop();
    assert.equal(r.code, 0, srv.logs().slice(-2000));
  }
});
