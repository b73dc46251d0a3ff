// web/amqp in headless Chromium: two independent browsers against one gateway.
//   node tests/browser/amqp.mjs http://localhost:PORT
//
//   browser A --publish--> fanout exchange --> A's queue, B's queue --> both pages list it
//
// Checks: a message published in A arrives in B with its content type, delivery mode and
// headers; a rolled-back publish never arrives (a later committed one does, and AMQP keeps
// one channel's publishes in order, so "not before it" means "never"); flow off holds
// B's deliveries back and flow on releases them. Prints one JSON line (harness.mjs).

import { check, firstPage, launch, newContext, run } from "./harness.mjs";

const base = process.argv[2];
if (!base) {
  console.error("usage: node tests/browser/amqp.mjs http://host:port");
  process.exit(2);
}
const url = new URL("/amqp/", base).href;

async function open(context, name) {
  const page = await firstPage(context, name);
  await page.goto(url);
  await page.waitForSelector("#log >> text=ready");
  return page;
}

async function setUp(page, exchange) {
  await page.fill("#exchange", exchange);
  await page.click("#connect");
  await page.waitForSelector("#status[data-state=connected]", { timeout: 15000 });
  await page.click("#declare-exchange");
  await page.waitForSelector(`#log >> text=exchange ${exchange} declared`);
  await page.click("#declare-queue");
  await page.waitForSelector("#log >> text=declared and bound");
  await page.click("#consume");
  await page.waitForSelector("#log >> text=consuming from");
}

const received = (page) => page.$$eval("#messages li", (lis) => lis.map((li) => ({
  body: li.textContent, contentType: li.dataset.contentType,
  deliveryMode: li.dataset.deliveryMode, headers: JSON.parse(li.dataset.headers),
})));

async function arrives(page, body) {
  await page.waitForFunction((b) => [...document.querySelectorAll("#messages li")]
    .some((li) => li.textContent === b), body, { timeout: 15000 });
}

async function publish(page, body) {
  await page.fill("#message", body);
  await page.click("#publish");
  await page.waitForSelector(`#log >> text=published "${body}"`);
}

async function logs(pages) {
  const out = {};
  for (const [name, page] of Object.entries(pages)) {
    out[name] = await page.$eval("#log", (el) => el.innerText).catch(() => "(no log)");
  }
  return out;
}

await run("amqp", async () => {
  const checks = [];
  const ok = (condition, what) => {
    check(condition, what);
    checks.push(what);
  };
  const [{ context: ca }, { context: cb }] = await Promise.all([launch(), newContext()]);
  const [a, b] = await Promise.all([open(ca, "A"), open(cb, "B")]);
  try {
    const exchange = `kg-browser-${Date.now()}`;
    await setUp(a, exchange);
    await setUp(b, exchange);

    // 1. A -> B, with properties
    await a.fill("#content-type", "text/x-tutorial");
    await a.selectOption("#delivery-mode", "2");
    await a.fill("#headers", "origin=A, n=1");
    await publish(a, "hello from A");
    await arrives(b, "hello from A");
    const [msg] = (await received(b)).filter((m) => m.body === "hello from A");
    ok(msg.contentType === "text/x-tutorial" && msg.deliveryMode === "2" &&
       msg.headers.origin === "A" && msg.headers.n === "1",
       "published in A, arrived in B with content type, delivery mode and headers");

    // 2. transactions: rollback discards, commit delivers
    await a.click("#tx-select");
    await a.waitForSelector("#log >> text=tx.select");
    await publish(a, "rolled back");
    await a.click("#tx-rollback");
    await a.waitForSelector("#log >> text=tx.rollback");
    await publish(a, "committed");
    await a.click("#tx-commit");
    await a.waitForSelector("#log >> text=tx.commit");
    await arrives(b, "committed");
    await arrives(a, "committed");
    for (const [name, page] of [["A", a], ["B", b]]) {
      ok(!(await received(page)).some((m) => m.body === "rolled back"),
         `the rolled-back publish never reached ${name}`);
    }

    // 3. flow off holds B's deliveries back; flow on releases them
    await b.click("#flow-off");
    await b.waitForSelector("#log >> text=flow off");
    await publish(a, "while paused");
    await a.click("#tx-commit");
    await arrives(a, "while paused"); // routed: A's own queue has it
    ok(!(await received(b)).some((m) => m.body === "while paused"),
       "flow off: nothing delivered to B");
    await b.click("#flow-on");
    await arrives(b, "while paused");
    ok(true, "flow on: the held message arrives");

    const errors = await b.$$eval("#log .error", (els) => els.map((e) => e.textContent));
    ok(errors.length === 0, "no errors in B's log");
    return { checked: checks.length, checks };
  } catch (err) {
    console.error(JSON.stringify(await logs({ A: a, B: b }), null, 1));
    throw err;
  }
}, { timeoutMs: 90000 });
