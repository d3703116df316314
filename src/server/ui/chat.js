// Chat: conversations in localStorage, streaming answers from /v1/chat/completions (SSE), stop,
// regenerate, a system prompt, sampling parameters and the speed of every answer.
import { renderMarkdown } from "/ui/markdown.js";

const STORE = "pagellm.conversations";
const CURRENT = "pagellm.current";
const $ = (id) => document.getElementById(id);

let api;
let convs = [];
let current = null;
let running = null; // {controller, conv, msg}

function load() {
  try {
    convs = JSON.parse(localStorage.getItem(STORE) || "[]");
  } catch {
    convs = [];
  }
  if (!Array.isArray(convs)) convs = [];
  current = convs.find((c) => c.id === localStorage.getItem(CURRENT)) || convs[0] || null;
}

function save() {
  localStorage.setItem(STORE, JSON.stringify(convs));
  if (current) localStorage.setItem(CURRENT, current.id);
}

function newConv() {
  const c = { id: Date.now().toString(36) + Math.random().toString(36).slice(2, 6), title: "New chat", system: "", messages: [], params: readParams() };
  convs.unshift(c);
  current = c;
  save();
  renderAll();
}

function readParams() {
  const num = (id) => {
    const v = $(id).value.trim();
    return v === "" ? undefined : Number(v);
  };
  return { temperature: num("p-temperature"), top_p: num("p-top_p"), max_tokens: num("p-max_tokens"), seed: num("p-seed") };
}

function writeParams(p = {}) {
  const set = (id, v, d) => ($(id).value = v === undefined || v === null ? d : String(v));
  set("p-temperature", p.temperature, "0.8");
  set("p-top_p", p.top_p, "0.95");
  set("p-max_tokens", p.max_tokens, "256");
  set("p-seed", p.seed, "");
}

function renderList() {
  const ul = $("conv-list");
  ul.replaceChildren();
  for (const c of convs) {
    const li = document.createElement("li");
    li.classList.toggle("active", c === current);
    const t = document.createElement("span");
    t.textContent = c.title;
    const del = document.createElement("button");
    del.textContent = "×";
    del.title = "Delete";
    del.addEventListener("click", (ev) => {
      ev.stopPropagation();
      if (running && running.conv === c) running.controller.abort();
      convs = convs.filter((x) => x !== c);
      if (current === c) current = convs[0] || null;
      save();
      renderAll();
    });
    li.append(t, del);
    li.addEventListener("click", () => {
      current = c;
      save();
      renderAll();
    });
    ul.appendChild(li);
  }
}

function metaText(m) {
  if (!m.meta) return "";
  const p = [];
  if (m.meta.tokens !== undefined) p.push(`${m.meta.tokens} tokens`);
  if (m.meta.tps) p.push(`${m.meta.tps.toFixed(1)} tok/s`);
  if (m.meta.ttft_ms !== undefined) p.push(`first token ${Math.round(m.meta.ttft_ms)} ms`);
  if (m.meta.finish) p.push(m.meta.finish);
  return p.join(" · ");
}

function renderMessage(el, m) {
  el.className = `msg ${m.role}` + (m.error ? " error" : "") + (m.streaming ? " streaming" : "");
  const content = el.querySelector(".content") || el.appendChild(Object.assign(document.createElement("div"), { className: "content" }));
  if (m.role === "assistant") content.replaceChildren(renderMarkdown(m.error ? m.error : m.content));
  else content.textContent = m.content;
  let meta = el.querySelector(".meta");
  const text = metaText(m);
  if (text) {
    if (!meta) meta = el.appendChild(Object.assign(document.createElement("div"), { className: "meta" }));
    meta.textContent = text;
  } else if (meta) meta.remove();
}

function renderMessages() {
  const box = $("messages");
  box.replaceChildren();
  if (!current) return;
  for (const m of current.messages) {
    const el = document.createElement("div");
    renderMessage(el, m);
    box.appendChild(el);
  }
  box.scrollTop = box.scrollHeight;
}

function renderAll() {
  if (!current) {
    newConv();
    return;
  }
  $("system-prompt").value = current.system || "";
  writeParams(current.params);
  renderList();
  renderMessages();
  updateButtons();
}

function updateButtons() {
  $("send").hidden = !!running;
  $("stop").hidden = !running;
  $("regenerate").disabled = !!running || !current || !current.messages.some((m) => m.role === "user");
}

/** Stream one assistant answer for conv (its messages end with a user message). */
async function generate(conv) {
  const msg = { role: "assistant", content: "", streaming: true };
  conv.messages.push(msg);
  const history = conv.messages.slice(0, -1).map((m) => ({ role: m.role, content: m.content }));
  const messages = conv.system ? [{ role: "system", content: conv.system }, ...history] : history;
  const p = conv.params || {};
  const body = { messages, stream: true, stream_options: { include_usage: true } };
  for (const k of ["temperature", "top_p", "max_tokens", "seed"]) if (p[k] !== undefined && !Number.isNaN(p[k])) body[k] = p[k];
  const controller = new AbortController();
  running = { controller, conv, msg };
  updateButtons();
  renderMessages();
  const el = $("messages").lastElementChild;
  let pending = false;
  const repaint = () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      if (current === conv && el.isConnected) {
        renderMessage(el, msg);
        $("messages").scrollTop = $("messages").scrollHeight;
      }
    });
  };
  const t0 = performance.now();
  let tFirst = 0;
  let tLast = 0;
  let nChunks = 0;
  let usage = null;
  let finish = null;
  try {
    const r = await api("/v1/chat/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    if (!r.ok) {
      let m = `HTTP ${r.status}`;
      try {
        m = (await r.json()).error.message;
      } catch {}
      throw new Error(m);
    }
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true }).replace(/\r\n/g, "\n");
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const event = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        for (const line of event.split("\n")) {
          if (!line.startsWith("data: ")) continue;
          const data = line.slice(6);
          if (data === "[DONE]") continue;
          const j = JSON.parse(data);
          if (j.error) throw new Error(j.error.message || "error");
          if (j.usage) usage = j.usage;
          const ch = j.choices && j.choices[0];
          if (!ch) continue;
          if (ch.delta && ch.delta.content) {
            const now = performance.now();
            if (!tFirst) tFirst = now;
            tLast = now;
            nChunks++;
            msg.content += ch.delta.content;
            repaint();
          }
          if (ch.finish_reason) finish = ch.finish_reason;
        }
      }
    }
  } catch (e) {
    if (controller.signal.aborted) finish = "stopped";
    else msg.error = "Error: " + e.message;
  }
  const tokens = usage ? usage.completion_tokens : nChunks;
  msg.streaming = false;
  msg.meta = { tokens, finish: finish || undefined };
  if (tFirst) msg.meta.ttft_ms = tFirst - t0;
  if (tokens > 1 && tLast > tFirst) msg.meta.tps = (tokens - 1) / ((tLast - tFirst) / 1000);
  running = null;
  save();
  if (current === conv && el.isConnected) renderMessage(el, msg);
  updateButtons();
}

function send(text) {
  if (!current) newConv();
  const conv = current;
  conv.system = $("system-prompt").value;
  conv.params = readParams();
  conv.messages.push({ role: "user", content: text });
  if (conv.title === "New chat") conv.title = text.slice(0, 40) || "New chat";
  save();
  renderList();
  return generate(conv);
}

export function initChat(apiFn) {
  api = apiFn;
  load();
  renderAll();
  $("composer").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = $("input").value.trim();
    if (!text || running) return;
    $("input").value = "";
    send(text);
  });
  $("input").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey) {
      ev.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("stop").addEventListener("click", () => running && running.controller.abort());
  $("regenerate").addEventListener("click", () => {
    if (running || !current) return;
    while (current.messages.length && current.messages[current.messages.length - 1].role === "assistant") current.messages.pop();
    if (!current.messages.length) return;
    current.system = $("system-prompt").value;
    current.params = readParams();
    generate(current);
  });
  $("new-chat").addEventListener("click", () => !running && newConv());
  $("system-prompt").addEventListener("change", () => current && ((current.system = $("system-prompt").value), save()));
  for (const id of ["p-temperature", "p-top_p", "p-max_tokens", "p-seed"])
    $(id).addEventListener("change", () => current && ((current.params = readParams()), save()));
}
