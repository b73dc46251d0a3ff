// The AMQP tutorial app: @cloudamqp/amqp-client in the browser, through kgateway's
// amqp.proxy service, to RabbitMQ.
//
//   this page --WebSocket (binary, no subprotocol)--> ws://host/amqp --tcp--> RabbitMQ
//
// Two channels: "pub" publishes (and carries the transactions), "sub" consumes with
// explicit acks. RabbitMQ does not implement channel.flow with active=false (it closes the
// channel with 540 NOT_IMPLEMENTED), so "Flow off" cancels the consumer and "Flow on"
// consumes again: deliveries pause, messages wait in the queue.
//
// The steps go in order: Connect, Declare exchange, Declare and bind, Consume; a button is
// enabled once the steps before it are done, and #steps says what comes next. Publishing to
// an exchange that does not exist makes RabbitMQ close the channel (404 NOT_FOUND): the
// page says so, opens a new channel and stays connected. The log is web/log.js's (time,
// kind, text); why a connection failed or closed is said by web/explain.js.

import { AMQPWebSocketClient } from "../vendor/amqp-websocket-client.mjs";

const $ = (id) => document.getElementById(id);

const state = {
  conn: null,
  pub: null,
  sub: null,
  consumer: null,
  pending: [],   // received, not yet acked
  tx: false,
  exchanges: new Set(),  // exchange names declared on this connection
  boundQueue: null,      // the queue declared and bound on this connection
  closing: false,        // Disconnect pressed: its close needs no explanation
};

const logger = kgLog.create($("log"));
const problem = $("problem");

// kind: info, sent, received, error, connected, closed or explain (log.js colours them)
function log(text, kind = "info", data = undefined) {
  logger.add(kind, text, data);
}

// data-state: disconnected | connecting | connected (style.css colours the badge)
function setStatus(value) {
  $("status").textContent = value;
  $("status").dataset.state = value;
}

// The next step, and which buttons it allows (data-step on #steps, for tests and styling).
const STEPS = {
  connect: "Step 1: connect.",
  "declare-exchange": "Next: declare the exchange. Publish and Declare and bind need it: " +
    "RabbitMQ closes the channel of a publish to an exchange that does not exist.",
  "declare-queue": "Next: declare and bind your queue, then Consume. Publish works now, " +
    "but until a queue is bound to the exchange its messages go nowhere.",
  consume: "Next: Consume, to receive what is published to the exchange.",
  ready: "Ready: publish here, or from another tab on the same exchange.",
};

function nextStep(connected) {
  if (!connected) return "connect";
  if (!state.exchanges.has($("exchange").value)) return "declare-exchange";
  if (state.boundQueue === null || state.boundQueue !== $("queue").value) return "declare-queue";
  if (state.consumer === null && $("flow-state").textContent !== "paused") return "consume";
  return "ready";
}

function setConnected(connected) {
  setStatus(connected ? "connected" : "disconnected");
  $("connect").disabled = connected;
  for (const id of ["disconnect", "declare-exchange", "tx-select", "ack-all"]) {
    $(id).disabled = !connected;
  }
  const exchangeReady = connected && state.exchanges.has($("exchange").value);
  const queueReady = exchangeReady && state.boundQueue === $("queue").value;
  $("publish").disabled = !exchangeReady;
  $("declare-queue").disabled = !exchangeReady;
  $("consume").disabled = !(queueReady && state.consumer === null);
  $("tx-commit").disabled = $("tx-rollback").disabled = !(connected && state.tx);
  $("flow-off").disabled = $("flow-on").disabled = !(connected && state.consumer !== null);
  const step = nextStep(connected);
  $("steps").dataset.step = step;
  $("steps").dataset.ready = String(step === "ready");
  $("steps").textContent = STEPS[step];
  $("publish-hint").hidden = exchangeReady;
  $("publish-hint").textContent = connected
    ? `Declare the exchange ${$("exchange").value} first (Exchange and queue, above).`
    : "Connect, then declare the exchange.";
}

function refreshSteps() {
  setConnected(state.conn !== null);
}

// Each action logs its outcome; a failure is shown, never thrown away.
function action(name, fn) {
  return async () => {
    try {
      await fn();
    } catch (err) {
      if (!err?.logged) log(`${name} failed: ${err?.message ?? err}`, "error");
    }
  };
}

function parseHeaders(text) {
  const headers = {};
  for (const part of text.split(",")) {
    const [key, ...rest] = part.split("=");
    if (key.trim()) headers[key.trim()] = rest.join("=").trim();
  }
  return headers;
}

// A channel the broker closed (e.g. 404 NOT_FOUND for a publish to a missing exchange):
// say why, open a new one in its place, stay connected. The library's default would
// report it as an error of the whole connection.
async function channelLost(conn, role, reason) {
  if (state.conn !== conn) return;
  log(`${role === "pub" ? "publish" : "consume"} channel closed by the broker: ${reason}`,
      "error", { channel: role });
  const missing = /NOT_FOUND.*exchange '([^']*)'/.exec(reason);
  let explanation;
  if (missing) {
    state.exchanges.delete(missing[1]);
    explanation = { cause: "no-exchange",
                    text: `The exchange ${missing[1]} does not exist (any more), so RabbitMQ ` +
                          `closed the channel (404 NOT_FOUND). Declare the exchange first; ` +
                          `an auto-delete exchange also goes when its last queue is unbound. ` +
                          `The connection stays open: a new channel replaces the closed one.` };
  } else if (/NOT_FOUND.*queue/.test(reason)) {
    state.boundQueue = null;
    explanation = { cause: "no-queue",
                    text: "The queue does not exist (any more): declare and bind it again. " +
                          "A new channel replaces the closed one." };
  } else {
    explanation = { cause: "channel-closed",
                    text: `RabbitMQ closed the channel: ${reason}. A new channel replaces it.` };
  }
  kgExplain.report(logger, problem, explanation);
  if (role === "pub") {
    state.tx = false;
    $("tx-state").textContent = "no transaction";
  } else {
    state.consumer = null;
    state.pending = [];
  }
  state[role] = await openChannel(conn, role);
  log(`channel ${state[role].id} opened for ${role === "pub" ? "publishing" : "consuming"}`);
  refreshSteps();
}

async function openChannel(conn, role) {
  const channel = await conn.channel();
  channel.onerror = (reason) => {
    channelLost(conn, role, reason).catch((err) => {
      log(`could not open a new channel: ${err?.message ?? err}`, "error");
    });
  };
  return channel;
}

async function connect() {
  const url = $("url").value;
  const vhost = $("vhost").value;
  kgExplain.hide(problem);
  state.closing = false;
  log(`connecting to ${url} (vhost ${vhost}, user ${$("user").value})`);
  setStatus("connecting");
  $("connect").disabled = true;
  const conn = new AMQPWebSocketClient(url, vhost, $("user").value, $("password").value,
                                       "kgateway AMQP tutorial");
  conn.onerror = (err) => {
    if (state.conn !== conn) return;  // failures while connecting are reported below
    log(`connection closed: ${err?.message ?? err}`, "error");
    reset();
  };
  const connecting = conn.connect();
  // The library rejects with the bare error Event of a failed WebSocket; the close event
  // that follows has the code, and explain.js the likely cause.
  const socket = conn.socket;
  let opened = false;
  let refused = false;  // the broker or the gateway said why: no close explanation needed
  socket.addEventListener("open", () => { opened = true; });
  socket.addEventListener("close", (event) => {
    const expected = state.closing && event.code === 1000;
    log(`code ${event.code} ${kgExplain.closeMeaning(event.code)}` +
        (event.reason ? ` reason "${event.reason}"` : ""), "closed",
        { code: event.code, reason: event.reason, clean: event.wasClean });
    if (!expected && !refused) {
      kgExplain.explainClose(event, url, opened)
        .then((explanation) => kgExplain.report(logger, problem, explanation));
    }
  });
  try {
    await connecting;
  } catch (err) {
    reset();
    if (err?.message) {  // e.g. ACCESS_REFUSED from the broker or the gateway
      refused = true;
      log(`connect failed: ${err.message}`, "error");
      err.logged = true;  // action() need not log it again
      if (/ACCESS_REFUSED/.test(err.message)) {
        kgExplain.report(logger, problem, {
          cause: "login-refused",
          text: `The login of user "${$("user").value}" was refused (ACCESS_REFUSED): check ` +
                "the User and Password. Behind a gateway realm they are checked by the " +
                "gateway (AMQP PLAIN); otherwise by RabbitMQ, for the virtual host too." });
      }
      throw err;
    }
    throw new Error(`the WebSocket ${opened ? "closed" : "could not be opened"}`);
  }
  state.conn = conn;
  state.pub = await openChannel(conn, "pub");
  state.sub = await openChannel(conn, "sub");
  log(`channels ${state.pub.id} (publish) and ${state.sub.id} (consume) open`, "connected",
      { url });
  setConnected(true);
}

function reset() {
  Object.assign(state, { conn: null, pub: null, sub: null, consumer: null, pending: [],
                         tx: false, exchanges: new Set(), boundQueue: null });
  $("tx-state").textContent = "no transaction";
  $("flow-state").textContent = "flowing";
  setConnected(false);
}

async function disconnect() {
  const conn = state.conn;
  state.closing = true;
  reset();
  if (conn) {
    await conn.close();
    log("disconnected");
  }
}

async function declareExchange() {
  const name = $("exchange").value;
  await state.pub.exchangeDeclare(name, "fanout", { durable: false, autoDelete: true });
  state.exchanges.add(name);
  log(`exchange ${name} declared (fanout)`);
  refreshSteps();
}

async function declareQueue() {
  // exclusive: gone with the connection; not auto-delete, or "Flow off" (which cancels
  // the only consumer) would delete it.
  const ok = await state.sub.queueDeclare($("queue").value, { exclusive: true,
                                                               autoDelete: false,
                                                               durable: false });
  $("queue").value = ok.name;
  await state.sub.queueBind(ok.name, $("exchange").value, "");
  state.boundQueue = ok.name;
  log(`queue ${ok.name} declared and bound to ${$("exchange").value}`);
  refreshSteps();
}

function received(msg) {
  const body = msg.bodyToString();
  const p = msg.properties;
  const li = document.createElement("li");
  li.className = "received";
  li.textContent = body;
  li.dataset.contentType = p.contentType ?? "";
  li.dataset.deliveryMode = String(p.deliveryMode ?? "");
  li.dataset.headers = JSON.stringify(p.headers ?? {});
  $("messages").appendChild(li);
  log(`"${body}" (content-type ${p.contentType}, delivery-mode ${p.deliveryMode}, ` +
      `headers ${JSON.stringify(p.headers ?? {})})`, "received");
  if ($("auto-ack").checked) {
    msg.ack().then(() => log(`acked delivery ${msg.deliveryTag}`));
  } else {
    state.pending.push(msg);
  }
}

async function consume() {
  if (state.consumer) {
    log("already consuming");
    return;
  }
  state.consumer = await state.sub.basicConsume($("queue").value, { noAck: false }, received);
  log(`consuming from ${$("queue").value} (explicit acks), tag ${state.consumer.tag}`);
  $("flow-state").textContent = "flowing";
  setConnected(true);
}

async function ackAll() {
  const pending = state.pending.splice(0);
  for (const msg of pending) await msg.ack();
  log(`acked ${pending.length} message(s)`);
}

async function publish() {
  const text = $("message").value;
  const properties = {
    contentType: $("content-type").value || undefined,
    deliveryMode: Number($("delivery-mode").value),
    headers: parseHeaders($("headers").value),
  };
  await state.pub.basicPublish($("exchange").value, "", text, properties);
  log(`published "${text}"${state.tx ? " (in the transaction)" : ""}`, "sent");
}

async function txSelect() {
  await state.pub.txSelect();
  state.tx = true;
  $("tx-state").textContent = "transaction open";
  log("tx.select: publishes now wait for commit");
  setConnected(true);
}

async function txCommit() {
  await state.pub.txCommit();
  log("tx.commit");
}

async function txRollback() {
  await state.pub.txRollback();
  log("tx.rollback: the transaction's publishes are discarded");
}

async function flowOff() {
  if (!state.consumer) return;
  const consumer = state.consumer;
  state.consumer = null;
  await consumer.cancel();
  $("flow-state").textContent = "paused";
  log("flow off: consumer cancelled, messages wait in the queue");
  refreshSteps();
  $("flow-on").disabled = false;
}

async function flowOn() {
  await consume();
  log("flow on");
}

$("url").value = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/amqp`;
$("queue").value = `tutorial-${Math.random().toString(36).slice(2, 10)}`;
$("connect").onclick = action("connect", connect);
$("disconnect").onclick = action("disconnect", disconnect);
$("declare-exchange").onclick = action("exchange.declare", declareExchange);
$("declare-queue").onclick = action("queue.declare", declareQueue);
$("consume").onclick = action("basic.consume", consume);
$("ack-all").onclick = action("basic.ack", ackAll);
$("publish").onclick = action("basic.publish", publish);
$("tx-select").onclick = action("tx.select", txSelect);
$("tx-commit").onclick = action("tx.commit", txCommit);
$("tx-rollback").onclick = action("tx.rollback", txRollback);
$("flow-off").onclick = action("flow off", flowOff);
$("flow-on").onclick = action("flow on", flowOn);
$("clear").onclick = () => logger.clear();
$("exchange").addEventListener("input", refreshSteps);
$("queue").addEventListener("input", refreshSteps);
setConnected(false);
log("ready");
