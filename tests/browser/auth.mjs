// The JMS and AMQP tutorial pages (web/jms, web/amqp) against services with a realm:
//   node tests/browser/auth.mjs http://127.0.0.1:PORT
//
// Each page is first given a wrong password (the JMS page shows the STOMP ERROR
// "authentication failed"; the AMQP page logs ACCESS_REFUSED and stays disconnected), then
// the right one (connected; a message goes round). Each refusal is explained on the page
// (#problem and a log line of kind "explain", data-cause="login-refused", web/explain.js)
// and the explanation goes away on the next successful connect. An echo service behind the
// realm refuses the handshake itself (401): the echo page says a service is there but
// refused the handshake, and names credentials (data-cause="handshake-refused").
// SCREENSHOT_DIR=dir saves jms-refused.png and amqp-refused.png there. Prints one JSON line.

import { check, firstPage, launch, run } from "./harness.mjs";

const base = process.argv[2];
if (!base) {
  console.error("usage: node tests/browser/auth.mjs http://host:port");
  process.exit(2);
}
const WAIT = { timeout: 15000 };

let checked = 0;
const ok = (condition, what) => { check(condition, what); checked += 1; };

await run("auth", async () => {
  const { context } = await launch();

  const jms = await firstPage(context, "jms");
  await jms.goto(new URL("/jms/", base).href);
  await jms.fill("#login", "alice");
  await jms.fill("#passcode", "wrong");
  await jms.click("#connect");
  await jms.waitForSelector('#log li[data-kind="error"][data-message="authentication failed"]',
                            WAIT);
  await jms.waitForSelector("#status[data-state=disconnected]", WAIT);
  ok(true, "jms: a wrong password is an ERROR frame, and the page is disconnected");
  await jms.waitForSelector('#log li[data-kind="explain"][data-cause="login-refused"]', WAIT);
  const jmsWhy = await jms.textContent('#problem[data-cause="login-refused"]');
  ok(/refused the login of user "alice"/.test(jmsWhy) && /realm/.test(jmsWhy),
     `jms: the page explains the refused login (${jmsWhy})`);
  ok((await jms.$$('#log li[data-kind="explain"]')).length === 1,
     "jms: one explanation (the close after the ERROR frame is not explained again)");
  if (process.env.SCREENSHOT_DIR) {
    await jms.screenshot({ path: `${process.env.SCREENSHOT_DIR}/jms-refused.png`, fullPage: true });
  }
  await jms.fill("#passcode", "alice-secret");
  await jms.click("#connect");
  await jms.waitForSelector("#status[data-state=connected]", WAIT);
  ok(await jms.isHidden("#problem"), "jms: the explanation goes once connected");
  const topic = `/topic/auth.${Date.now()}`;
  await jms.fill("#destination", topic);
  await jms.click("#subscribe");
  await jms.waitForSelector(`#subscriptions li[data-destination="${topic}"]`, WAIT);
  await jms.fill("#sendDestination", topic);
  await jms.fill("#message", "as alice");
  await jms.click("#send");
  await jms.waitForSelector('#log li[data-kind="message"][data-body="as alice"]', WAIT);
  const headers = JSON.parse(await jms.$eval('#log li[data-kind="message"]',
                                             (li) => li.dataset.headers));
  ok(headers.kgateway_user === "alice", "jms: the broker was told who sent it");

  const amqp = await firstPage(context, "amqp");
  await amqp.goto(new URL("/amqp/", base).href);
  await amqp.waitForSelector("#log >> text=ready");
  await amqp.fill("#user", "alice");
  await amqp.fill("#password", "wrong");
  await amqp.click("#connect");
  await amqp.waitForSelector("#log >> text=ACCESS_REFUSED", WAIT);
  await amqp.waitForSelector("#status[data-state=disconnected]", WAIT);
  ok(true, "amqp: a wrong password is ACCESS_REFUSED, and the page is disconnected");
  await amqp.waitForSelector('#problem[data-cause="login-refused"]', WAIT);
  ok(true, "amqp: the page explains the refused login");
  if (process.env.SCREENSHOT_DIR) {
    await amqp.screenshot({ path: `${process.env.SCREENSHOT_DIR}/amqp-refused.png`, fullPage: true });
  }
  await amqp.fill("#password", "alice-secret");
  await amqp.click("#connect");
  await amqp.waitForSelector("#status[data-state=connected]", WAIT);
  ok(true, "amqp: the right password connects (the broker gets the mapped user)");
  ok(await amqp.isHidden("#problem"), "amqp: the explanation goes once connected");

  const echo = await firstPage(context, "echo");
  await echo.goto(new URL("/echo/", base).href);
  await echo.click("#connect");
  await echo.waitForSelector('#problem[data-cause="handshake-refused"]', WAIT);
  const echoWhy = await echo.textContent("#problem");
  ok(/401/.test(echoWhy) && /credentials/.test(echoWhy),
     `echo behind a realm: the page says the handshake was refused, 401 first (${echoWhy})`);
  return { checked };
});
