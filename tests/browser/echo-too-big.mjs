// The echo tutorial (web/echo/) against an echo service with a small message limit.
// Usage: node tests/browser/echo-too-big.mjs http://127.0.0.1:PORT LIMIT
//
//   page --text of LIMIT+1 octets--> kgateway echo (ws.maximum.message.size LIMIT)
//        <--close 1009--
//
// Checks: a message within the limit comes back; one past it ends the connection with 1009,
// which the page logs and explains in words (data-cause="close-1009": message too big, with
// the option's name). Prints one JSON line.

import { check, firstPage, launch, run } from "./harness.mjs";

const [base, limitArg] = process.argv.slice(2);
if (!base || !limitArg) {
  console.error("usage: node tests/browser/echo-too-big.mjs http://host:port LIMIT");
  process.exit(2);
}
const limit = Number(limitArg);
const WAIT = { timeout: 15000 };

await run("echo-too-big", async () => {
  const { context } = await launch();
  const page = await firstPage(context, "echo-too-big");
  await page.goto(new URL("/echo/", base).href);
  await page.click("#connect");
  await page.waitForSelector("#status[data-state=connected]", WAIT);
  await page.fill("#message", "x".repeat(limit));
  await page.click("#sendText");
  await page.waitForSelector('#log li[data-kind="received-text"]', WAIT);
  await page.fill("#message", "x".repeat(limit + 1));
  await page.click("#sendText");
  await page.waitForSelector('#problem[data-cause="close-1009"]', WAIT);
  const why = await page.textContent("#problem");
  check(/too big/.test(why) && /ws\.maximum\.message\.size/.test(why),
        `1009 explained, naming the option (${why})`);
  const code = await page.getAttribute('#log li[data-kind="closed"]', "data-code");
  check(code === "1009", `closed with 1009 (got ${code})`);
  return { why };
}, { timeoutMs: 45000 });
