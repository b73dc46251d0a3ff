// Browser-test harness: Debian's chromium driven by playwright-core.
//
// Browser scenarios are Node scripts run from pytest as
//     node tests/browser/<scenario>.mjs <base-url>
// Each prints ONE JSON line of results on stdout and exits 0 on success, non-zero on
// failure, within a hard timeout of its own. Diagnostics go to stderr.
//
//   import { launch, newContext, run } from "./harness.mjs";
//   await run("echo", async () => {
//     const { context } = await launch();
//     const page = await firstPage(context);
//     ...
//     return { checked: 3 };            // merged into the JSON line
//   }, { timeoutMs: 60000 });
//
// launch() starts /usr/bin/chromium with launchPersistentContext in a fresh temporary
// profile directory (Playwright refuses --user-data-dir in args; a persistent context is
// how a profile dir is chosen), headless, with the flags this machine needs: without the
// background-networking ones Chromium keeps trying to reach Google's hosts, which are
// unreachable here. newContext() is a second, fully independent browser (own process,
// own profile, own cookies and storage). Nothing is downloaded: `npx playwright install`
// cannot work here, CHROMIUM=/path overrides the executable.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

export const EXECUTABLE = process.env.CHROMIUM ?? "/usr/bin/chromium";

export const ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

// Every context launched and not yet closed, so run() can clean up on failure/timeout.
const open = new Set();

/**
 * Start a headless chromium with a fresh profile.
 * @param {object} [options] extra launchPersistentContext options (viewport, ...)
 * @returns {Promise<{context: import("playwright-core").BrowserContext, dir: string,
 *                    close: () => Promise<void>}>}
 *   close() closes the browser and removes the profile directory; safe to call twice.
 */
export async function launch(options = {}) {
  const dir = mkdtempSync(join(tmpdir(), "kgw-chromium-"));
  let context;
  try {
    context = await chromium.launchPersistentContext(dir, {
      headless: true,
      executablePath: EXECUTABLE,
      args: ARGS,
      ...options,
    });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  let closed = null;
  const handle = {
    context,
    dir,
    close() {
      closed ??= (async () => {
        open.delete(handle);
        await context.close().catch(() => {});
        rmSync(dir, { recursive: true, force: true });
      })();
      return closed;
    },
  };
  open.add(handle);
  return handle;
}

/** A second browser, independent of the first (its own process and profile). */
export function newContext(options = {}) {
  return launch(options);
}

/** Close every browser launched through this module. */
export async function closeAll() {
  await Promise.all([...open].map((handle) => handle.close()));
}

// Last resort when a browser would not close in time: remove the profile dirs anyway
// (Playwright kills the browsers' process groups when Node exits).
function removeDirsNow() {
  for (const handle of open) {
    try {
      rmSync(handle.dir, { recursive: true, force: true, maxRetries: 3 });
    } catch (err) {
      console.error(`could not remove ${handle.dir}: ${err.message}`);
    }
  }
}

/**
 * The page a persistent context opens with (or a new one), with the page's console
 * errors and uncaught exceptions copied to stderr, prefixed by name.
 */
export async function firstPage(context, name = "page") {
  const page = context.pages()[0] ?? (await context.newPage());
  watch(page, name);
  return page;
}

/** Copy a page's console errors and uncaught exceptions to stderr. */
export function watch(page, name = "page") {
  page.on("pageerror", (err) => console.error(`[${name}] page error: ${err.message}`));
  page.on("console", (msg) => {
    if (msg.type() === "error" || msg.type() === "warning") {
      console.error(`[${name}] console.${msg.type()}: ${msg.text()}`);
    }
  });
  return page;
}

/** Throw unless condition holds; `what` names the check in the failure. */
export function check(condition, what) {
  if (!condition) throw new Error(`check failed: ${what}`);
}

/**
 * Run a scenario: print one JSON line {scenario, ...result, ok, ms} or
 * {scenario, error, ok: false, ms} on stdout, close all browsers, remove their
 * profiles, and exit 0 (passed), 1 (failed), 124 (hard timeout) or 143/130
 * (SIGTERM/SIGINT, e.g. pytest's subprocess timeout).
 */
export async function run(scenario, body, { timeoutMs = 60000 } = {}) {
  const started = Date.now();
  let done = false;
  const finish = async (code, fields) => {
    if (done) return;
    done = true;
    const line = { scenario, ...fields, ok: code === 0, ms: Date.now() - started };
    // Bounded: a wedged browser must not hold the process past its deadline.
    await Promise.race([closeAll(), new Promise((r) => setTimeout(r, 5000).unref())]);
    removeDirsNow();
    process.stdout.write(JSON.stringify(line) + "\n", () => process.exit(code));
  };
  for (const [signal, code] of [["SIGTERM", 143], ["SIGINT", 130]]) {
    process.once(signal, () => {
      console.error(`${scenario}: ${signal}`);
      finish(code, { error: `killed by ${signal}` });
    });
  }
  const timer = setTimeout(() => {
    console.error(`${scenario}: hard timeout after ${timeoutMs} ms`);
    finish(124, { error: `timeout after ${timeoutMs} ms` });
  }, timeoutMs);
  try {
    const result = await body();
    clearTimeout(timer);
    await finish(0, result ?? {});
  } catch (err) {
    clearTimeout(timer);
    console.error(`${scenario}: FAILED: ${err?.stack ?? err}`);
    await finish(1, { error: String(err?.message ?? err) });
  }
}
