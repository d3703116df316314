// Generic helpers for the node tests: paths from the CTest environment (PL_BIN, PL_TEST_DATA,
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
/**
 * Test inputs: $PL_TEST_DATA (what scripts/test-data.py builds from the npm packages; CTest sets
 * it to build/testdata), then the committed tests/data/. Both have the same layout.
 */
export const testDataDir = process.env.PL_TEST_DATA || join(sourceDir, "build", "testdata");

/** Path of test input `rel`; throws naming the file and the script that makes it when missing. */
export function dataPath(rel) {
  for (const base of [testDataDir, join(sourceDir, "tests", "data")]) {
    const p = join(base, rel);
    if (existsSync(p)) return p;
  }
  throw new Error(`missing test input ${rel} (looked in ${testDataDir} and tests/data/): it is made by ` +
                  "scripts/test-data.py, which `make test` runs (after scripts/node-deps.sh)");
}

/**
 * Extra reference data beside the repository ($PAGELLM_EXTRA_DATA, e.g. ../shared; CI sets it).
 * Returns the path of `rel` there, or null after printing one "skipped: <what>" line when unset.
 */
export function extraDataPath(rel, what) {
  const dir = process.env.PAGELLM_EXTRA_DATA;
  if (!dir) {
    console.log(`skipped: ${what} (set PAGELLM_EXTRA_DATA=../shared to run it)`);
    return null;
  }
  const p = resolve(sourceDir, dir, rel); // a relative dir is relative to the repository root
  if (!existsSync(p)) throw new Error(`PAGELLM_EXTRA_DATA=${dir} has no ${rel}`);
  return p;
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
