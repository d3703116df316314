// Peak server memory per request body (issue 20, goal: peak RSS under 3x the bodies in flight
// plus the fixed pool). Starts `pagellm serve` on the bundled model with a ChatML template,
// then, for each count K, sends K chat bodies of ~8 MB at once and reports the server's peak
// RSS (VmHWM, reset through /proc/PID/clear_refs) over its RSS just before, against the sum
// of the bodies. The bodies are far longer than the context, as a hostile or careless
// client's would be: each must be refused with context_length_exceeded. Linux only.
//
//   node tools/bench/body_rss.mjs [--counts 1,2,4,16] [--messages 8000] [--bytes 1000]
//                                 [--http-threads 2] [--rounds 3] [--bin build/pagellm]
//                                 [--model M.gguf] [--kv-cache-memory SIZE]
// --accepted: for a model whose context holds the whole body (e.g. `pagellm model-gen
// --vocab-from models/pagellm-default.gguf --n-ctx 4194304 --n-embd 64 --n-layer 1 ...`, with
// --kv-cache-memory for one such sequence): the bodies are rendered, tokenized and admitted;
// once all K run or wait, the client disconnects (the engine aborts them, 16-token prefill
// steps meanwhile), so this is the memory of accepting a long prompt, without its prefill.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const { values: opt } = parseArgs({
  options: {
    counts: { type: "string", default: "1,2,4,16" },
    messages: { type: "string", default: "8000" },
    bytes: { type: "string", default: "1000" },
    "http-threads": { type: "string", default: "2" },
    rounds: { type: "string", default: "3" },
    bin: { type: "string", default: join(root, "build/pagellm") },
    model: { type: "string", default: join(root, "models/pagellm-default.gguf") },
    "kv-cache-memory": { type: "string", default: "" },
    accepted: { type: "boolean", default: false },
  },
});

const MiB = 1 << 20;
function status(pid) {
  const s = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(s)[1]) * 1024;
  return { rss: kb("VmRSS"), hwm: kb("VmHWM") };
}

// ChatML, written here: the bundled model has no template of its own
const CHATML = "{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}" +
               "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
const tmpl = join(mkdtempSync(join(tmpdir(), "pagellm-rss-")), "chatml.jinja");
writeFileSync(tmpl, CHATML);

async function start() {
  const kv = opt["kv-cache-memory"] ? ["--kv-cache-memory", opt["kv-cache-memory"]] : [];
  if (opt.accepted) kv.push("--max-num-batched-tokens", "16");
  const proc = spawn(opt.bin, ["serve", "-m", opt.model, "--port", "0", ...kv,
    "--chat-template", tmpl,
    "--http-threads", opt["http-threads"], "--max-body-size", String(64 * MiB)],
  { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, PAGELLM_LOG: "warn" } });
  const url = await new Promise((res, rej) => {
    let out = "";
    proc.stdout.on("data", (d) => {
      out += d;
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) res(m[1]);
    });
    proc.on("exit", (c) => rej(new Error(`server exited ${c}`)));
  });
  for (;;) {
    try { if ((await fetch(url + "/health")).status === 200) break; } catch {}
    await new Promise((r) => setTimeout(r, 50));
  }
  return { proc, url };
}

const content = "a little dog ran to the park and ".repeat(64).slice(0, Number(opt.bytes));
const messages = Array.from({ length: Number(opt.messages) }, (_, i) =>
  ({ role: i % 2 ? "assistant" : "user", content }));
const body = JSON.stringify({ messages, max_tokens: 4 });

const post = (url, b, signal) => fetch(url + "/v1/chat/completions",
  { method: "POST", headers: { "content-type": "application/json" }, body: b, signal })
  .then(async (r) => `${r.status} ${(await r.json()).error?.code ?? "ok"}`, (e) => e.name);

async function gauges(url) {
  const t = await (await fetch(url + "/metrics")).text();
  const g = (n) => Number(new RegExp(`^pagellm:${n}\\{[^}]*\\} (\\S+)`, "m").exec(t)?.[1] ?? NaN);
  return { running: g("num_requests_running"), waiting: g("num_requests_waiting") };
}

/* --accepted: send, wait until all k are in the engine, then hang up and let it drain. */
async function postAccepted(url, k) {
  const ac = new AbortController();
  const rs = Array.from({ length: k }, () => post(url, body, ac.signal));
  for (;;) {
    const m = await gauges(url);
    if (m.running + m.waiting >= k) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  ac.abort();
  const out = await Promise.all(rs);
  while ((await gauges(url)).running > 0) await new Promise((r) => setTimeout(r, 20));
  return out.map((a) => (a === "AbortError" ? "admitted, then aborted" : a));
}
const small = JSON.stringify({ messages: messages.slice(0, 2).map((m) => ({ ...m, content: "hi" })), max_tokens: 4 });

console.log(`body ${(body.length / MiB).toFixed(2)} MiB (${opt.messages} messages of ${opt.bytes} bytes), ` +
            `${opt["http-threads"]} HTTP threads, a fresh server per round, median of ${opt.rounds} rounds`);
console.log("| bodies at once | sum of bodies | peak RSS over before (each round) | median ratio | answers |");
console.log("|---|---|---|---|---|");
for (const k of opt.counts.split(",").map(Number)) {
  const peaks = [];
  let answers;
  for (let round = 0; round < Number(opt.rounds); round++) {
    // A fresh process each round: memory freed by an earlier round stays resident (the
    // allocator keeps it), which would hide the next round's peak.
    const { proc, url } = await start();
    try {
      await post(url, small); // the first request's one-time allocations are not the bodies'
      writeFileSync(`/proc/${proc.pid}/clear_refs`, "5"); // VmHWM := VmRSS
      const before = status(proc.pid).rss;
      const rs = opt.accepted ? await postAccepted(url, k)
                              : await Promise.all(Array.from({ length: k }, () => post(url, body)));
      peaks.push(status(proc.pid).hwm - before);
      answers = [...new Set(rs)].join(", ");
    } finally {
      proc.kill("SIGTERM");
      await new Promise((r) => proc.on("exit", r));
    }
  }
  const med = [...peaks].sort((a, b) => a - b)[peaks.length >> 1];
  console.log(`| ${k} | ${(k * body.length / MiB).toFixed(1)} MiB | ${peaks.map((p) => (p / MiB).toFixed(1)).join(", ")} MiB | ` +
              `${(med / (k * body.length)).toFixed(2)}x | ${answers} |`);
}
