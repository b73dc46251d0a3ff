// The JMS tutorial (web/jms/) while the gateway's broker is unavailable.
// Usage: node tests/browser/jms-outage.mjs http://127.0.0.1:PORT/jms/
//
//   browser --CONNECT--> kgateway /jms --X--> broker (a closed port)
//           <--CONNECTED kgateway-broker:unavailable--
//   browser --SEND receipt:...--> kept in the gateway's outage buffer (no RECEIPT yet)
//
// Checks: the page connects and says the broker is unavailable and that the gateway buffers
// messages; a message sent now is counted as waiting. Prints one JSON line.

import { check, firstPage, launch, run } from "./harness.mjs";

const pageUrl = process.argv[2];
if (!pageUrl) {
  console.error("usage: node tests/browser/jms-outage.mjs http://host:port/jms/");
  process.exit(2);
}
const WAIT = { timeout: 15000 };

await run("jms-outage", async () => {
  const { context } = await launch();
  const page = await firstPage(context, "outage");
  await page.goto(pageUrl);
  check(await page.isHidden("#broker"), "no broker notice before connecting");
  await page.click("#connect");
  await page.waitForSelector("#status[data-state=connected]", WAIT);
  await page.waitForSelector("#broker[data-broker=unavailable]", WAIT);
  const notice = await page.textContent("#broker");
  check(/broker unavailable/.test(notice) && /buffers messages/.test(notice),
    `the page says the broker is unavailable (${notice})`);
  await page.fill("#sendDestination", "/queue/outage");
  await page.fill("#message", "kept for later");
  await page.click("#send");
  await page.waitForSelector("#broker:has-text('(1 waiting)')", WAIT);
  return { notice: await page.textContent("#broker") };
}, { timeoutMs: 60000 });
