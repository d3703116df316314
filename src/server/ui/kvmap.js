// The KV map: polls GET /kv/snapshot (4 times a second while the view is open) and draws every
// block of the pool as a cell (free / cached with its eviction order / in use / shared with its
// ref count, and the requests that hold it). When the pool has more blocks than fit, each cell
// stands for a run of consecutive block ids and shows the mix of their states.
const $ = (id) => document.getElementById(id);
const POLL_MS = 250;
const MIN_CELL = 7; // px; below this, cells aggregate runs of blocks
const GAP = 2;

let api;
let active = false;
let timer = null;
let snap = null;
let cells = [];
let layout = { cols: 0, per: 1, n: 0, size: 0 };
let owners = new Map(); // block id -> [request label]
let reqByKey = new Map();
let hoverKey = null;
let rateSamples = []; // [time, generation tokens]

const label = (r) => `#${r.id}` + (r.sample ? `/${r.sample}` : "");
const keyOf = (r) => String(r.arrival);
const stateName = { n: "null block", f: "free", c: "cached (evictable)", u: "in use", s: "shared" };

function fmtPct(x) {
  return (100 * x).toFixed(1) + "%";
}

function computeLayout(n) {
  const g = $("kv-grid");
  const W = Math.max(200, g.clientWidth);
  const H = Math.max(150, g.clientHeight);
  let size = Math.floor(Math.sqrt((W * H) / n)) - GAP;
  size = Math.min(size, 28);
  let per = 1;
  if (size < MIN_CELL) {
    size = MIN_CELL;
    const fit = Math.floor(W / (size + GAP)) * Math.floor(H / (size + GAP));
    per = Math.ceil(n / fit);
  }
  const nCells = Math.ceil(n / per);
  const cols = Math.max(1, Math.floor((W + GAP) / (size + GAP)));
  return { cols, per, n: nCells, size, blocks: n };
}

function buildGrid(lay) {
  const g = $("kv-grid");
  g.style.gridTemplateColumns = `repeat(${lay.cols}, ${lay.size}px)`;
  g.style.gridAutoRows = `${lay.size}px`;
  const frag = document.createDocumentFragment();
  cells = [];
  for (let i = 0; i < lay.n; i++) {
    const d = document.createElement("div");
    d.className = "kv-cell" + (lay.per > 1 ? " agg" : "");
    d.dataset.index = i;
    frag.appendChild(d);
    cells.push(d);
  }
  g.replaceChildren(frag);
  layout = lay;
  $("kv-scale").textContent = lay.per > 1 ? `${lay.blocks} blocks · one cell = ${lay.per} blocks` : `${lay.blocks} blocks`;
}

function paintGrid() {
  const s = snap;
  const st = s.blocks.state;
  const refs = new Map(s.blocks.shared);
  const lruRank = new Map();
  s.blocks.lru.forEach((id, i) => lruRank.set(id, i));
  const nLru = s.blocks.lru.length;
  owners = new Map();
  for (const r of s.running)
    for (const b of r.blocks || []) {
      const o = owners.get(b);
      if (o) o.push(label(r));
      else owners.set(b, [label(r)]);
    }
  if (layout.per === 1) {
    for (let id = 0; id < st.length; id++) {
      const d = cells[id];
      const ch = st[id];
      if (d.dataset.state !== ch) d.dataset.state = ch;
      const ref = ch === "s" ? String(refs.get(id)) : ch === "u" ? "1" : "0";
      if (d.dataset.ref !== ref) d.dataset.ref = ref;
      const own = (owners.get(id) || []).join(" ");
      if ((d.dataset.owners || "") !== own) d.dataset.owners = own;
      if (ch === "c") {
        const rank = lruRank.get(id);
        d.dataset.lru = rank;
        d.style.opacity = (0.4 + (0.6 * (rank + 1)) / Math.max(1, nLru)).toFixed(3);
      } else if (d.dataset.lru !== undefined) {
        delete d.dataset.lru;
        d.style.opacity = "";
      }
    }
  } else {
    const per = layout.per;
    for (let c = 0; c < cells.length; c++) {
      const lo = c * per;
      const hi = Math.min(st.length, lo + per);
      const cnt = { f: 0, c: 0, u: 0, s: 0, n: 0 };
      let maxRef = 0;
      for (let id = lo; id < hi; id++) {
        cnt[st[id]]++;
        if (st[id] === "s") maxRef = Math.max(maxRef, refs.get(id));
      }
      const total = hi - lo;
      const dom = cnt.s ? "s" : cnt.u * 2 >= total ? "u" : cnt.c * 2 >= total ? "c" : cnt.u ? "u" : cnt.c ? "c" : "f";
      const d = cells[c];
      d.dataset.state = dom;
      d.dataset.first = lo;
      d.dataset.last = hi - 1;
      d.dataset.counts = `${cnt.f + cnt.n},${cnt.c},${cnt.u},${cnt.s}`;
      d.dataset.ref = String(maxRef || (cnt.u ? 1 : 0));
      // a vertical bar of the state mix, bottom up: shared, in use, cached, free
      const p = (x) => ((100 * x) / total).toFixed(1);
      const a = +p(cnt.s), b = a + +p(cnt.u), e = b + +p(cnt.c);
      d.style.setProperty(
        "--bar",
        `linear-gradient(to top, var(--shared) 0 ${a}%, var(--used) ${a}% ${b}%, var(--cached) ${b}% ${e}%, var(--free) ${e}% 100%)`
      );
    }
  }
  applyHighlight();
}

function cellOfBlock(id) {
  return cells[Math.floor(id / layout.per)];
}

function applyHighlight() {
  for (const d of document.querySelectorAll(".kv-cell.hl, .kv-cell.dim, .kv-cell[data-order]")) {
    d.classList.remove("hl", "dim");
    delete d.dataset.order;
  }
  for (const li of document.querySelectorAll(".reqs li")) li.classList.toggle("hl", li.dataset.key === hoverKey);
  const r = hoverKey && reqByKey.get(hoverKey);
  if (!r || !r.blocks) return;
  const showOrder = layout.per === 1 && layout.size >= 12;
  $("kv-grid").classList.add("dimming");
  for (const d of cells) d.classList.add("dim");
  r.blocks.forEach((b, i) => {
    const d = cellOfBlock(b);
    if (!d) return;
    d.classList.remove("dim");
    d.classList.add("hl");
    if (showOrder && d.dataset.order === undefined) d.dataset.order = i + 1;
  });
  $("kv-detail").textContent = `${label(r)} block table (${r.blocks.length} blocks, in order):\n` + r.blocks.join(" → ");
}

function reqItem(r) {
  const li = document.createElement("li");
  li.dataset.key = keyOf(r);
  li.dataset.id = r.id;
  li.dataset.phase = r.phase;
  const gen = r.tokens - r.prompt_tokens;
  const maxNew = r.max_tokens - r.prompt_tokens;
  let text = `${label(r)} · ${r.phase}`;
  let frac;
  if (r.phase === "prefill") {
    text += ` ${r.computed_tokens}/${r.tokens} tokens`;
    frac = r.computed_tokens / Math.max(1, r.tokens);
  } else if (r.phase === "decode") {
    text += ` ${gen}/${maxNew} new tokens`;
    frac = gen / Math.max(1, maxNew);
  } else {
    text += ` · prompt ${r.prompt_tokens} tokens`;
    frac = 0;
  }
  if (r.phase !== "waiting") text += ` · ${r.num_blocks} blocks`;
  if (r.cached_tokens > 0) text += ` · ${r.cached_tokens} cached`;
  if (r.preemptions) text += ` · preempted ${r.preemptions}×`;
  li.textContent = text;
  const bar = document.createElement("div");
  bar.className = "bar";
  const i = document.createElement("i");
  i.style.width = (100 * Math.min(1, frac)).toFixed(1) + "%";
  bar.appendChild(i);
  li.appendChild(bar);
  li.addEventListener("mouseenter", () => {
    hoverKey = li.dataset.key;
    applyHighlight();
  });
  li.addEventListener("mouseleave", () => {
    hoverKey = null;
    applyHighlight();
    $("kv-detail").textContent = "Hover a block or a request.";
  });
  return li;
}

function paintQueues() {
  const s = snap;
  reqByKey = new Map();
  for (const r of s.running) reqByKey.set(keyOf(r), r);
  $("running-list").replaceChildren(...s.running.map(reqItem));
  $("waiting-list").replaceChildren(...s.waiting.map(reqItem));
  $("running-count").textContent = `(${s.running.length})`;
  const more = s.waiting_total - s.waiting.length;
  $("waiting-count").textContent = `(${s.waiting_total}${more > 0 ? `, first ${s.waiting.length} shown` : ""})`;
  if (hoverKey && !reqByKey.has(hoverKey)) hoverKey = null;
}

function tokensPerSecond() {
  const s = snap;
  const now = s.time;
  const last = rateSamples[rateSamples.length - 1];
  if (!last || last[0] !== now) rateSamples.push([now, s.stats.generation_tokens_total]);
  while (rateSamples.length > 2 && now - rateSamples[0][0] > 3) rateSamples.shift();
  const first = rateSamples[0];
  if (!s.busy) return 0;
  return now > first[0] ? (s.stats.generation_tokens_total - first[1]) / (now - first[0]) : 0;
}

function paintStats() {
  const st = snap.stats;
  $("stat-usage").textContent = `${fmtPct(st.kv_usage)}`;
  $("stat-usage").title = `${st.blocks_used} of ${st.blocks_total} blocks in use, ${st.blocks_cached_free} cached and free`;
  $("stat-hit-rate").textContent = st.prefix_queries_tokens ? fmtPct(st.prefix_hit_rate) : "–";
  $("stat-hit-rate").title = `${st.prefix_hits_tokens} of ${st.prefix_queries_tokens} prompt tokens found in the cache`;
  $("stat-preemptions").textContent = String(st.num_preemptions);
  $("stat-tps").textContent = tokensPerSecond().toFixed(0);
  $("kv-status").textContent = `snapshot #${snap.seq} · captured in ${snap.capture_us.toFixed(0)} µs · ${snap.block_size} tokens per block`;
}

function paintChart() {
  const h = snap.history;
  const cv = $("kv-chart");
  const dpr = window.devicePixelRatio || 1;
  const W = cv.clientWidth;
  const H = cv.clientHeight;
  if (cv.width !== W * dpr) cv.width = W * dpr;
  if (cv.height !== H * dpr) cv.height = H * dpr;
  const ctx = cv.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, W, H);
  if (!h || h.t.length === 0) return;
  const tEnd = snap.time;
  const span = 300;
  const x = (t) => W - ((tEnd - t) / span) * W;
  // tokens/s per interval (bars), scaled to the window's maximum
  const rates = [];
  let maxRate = 1;
  for (let i = 1; i < h.t.length; i++) {
    const dt = h.t[i] - h.t[i - 1];
    const r = dt > 0 ? (h.generation_tokens[i] - h.generation_tokens[i - 1]) / dt : 0;
    rates.push([h.t[i - 1], h.t[i], r]);
    if (h.t[i] > tEnd - span) maxRate = Math.max(maxRate, r);
  }
  ctx.fillStyle = "rgba(245,165,36,0.55)";
  for (const [a, b, r] of rates) {
    if (b < tEnd - span) continue;
    const x0 = Math.max(0, x(a));
    ctx.fillRect(x0, H - (r / maxRate) * (H - 14), Math.max(1, x(b) - x0), (r / maxRate) * (H - 14));
  }
  ctx.strokeStyle = "#4c9aff";
  ctx.lineWidth = 2;
  ctx.beginPath();
  let started = false;
  for (let i = 0; i < h.t.length; i++) {
    if (h.t[i] < tEnd - span) continue;
    const px = x(h.t[i]);
    const py = H - h.kv_usage[i] * (H - 14);
    if (started) ctx.lineTo(px, py);
    else ctx.moveTo(px, py);
    started = true;
  }
  ctx.stroke();
  ctx.fillStyle = "#8b92a3";
  ctx.font = "11px system-ui";
  ctx.fillText(`peak ${maxRate.toFixed(0)} tok/s · usage 0–100%`, 6, 12);
}

function describeCell(d) {
  if (layout.per > 1) {
    const [f, c, u, s] = d.dataset.counts.split(",");
    return `blocks ${d.dataset.first}–${d.dataset.last}: ${s} shared, ${u} in use, ${c} cached, ${f} free` + (+d.dataset.ref > 1 ? ` · max ref count ${d.dataset.ref}` : "");
  }
  const id = +d.dataset.index;
  let t = `block ${id}: ${stateName[d.dataset.state]}`;
  if (+d.dataset.ref > 0) t += ` · ref count ${d.dataset.ref}`;
  if (d.dataset.owners) t += ` · held by ${d.dataset.owners}`;
  if (d.dataset.lru !== undefined) t += ` · evicted #${+d.dataset.lru + 1} of ${snap.blocks.lru.length}`;
  return t;
}

async function poll() {
  timer = null;
  if (!active) return;
  try {
    const r = await api("/kv/snapshot");
    if (r.ok) {
      snap = await r.json();
      const lay = computeLayout(snap.num_blocks);
      if (lay.n !== layout.n || lay.cols !== layout.cols || lay.size !== layout.size || lay.per !== layout.per) buildGrid(lay);
      paintQueues();
      paintGrid();
      paintStats();
      paintChart();
      $("kv-grid").dataset.seq = snap.seq;
    } else {
      $("kv-status").textContent = `snapshot: HTTP ${r.status}`;
    }
  } catch (e) {
    $("kv-status").textContent = "snapshot: " + e.message;
  }
  if (active && !timer) timer = setTimeout(poll, POLL_MS);
}

export function initKvMap(apiFn) {
  api = apiFn;
  document.addEventListener("pagellm:view", (ev) => {
    active = ev.detail === "kv";
    if (active && !timer) poll();
  });
  const grid = $("kv-grid");
  grid.addEventListener("mouseover", (ev) => {
    const d = ev.target.closest(".kv-cell");
    if (d && !hoverKey) $("kv-detail").textContent = describeCell(d);
  });
  window.addEventListener("resize", () => {
    layout = { cols: 0, per: 1, n: 0, size: 0 };
  });
}
