// The AMQP tutorial (web/amqp/) when the gateway cannot reach RabbitMQ.
// Usage: node tests/browser/amqp-outage.mjs http://127.0.0.1:PORT
//
//   page --WebSocket--> kgateway /amqp --X--> RabbitMQ (a closed port)
//        <--close 1014 "..."--
//
// Checks: the handshake succeeds and the gateway then closes with 1014 (bad gateway); the
// page logs the close with its reason and explains it in words (data-cause="close-1014":
// the gateway could not reach its back end), and is disconnected. Prints one JSON line.

import { check, firstPage, launch, run } from "./harness.mjs";

const base = process.argv[2];
if (!base) {
  console.error("usage: node tests/browser/amqp-outage.mjs http://host:port");
  process.exit(2);
}
const WAIT = { timeout: 15000 };

await run("amqp-outage", async () => {
  const { context } = await launch();
  const page = await firstPage(context, "amqp-outage");
  await page.goto(new URL("/amqp/", base).href);
  await page.waitForSelector("#log >> text=ready");
  await page.click("#connect");
  await page.waitForSelector('#problem[data-cause="close-1014"]', WAIT);
  const why = await page.textContent("#problem");
  check(/bad gateway/.test(why) && /back end/.test(why), `1014 explained in words (${why})`);
  const closed = await page.$eval('#log li[data-kind="closed"]', (li) => ({ ...li.dataset }));
  check(closed.code === "1014" && closed.reason.length > 0,
        `the close carries 1014 and the gateway's reason (${JSON.stringify(closed)})`);
  check(why.includes(closed.reason), "the explanation quotes the reason");
  await page.waitForSelector("#status[data-state=disconnected]", WAIT);
  return { why, reason: closed.reason };
}, { timeoutMs: 45000 });
