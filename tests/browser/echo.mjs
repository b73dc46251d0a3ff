// The echo tutorial (web/echo/) in headless Chromium.
// Usage: node tests/browser/echo.mjs http://127.0.0.1:PORT     (the page is <base>/echo/)
//
//   page --text "hello ☃"--> ws://<same host>/echo --text "hello ☃"--> page
//   page --binary 68 65 6c 6c 6f 20 e2 98 83--> /echo --same binary--> page
//
// Checks, from both the page's log and the frames Chromium itself saw on the wire:
// the Location field defaults to ws://<host>/echo; a text message comes back as the same
// text in a text frame; the UTF-8 bytes sent as binary come back as the same bytes in a
// binary frame; nothing crosses over; Disconnect closes with 1000.
// Then refused handshakes, each explained on the page (web/explain.js, #problem and a log
// line of kind "explain" with data-cause): a wrong path (404: "not-found"), the page from
// another origin (the same gateway as http://127.0.0.1 vs http://localhost: "origin", the
// gateway answers 403), and a port where nothing listens ("unreachable").
// SCREENSHOT_DIR=dir saves echo.png (the foreign-origin explanation) there.
// Prints one JSON line.

import { createServer } from "node:net";
import { check, firstPage, launch, run } from "./harness.mjs";

const base = process.argv[2];
if (!base) {
  console.error("usage: node tests/browser/echo.mjs http://host:port");
  process.exit(2);
}
const pageUrl = new URL("echo/", base.endsWith("/") ? base : base + "/").href;
const TEXT = "hello ☃";
const BYTES = Buffer.from(TEXT, "utf8");
const WAIT = { timeout: 10000 };

const lines = (page, kind) => page.$$eval(`#log li[data-kind="${kind}"]`,
  (lis) => lis.map((li) => ({ ...li.dataset, text: li.dataset.text,
                              display: li.querySelector(".text").textContent })));

// A loopback port nothing listens on (bound, then closed).
const closedPort = () => new Promise((resolve) => {
  const server = createServer().listen(0, "127.0.0.1", () => {
    const { port } = server.address();
    server.close(() => resolve(port));
  });
});

// Connect to wsUrl from the page at pageHref; the explanation the page gives.
async function refused(page, pageHref, wsUrl, cause) {
  await page.goto(pageHref);
  await page.fill("#url", wsUrl);
  await page.click("#connect");
  await page.waitForSelector(`#log li[data-kind="explain"][data-cause="${cause}"]`, WAIT);
  await page.waitForSelector(`#problem[data-cause="${cause}"]`, { state: "visible", ...WAIT });
  const [closed] = await lines(page, "closed");
  check(closed.code === "1006", `a refused handshake closes 1006 (got ${closed.code})`);
  check((await page.getAttribute("#status", "data-state")) === "disconnected",
        "the page is disconnected again");
  return page.textContent("#problem");
}

await run("echo", async () => {
  const { context } = await launch();
  const page = await firstPage(context, "echo");

  // Frames as Chromium saw them: strings are text frames, Buffers binary frames.
  const frames = { sent: [], received: [] };
  page.on("websocket", (ws) => {
    ws.on("framesent", ({ payload }) => frames.sent.push(payload));
    ws.on("framereceived", ({ payload }) => frames.received.push(payload));
  });

  try {
    await page.goto(pageUrl);
    await page.waitForSelector("#status[data-state=disconnected]", WAIT);
    const expectedUrl = `${new URL(pageUrl).protocol === "https:" ? "wss" : "ws"}://${new URL(pageUrl).host}/echo`;
    const location = await page.inputValue("#url");
    check(location === expectedUrl, `Location defaults to ${expectedUrl} (got ${location})`);

    await page.click("#connect");
    await page.waitForSelector('#log li[data-kind="connected"]', WAIT);
    await page.waitForSelector("#status[data-state=connected]", WAIT);

    // text
    await page.fill("#message", TEXT);
    await page.click("#sendText");
    await page.waitForSelector('#log li[data-kind="received-text"]', WAIT);
    const [text] = await lines(page, "received-text");
    check(text.text === TEXT, `text echoed unchanged (got ${JSON.stringify(text.text)})`);
    check(text.display === TEXT, "text logged as it came");
    check((await lines(page, "received-binary")).length === 0, "text did not come back as binary");

    // binary: the UTF-8 bytes of the same field
    await page.click("#sendBinary");
    await page.waitForSelector('#log li[data-kind="received-binary"]', WAIT);
    const [binary] = await lines(page, "received-binary");
    check(binary.hex === BYTES.toString("hex"), `binary echoed byte for byte (got ${binary.hex})`);
    check(Number(binary.length) === BYTES.length, `binary length ${BYTES.length}`);
    check(binary.display.startsWith("68 65 6c 6c 6f 20 e2 98 83"), "binary logged in hex");
    const time = await page.$eval('#log li[data-kind="received-binary"] time', (t) => t.textContent);
    check(/^\d\d:\d\d:\d\d\.\d{3}$/.test(time), `log lines carry the time (${time})`);
    check((await lines(page, "received-text")).length === 1, "binary did not come back as text");

    // the wire, independently of the page's own bookkeeping
    const isBinary = (p) => typeof p !== "string";
    check(frames.sent.length === 2 && !isBinary(frames.sent[0]) && isBinary(frames.sent[1]),
          "Chromium sent one text frame, then one binary frame");
    check(frames.received.length === 2 && frames.received[0] === TEXT &&
          isBinary(frames.received[1]) && Buffer.compare(frames.received[1], BYTES) === 0,
          "Chromium received the text frame, then the binary frame, unchanged");

    await page.click("#disconnect");
    await page.waitForSelector('#log li[data-kind="closed"]', WAIT);
    const [closed] = await lines(page, "closed");
    check(closed.code === "1000", `Disconnect closes with 1000 (got ${closed.code})`);
    const errors = await lines(page, "error");
    check(errors.length === 0, `no errors in the log ${JSON.stringify(errors.map((e) => e.display))}`);

    // Refused handshakes, explained.
    const host = new URL(pageUrl).host;
    const ws = new URL(pageUrl).protocol === "https:" ? "wss" : "ws";
    const notFound = await refused(page, pageUrl, `${ws}://${host}/no-such-service`, "not-found");
    check(/404/.test(notFound) && /no-such-service/.test(notFound),
          `wrong path: the page says 404 and names the path (${notFound})`);
    const foreign = new URL(pageUrl);
    foreign.hostname = foreign.hostname === "localhost" ? "127.0.0.1" : "localhost";
    const origin = await refused(page, foreign.href, `${ws}://${host}/echo`, "origin");
    check(/403/.test(origin) && /cross-site-constraint/.test(origin) &&
          origin.includes(foreign.origin),
          `foreign origin: the page names its origin, 403 and the constraint (${origin})`);
    if (process.env.SCREENSHOT_DIR) {
      await page.screenshot({ path: `${process.env.SCREENSHOT_DIR}/echo.png`, fullPage: true });
    }
    const down = await refused(page, pageUrl, `${ws}://127.0.0.1:${await closedPort()}/echo`, "unreachable");
    check(/not running/.test(down), `no gateway: the page says it is not running (${down})`);

    return {
      explained: { notFound, origin, down },
      url: location,
      text: text.text,
      binary: { hex: binary.hex, length: Number(binary.length) },
      frames: { sent: frames.sent.length, received: frames.received.length },
      close: { code: Number(closed.code), clean: closed.clean === "true" },
    };
  } catch (err) {
    const log = await page.$eval("#log", (el) => el.innerText).catch(() => "(no log)");
    console.error(`--- page log ---\n${log}`);
    throw err;
  }
}, { timeoutMs: 45000 });
