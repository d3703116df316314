// The connection model (issue 20): idle and slowloris connections cost a socket, not a thread.
// Thousands of connections that send nothing or half a request head are held open while the
// server's thread count stays where it was, and normal requests (whole, and streamed with
// n = 2) are still answered promptly. A thread-per-connection server fails the thread count.
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { readFileSync, readdirSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { startServer, post, parseSSE } from "./lib/server.mjs";

/** Threads and resident memory (KiB) of a process, from /proc. */
function procStatus(pid) {
  const text = readFileSync(`/proc/${pid}/status`, "utf8");
  const num = (key) => Number(new RegExp(`^${key}:\\s+(\\d+)`, "m").exec(text)[1]);
  return { threads: num("Threads"), rssKiB: num("VmRSS") };
}

const fdCount = (pid) => readdirSync(`/proc/${pid}/fd`).length;

/** How many idle connections this machine lets both ends hold (each end needs a descriptor). */
function connectionBudget(want) {
  let hard = want * 2 + 256;
  try {
    const out = execFileSync("sh", ["-c", "ulimit -Hn"], { encoding: "utf8" }).trim();
    if (out !== "unlimited") hard = Number(out);
  } catch {}
  // the server keeps (limit - 64) / 2 connections (a socket and an eventfd each)
  return Math.max(100, Math.min(want, Math.floor((hard - 64) / 2) - 64));
}

function open(url) {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: hostname, port: Number(port) }, () => resolve(sock));
    sock.once("error", reject);
  });
}

/** Poll until pred() or timeoutMs; returns the last value of get(). */
async function settle(get, pred, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let v = get();
  while (!pred(v) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    v = get();
  }
  return v;
}

test("thousands of idle and slowloris connections hold no threads; requests are still served", async () => {
  const N = connectionBudget(2000);
  const s = await startServer({
    args: ["--max-connections", String(N + 100), "--max-connections-per-ip", "0",
           "--request-timeout", "600", "--timeout", "600", "--http-threads", "2"],
  });
  const socks = [];
  let closedEarly = 0;
  try {
    const pid = s.proc.pid;
    // warm up: the first request starts whatever the engine starts lazily
    assert.equal((await post(s.url + "/v1/completions", { prompt: "Once", max_tokens: 2 })).status, 200);
    const before = procStatus(pid);
    const fds0 = fdCount(pid);

    for (let i = 0; i < N; i += 100) {
      const batch = [];
      for (let k = i; k < Math.min(N, i + 100); k++) batch.push(open(s.url));
      for (const sock of await Promise.all(batch)) {
        sock.on("error", () => {});
        sock.on("close", () => closedEarly++);
        // half send nothing, half the start of a request head that never ends (slowloris)
        if (socks.length % 2) sock.write("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Le");
        socks.push(sock);
      }
    }
    // every connection reached the server (one descriptor each) ...
    const fds = await settle(() => fdCount(pid), (n) => n - fds0 >= N, 20_000);
    assert.ok(fds - fds0 >= N, `the server holds ${fds - fds0} of ${N} connections`);
    const during = procStatus(pid);
    console.log(`${N} idle connections: threads ${before.threads} -> ${during.threads}, ` +
                `RSS ${(before.rssKiB / 1024).toFixed(1)} -> ${(during.rssKiB / 1024).toFixed(1)} MiB`);
    // ... and none of them took a thread
    assert.ok(during.threads <= before.threads + 2,
              `threads went from ${before.threads} to ${during.threads} with ${N} idle connections`);

    // a normal request is answered promptly while they are open
    let t0 = Date.now();
    const whole = await post(s.url + "/v1/completions", { prompt: "Once upon a time", max_tokens: 16 });
    const wholeMs = Date.now() - t0;
    assert.equal(whole.status, 200, whole.text);
    assert.equal(whole.json.choices[0].text.length > 0, true);
    t0 = Date.now();
    const n2 = await post(s.url + "/v1/completions", { prompt: "Once upon a time", max_tokens: 8, n: 2, stream: true });
    const streamMs = Date.now() - t0;
    assert.equal(n2.status, 200, n2.text);
    const events = parseSSE(n2.text);
    assert.equal(events.at(-1).data, "[DONE]");
    const idx = new Set(events.filter((e) => e.data && e.data !== "[DONE]").map((e) => JSON.parse(e.data).choices[0]?.index));
    assert.ok(idx.has(0) && idx.has(1), "both choices streamed");
    console.log(`with them open: a 16-token completion took ${wholeMs} ms, a streamed n=2 one ${streamMs} ms`);
    const limitMs = process.env.PL_SANITIZE === "ON" ? 30_000 : 5_000;
    assert.ok(wholeMs < limitMs && streamMs < limitMs, `too slow: ${wholeMs} / ${streamMs} ms`);

    assert.equal(closedEarly, 0, "the server closed idle connections it should have held");
    assert.ok(procStatus(pid).threads <= before.threads + 2);
  } finally {
    // SIGTERM with them all still open: the server closes them and exits cleanly
    const exit = await s.stop();
    for (const k of socks) k.destroy();
    assert.equal(exit.code, 0);
  }
});
