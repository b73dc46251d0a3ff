// The JMS tutorial: STOMP over WebSocket to the gateway's jms service.
//
//   this page (@stomp/stompjs) --ws(s)://<host>/jms, STOMP 1.2--> kgateway jms --> ActiveMQ
//
// Connect (user/password go in the STOMP CONNECT), subscribe to /topic/NAME or /queue/NAME
// with an optional selector, unsubscribe from the list, send text or binary with up to three
// custom properties, and send inside a transaction that is then committed or rolled back.
//
// The log is web/log.js's (time, kind, text; newest at the bottom); why a connection failed
// or closed is said by web/explain.js and, for a refused STOMP CONNECT, explainStompError().
// Every log line has data-* attributes carrying exact values for tests:
//   data-kind         connected | subscribed | unsubscribed | sent | message | tx | error |
//                     closed | explain (data-cause: login-refused, not-found, origin, ...)
//   data-destination  a message's destination;  data-subscription  its subscription id
//   data-body         a text body, or the hex of a binary one (data-binary="true")
//   data-headers      every header of a received MESSAGE, as JSON

"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const status = $("status");
  const log = $("log");
  const subscriptionList = $("subscriptions");

  let client = null;
  let transaction = null;
  const subscriptions = new Map();  // id -> {destination, selector, handle}

  function defaultUrl() {
    const override = new URLSearchParams(location.search).get("url");
    if (override) return override;
    if (!location.host) return "ws://localhost:8000/jms";
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/jms";
  }

  function hex(bytes) {
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  const logger = kgLog.create(log);
  const problem = $("problem");

  function addLine(kind, text, data) {
    logger.add(kind, text, data);
  }

  function setState(state, text) {
    status.dataset.state = state;
    status.textContent = text || state;
    const connected = state === "connected";
    $("connect").disabled = state !== "disconnected";
    $("disconnect").disabled = state === "disconnected";
    for (const id of ["subscribe", "send", "txBegin"]) $(id).disabled = !connected;
    updateTx(connected);
  }

  // The broker behind the gateway. While it is unavailable the gateway keeps the page's
  // messages (its outage buffer) and sends them once it is back; each plain SEND asks for a
  // receipt, so a receipt that does not come within a second means the broker is away.
  const broker = $("broker");
  const waiting = new Map(); // receipt id -> timer
  let brokerState = "hidden";

  function setBroker(state) {
    brokerState = state;
    broker.hidden = state === "hidden" || state === "up";
    broker.dataset.state = state === "unavailable" ? "connecting" : "connected";
    broker.dataset.broker = state;
    const n = waiting.size;
    broker.textContent = state === "unavailable"
      ? `broker unavailable: the gateway buffers messages until it is back` +
        (n ? ` (${n} waiting)` : "")
      : "";
  }

  function watchReceipt(headers) {
    const id = `send-${Math.random().toString(36).slice(2)}`;
    headers.receipt = id;
    waiting.set(id, setTimeout(() => setBroker("unavailable"), 1000));
    client.watchForReceipt(id, () => {
      clearTimeout(waiting.get(id));
      waiting.delete(id);
      if (brokerState === "unavailable") setBroker(waiting.size ? "unavailable" : "up");
    });
  }

  function updateTx(connected) {
    const open = connected && transaction !== null;
    $("txBegin").disabled = !connected || open;
    for (const id of ["txSend", "txCommit", "txRollback"]) $(id).disabled = !open;
    $("txStatus").dataset.state = open ? "open" : "none";
    $("txStatus").textContent = open ? `transaction ${transaction.id} open` : "no transaction";
  }

  // The gateway's refusal of a STOMP CONNECT, in words (its ERROR frame's message header).
  function explainStompError(message, login) {
    if (/authentication failed/i.test(message)) {
      return { cause: "login-refused",
               text: `The gateway refused the login${login ? ` of user "${login}"` : " (no user given)"}: ` +
                     "the service has a realm and checks the User and Password of the " +
                     "STOMP CONNECT against it. Check both and connect again." };
    }
    if (/not authorized|forbidden|role/i.test(message)) {
      return { cause: "not-authorized",
               text: "The login was accepted but this user may not use the service " +
                     "(its <authorization-constraint> requires a role the user lacks)." };
    }
    return { cause: "stomp-error", text: `The gateway or broker refused: ${message}.` };
  }

  function connect() {
    setState("connecting", "connecting…");
    kgExplain.hide(problem);
    const url = $("url").value;
    const login = $("login").value;
    let connected = false;
    let refused = false;  // an ERROR frame explained the end already
    const headers = {};
    if ($("login").value) headers.login = $("login").value;
    if ($("passcode").value) headers.passcode = $("passcode").value;
    let opened = false;  // the WebSocket opened (a 1006 before that: a refused handshake)
    client = new StompJs.Client({
      // stompjs's own way of opening it (same subprotocols), so the page sees the open
      webSocketFactory: () => {
        const ws = new WebSocket(url, ["v12.stomp", "v11.stomp", "v10.stomp"]);
        ws.addEventListener("open", () => { opened = true; });
        return ws;
      },
      connectHeaders: headers,
      reconnectDelay: 0,
      onConnect: (frame) => {
        connected = true;
        setState("connected", `connected (STOMP ${frame.headers.version})`);
        // kgateway says whether its broker connection is up; other servers say nothing.
        setBroker(frame.headers["kgateway-broker"] === "unavailable" ? "unavailable" : "up");
        addLine("connected", `${url} (STOMP ${frame.headers.version})`,
                { version: frame.headers.version });
      },
      onStompError: (frame) => {
        addLine("error", `${frame.headers.message}${frame.body ? " — " + frame.body : ""}`,
                { message: frame.headers.message });
        if (!connected) {
          refused = true;
          kgExplain.report(logger, problem, explainStompError(frame.headers.message || "", login));
        }
      },
      onWebSocketClose: (event) => {
        addLine("closed", `code ${event.code} ${kgExplain.closeMeaning(event.code)}` +
                (event.reason ? ` reason "${event.reason}"` : ""), { code: event.code });
        if (!refused) {
          kgExplain.explainClose(event, url, opened || connected)
            .then((explanation) => kgExplain.report(logger, problem, explanation));
        }
        subscriptions.clear();
        renderSubscriptions();
        transaction = null;
        client = null;
        waiting.clear();
        setBroker("hidden");
        setState("disconnected");
      },
    });
    client.activate();
  }

  function onMessage(message) {
    // stompjs marks every body with a content-length as binary, so go by content-type.
    const binary = (message.headers["content-type"] || "").startsWith("application/octet-stream");
    const body = binary ? hex(message.binaryBody) : message.body;
    const headers = message.headers;
    addLine("message", `from ${headers.destination}: ${binary ? "[binary] " : ""}${body}` +
            `  ${JSON.stringify(headers)}`,
            { destination: headers.destination, subscription: headers.subscription, body,
              binary, headers: JSON.stringify(headers) });
  }

  function subscribe() {
    const destination = $("destination").value.trim();
    const selector = $("selector").value.trim();
    const headers = selector ? { selector } : {};
    const handle = client.subscribe(destination, onMessage, headers);
    subscriptions.set(handle.id, { destination, selector, handle });
    renderSubscriptions();
    addLine("subscribed", `${destination}${selector ? " where " + selector : ""}`,
            { destination, subscription: handle.id });
  }

  function unsubscribe(id) {
    const sub = subscriptions.get(id);
    if (!sub) return;
    sub.handle.unsubscribe();
    subscriptions.delete(id);
    renderSubscriptions();
    addLine("unsubscribed", sub.destination,
            { destination: sub.destination, subscription: id });
  }

  function renderSubscriptions() {
    subscriptionList.replaceChildren();
    for (const [id, sub] of subscriptions) {
      const li = document.createElement("li");
      li.dataset.id = id;
      li.dataset.destination = sub.destination;
      li.textContent = sub.destination + (sub.selector ? ` [${sub.selector}]` : "") + " ";
      const button = document.createElement("button");
      button.type = "button";
      button.className = "secondary unsubscribe";
      button.textContent = "Unsubscribe";
      button.addEventListener("click", () => unsubscribe(id));
      li.append(button);
      subscriptionList.append(li);
    }
  }

  function publish(inTransaction) {
    const destination = $("sendDestination").value.trim();
    const text = $("message").value;
    const headers = {};
    for (const n of [1, 2, 3]) {
      const name = $(`prop${n}Name`).value.trim();
      if (name) headers[name] = $(`prop${n}Value`).value;
    }
    if (inTransaction) headers.transaction = transaction.id;
    else watchReceipt(headers);
    const params = { destination, headers };
    if ($("binary").checked) {
      params.binaryBody = new TextEncoder().encode(text);
      headers["content-type"] = "application/octet-stream";
    } else {
      params.body = text;
    }
    client.publish(params);
    if (brokerState === "unavailable") setBroker("unavailable"); // the count
    addLine("sent", `to ${destination}${inTransaction ? " in " + transaction.id : ""}: ${text}`,
            { destination, body: text, transaction: inTransaction ? transaction.id : "" });
  }

  $("url").value = defaultUrl();
  $("connect").addEventListener("click", connect);
  $("disconnect").addEventListener("click", () => client && client.deactivate());
  $("subscribe").addEventListener("click", subscribe);
  $("send").addEventListener("click", () => publish(false));
  $("txBegin").addEventListener("click", () => {
    transaction = client.begin();
    addLine("tx", `BEGIN ${transaction.id}`, { action: "begin", transaction: transaction.id });
    updateTx(true);
  });
  $("txSend").addEventListener("click", () => publish(true));
  $("txCommit").addEventListener("click", () => {
    transaction.commit();
    addLine("tx", `COMMIT ${transaction.id}`, { action: "commit", transaction: transaction.id });
    transaction = null;
    updateTx(true);
  });
  $("txRollback").addEventListener("click", () => {
    transaction.abort();
    addLine("tx", `ROLLBACK ${transaction.id}`, { action: "rollback", transaction: transaction.id });
    transaction = null;
    updateTx(true);
  });
  $("clear").addEventListener("click", () => logger.clear());
  setState("disconnected");
})();
