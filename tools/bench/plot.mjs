#!/usr/bin/env node
// Plot benchmark results as plain SVG files (no npm packages).
//
//   node tools/bench/plot.mjs [--out DIR] [--x concurrency|rate] [--y output|total|requests]
//                             [--log-latency] RESULT.json ...
//
// Inputs, recognised by their fields (a file may also hold an array of results):
//   serve       `pagellm bench serve --json FILE` (or `vllm bench serve --save-result`):
//               output_throughput, max_concurrency, request_rate, ttfts, latencies, label
//   throughput  `pagellm bench throughput --json > FILE`: kv_alloc, workload, output_tok_s, ...
// Outputs, each written only when some input feeds it:
//   throughput_vs_concurrency.svg  one line per engine/config (serve results grouped by label,
//                                  else backend + model), x = --max-concurrency (or the
//                                  request rate with --x rate), y = output tok/s
//   paged_vs_static.svg            throughput results: output tok/s per workload, one bar per
//                                  KV allocation mode (and model, when several)
//   latency_cdf_ttft.svg, latency_cdf_e2el.svg
//                                  CDFs of per-request TTFT / end-to-end latency, one line per
//                                  serve result
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { basename, join } from "node:path";

// ---- arguments ------------------------------------------------------------------------------

function parseArgs(argv) {
  const o = { out: ".", x: "concurrency", y: "output", logLatency: false, files: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--out") o.out = argv[++i];
    else if (a === "--x") o.x = argv[++i];
    else if (a === "--y") o.y = argv[++i];
    else if (a === "--log-latency") o.logLatency = true;
    else if (a === "--help" || a === "-h") o.help = true;
    else if (a.startsWith("--")) throw new Error(`unknown option ${a}`);
    else o.files.push(a);
  }
  if (!["concurrency", "rate"].includes(o.x)) throw new Error("--x expects concurrency or rate");
  if (!["output", "total", "requests"].includes(o.y)) throw new Error("--y expects output, total or requests");
  if (!o.out) throw new Error("--out needs a directory");
  return o;
}

// ---- loading --------------------------------------------------------------------------------

function load(files) {
  const serve = [], thr = [];
  for (const f of files) {
    let data;
    try {
      data = JSON.parse(readFileSync(f, "utf8"));
    } catch (e) {
      throw new Error(`${f}: ${e.message}`);
    }
    for (const r of Array.isArray(data) ? data : [data]) {
      if (r && typeof r === "object" && "output_throughput" in r && ("ttfts" in r || "latencies" in r)) serve.push({ ...r, _file: f });
      else if (r && typeof r === "object" && "kv_alloc" in r && "output_tok_s" in r) thr.push({ ...r, _file: f });
      else console.error(`plot: ${f}: not a bench serve or bench throughput result; skipped`);
    }
  }
  return { serve, thr };
}

const stem = (p) => (p ? basename(String(p)).replace(/\.(gguf|safetensors)$/, "") : "");

function seriesName(r) {
  return r.label || [r.backend, r.model_id].filter(Boolean).join(" ") || basename(r._file);
}

function rateOf(r) {
  const v = r.request_rate;
  return v === "inf" || v === Infinity || v === null || v === undefined ? Infinity : Number(v);
}

function xOf(r, mode) {
  if (mode === "rate") return Number.isFinite(rateOf(r)) ? rateOf(r) : null;
  if (r.max_concurrency) return Number(r.max_concurrency);
  // all requests at once and no cap: the concurrency is the number of requests
  if (!Number.isFinite(rateOf(r))) return Number(r.num_prompts ?? r.completed + (r.failed ?? 0));
  return null;
}

// ---- SVG helpers ----------------------------------------------------------------------------

const PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#999999"];
const W = 760, H = 460, M = { l: 78, r: 210, t: 48, b: 62 };
const PW = W - M.l - M.r, PH = H - M.t - M.b;

const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

function fmt(v) {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e6) return `${+(v / 1e6).toPrecision(3)}M`;
  if (a >= 1e4) return `${+(v / 1e3).toPrecision(3)}k`;
  if (a >= 100) return v.toFixed(0);
  return String(+v.toPrecision(3));
}

/** "Nice" linear ticks covering [lo, hi]: steps of 1, 2 or 5 x 10^k. */
function linTicks(lo, hi, n = 6) {
  if (!(hi > lo)) hi = lo + 1;
  const raw = (hi - lo) / n, p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw);
  const t = [];
  for (let v = Math.floor(lo / step) * step; v <= hi + step * 1e-9; v += step) t.push(+v.toPrecision(12));
  if (t[t.length - 1] < hi) t.push(+(t[t.length - 1] + step).toPrecision(12));
  return t;
}

/** Log ticks at 1, 2, 5 x 10^k covering [lo, hi] (lo > 0). */
function logTicks(lo, hi) {
  const t = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++)
    for (const m of [1, 2, 5]) t.push(+(m * 10 ** e).toPrecision(12));
  let a = 0, b = t.length - 1;
  while (a < b && t[a + 1] <= lo) a++;
  while (b > a && t[b - 1] >= hi) b--;
  return t.slice(a, b + 1);
}

function scale(ticks, log, pixels, flip) {
  const lo = ticks[0], hi = ticks[ticks.length - 1];
  const f = log ? (v) => (Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo)) : (v) => (v - lo) / (hi - lo || 1);
  return (v) => (flip ? pixels * (1 - f(v)) : pixels * f(v));
}

/** Frame, grid, ticks, axis titles, plot title; returns the pieces as a string. */
function axes({ title, xLabel, yLabel, xTicks, yTicks, sx, sy, xTickLabels }) {
  const s = [];
  s.push(`<text x="${W / 2 - M.r / 2 + M.l / 2}" y="26" text-anchor="middle" font-size="16" font-weight="bold">${esc(title)}</text>`);
  s.push(`<g transform="translate(${M.l},${M.t})">`);
  for (const v of yTicks) {
    const y = sy(v).toFixed(1);
    s.push(`<line x1="0" x2="${PW}" y1="${y}" y2="${y}" stroke="#e3e3e3"/>`);
    s.push(`<text x="-8" y="${y}" dy="0.32em" text-anchor="end" font-size="12">${fmt(v)}</text>`);
  }
  if (xTicks)
    for (const v of xTicks) {
      const x = sx(v).toFixed(1);
      s.push(`<line x1="${x}" x2="${x}" y1="0" y2="${PH}" stroke="#f0f0f0"/>`);
      s.push(`<line x1="${x}" x2="${x}" y1="${PH}" y2="${PH + 5}" stroke="#333"/>`);
      s.push(`<text x="${x}" y="${PH + 19}" text-anchor="middle" font-size="12">${esc(xTickLabels ? xTickLabels(v) : fmt(v))}</text>`);
    }
  s.push(`<rect x="0" y="0" width="${PW}" height="${PH}" fill="none" stroke="#333"/>`);
  s.push(`<text x="${PW / 2}" y="${PH + 45}" text-anchor="middle" font-size="13">${esc(xLabel)}</text>`);
  s.push(`<text transform="translate(-58,${PH / 2}) rotate(-90)" text-anchor="middle" font-size="13">${esc(yLabel)}</text>`);
  s.push(`</g>`);
  return s.join("\n");
}

function legend(items) {
  const s = [`<g transform="translate(${W - M.r + 16},${M.t + 4})" font-size="12">`];
  items.forEach((it, i) => {
    const y = i * 20;
    if (it.bar) s.push(`<rect x="0" y="${y - 6}" width="18" height="12" fill="${it.color}"/>`);
    else s.push(`<line x1="0" x2="18" y1="${y}" y2="${y}" stroke="${it.color}" stroke-width="2.5"/><circle cx="9" cy="${y}" r="3" fill="${it.color}"/>`);
    const name = it.name.length > 28 ? `${it.name.slice(0, 27)}…` : it.name;
    s.push(`<text x="24" y="${y}" dy="0.32em"><title>${esc(it.name)}</title>${esc(name)}</text>`);
  });
  s.push(`</g>`);
  return s.join("\n");
}

const svg = (body) =>
  `<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif">\n<rect width="100%" height="100%" fill="white"/>\n${body}\n</svg>\n`;

// ---- plots ----------------------------------------------------------------------------------

const Y_FIELD = {
  output: ["output_throughput", "output tokens/s"],
  total: ["total_token_throughput", "total tokens/s (prompt + output)"],
  requests: ["request_throughput", "requests/s"],
};

function throughputVsConcurrency(serve, o) {
  const [field, yLabel] = Y_FIELD[o.y];
  const groups = new Map();
  for (const r of serve) {
    const x = xOf(r, o.x);
    if (x === null || !Number.isFinite(x) || typeof r[field] !== "number") continue;
    const k = seriesName(r);
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k).push([x, r[field]]);
  }
  if (!groups.size) return null;
  const all = [...groups.values()].flat();
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  const xLog = Math.max(...xs) / Math.max(Math.min(...xs), 1e-9) >= 16; // powers of two sweep
  const xTicks = xLog ? logTicks(Math.min(...xs), Math.max(...xs)) : linTicks(Math.min(0, ...xs), Math.max(...xs));
  const yTicks = linTicks(0, Math.max(...ys));
  const sx = scale(xTicks, xLog, PW, false), sy = scale(yTicks, false, PH, true);
  const body = [axes({ title: `Throughput vs ${o.x === "rate" ? "request rate" : "concurrency"}`, xLabel: o.x === "rate" ? "request rate (req/s)" : "concurrent requests (--max-concurrency)", yLabel, xTicks, yTicks, sx, sy })];
  const items = [];
  [...groups].forEach(([name, pts], i) => {
    const c = PALETTE[i % PALETTE.length];
    pts.sort((a, b) => a[0] - b[0]);
    const d = pts.map(([x, y]) => `${(M.l + sx(x)).toFixed(1)},${(M.t + sy(y)).toFixed(1)}`).join(" ");
    body.push(`<polyline points="${d}" fill="none" stroke="${c}" stroke-width="2.5"/>`);
    for (const [x, y] of pts)
      body.push(`<circle cx="${(M.l + sx(x)).toFixed(1)}" cy="${(M.t + sy(y)).toFixed(1)}" r="3.5" fill="${c}"><title>${esc(`${name}: x=${x}, ${fmt(y)}`)}</title></circle>`);
    items.push({ name, color: c });
  });
  body.push(legend(items));
  return svg(body.join("\n"));
}

function pagedVsStatic(thr) {
  if (!thr.length) return null;
  const models = new Set(thr.map((r) => stem(r.model)));
  const barKey = (r) => (models.size > 1 ? `${r.kv_alloc} · ${stem(r.model)}` : r.kv_alloc);
  const workloads = [...new Set(thr.map((r) => r.workload ?? "?"))];
  const keys = [...new Set(thr.map(barKey))].sort((a, b) => (a.startsWith("paged") ? -1 : 0) - (b.startsWith("paged") ? -1 : 0) || a.localeCompare(b));
  // several runs of one (workload, key): show the best, as repeated benchmarks usually do
  const val = new Map();
  for (const r of thr) {
    const k = `${r.workload}\u0000${barKey(r)}`;
    if (!val.has(k) || val.get(k).output_tok_s < r.output_tok_s) val.set(k, r);
  }
  const yTicks = linTicks(0, Math.max(...thr.map((r) => r.output_tok_s)) * 1.1);
  const sy = scale(yTicks, false, PH, true);
  const groupW = PW / workloads.length, barW = Math.min(60, (groupW * 0.8) / keys.length);
  const body = [axes({ title: "Paged vs static KV allocation (bench throughput)", xLabel: "workload", yLabel: "output tokens/s", yTicks, sy })];
  workloads.forEach((wl, gi) => {
    const gx = M.l + gi * groupW + (groupW - barW * keys.length) / 2;
    body.push(`<text x="${(M.l + gi * groupW + groupW / 2).toFixed(1)}" y="${M.t + PH + 19}" text-anchor="middle" font-size="12">${esc(wl)}</text>`);
    keys.forEach((k, bi) => {
      const r = val.get(`${wl}\u0000${k}`);
      if (!r) return;
      const x = gx + bi * barW, y = M.t + sy(r.output_tok_s), h = M.t + PH - y;
      const c = PALETTE[bi % PALETTE.length];
      const tip = `${wl} ${k}: ${fmt(r.output_tok_s)} tok/s, ${fmt(r.requests_per_s)} req/s, peak ${r.peak_running} running, ${r.preemptions} preemptions`;
      body.push(`<rect x="${(x + 2).toFixed(1)}" y="${y.toFixed(1)}" width="${(barW - 4).toFixed(1)}" height="${h.toFixed(1)}" fill="${c}"><title>${esc(tip)}</title></rect>`);
      body.push(`<text x="${(x + barW / 2).toFixed(1)}" y="${(y - 14).toFixed(1)}" text-anchor="middle" font-size="11">${fmt(r.output_tok_s)}</text>`);
      body.push(`<text x="${(x + barW / 2).toFixed(1)}" y="${(y - 3).toFixed(1)}" text-anchor="middle" font-size="9" fill="#555">${r.peak_running} seq</text>`);
    });
  });
  body.push(legend(keys.map((k, i) => ({ name: k, color: PALETTE[i % PALETTE.length], bar: true }))));
  return svg(body.join("\n"));
}

function latencyCdf(serve, field, title, o) {
  const series = [];
  const sorted = [...serve].sort((a, b) => seriesName(a).localeCompare(seriesName(b)) || (xOf(a, "concurrency") ?? rateOf(a)) - (xOf(b, "concurrency") ?? rateOf(b)));
  for (const r of sorted) {
    const ok = r.success ?? (r.errors ? r.errors.map((e) => !e) : null);
    const v = (r[field] || [])
      .filter((x, i) => typeof x === "number" && (!ok || ok[i]) && !(field === "ttfts" && x === 0 && r.errors?.[i]))
      .map((x) => x * 1000)
      .sort((a, b) => a - b);
    if (!v.length) continue;
    const x = xOf(r, "concurrency"), rate = rateOf(r);
    const cfg = r.max_concurrency ? `c=${r.max_concurrency}` : Number.isFinite(rate) ? `${rate} req/s` : `c=${x}`;
    series.push({ name: `${seriesName(r)} ${cfg}`, v });
  }
  if (!series.length) return null;
  const all = series.flatMap((s) => s.v);
  const lo = Math.min(...all), hi = Math.max(...all);
  const log = o.logLatency && lo > 0;
  const xTicks = log ? logTicks(lo, hi) : linTicks(0, hi);
  const yTicks = [0, 0.2, 0.4, 0.6, 0.8, 1];
  const sx = scale(xTicks, log, PW, false), sy = scale(yTicks, false, PH, true);
  const body = [axes({ title, xLabel: `${field === "ttfts" ? "time to first token" : "end-to-end latency"} (ms)`, yLabel: "fraction of requests", xTicks, yTicks, sx, sy })];
  series.forEach((s, i) => {
    const c = PALETTE[i % PALETTE.length];
    // a step function: at each sorted value the fraction jumps by 1/n
    const n = s.v.length, pts = [`${(M.l + sx(s.v[0])).toFixed(1)},${(M.t + sy(0)).toFixed(1)}`];
    s.v.forEach((x, k) => {
      const px = (M.l + sx(x)).toFixed(1);
      pts.push(`${px},${(M.t + sy(k / n)).toFixed(1)}`, `${px},${(M.t + sy((k + 1) / n)).toFixed(1)}`);
    });
    body.push(`<polyline points="${pts.join(" ")}" fill="none" stroke="${c}" stroke-width="2"><title>${esc(`${s.name}: median ${fmt(s.v[Math.floor((n - 1) / 2)])} ms, p99 ${fmt(s.v[Math.min(n - 1, Math.ceil(0.99 * (n - 1)))])} ms`)}</title></polyline>`);
  });
  body.push(legend(series.map((s, i) => ({ name: s.name, color: PALETTE[i % PALETTE.length] }))));
  return svg(body.join("\n"));
}

// ---- main -----------------------------------------------------------------------------------

function main() {
  let o;
  try {
    o = parseArgs(process.argv.slice(2));
  } catch (e) {
    console.error(`plot: ${e.message}`);
    process.exit(2);
  }
  if (o.help || !o.files.length) {
    console.error("usage: node tools/bench/plot.mjs [--out DIR] [--x concurrency|rate] [--y output|total|requests] [--log-latency] RESULT.json ...");
    process.exit(o.help ? 0 : 2);
  }
  let data;
  try {
    data = load(o.files);
  } catch (e) {
    console.error(`plot: ${e.message}`);
    process.exit(1);
  }
  mkdirSync(o.out, { recursive: true });
  const plots = {
    "throughput_vs_concurrency.svg": throughputVsConcurrency(data.serve, o),
    "paged_vs_static.svg": pagedVsStatic(data.thr),
    "latency_cdf_ttft.svg": latencyCdf(data.serve, "ttfts", "Time to first token (CDF)", o),
    "latency_cdf_e2el.svg": latencyCdf(data.serve, "latencies", "End-to-end latency (CDF)", o),
  };
  let n = 0;
  for (const [name, s] of Object.entries(plots)) {
    if (!s) continue;
    const p = join(o.out, name);
    writeFileSync(p, s);
    console.log(p);
    n++;
  }
  if (!n) {
    console.error("plot: nothing to plot (no bench serve / bench throughput results among the inputs)");
    process.exit(1);
  }
}

main();
