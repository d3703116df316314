// Start and stop `pagellm serve` for tests: it listens on a free port (--port 0), the URL is read
// from its first stdout line, and start resolves once /health answers 200. Every server still
// running when the test process exits is killed. Also: a Prometheus text parser and a raw
// curl runner for checking SSE framing byte by byte.
import { spawn } from "node:child_process";
import { spawnPl, dataPath } from "./util.mjs";

export const TINY_MODEL = dataPath("models/tinystories-280K.gguf");
export const CHATML_TEMPLATE = dataPath("chat-templates/chatml-openhermes-2.5.jinja");

const live = new Set();
process.on("exit", () => {
  for (const p of live) {
    try {
      p.kill("SIGKILL");
    } catch {}
  }
});

/**
 * Extra `pagellm serve` arguments for every server the tests start, from $PL_SERVER_ARGS
 * (whitespace-separated; scripts/test-gpu.sh sets "--device cuda"). They come before the
 * test's own args, so a test that sets the same option still wins.
 */
export const SERVER_ARGS = (process.env.PL_SERVER_ARGS || "").split(/\s+/).filter(Boolean);

/**
 * Start a server. Options: model (default the tiny TinyStories model), args (extra CLI args),
 * env, timeoutMs. Resolves to {url, baseURL, proc, logs(), stop(signal), exited}.
 */
export async function startServer({ model = TINY_MODEL, args = [], env = {}, timeoutMs = 60_000 } = {}) {
  const proc = spawnPl(["serve", "-m", model, "--port", "0", ...SERVER_ARGS, ...args], { env });
  live.add(proc);
  let out = "";
  let err = "";
  const exited = new Promise((resolve) => {
    proc.on("exit", (code, signal) => {
      live.delete(proc);
      resolve({ code, signal });
    });
  });
  proc.stderr.on("data", (d) => (err += d));
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not print its URL:\n${out}\n${err}`)), timeoutMs);
    proc.stdout.on("data", (d) => {
      out += d;
      const m = /listening on (http:\/\/[^\s]+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`server exited (${code ?? signal}) before listening:\n${out}\n${err}`));
    });
  });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const r = await fetch(url + "/health");
      if (r.status === 200) break;
    } catch {}
    if (Date.now() > deadline) throw new Error(`server never became healthy:\n${out}\n${err}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url,
    baseURL: url + "/v1",
    proc,
    exited,
    logs: () => out + err,
    /** Send `signal` and wait for the exit; resolves to {code, signal}. */
    async stop(signal = "SIGTERM", waitMs = 30_000) {
      if (proc.exitCode !== null || proc.signalCode !== null) return exited;
      proc.kill(signal);
      const t = setTimeout(() => proc.kill("SIGKILL"), waitMs);
      const r = await exited;
      clearTimeout(t);
      return r;
    },
  };
}

/** GET /metrics and parse it: {"pagellm:name{labels}": value}, labels without model_name. */
export async function metrics(url) {
  const text = await (await fetch(url + "/metrics")).text();
  const m = {};
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = /^([^{\s]+)(\{[^}]*\})?\s+(\S+)$/.exec(line);
    if (!match) throw new Error(`bad metrics line: ${line}`);
    const labels = (match[2] || "")
      .replace(/model_name="(?:[^"\\]|\\.)*",?/, "")
      .replace(/^\{\}$/, "")
      .replace(/,\}$/, "}");
    m[match[1] + labels] = Number(match[3]);
  }
  return m;
}

/** Poll metrics until pred(m) holds (or throw after timeoutMs); returns the last metrics. */
export async function waitMetrics(url, pred, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  let m;
  for (;;) {
    m = await metrics(url);
    if (pred(m)) return m;
    if (Date.now() > deadline) return m;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Run curl with args; resolves to {code, stdout (Buffer), stderr}. */
export function curl(args, { timeoutMs = 30_000 } = {}) {
  return new Promise((resolve, reject) => {
    const p = spawn("curl", args, { stdio: ["ignore", "pipe", "pipe"] });
    const chunks = [];
    let stderr = "";
    p.stdout.on("data", (d) => chunks.push(d));
    p.stderr.on("data", (d) => (stderr += d));
    const t = setTimeout(() => p.kill("SIGKILL"), timeoutMs);
    p.on("error", reject);
    p.on("exit", (code) => {
      clearTimeout(t);
      resolve({ code, stdout: Buffer.concat(chunks), stderr });
    });
  });
}

/** POST JSON (or raw string/Buffer) with fetch; resolves to {status, headers, json, text}. */
export async function post(url, body, { headers = {}, signal } = {}) {
  const raw = typeof body === "string" || Buffer.isBuffer(body) ? body : JSON.stringify(body);
  const r = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: raw,
    signal,
  });
  const text = await r.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: r.status, headers: r.headers, json, text };
}

/** Parse an SSE body into its events: [{data, comment}] in order, asserting the framing. */
export function parseSSE(text) {
  const events = [];
  if (!text.endsWith("\n\n")) throw new Error(`SSE body does not end with a blank line: ${JSON.stringify(text.slice(-50))}`);
  for (const block of text.slice(0, -2).split("\n\n")) {
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) events.push({ comment: line.slice(1).trim() });
      else if (line.startsWith("data: ")) events.push({ data: line.slice(6) });
      else throw new Error(`unexpected SSE line: ${JSON.stringify(line)}`);
    }
  }
  return events;
}
