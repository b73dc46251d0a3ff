// web/amqp in headless Chromium: two independent browsers against one gateway.
//   node tests/browser/amqp.mjs http://localhost:PORT
//
//   browser A --publish--> fanout exchange --> A's queue, B's queue --> both pages list it
//
// Checks: a message published in A arrives in B with its content type, delivery mode and
// headers; a rolled-back publish never arrives (a later committed one does, and AMQP keeps
// one channel's publishes in order, so "not before it" means "never"); flow off holds
// B's deliveries back and flow on releases them.
// The order of steps: before the exchange is declared, Publish and Declare and bind are
// disabled and #steps says to declare the exchange; before the queue is bound, Consume is.
// A publish to an exchange that does not exist (forced, as the page would not offer it)
// is explained (data-cause="no-exchange") and the page stays connected: the next publish
// arrives. SCREENSHOT_DIR=dir saves amqp.png (after that error) there.
// Prints one JSON line (harness.mjs).

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

const disabled = (page, id) => page.$eval(`#${id}`, (b) => b.disabled);

async function setUp(page, exchange) {
  check(await disabled(page, "publish"), "Publish is disabled before connecting");
  await page.fill("#exchange", exchange);
  await page.click("#connect");
  await page.waitForSelector("#status[data-state=connected]", { timeout: 15000 });
  await page.waitForSelector("#steps[data-step=declare-exchange]");
  check(await disabled(page, "publish") && await disabled(page, "declare-queue") &&
        await disabled(page, "consume"),
        "connected, no exchange yet: Publish, Declare and bind and Consume are disabled");
  check(/declare the exchange/i.test(await page.textContent("#publish-hint")),
        "the Publish box says to declare the exchange first");
  await page.click("#declare-exchange");
  await page.waitForSelector(`#log >> text=exchange ${exchange} declared`);
  await page.waitForSelector("#steps[data-step=declare-queue]");
  check(!(await disabled(page, "publish")) && await disabled(page, "consume"),
        "exchange declared: Publish enabled, Consume still disabled");
  await page.click("#declare-queue");
  await page.waitForSelector("#log >> text=declared and bound");
  await page.waitForSelector("#steps[data-step=consume]");
  await page.click("#consume");
  await page.waitForSelector("#log >> text=consuming from");
  await page.waitForSelector("#steps[data-step=ready]");
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

    // 4. a publish to an exchange that does not exist: explained, still connected
    await a.fill("#exchange", `${exchange}-missing`);
    await a.waitForSelector("#steps[data-step=declare-exchange]");
    ok(await disabled(a, "publish"), "an undeclared exchange name disables Publish again");
    await a.$eval("#publish", (button) => { button.disabled = false; });  // force it
    await a.fill("#message", "to nowhere");
    await a.click("#publish");
    await a.waitForSelector('#log li[data-kind="explain"][data-cause="no-exchange"]',
                            { timeout: 15000 });
    const why = await a.textContent('#problem[data-cause="no-exchange"]');
    ok(why.includes(`${exchange}-missing`) && /declare the exchange/i.test(why),
       `the missing exchange is named and the page says to declare it (${why})`);
    await a.waitForSelector("#log >> text=opened for publishing");
    ok((await a.getAttribute("#status", "data-state")) === "connected",
       "the connection survives the channel error");
    if (process.env.SCREENSHOT_DIR) {
      await a.screenshot({ path: `${process.env.SCREENSHOT_DIR}/amqp.png`, fullPage: true });
    }
    await a.fill("#exchange", exchange);
    await a.waitForSelector("#steps[data-step=ready]");
    await publish(a, "after the error");  // a new channel, no transaction any more
    await arrives(b, "after the error");
    ok(true, "a publish after the error arrives");
    return { checked: checks.length, checks };
  } catch (err) {
    console.error(JSON.stringify(await logs({ A: a, B: b }), null, 1));
    throw err;
  }
}, { timeoutMs: 90000 });
