// The JMS tutorial (web/jms/) in two independent headless Chromium browsers.
// Usage: node tests/browser/jms.mjs http://127.0.0.1:PORT/jms/
//
//   browser A (subscriber) <--MESSAGE-- kgateway /jms <--> ActiveMQ <--SEND-- browser B
//
// Checks: a message with custom properties sent from B arrives in A with its headers;
// a transaction B rolls back never arrives, one it commits does; Unsubscribe stops delivery.
// Prints one JSON line (see harness.mjs).

import { check, firstPage, launch, run } from "./harness.mjs";

const pageUrl = process.argv[2];
if (!pageUrl) {
  console.error("usage: node tests/browser/jms.mjs http://host:port/jms/");
  process.exit(2);
}
const WAIT = { timeout: 15000 };
const topic = `/topic/browser.${Date.now()}.${Math.floor(Math.random() * 1e6)}`;

const messages = (page) => page.$$eval('#log li[data-kind="message"]',
  (lis) => lis.map((li) => ({ ...li.dataset })));  // oldest first, as the log is

async function open(name) {
  const { context } = await launch();
  const page = await firstPage(context, name);
  await page.goto(pageUrl);
  await page.click("#connect");
  await page.waitForSelector("#status[data-state=connected]", WAIT);
  check(await page.isHidden("#broker"), "no broker notice while the broker is up");
  return page;
}

async function waitForBody(page, body) {
  await page.waitForSelector(`#log li[data-kind="message"][data-body="${body}"]`, WAIT);
}

await run("jms", async () => {
  const a = await open("subscriber");
  const b = await open("publisher");

  await a.fill("#destination", topic);
  await a.click("#subscribe");
  await a.waitForSelector(`#subscriptions li[data-destination="${topic}"]`, WAIT);
  // The subscription is live once a probe from A itself comes back.
  await a.fill("#sendDestination", topic);
  await a.fill("#message", "probe");
  await a.click("#send");
  await waitForBody(a, "probe");

  await b.fill("#sendDestination", topic);
  await b.fill("#message", "hello from B");
  await b.fill("#prop1Name", "colour");
  await b.fill("#prop1Value", "blue");
  await b.click("#send");
  await waitForBody(a, "hello from B");
  const hello = (await messages(a)).find((m) => m.body === "hello from B");
  const headers = JSON.parse(hello.headers);
  check(headers.colour === "blue", "custom property arrives as a header");
  check(headers.destination === topic, "destination header is the client's name");

  await b.fill("#prop1Name", "");
  await b.click("#txBegin");
  await b.waitForSelector("#txStatus[data-state=open]", WAIT);
  await b.fill("#message", "rolled back");
  await b.click("#txSend");
  await b.click("#txRollback");
  await b.click("#txBegin");
  await b.fill("#message", "committed");
  await b.click("#txSend");
  await b.click("#txCommit");
  await waitForBody(a, "committed");
  // Frames from B are ordered: a later plain send arriving proves nothing else is coming.
  await b.fill("#message", "after");
  await b.click("#send");
  await waitForBody(a, "after");
  const bodies = (await messages(a)).map((m) => m.body);
  check(!bodies.includes("rolled back"), "a rolled-back message never arrives");
  check(JSON.stringify(bodies) === JSON.stringify(["probe", "hello from B", "committed", "after"]),
        `exactly the expected messages in order (got ${JSON.stringify(bodies)})`);

  await a.click("#subscriptions li button.unsubscribe");
  await a.waitForSelector('#log li[data-kind="unsubscribed"]', WAIT);
  const errors = await a.$$eval('#log li[data-kind="error"]', (lis) => lis.length)
    + await b.$$eval('#log li[data-kind="error"]', (lis) => lis.length);
  check(errors === 0, "no STOMP errors");
  const kinds = await a.$$eval("#log li", (lis) => lis.map((li) => li.dataset.kind));
  check(kinds[0] === "connected" && kinds.at(-1) === "unsubscribed",
        `the log runs oldest to newest (${kinds})`);
  if (process.env.SCREENSHOT_DIR) {
    await a.screenshot({ path: `${process.env.SCREENSHOT_DIR}/jms.png`, fullPage: true });
  }
  return { delivered: bodies.length };
}, { timeoutMs: 90000 });
