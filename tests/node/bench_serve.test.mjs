// `pagellm bench serve` against a fake OpenAI-compatible server with a known schedule
// (lib/fake_openai.mjs): the reported TTFT / TPOT / ITL / E2E, throughput and token counts
// must match what the schedule implies, within tolerances for timer jitter on a busy 2-core
// box; failures (HTTP 500, dropped streams, refused connections, stalls) must be counted with
// their messages; the request bodies must be what vLLM's benchmark sends. Then, when
// `pagellm serve` works, one smoke run against it; and tools/bench/plot.mjs on the results.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync, existsSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import net from "node:net";
import { plBin, spawnPl, makeTempDir, dataPath, sourcePath } from "./lib/util.mjs";
import { startFakeOpenAI } from "./lib/fake_openai.mjs";

const bin = plBin();
const dir = makeTempDir("pagellm-bench-serve-");
let nJson = 0;

/** Run pagellm without blocking the event loop (the fake server lives in this process). */
function runAsync(args, { timeoutMs = 120_000, env } = {}) {
  return new Promise((resolve) => {
    const p = spawnPl(args, { env });
    let stdout = "", stderr = "";
    p.stdout.on("data", (d) => (stdout += d));
    p.stderr.on("data", (d) => (stderr += d));
    const t = setTimeout(() => p.kill("SIGKILL"), timeoutMs);
    p.on("close", (status, signal) => {
      clearTimeout(t);
      resolve({ status, signal, stdout, stderr });
    });
  });
}

/** bench serve with --json; returns {status, stdout, stderr, json}. */
async function bench(url, args, opts) {
  const file = join(dir, `r${nJson++}.json`);
  const r = await runAsync(["bench", "serve", "--base-url", url, "--json", file, ...args], opts);
  r.json = existsSync(file) ? JSON.parse(readFileSync(file, "utf8")) : null;
  return r;
}

function within(v, lo, hi, what) {
  assert.ok(v >= lo && v <= hi, `${what} = ${v}, expected in [${lo}, ${hi}]`);
}

const skip = !bin && "pagellm binary not found";

test("timings and counts match the fake server's schedule", { skip }, async () => {
  const ttft = 50, itl = 10, out = 20, n = 24, conc = 8, inLen = 16;
  const srv = await startFakeOpenAI({ ttftMs: ttft, itlMs: itl });
  try {
    const r = await bench(srv.url, ["--workload", "fixed", "--input-len", `${inLen}`, "--output-len", `${out}`,
      "--num-prompts", `${n}`, "--max-concurrency", `${conc}`, "--label", "fake"]);
    assert.equal(r.status, 0, r.stderr);
    const j = r.json;
    assert.equal(j.completed, n);
    assert.equal(j.failed, 0);
    assert.equal(j.first_error, null);
    assert.equal(j.model_id, "fake-model"); // learned from /v1/models
    assert.equal(j.label, "fake");
    assert.equal(j.total_output_tokens, n * out);
    assert.equal(j.total_input_tokens, n * inLen);
    // The client's numbers against what the server really did (timers run late on a loaded
    // box): the client's clock starts before the server sees the request and stops after the
    // server wrote, so client >= server, by no more than the loopback round trip and scheduling delays.
    const reqs = srv.state.requests;
    const mean = (a) => a.reduce((x, y) => x + y, 0) / a.length;
    const median = (a) => { const s = [...a].sort((x, y) => x - y); const m = (s.length - 1) / 2; return (s[Math.floor(m)] + s[Math.ceil(m)]) / 2; };
    const sTtft = reqs.map((q) => q.chunkTimes[0] - q.t);
    const sE2e = reqs.map((q) => q.chunkTimes[out - 1] - q.t);
    const sItl = reqs.flatMap((q) => q.chunkTimes.slice(1).map((t, k) => t - q.chunkTimes[k]));
    const sTpot = reqs.map((q) => (q.chunkTimes[out - 1] - q.chunkTimes[0]) / (out - 1));
    within(j.mean_ttft_ms, mean(sTtft), mean(sTtft) + 30, "mean TTFT vs the server's");
    within(j.mean_e2el_ms, mean(sE2e), mean(sE2e) + 30, "mean E2E vs the server's");
    within(j.mean_itl_ms, mean(sItl) - 0.5, mean(sItl) + 0.5, "mean ITL vs the server's");
    within(j.median_itl_ms, median(sItl) - 1, median(sItl) + 1, "median ITL vs the server's");
    within(j.mean_tpot_ms, mean(sTpot) - 0.5, mean(sTpot) + 0.5, "mean TPOT vs the server's");
    // and the server kept (roughly) to its schedule: first chunk at 50 ms, then one per 10 ms
    const e2e = ttft + (out - 1) * itl;
    within(j.mean_ttft_ms, ttft - 1, ttft + 100, "mean TTFT");
    within(j.mean_itl_ms, itl - 3, itl + 5, "mean ITL");
    within(j.mean_tpot_ms, itl - 3, itl + 5, "mean TPOT");
    assert.ok(j.p99_ttft_ms >= j.p90_ttft_ms && j.p90_ttft_ms >= j.p50_ttft_ms, "percentiles ordered");
    assert.equal(j.p50_itl_ms, j.median_itl_ms);
    // 24 requests in waves of 8: at least three back-to-back waves of ~240 ms; the duration
    // spans the server's first arrival to its last write
    const waves = Math.ceil(n / conc);
    const sSpan = (Math.max(...reqs.map((q) => q.chunkTimes[out - 1])) - Math.min(...reqs.map((q) => q.t))) / 1000;
    assert.ok(j.duration >= (waves * e2e) / 1000, `duration ${j.duration}`);
    within(j.duration, sSpan, sSpan + 0.2, "duration vs the server's span (s)");
    within(j.request_throughput, n / j.duration - 1e-6, n / j.duration + 1e-6, "request throughput");
    within(j.output_throughput, (n * out) / j.duration * 0.999, (n * out) / j.duration * 1.001, "output tok/s");
    within(j.total_token_throughput, (n * (out + inLen)) / j.duration * 0.999, (n * (out + inLen)) / j.duration * 1.001, "total tok/s");
    assert.equal(j.max_concurrent_requests, conc);
    assert.equal(srv.state.maxInFlight, conc, "the server never saw more than --max-concurrency");
    // per-request arrays, in workload order
    for (const k of ["success", "input_lens", "output_lens", "expected_output_lens", "ttfts", "latencies", "start_times", "itls", "errors"])
      assert.equal(j[k].length, n, k);
    for (let i = 0; i < n; i++) {
      assert.equal(j.itls[i].length, out - 1);
      assert.equal(j.output_lens[i], out);
      assert.ok(j.ttfts[i] * 1000 >= ttft - 1, `ttft[${i}]`);
    }
    // what went over the wire: vLLM's request shape
    assert.equal(srv.state.requests.length, n);
    for (const q of srv.state.requests) {
      const b = q.body;
      assert.equal(q.url, "/v1/completions");
      assert.equal(b.model, "fake-model");
      assert.equal(b.stream, true);
      assert.deepEqual(b.stream_options, { include_usage: true });
      assert.equal(b.ignore_eos, true);
      assert.equal(b.max_tokens, out);
      assert.equal(b.prompt.length, inLen);
      for (const id of b.prompt) assert.ok(Number.isInteger(id) && id >= 259 && id < 512, `token id ${id}`);
      assert.equal(q.headers.authorization, undefined);
    }
    // the human table
    assert.match(r.stdout, /Successful requests:\s+24/);
    assert.match(r.stdout, /Mean TTFT \(ms\):\s+\d+\.\d\d/);
    assert.match(r.stdout, /P99 ITL \(ms\):/);
    assert.doesNotMatch(r.stderr, /\[#/, "no progress bar when stderr is not a terminal");
  } finally {
    await srv.close();
  }
});

test("same seed, same prompts; Poisson arrivals at --request-rate; inf starts all at once", { skip }, async () => {
  const srv = await startFakeOpenAI({ ttftMs: 5, itlMs: 5 });
  try {
    const args = ["--workload", "alpaca-like", "--num-prompts", "60", "--seed", "7"];
    const a = await bench(srv.url, [...args, "--request-rate", "100"]);
    assert.equal(a.status, 0, a.stderr);
    const promptsA = srv.state.requests.map((q) => JSON.stringify(q.body.prompt)).sort();
    const st = a.json.start_times;
    assert.equal(a.json.request_rate, 100);
    // 59 exponential gaps with mean 10 ms: the mean gap lands within ±40% with a huge margin
    const span = Math.max(...st) - Math.min(...st);
    within(span / 59, 0.006, 0.014, "mean inter-arrival (s)");
    // not evenly spaced: exponential gaps vary a lot
    const gaps = [...st].sort((x, y) => x - y).slice(1).map((t, i, s) => t - (i ? s[i - 1] : Math.min(...st)));
    assert.ok(Math.max(...gaps) > 3 * Math.min(...gaps), "gaps vary");
    const b = await bench(srv.url, [...args, "--request-rate", "inf"]);
    assert.equal(b.status, 0, b.stderr);
    assert.equal(b.json.request_rate, "inf");
    assert.ok(Math.max(...b.json.start_times) < 0.1, "all requests start at once");
    const promptsB = srv.state.requests.slice(60).map((q) => JSON.stringify(q.body.prompt)).sort();
    assert.deepEqual(promptsA, promptsB, "the workload depends only on the seed");
  } finally {
    await srv.close();
  }
});

test("HTTP errors and dropped streams count as failures with their message", { skip }, async () => {
  const srv = await startFakeOpenAI({
    ttftMs: 10,
    itlMs: 2,
    behave: (i) => (i % 4 === 1 ? { status: 500, message: "boom at the server" } : i % 5 === 2 ? { dropAfter: 3 } : "ok"),
  });
  try {
    const n = 40;
    const r = await bench(srv.url, ["--workload", "fixed", "--input-len", "8", "--output-len", "10", "--num-prompts", `${n}`, "--max-concurrency", "1"]);
    assert.equal(r.status, 0, r.stderr);
    let http500 = 0, dropped = 0;
    for (let i = 0; i < n; i++) {
      if (i % 4 === 1) http500++;
      else if (i % 5 === 2) dropped++;
    }
    const j = r.json;
    assert.equal(j.failed, http500 + dropped);
    assert.equal(j.completed, n - http500 - dropped);
    assert.equal(j.total_output_tokens, j.completed * 10, "failed requests add no tokens");
    // concurrency 1: arrival order = workload order
    for (let i = 0; i < n; i++) {
      if (i % 4 === 1) assert.match(j.errors[i], /HTTP 500: boom at the server/);
      else if (i % 5 === 2) assert.match(j.errors[i], /closed the connection mid-stream/);
      else assert.equal(j.errors[i], null);
      assert.equal(j.success[i], j.errors[i] === null);
      if (!j.success[i]) assert.equal(j.ttfts[i], null);
    }
    assert.match(j.first_error, /HTTP 500: boom at the server/);
    assert.match(r.stdout, /Failed requests:\s+\d+/);
    assert.match(r.stdout, /First error: HTTP 500: boom at the server/);
  } finally {
    await srv.close();
  }
});

test("a refused connection fails every request; exit status 1; bad options exit 2", { skip }, async () => {
  // a port that was free a moment ago
  const port = await new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
  const url = `http://127.0.0.1:${port}`;
  const r = await bench(url, ["--model", "m", "--num-prompts", "5", "--workload", "fixed", "--input-len", "4", "--output-len", "4"]);
  assert.equal(r.status, 1, r.stderr);
  assert.equal(r.json.failed, 5);
  assert.equal(r.json.completed, 0);
  assert.match(r.json.first_error, /refused/i);
  // without --model the name cannot be learned: a clear message, no run
  const r2 = await runAsync(["bench", "serve", "--base-url", url, "--num-prompts", "2"]);
  assert.equal(r2.status, 1);
  assert.match(r2.stderr, /pass --model/);
  for (const bad of [["--request-rate", "fast"], ["--workload", "nope"], ["--base-url", "https://x"], ["--frobnicate"]]) {
    const b = await runAsync(["bench", "serve", "--model", "m", ...bad]);
    assert.equal(b.status, 2, `${bad.join(" ")}: ${b.stderr}`);
    assert.ok(b.stderr.length > 0);
  }
  const h = await runAsync(["bench", "serve", "--help"]);
  assert.equal(h.status, 0);
  assert.match(h.stdout, /--max-concurrency/);
});

test("stream framing variants: usage vs chunk counting, CRLF, split lines, close-delimited", { skip }, async () => {
  const args = ["--workload", "fixed", "--input-len", "6", "--output-len", "12", "--num-prompts", "6"];
  // 3 tokens per chunk: usage says 12, the chunks alone would say 4
  let srv = await startFakeOpenAI({ ttftMs: 5, itlMs: 3, tokensPerChunk: 3, crlf: true, fragment: 7 });
  try {
    const r = await bench(srv.url, args);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.json.failed, 0, r.json.first_error);
    assert.equal(r.json.total_output_tokens, 6 * 12);
    assert.equal(r.json.itls[0].length, 3);
    // TPOT divides by tokens, ITL is per chunk: 3 ms per 3 tokens -> ~1 ms per token
    assert.ok(r.json.mean_tpot_ms < r.json.mean_itl_ms, "TPOT per token < ITL per chunk");
  } finally {
    await srv.close();
  }
  srv = await startFakeOpenAI({ ttftMs: 5, itlMs: 3, tokensPerChunk: 3, usage: false, closeDelimited: true, fragment: 1 });
  try {
    const r = await bench(srv.url, args);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.json.failed, 0, r.json.first_error);
    assert.equal(r.json.total_output_tokens, 6 * 4, "no usage chunk: one token per content chunk");
  } finally {
    await srv.close();
  }
  // close-delimited and cut short: no [DONE], no finish_reason
  srv = await startFakeOpenAI({ ttftMs: 5, itlMs: 3, closeDelimited: true, behave: () => ({ dropAfter: 2 }) });
  try {
    const r = await bench(srv.url, args);
    assert.equal(r.status, 1);
    assert.equal(r.json.failed, 6);
    assert.match(r.json.first_error, /without \[DONE\]|mid-stream/);
  } finally {
    await srv.close();
  }
});

test("chat endpoint, API key, per-request timeout", { skip }, async () => {
  const srv = await startFakeOpenAI({ ttftMs: 40, itlMs: 5, behave: (i) => (i === 3 ? "stall" : "ok") });
  try {
    const r = await bench(srv.url, ["--endpoint", "/v1/chat/completions", "--api-key", "sk-test", "--workload", "fixed",
      "--input-len", "10", "--output-len", "5", "--num-prompts", "4", "--max-concurrency", "1", "--timeout", "1", "--model", "fake-model"]);
    assert.equal(r.status, 0, r.stderr);
    const j = r.json;
    assert.equal(j.completed, 3);
    assert.equal(j.failed, 1);
    assert.match(j.errors[3], /timeout/);
    // the role-only first chunk (empty content) is not the first token
    for (let i = 0; i < 3; i++) within(j.ttfts[i] * 1000, 39, 1000, `chat ttft[${i}]`);
    for (const q of srv.state.requests) {
      assert.equal(q.url, "/v1/chat/completions");
      assert.equal(q.headers.authorization, "Bearer sk-test");
      assert.equal(q.body.messages.length, 1);
      assert.equal(q.body.messages[0].role, "user");
      assert.equal(q.body.messages[0].content.split(" ").length, 10);
      assert.equal(q.body.prompt, undefined);
    }
  } finally {
    await srv.close();
  }
});

test("hundreds of concurrent streams on one thread", { skip }, async () => {
  // a long TTFT keeps every stream open until all have started, even on a loaded machine
  const srv = await startFakeOpenAI({ ttftMs: 1500, itlMs: 10 });
  try {
    const n = 400;
    const r = await bench(srv.url, ["--workload", "fixed", "--input-len", "4", "--output-len", "10", "--num-prompts", `${n}`]);
    assert.ok(Math.max(...r.json.start_times) < 1, "all connections opened at once");
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.json.completed, n, r.json.first_error);
    assert.equal(r.json.max_concurrent_requests, n);
    assert.equal(srv.state.maxInFlight, n);
    assert.equal(r.json.total_output_tokens, n * 10);
  } finally {
    await srv.close();
  }
});

test("tools/bench/plot.mjs turns serve and throughput results into SVG plots", { skip }, async () => {
  const srv = await startFakeOpenAI({ ttftMs: 5, itlMs: 2 });
  const files = [];
  try {
    for (const c of [1, 4])
      for (const label of ["engine A", "engine B"]) {
        const r = await bench(srv.url, ["--workload", "fixed", "--input-len", "4", "--output-len", "6", "--num-prompts", "8", "--max-concurrency", `${c}`, "--label", label]);
        assert.equal(r.status, 0, r.stderr);
        files.push(join(dir, `r${nJson - 1}.json`));
      }
  } finally {
    await srv.close();
  }
  // `pagellm bench throughput --json` output (the fields plot.mjs reads)
  const thr = (kv, wl, tok) => ({ model: "/m/tiny.gguf", workload: wl, kv_alloc: kv, num_prompts: 8, elapsed_s: 1, requests_per_s: 8, output_tok_s: tok, total_tok_s: tok * 2, peak_running: kv === "paged" ? 8 : 2, preemptions: 0 });
  const tf = join(dir, "thr.json");
  writeFileSync(tf, JSON.stringify([thr("paged", "alpaca-like", 900), thr("static", "alpaca-like", 300), thr("paged", "shared-prefix", 800), thr("static", "shared-prefix", 200)]));
  const out = join(dir, "plots");
  const p = spawnSync(process.execPath, [sourcePath("tools/bench/plot.mjs"), "--out", out, ...files, tf], { encoding: "utf8" });
  assert.equal(p.status, 0, p.stderr);
  const svgs = ["throughput_vs_concurrency.svg", "paged_vs_static.svg", "latency_cdf_ttft.svg", "latency_cdf_e2el.svg"];
  for (const f of svgs) {
    const s = readFileSync(join(out, f), "utf8");
    assert.match(s, /^<\?xml[^]*<svg [^]*<\/svg>\s*$/, f);
    assert.doesNotMatch(s, /NaN|undefined|Infinity/, f);
  }
  const tput = readFileSync(join(out, svgs[0]), "utf8");
  assert.equal((tput.match(/<polyline/g) || []).length, 2, "one line per engine");
  assert.match(tput, /engine A/);
  const bars = readFileSync(join(out, svgs[1]), "utf8");
  assert.equal((bars.match(/<rect [^>]*fill="#[0-9A-F]+"><title>/g) || []).length, 4, "four bars");
  const cdf = readFileSync(join(out, svgs[2]), "utf8");
  assert.equal((cdf.match(/<polyline/g) || []).length, 4, "one CDF per serve result");
  // nothing plottable: exit 1
  const bad = join(dir, "bad.json");
  writeFileSync(bad, "{}");
  assert.equal(spawnSync(process.execPath, [sourcePath("tools/bench/plot.mjs"), "--out", out, bad]).status, 1);
});

// `pagellm serve` on the tiny model, when it builds and answers
const model = dataPath("models/tinystories-280K.gguf");
test("smoke: 50 requests against pagellm serve, 0 failures", { skip }, async (t) => {
  const srv = spawnPl(["serve", "-m", model, "--port", "0"]);
  let log = "";
  srv.stderr.on("data", (d) => (log += d));
  srv.stdout.on("data", (d) => (log += d));
  try {
    const deadline = Date.now() + 60_000;
    let url = null;
    while (!url && Date.now() < deadline && srv.exitCode === null) {
      const m = /ready: (http:\/\/127\.0\.0\.1:\d+)/.exec(log);
      if (m) url = m[1];
      else await new Promise((r) => setTimeout(r, 50));
    }
    if (!url) {
      t.skip(`pagellm serve did not become ready: ${log.slice(-300)}`);
      return;
    }
    const r = await bench(url, ["--num-prompts", "50", "--workload", "alpaca-like", "--max-concurrency", "16", "--label", "pagellm"]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.json.failed, 0, r.json.first_error);
    assert.equal(r.json.completed, 50);
    assert.equal(r.json.model_id, "tinystories-280K");
    // ignore_eos: every request produced exactly its max_tokens
    assert.deepEqual(r.json.output_lens, r.json.expected_output_lens);
    assert.equal(r.json.total_output_tokens, r.json.expected_output_lens.reduce((a, b) => a + b, 0));
    assert.ok(r.json.mean_ttft_ms > 0 && r.json.output_throughput > 0);
  } finally {
    srv.kill("SIGTERM");
    await new Promise((r) => (srv.exitCode !== null ? r() : srv.on("close", r)));
  }
});
