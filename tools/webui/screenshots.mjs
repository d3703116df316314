// Takes the README's screenshots of the web UI (docs/webui-chat.png, docs/webui-kvmap.png):
// starts `pagellm serve` on the bundled model, chats once, runs 8 requests with a shared prefix
// and captures the KV map while they decode. By hand, after a build:
//   node tools/webui/screenshots.mjs            (needs scripts/node-deps.sh and chromium)
import { createRequire } from "node:module";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { spawn } from "node:child_process";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const require = createRequire(join(root, "tests/node/package.json"));
const { chromium } = require("playwright-core");
const OpenAI = require("openai").default;

const srv = spawn(join(root, "build/pagellm"), ["serve", "--port", "0", "--kv-cache-memory", "24MiB", "--seed", "3"],
  { stdio: ["ignore", "pipe", "inherit"] });
process.on("exit", () => srv.kill("SIGKILL"));
const url = await new Promise((res) => {
  let out = "";
  srv.stdout.on("data", (d) => {
    out += d;
    const m = /listening on (http:\/\/\S+)/.exec(out);
    if (m) res(m[1]);
  });
});
for (;;) {
  try {
    if ((await fetch(url + "/health")).status === 200) break;
  } catch {}
  await new Promise((r) => setTimeout(r, 100));
}
const ctx = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "pagellm-shots-")), {
  executablePath: "/usr/bin/chromium", headless: true, viewport: { width: 1280, height: 760 },
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
try {
  const page = await ctx.newPage();
  await page.goto(url + "/");
  await page.click("#settings summary");
  await page.fill("#p-max_tokens", "80");
  await page.fill("#p-temperature", "0.7");
  await page.fill("#input", "The king said unto his servants");
  await page.click("#send");
  await page.waitForSelector(".msg.assistant:not(.streaming) .meta", { timeout: 60_000 });
  await page.fill("#input", "What is a hacker?");
  await page.click("#send");
  await page.waitForSelector(".msg.assistant:nth-of-type(4):not(.streaming) .meta", { timeout: 60_000 });
  await page.click("#settings summary");
  await page.screenshot({ path: join(root, "docs/webui-chat.png") });

  await page.click("#tab-kv");
  const client = new OpenAI({ baseURL: url + "/v1", apiKey: "x" });
  const prefix = "The king said unto his servants, go ye into the city and bring me the bread and the wine. ".repeat(8);
  const jobs = Array.from({ length: 8 }, (_, i) =>
    client.completions.create({ prompt: prefix + `Then ${i}`, max_tokens: 200 + 15 * i, ignore_eos: true, seed: i }));
  const other = client.completions.create({ prompt: "A fortune: ", max_tokens: 400, ignore_eos: true });
  await page.waitForFunction(() => document.querySelectorAll(".kv-cell[data-state='s'][data-ref='8']").length > 4,
    null, { timeout: 60_000 });
  await new Promise((r) => setTimeout(r, 1500));
  await page.hover("#running-list li >> nth=2");
  await new Promise((r) => setTimeout(r, 400));
  await page.screenshot({ path: join(root, "docs/webui-kvmap.png") });
  await Promise.all([...jobs, other]);
} finally {
  await ctx.close();
  srv.kill("SIGTERM");
}
