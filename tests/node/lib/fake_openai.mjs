// A tiny OpenAI-compatible streaming server with a known, deterministic schedule, for testing
// load generators (`pagellm bench serve`). It listens on 127.0.0.1 on an ephemeral port.
//
// Every streaming /v1/completions or /v1/chat/completions request gets max_tokens tokens: the
// first content chunk `ttftMs` after the request body arrived, then one chunk every `itlMs`
// (each deadline is computed from the arrival time, so timer jitter does not accumulate), then
// a usage chunk (when the client asked for stream_options.include_usage and `usage` is on) and
// `data: [DONE]`. Chat streams open with a role-only chunk at once, as vLLM's do.
//
// `behave(i, body)` picks what request i (0-based, in arrival order) gets:
//   "ok" | {status, message} (an HTTP error with an OpenAI error body) |
//   {dropAfter: k} (the socket is destroyed after k content chunks) | "stall" (headers, then
//   nothing).
// Other knobs: tokensPerChunk, crlf (CRLF line ends), fragment (split each event into writes
// of this many bytes, so lines straddle HTTP chunks), closeDelimited (no chunked encoding: the
// body ends when the connection closes), models (the /v1/models answer).
// state.requests records each request and when its chunks were actually written, so tests can
// compare a client's measurements with what really happened even when timers run late.
import http from "node:http";

export async function startFakeOpenAI(opts = {}) {
  const o = {
    ttftMs: 50,
    itlMs: 10,
    tokensPerChunk: 1,
    usage: true,
    crlf: false,
    fragment: 0,
    closeDelimited: false,
    model: "fake-model",
    maxModelLen: 2048,
    behave: () => "ok",
    ...opts,
  };
  const state = { requests: [], inFlight: 0, maxInFlight: 0, sockets: new Set(), timers: new Set() };
  const nl = o.crlf ? "\r\n" : "\n";

  function later(ms, fn) {
    const t = setTimeout(() => {
      state.timers.delete(t);
      fn();
    }, Math.max(0, ms));
    state.timers.add(t);
  }

  function writeEvent(res, obj) {
    const s = `data: ${typeof obj === "string" ? obj : JSON.stringify(obj)}${nl}${nl}`;
    if (!o.fragment) return res.write(s);
    for (let i = 0; i < s.length; i += o.fragment) res.write(s.slice(i, i + o.fragment));
  }

  function stream(req, res, i, body, chat, how) {
    const t0 = performance.now();
    const rec = state.requests[i];
    const maxTokens = body.max_tokens ?? 16;
    const nChunks = Math.ceil(maxTokens / o.tokensPerChunk);
    const wantUsage = o.usage && body.stream_options?.include_usage === true;
    const promptTokens = Array.isArray(body.prompt) ? body.prompt.length : 10;
    const id = `cmpl-fake-${i}`;
    if (o.closeDelimited) res.useChunkedEncodingByDefault = false;
    res.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-cache" });
    if (how === "stall") return;
    if (chat) writeEvent(res, { id, object: "chat.completion.chunk", choices: [{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }] });
    let sent = 0;
    const dropAfter = typeof how === "object" && how.dropAfter !== undefined ? how.dropAfter : -1;
    const next = () => {
      if (sent === dropAfter) {
        res.socket?.destroy();
        return;
      }
      const last = sent === nChunks - 1;
      const text = "tok ".repeat(o.tokensPerChunk);
      const choice = chat
        ? { index: 0, delta: { content: text }, finish_reason: last ? "length" : null }
        : { index: 0, text, finish_reason: last ? "length" : null };
      writeEvent(res, { id, object: chat ? "chat.completion.chunk" : "text_completion", model: o.model, choices: [choice], usage: null });
      rec.chunkTimes.push(performance.now());
      sent++;
      if (!last) {
        later(t0 + o.ttftMs + sent * o.itlMs - performance.now(), next);
        return;
      }
      if (wantUsage)
        writeEvent(res, { id, object: "text_completion", choices: [], usage: { prompt_tokens: promptTokens, completion_tokens: maxTokens, total_tokens: promptTokens + maxTokens } });
      writeEvent(res, "[DONE]");
      res.end();
    };
    later(o.ttftMs, next);
  }

  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const url = req.url;
      if (req.method === "GET" && url === "/v1/models") {
        const models = o.models ?? { object: "list", data: [{ id: o.model, object: "model", max_model_len: o.maxModelLen }] };
        res.writeHead(200, { "Content-Type": "application/json" });
        res.end(JSON.stringify(models));
        return;
      }
      const chat = url === "/v1/chat/completions";
      if (req.method !== "POST" || !(chat || url === "/v1/completions")) {
        res.writeHead(404, { "Content-Type": "application/json" });
        res.end(JSON.stringify({ error: { message: `no route ${req.method} ${url}` } }));
        return;
      }
      let body;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      } catch {
        res.writeHead(400, { "Content-Type": "application/json" });
        res.end(JSON.stringify({ error: { message: "bad JSON" } }));
        return;
      }
      const i = state.requests.length;
      // t: when the body arrived; chunkTimes: when each content chunk was written (ms)
      state.requests.push({ i, url, headers: req.headers, body, t: performance.now(), chunkTimes: [] });
      state.inFlight++;
      state.maxInFlight = Math.max(state.maxInFlight, state.inFlight);
      let counted = true;
      const done = () => {
        if (counted) state.inFlight--;
        counted = false;
      };
      res.on("close", done);
      const how = o.behave(i, body);
      if (typeof how === "object" && how.status) {
        res.writeHead(how.status, { "Content-Type": "application/json" });
        res.end(JSON.stringify({ error: { message: how.message ?? "error", type: "server_error", code: how.status } }));
        return;
      }
      stream(req, res, i, body, chat, how);
    });
  });
  server.on("connection", (s) => {
    state.sockets.add(s);
    s.setNoDelay(true);
    s.on("close", () => state.sockets.delete(s));
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = server.address().port;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    state,
    async close() {
      for (const t of state.timers) clearTimeout(t);
      for (const s of state.sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
