// The AMQP tutorial app: @cloudamqp/amqp-client in the browser, through kgateway's
// amqp.proxy service, to RabbitMQ.
//
//   this page --WebSocket (binary, no subprotocol)--> ws://host/amqp --tcp--> RabbitMQ
//
// Two channels: "pub" publishes (and carries the transactions), "sub" consumes with
// explicit acks. RabbitMQ does not implement channel.flow with active=false (it closes the
// channel with 540 NOT_IMPLEMENTED), so "Flow off" cancels the consumer and "Flow on"
// consumes again: deliveries pause, messages wait in the queue.

import { AMQPWebSocketClient } from "../vendor/amqp-websocket-client.mjs";

const $ = (id) => document.getElementById(id);

const state = {
  conn: null,
  pub: null,
  sub: null,
  consumer: null,
  pending: [],   // received, not yet acked
  tx: false,
};

// kind: "info", "sent", "received" or "error" (the shared style.css colours them)
function log(text, kind = "info") {
  const line = document.createElement("li");
  line.textContent = `${new Date().toISOString().slice(11, 23)} ${text}`;
  line.className = kind;
  $("log").appendChild(line);
  $("log").scrollTop = $("log").scrollHeight;
}

// data-state: disconnected | connecting | connected (style.css colours the badge)
function setStatus(value) {
  $("status").textContent = value;
  $("status").dataset.state = value;
}

function setConnected(connected) {
  setStatus(connected ? "connected" : "disconnected");
  $("connect").disabled = connected;
  for (const id of ["disconnect", "declare-exchange", "declare-queue", "consume", "publish",
                    "tx-select", "ack-all"]) {
    $(id).disabled = !connected;
  }
  $("tx-commit").disabled = $("tx-rollback").disabled = !(connected && state.tx);
  $("flow-off").disabled = $("flow-on").disabled = !(connected && state.consumer !== null);
}

// Each action logs its outcome; a failure is shown, never thrown away.
function action(name, fn) {
  return async () => {
    try {
      await fn();
    } catch (err) {
      log(`${name} failed: ${err?.message ?? err}`, "error");
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

async function connect() {
  const url = $("url").value;
  const vhost = $("vhost").value;
  log(`connecting to ${url} (vhost ${vhost}, user ${$("user").value})`);
  setStatus("connecting");
  $("connect").disabled = true;
  const conn = new AMQPWebSocketClient(url, vhost, $("user").value, $("password").value,
                                       "kgateway AMQP tutorial");
  conn.onerror = (err) => {
    log(`connection closed: ${err?.message ?? err}`, "error");
    reset();
  };
  try {
    await conn.connect();
  } catch (err) {
    reset();
    // A refused WebSocket (broker unreachable: close 1014) surfaces as a close event.
    const detail = err?.code ? `WebSocket closed ${err.code} ${err.reason}` : err?.message ?? err;
    throw new Error(String(detail));
  }
  state.conn = conn;
  state.pub = await conn.channel();
  state.sub = await conn.channel();
  log(`connected, channels ${state.pub.id} (publish) and ${state.sub.id} (consume) open`);
  setConnected(true);
}

function reset() {
  Object.assign(state, { conn: null, pub: null, sub: null, consumer: null, pending: [],
                         tx: false });
  $("tx-state").textContent = "no transaction";
  $("flow-state").textContent = "flowing";
  setConnected(false);
}

async function disconnect() {
  const conn = state.conn;
  reset();
  if (conn) {
    await conn.close();
    log("disconnected");
  }
}

async function declareExchange() {
  const name = $("exchange").value;
  await state.pub.exchangeDeclare(name, "fanout", { durable: false, autoDelete: true });
  log(`exchange ${name} declared (fanout)`);
}

async function declareQueue() {
  // exclusive: gone with the connection; not auto-delete, or "Flow off" (which cancels
  // the only consumer) would delete it.
  const ok = await state.sub.queueDeclare($("queue").value, { exclusive: true,
                                                               autoDelete: false,
                                                               durable: false });
  $("queue").value = ok.name;
  await state.sub.queueBind(ok.name, $("exchange").value, "");
  log(`queue ${ok.name} declared and bound to ${$("exchange").value}`);
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
  log(`received "${body}" (content-type ${p.contentType}, delivery-mode ${p.deliveryMode}, ` +
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
$("clear").onclick = () => { $("log").replaceChildren(); };
setConnected(false);
log("ready");
