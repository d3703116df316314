// Generic helpers for the node tests: paths from the CTest environment (PL_BIN, PL_SHARED_DIR,
// PL_SOURCE_DIR), running the pagellm binary, and temporary directories that are removed when
// the test process exits.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

/** The project root (PL_SOURCE_DIR, else derived from this file's location). */
export const sourceDir = process.env.PL_SOURCE_DIR || resolve(here, "../../..");
/** The shared test data folder (PL_SHARED_DIR, else ../shared beside the checkout). */
export const sharedDir = process.env.PL_SHARED_DIR || resolve(sourceDir, "../shared");

export function sharedPath(rel) {
  return join(sharedDir, rel);
}
export function sourcePath(rel) {
  return join(sourceDir, rel);
}

/** The pagellm binary (PL_BIN, else build/pagellm); null when it does not exist. */
export function plBin() {
  const p = process.env.PL_BIN || join(sourceDir, "build", "pagellm");
  return existsSync(p) ? p : null;
}

/**
 * Run the pagellm binary synchronously. Returns {status, stdout, stderr}. Never throws on a
 * non-zero exit; `timeoutMs` kills it (status null then).
 */
export function runPl(args, { timeoutMs = 600_000, env, input } = {}) {
  const bin = plBin();
  if (!bin) throw new Error("pagellm binary not found (set PL_BIN)");
  const r = spawnSync(bin, args, {
    encoding: "utf8",
    timeout: timeoutMs,
    env: { ...process.env, ...(env || {}) },
    input,
    maxBuffer: 256 * 1024 * 1024,
  });
  if (r.error && r.error.code !== "ETIMEDOUT") throw r.error;
  return { status: r.status, signal: r.signal, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
}

/** Start the pagellm binary asynchronously (e.g. a server); the caller kills it. */
export function spawnPl(args, { env } = {}) {
  const bin = plBin();
  if (!bin) throw new Error("pagellm binary not found (set PL_BIN)");
  return spawn(bin, args, { env: { ...process.env, ...(env || {}) }, stdio: ["ignore", "pipe", "pipe"] });
}

const tempDirs = [];
process.on("exit", () => {
  for (const d of tempDirs) {
    try {
      rmSync(d, { recursive: true, force: true });
    } catch {
      // best effort
    }
  }
});

/** A fresh temporary directory, removed when the process exits (unless PL_KEEP_TMP is set). */
export function makeTempDir(prefix = "pagellm-test-") {
  const d = mkdtempSync(join(process.env.TMPDIR || tmpdir(), prefix));
  if (!process.env.PL_KEEP_TMP) tempDirs.push(d);
  return d;
}
