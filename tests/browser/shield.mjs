// A browser reaches a service inside the trusted network through an Enterprise Shield pair.
// Usage: node tests/browser/shield.mjs https://localhost:PORT/app/ SPKI_SHA256_BASE64
//
//   Chromium --https/wss--> DMZ gateway --reverse+wss (dialled by the internal gateway)-->
//            internal gateway: echo
//
// The test CA is not in Chromium's trust store; instead of ignoring every certificate
// error, Chromium is told to accept exactly the DMZ gateway's key
// (--ignore-certificate-errors-spki-list with the SHA-256 of its SubjectPublicKeyInfo).
// Checks: the page loads over https, a wss WebSocket opens, text and binary messages come
// back unchanged through both gateways. Prints one JSON line.

import { ARGS, check, firstPage, launch, run } from "./harness.mjs";

const [pageUrl, spki] = process.argv.slice(2);
if (!pageUrl || !spki) {
  console.error("usage: node tests/browser/shield.mjs https://host:port/app/ SPKI");
  process.exit(2);
}

await run("shield", async () => {
  const { context } = await launch({
    args: [...ARGS, `--ignore-certificate-errors-spki-list=${spki}`],
  });
  const page = await firstPage(context, "shield");
  const response = await page.goto(pageUrl);
  check(response.ok(), `page loads over https (status ${response.status()})`);
  const wsUrl = `wss://${new URL(pageUrl).host}/echo`;
  const result = await page.evaluate(async (url) => {
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    const next = () => new Promise((resolve, reject) => {
      ws.onmessage = (e) => resolve(e.data);
      ws.onclose = (e) => reject(new Error(`closed ${e.code} ${e.reason}`));
    });
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onclose = (e) => reject(new Error(`closed ${e.code} ${e.reason}`));
    });
    ws.send("through the shield ☃");
    const text = await next();
    ws.send(new Uint8Array([0, 1, 2, 255]));
    const binary = Array.from(new Uint8Array(await next()));
    ws.close(1000);
    return { text, binary };
  }, wsUrl);
  check(result.text === "through the shield ☃", `text echoed (got ${result.text})`);
  check(JSON.stringify(result.binary) === "[0,1,2,255]", `binary echoed (got ${result.binary})`);
  return { wsUrl, ...result };
}, { timeoutMs: 60000 });
