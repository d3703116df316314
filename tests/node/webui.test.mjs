// The web UI in a real browser: Debian's chromium, headless, driven by playwright-core. The page
// is the one embedded in the server binary; requests beside it come from the official openai
// client; expectations come from the DOM (never from screenshots), /metrics and the API.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import OpenAI from "openai";
import { chromium } from "playwright-core";
import { startServer, metrics, post } from "./lib/server.mjs";
import { makeTempDir, sourcePath } from "./lib/util.mjs";

const CHROMIUM = "/usr/bin/chromium";
const DEFAULT_MODEL = sourcePath("models/pagellm-default.gguf");
const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync"];
// generous: CI machines are shared, and the suite also runs under ASan (with the engine's
// invariant checks after every step), where 8 x 300 tokens of the 15.7M model on an AVX2-only
// machine took over 120 s
const LONG = process.env.PL_SANITIZE === "ON" ? 360_000 : 120_000;

let ctx; // one browser (persistent context on a fresh profile) for the whole file

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: run scripts/install-deps.sh`);
  ctx = await chromium.launchPersistentContext(makeTempDir("pagellm-chromium-"), {
    executablePath: CHROMIUM,
    headless: true,
    args: FLAGS,
    viewport: { width: 1400, height: 860 },
    timeout: LONG,
  });
  ctx.setDefaultTimeout(LONG);
});

after(async () => {
  if (ctx) await ctx.close();
});

/** A new page that records console errors and uncaught exceptions. */
async function openPage(url) {
  const page = await ctx.newPage();
  const errors = [];
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url, { waitUntil: "load" });
  return { page, errors };
}

const defaultServer = (extra = []) =>
  startServer({ model: DEFAULT_MODEL, args: ["--kv-cache-memory", "64MiB", "--seed", "1", ...extra] });

test("the page loads with no console errors and a chat answer streams in", { timeout: 3 * LONG }, async () => {
  const srv = await defaultServer();
  try {
    const { page, errors } = await openPage(srv.url + "/");
    assert.equal(await page.title(), "pagellm");
    await page.waitForFunction(() => document.getElementById("model-name").textContent.length > 0);
    await page.click("#settings summary");
    await page.fill("#p-temperature", "0");
    await page.fill("#p-max_tokens", "160");
    await page.fill("#p-seed", "7");
    // a prompt the bundled model answers at length (160 tokens: many animation frames, so the
    // answer is seen growing even on a loaded machine; "Once upon a time" ends after 20)
    await page.fill("#input", "Write a story.");
    // count how often the answer's text changes while it streams
    await page.evaluate(() => {
      window.__updates = 0;
      new MutationObserver(() => {
        const m = document.querySelector(".msg.assistant.streaming .content");
        if (m && m.textContent.length) window.__updates++;
      }).observe(document.getElementById("messages"), { subtree: true, childList: true, characterData: true });
    });
    await page.click("#send");
    await page.waitForSelector(".msg.assistant .content");
    await page.waitForSelector(".msg.assistant:not(.streaming) .meta");
    const updates = await page.evaluate(() => window.__updates);
    assert.ok(updates >= 2, `the answer appeared in ${updates} update(s), not streamed`);
    const meta = await page.textContent(".msg.assistant .meta");
    assert.match(meta, /\d+ tokens · [\d.]+ tok\/s/);

    // The stored conversation holds exactly what the API answers to the same greedy request.
    const stored = await page.evaluate(() => JSON.parse(localStorage.getItem("pagellm.conversations")));
    const conv = stored[0];
    assert.equal(conv.messages.length, 2);
    const client = new OpenAI({ baseURL: srv.baseURL, apiKey: "x", maxRetries: 0 });
    const ref = await client.chat.completions.create({
      messages: [{ role: "user", content: "Write a story." }], temperature: 0, top_p: 0.95, max_tokens: 160, seed: 7,
    });
    assert.ok(ref.choices[0].message.content.length > 0);
    assert.equal(conv.messages[1].content, ref.choices[0].message.content);
    assert.equal(meta.match(/(\d+) tokens/)[1], String(ref.usage.completion_tokens));

    // It survives a reload (localStorage), and regenerate gives the same greedy answer again.
    await page.reload();
    await page.waitForSelector(".msg.assistant .content");
    assert.equal((await page.$$(".msg")).length, 2);
    await page.click("#regenerate");
    await page.waitForSelector(".msg.assistant:not(.streaming) .meta");
    const again = await page.evaluate(() => JSON.parse(localStorage.getItem("pagellm.conversations"))[0].messages);
    assert.equal(again.length, 2);
    assert.equal(again[1].content, ref.choices[0].message.content);
    assert.deepEqual(errors, []);
    await page.close();
  } finally {
    await srv.stop();
  }
});

test("8 requests with one long shared prefix: ref count 8 on the map, then cached", { timeout: 3 * LONG }, async () => {
  const srv = await defaultServer();
  try {
    const { page, errors } = await openPage(srv.url + "/#kv");
    await page.waitForSelector(".kv-cell[data-state='f']");
    const prefix = "The king said unto his servants, go ye into the city and bring me the bread and the wine. ".repeat(10);
    const tok = await post(srv.url + "/tokenize", { prompt: prefix });
    const prefixBlocks = Math.floor(tok.json.count / 16);
    assert.ok(prefixBlocks >= 8, `prefix has only ${tok.json.count} tokens`);
    const client = new OpenAI({ baseURL: srv.baseURL, apiKey: "x", maxRetries: 0, timeout: LONG });
    const maxTokens = 500 - tok.json.count - 8;
    const done = Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        client.completions.create({ prompt: prefix + `Then ${i}`, max_tokens: maxTokens, ignore_eos: true, temperature: 1, seed: i })
      )
    );
    // While they run: the prefix blocks are shared by all 8 (read from the DOM).
    await page.waitForFunction((n) => document.querySelectorAll(".kv-cell[data-state='s'][data-ref='8']").length >= n,
      prefixBlocks, { timeout: LONG, polling: 50 });
    const shared = await page.$$eval(".kv-cell[data-state='s'][data-ref='8']", (els) =>
      els.map((e) => ({ id: +e.dataset.index, owners: e.dataset.owners.split(" ").length })));
    assert.ok(shared.length >= prefixBlocks);
    for (const b of shared) assert.equal(b.owners, 8, `block ${b.id} lists ${b.owners} owners`);
    const running = await page.$$eval("#running-list li", (els) => els.length);
    assert.equal(running, 8);
    // Hovering a request highlights its whole block table.
    await page.hover("#running-list li >> nth=0");
    const hl = await page.$$eval(".kv-cell.hl", (els) => els.map((e) => +e.dataset.index));
    for (const b of shared) assert.ok(hl.includes(b.id), `block ${b.id} of the shared prefix is not highlighted`);
    await page.mouse.move(0, 0);

    const res = await done;
    for (const r of res) assert.equal(r.usage.completion_tokens, maxTokens);
    // After they finish, the same blocks are cached (evictable), with an eviction order.
    const ids = shared.map((b) => b.id);
    await page.waitForFunction((ids) => ids.every((id) => {
      const d = document.querySelector(`.kv-cell[data-index='${id}']`);
      return d && d.dataset.state === "c" && d.dataset.lru !== undefined;
    }), ids, { timeout: LONG, polling: 100 });
    assert.equal(await page.$$eval("#running-list li", (els) => els.length), 0);
    const hitRate = await page.textContent("#stat-hit-rate");
    assert.match(hitRate, /^\d+(\.\d)?%$/);
    assert.ok(parseFloat(hitRate) > 0, `hit rate ${hitRate}`);
    assert.deepEqual(errors, []);
    await page.close();
  } finally {
    await srv.stop();
  }
});

test("a preemption forced by a tiny pool appears in the counters", { timeout: 3 * LONG }, async () => {
  // 8 KiB of K/V per token: 5 MiB = 40 blocks of 16 tokens, for 6 requests of ~210 tokens each
  // 5 MiB of F32 KV: small enough that greedy admission must preempt
  const srv = await startServer({ model: DEFAULT_MODEL, args: ["--kv-cache-memory", "5MiB", "--kv-cache-dtype", "f32", "--kv-admission", "greedy", "--seed", "1"] });
  try {
    const { page, errors } = await openPage(srv.url + "/#kv");
    await page.waitForSelector(".kv-cell");
    assert.equal(await page.textContent("#stat-preemptions"), "0");
    const client = new OpenAI({ baseURL: srv.baseURL, apiKey: "x", maxRetries: 0, timeout: LONG });
    await Promise.all(Array.from({ length: 6 }, (_, i) =>
      client.completions.create({ prompt: `Story number ${i}:`, max_tokens: 200, ignore_eos: true, seed: i })));
    const m = await metrics(srv.url);
    const n = m["pagellm:num_preemptions_total"];
    assert.ok(n > 0, "the pool was not small enough to preempt");
    await page.waitForFunction((n) => document.getElementById("stat-preemptions").textContent === String(n), n,
      { timeout: LONG, polling: 100 });
    assert.deepEqual(errors, []);
    await page.close();
  } finally {
    await srv.stop();
  }
});

test("model output with <script> and markdown renders inert", { timeout: 120_000 }, async () => {
  const srv = await defaultServer();
  try {
    const { page, errors } = await openPage(srv.url + "/");
    const pieces = [
      "# Title\n\nSome **bold** and *em* text with `<b>code</b>`.\n\n",
      "<script>window.__pwned = 1<\/script>\n<img src=x onerror=\"window.__pwned = 2\">\n\n",
      "- item <i>one</i>\n- [click](javascript:window.__pwned=3)\n\n",
      "```html\n<script>alert(1)<\/script>\n```\n",
    ];
    // The model's answer is served by the page's own route handler, chunk by chunk as SSE.
    await page.route("**/v1/chat/completions", (route) => {
      const events = pieces.map((p) => `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: p }, finish_reason: null }] })}\n\n`);
      events.push(`data: ${JSON.stringify({ choices: [{ index: 0, delta: {}, finish_reason: "stop" }] })}\n\n`, "data: [DONE]\n\n");
      route.fulfill({ status: 200, headers: { "content-type": "text/event-stream" }, body: events.join("") });
    });
    await page.fill("#input", "show me markup");
    await page.click("#send");
    await page.waitForSelector(".msg.assistant:not(.streaming) .meta");
    const r = await page.evaluate(() => {
      const m = document.querySelector(".msg.assistant .content");
      return {
        pwned: window.__pwned,
        scripts: m.querySelectorAll("script").length,
        imgs: m.querySelectorAll("img").length,
        italicTags: m.querySelectorAll("i").length,
        strong: [...m.querySelectorAll("strong")].map((e) => e.textContent),
        em: [...m.querySelectorAll("em")].map((e) => e.textContent),
        h: m.querySelector("h3") && m.querySelector("h3").textContent,
        inlineCode: [...m.querySelectorAll(":not(pre) > code")].map((e) => e.textContent),
        pre: m.querySelector("pre code") && m.querySelector("pre code").textContent,
        links: [...m.querySelectorAll("a")].length,
        text: m.textContent,
        items: m.querySelectorAll("li").length,
      };
    });
    assert.equal(r.pwned, undefined);
    assert.equal(r.scripts, 0);
    assert.equal(r.imgs, 0);
    assert.equal(r.italicTags, 0);
    assert.equal(r.links, 0, "a javascript: link became an anchor");
    assert.deepEqual(r.strong, ["bold"]);
    assert.deepEqual(r.em, ["em"]);
    assert.equal(r.h, "Title");
    assert.deepEqual(r.inlineCode, ["<b>code</b>"]);
    assert.equal(r.pre, "<script>alert(1)</script>");
    assert.equal(r.items, 2);
    assert.ok(r.text.includes("<script>window.__pwned = 1</script>"));
    assert.ok(r.text.includes('<img src=x onerror="window.__pwned = 2">'));
    assert.ok(r.text.includes("<i>one</i>"));
    assert.deepEqual(errors, []);
    await page.close();
  } finally {
    await srv.stop();
  }
});

test("with --api-key the page asks for the key and /kv/snapshot needs it", { timeout: 120_000 }, async () => {
  const srv = await defaultServer(["--api-key", "s3cret"]);
  try {
    assert.equal((await fetch(srv.url + "/kv/snapshot")).status, 401);
    const ok = await fetch(srv.url + "/kv/snapshot", { headers: { Authorization: "Bearer s3cret" } });
    assert.equal(ok.status, 200);
    assert.equal((await ok.json()).object, "kv_snapshot");
    assert.equal((await fetch(srv.url + "/")).status, 200); // the page itself holds no data

    const page = await ctx.newPage();
    await page.goto(srv.url + "/#kv");
    await page.waitForSelector("#key-dialog:not([hidden])");
    await page.fill("#key-input", "wrong");
    await page.click("#key-form button");
    await page.waitForFunction(() => /Incorrect API key/.test(document.getElementById("key-error").textContent));
    await page.fill("#key-input", "s3cret");
    await page.click("#key-form button");
    await page.waitForSelector(".kv-cell");
    await page.waitForFunction(() => document.getElementById("model-name").textContent.length > 0);
    assert.equal(await page.evaluate(() => sessionStorage.getItem("pagellm.apiKey")), "s3cret");
    await page.close();
  } finally {
    await srv.stop();
  }
});

test("a pool of 100k+ blocks stays readable: cells aggregate runs of blocks", { timeout: 120_000 }, async () => {
  const srv = await startServer({ args: ["--block-size", "1", "--kv-cache-memory", "128MiB"] });
  try {
    const snap = await (await fetch(srv.url + "/kv/snapshot?tables=0&history=0")).json();
    assert.ok(snap.num_blocks > 100_000, `only ${snap.num_blocks} blocks`);
    const { page, errors } = await openPage(srv.url + "/#kv");
    await page.waitForSelector(".kv-cell.agg");
    const r = await page.$$eval(".kv-cell", (els) => ({
      n: els.length,
      covered: els.reduce((a, e) => a + e.dataset.counts.split(",").reduce((x, y) => x + +y, 0), 0),
      first: els[0].dataset.first,
      last: els[els.length - 1].dataset.last,
    }));
    assert.ok(r.n < 20_000, `${r.n} cells`);
    assert.equal(r.covered, snap.num_blocks);
    assert.equal(r.first, "0");
    assert.equal(r.last, String(snap.num_blocks - 1));
    assert.match(await page.textContent("#kv-scale"), /one cell = \d+ blocks/);
    assert.deepEqual(errors, []);
    await page.close();
  } finally {
    await srv.stop();
  }
});
