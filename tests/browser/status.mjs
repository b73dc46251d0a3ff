// The gateway's status page (kgateway.services.status) in headless Chromium.
// Usage: node tests/browser/status.mjs http://127.0.0.1:PORT [screenshot.png]
//
//   page <--polls-- /status/status.json                     (every 2 s)
//   page --WebSocket--> /echo, 64 KiB each way, kept open   (shows as an open connection)
//
// Checks: /status redirects to /status/ and the page loads with the tutorials' style;
// the health badge says "degraded" and the jms broker (a closed port) is listed down with
// the connect error; the echo connection opened from the page appears with its client
// address and bytes, without a reload; the recent warnings list the broker's failures;
// nothing on the page came from anywhere but the gateway. Prints one JSON line.

import { check, firstPage, launch, run } from "./harness.mjs";

const base = process.argv[2];
const shot = process.argv[3];
if (!base) {
  console.error("usage: node tests/browser/status.mjs http://host:port [screenshot.png]");
  process.exit(2);
}
const root = base.endsWith("/") ? base : base + "/";
const WAIT = { timeout: 15000 };

await run("status", async () => {
  const { context } = await launch({ viewport: { width: 1280, height: 1000 } });
  const page = await firstPage(context, "status");
  const origins = new Set();
  page.on("request", (request) => origins.add(new URL(request.url()).origin));

  const response = await page.goto(new URL("status", root).href);
  check(new URL(page.url()).pathname === "/status/", `redirected to /status/ (${page.url()})`);
  check(response.ok(), "the page loads");
  await page.waitForSelector("#updated[data-state=connected]", WAIT);
  const health = await page.textContent("#health");
  check(health === "degraded", `health badge says degraded (got ${health})`);
  const styled = await page.$eval("header.site", (h) => getComputedStyle(h).borderBottomStyle);
  check(styled === "solid", "the tutorials' style.css applies");

  const broker = page.locator('#backends tr[data-service="stomp"][data-state="down"]');
  await broker.waitFor(WAIT);
  const brokerText = await broker.textContent();
  check(/refused/i.test(brokerText), `the broker row says why (${brokerText})`);

  // A client of the echo service, from the page itself, kept open.
  await page.evaluate(async () => {
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/echo`);
    ws.binaryType = "arraybuffer";
    window.statusTestSocket = ws;
    await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
    const echoed = new Promise((resolve) => { ws.onmessage = resolve; });
    ws.send(new Uint8Array(65536));
    await echoed;
  });
  const row = page.locator('#connections tr[data-service="echo"]');
  await row.waitFor(WAIT);  // the next poll shows it: no reload
  const rowText = await row.textContent();
  check(/127\.0\.0\.1:\d+/.test(rowText), `client address shown (${rowText})`);
  check((rowText.match(/64\.0 KB/g) || []).length === 2, `64 KB each way shown (${rowText})`);

  const errors = await page.$$eval("#errors li", (lis) => lis.map((li) => li.textContent));
  check(errors.some((e) => /WARN .*unreachable/.test(e)), `recent warnings listed (${errors[0]})`);
  const services = await page.$$eval("#services tbody tr", (trs) => trs.map((tr) => tr.dataset.service));
  check(["tutorials", "echo", "stomp", "status"].every((s) => services.includes(s)),
    `every service listed (${services})`);
  check(origins.size === 1, `everything came from the gateway (${[...origins]})`);

  if (shot) await page.screenshot({ path: shot, fullPage: true });
  await page.evaluate(() => window.statusTestSocket.close());
  return { health, services: services.length, errors: errors.length };
}, { timeoutMs: 60000 });
