// The page shell: tabs, the API key (kept in sessionStorage for this browser session) and a
// fetch wrapper that adds it. Chat and KV map live in their own modules.
import { initChat } from "/ui/chat.js";
import { initKvMap } from "/ui/kvmap.js";

const KEY = "pagellm.apiKey";
const $ = (id) => document.getElementById(id);
let keyWaiters = [];

export function apiKey() {
  return sessionStorage.getItem(KEY) || "";
}

function askKey(message) {
  $("key-error").textContent = message || "";
  $("key-dialog").hidden = false;
  $("key-input").focus();
  return new Promise((resolve) => keyWaiters.push(resolve));
}

/** fetch() against this server with the API key; on 401 asks for a key and retries. */
export async function api(path, init = {}) {
  for (let attempt = 0; ; attempt++) {
    const headers = { ...(init.headers || {}) };
    const k = apiKey();
    if (k) headers.Authorization = "Bearer " + k;
    const r = await fetch(path, { ...init, headers });
    if (r.status !== 401 || attempt > 3) return r;
    let msg = "";
    try {
      msg = (await r.json()).error.message;
    } catch {}
    $("key-button").hidden = false;
    await askKey(k ? msg : "");
  }
}

function showView(name) {
  for (const b of document.querySelectorAll(".tab")) b.classList.toggle("active", b.dataset.view === name);
  $("view-chat").hidden = name !== "chat";
  $("view-kv").hidden = name !== "kv";
  const hash = name === "kv" ? "#kv" : "#chat";
  if (location.hash !== hash) history.replaceState(null, "", hash);
  document.dispatchEvent(new CustomEvent("pagellm:view", { detail: name }));
}

$("key-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(KEY, $("key-input").value.trim());
  $("key-input").value = "";
  $("key-dialog").hidden = true;
  const w = keyWaiters;
  keyWaiters = [];
  for (const f of w) f();
});
$("key-button").addEventListener("click", () => askKey(""));
for (const b of document.querySelectorAll(".tab")) b.addEventListener("click", () => showView(b.dataset.view));
window.addEventListener("hashchange", () => showView(location.hash === "#kv" ? "kv" : "chat"));

async function loadModel() {
  const r = await api("/v1/models");
  if (r.ok) {
    const j = await r.json();
    $("model-name").textContent = j.data && j.data[0] ? j.data[0].id : "";
  }
}

initChat(api);
initKvMap(api);
showView(location.hash === "#kv" ? "kv" : "chat");
loadModel();
