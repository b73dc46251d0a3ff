// The echo tutorial: a browser WebSocket to the gateway's echo service.
//
//   this page --ws(s)://<host>/echo--> kgateway echo service --same frame back--> this page
//
// "Send text" sends a text frame; "Send binary" sends the UTF-8 bytes of the message field
// as an ArrayBuffer (a binary frame). binaryType = "arraybuffer", so binary replies arrive
// as ArrayBuffers and are logged as hex with their length.
//
// The log is web/log.js's (time, kind, text); a close is explained by web/explain.js (a
// refused handshake: a probe of the same URL over http tells 404 from a foreign origin from
// a gateway that is not there). Every log line's data-* attributes carry the exact values,
// for tests that should not parse display text:
//   data-kind   connected | sent-text | sent-binary | received-text | received-binary |
//               closed | error | info | explain (data-cause: see explain.js)
//   data-text   the text of a text message
//   data-hex    the bytes of a binary message, lowercase hex without separators
//   data-length the byte length of a binary message
//   data-code, data-reason, data-clean   of a close

"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const urlInput = $("url");
  const connectButton = $("connect");
  const disconnectButton = $("disconnect");
  const messageInput = $("message");
  const sendTextButton = $("sendText");
  const sendBinaryButton = $("sendBinary");
  const status = $("status");
  const log = $("log");

  const MAX_HEX_SHOWN = 256;  // bytes shown in the log; data-hex always has all of them

  let socket = null;

  // ws:// or wss:// to /echo on the host that served this page; ?url=... overrides it.
  function defaultUrl() {
    const override = new URLSearchParams(location.search).get("url");
    if (override) return override;
    if (!location.host) return "ws://localhost:8000/echo";  // opened from file://
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/echo";
  }

  function hex(bytes, limit) {
    const n = limit === undefined ? bytes.length : Math.min(bytes.length, limit);
    let out = "";
    for (let i = 0; i < n; i++) out += bytes[i].toString(16).padStart(2, "0");
    return out;
  }

  function spacedHex(bytes) {
    const shown = hex(bytes, MAX_HEX_SHOWN).replace(/(..)(?!$)/g, "$1 ");
    return bytes.length > MAX_HEX_SHOWN ? shown + " …" : shown;
  }

  const logger = kgLog.create(log);
  const problem = $("problem");

  function addLine(kind, text, data) {
    logger.add(kind, text, data);
  }

  function setState(state) {
    status.dataset.state = state;
    status.textContent = state;
    const open = state === "connected";
    connectButton.disabled = state !== "disconnected";
    urlInput.disabled = state !== "disconnected";
    disconnectButton.disabled = state === "disconnected";
    sendTextButton.disabled = !open;
    sendBinaryButton.disabled = !open;
  }

  function logBinary(kind, bytes) {
    addLine(kind, `${spacedHex(bytes)} (${bytes.length} bytes)`,
            { hex: hex(bytes), length: bytes.length });
  }

  function connect() {
    const url = urlInput.value.trim();
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (err) {  // a malformed URL throws synchronously
      addLine("error", err.message);
      return;
    }
    ws.binaryType = "arraybuffer";
    socket = ws;
    let opened = false;
    kgExplain.hide(problem);
    setState("connecting");
    addLine("info", `connecting to ${url}`);

    ws.onopen = () => {
      if (ws !== socket) return;
      opened = true;
      setState("connected");
      addLine("connected", url, { url });
    };
    ws.onmessage = (event) => {
      if (ws !== socket) return;
      if (typeof event.data === "string") {
        addLine("received-text", event.data, { text: event.data });
      } else if (event.data instanceof ArrayBuffer) {
        logBinary("received-binary", new Uint8Array(event.data));
      } else {  // a Blob, should binaryType ever be changed back
        event.data.arrayBuffer().then((buffer) =>
          logBinary("received-binary", new Uint8Array(buffer)));
      }
    };
    ws.onerror = () => {
      if (ws !== socket) return;
      // The browser gives no detail on purpose; the close event follows with a code, and
      // explain.js works out the likely cause.
      addLine("error", opened ? "WebSocket error" : "WebSocket error: the connection failed");
    };
    ws.onclose = (event) => {
      if (ws !== socket) return;
      socket = null;
      setState("disconnected");
      const reason = event.reason ? ` reason "${event.reason}"` : "";
      addLine("closed", `code ${event.code} ${kgExplain.closeMeaning(event.code)}${reason}` +
              `${event.wasClean ? "" : " (not clean)"}`,
              { code: event.code, reason: event.reason, clean: event.wasClean });
      kgExplain.explainClose(event, url, opened)
        .then((explanation) => kgExplain.report(logger, problem, explanation));
    };
  }

  function disconnect() {
    if (!socket) return;
    setState("connecting");  // closing: buttons stay disabled until the close event
    status.textContent = "closing";
    socket.close(1000, "Disconnect button");
  }

  function sendText() {
    if (!socket || socket.readyState !== WebSocket.OPEN) return;
    const text = messageInput.value;
    socket.send(text);
    addLine("sent-text", text, { text });
  }

  function sendBinary() {
    if (!socket || socket.readyState !== WebSocket.OPEN) return;
    const bytes = new TextEncoder().encode(messageInput.value);
    // an ArrayBuffer of exactly these bytes: a binary frame
    socket.send(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
    logBinary("sent-binary", bytes);
  }

  connectButton.addEventListener("click", connect);
  disconnectButton.addEventListener("click", disconnect);
  sendTextButton.addEventListener("click", sendText);
  sendBinaryButton.addEventListener("click", sendBinary);
  messageInput.addEventListener("keydown", (event) => {
    if (event.key === "Enter") sendText();
  });
  urlInput.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !connectButton.disabled) connect();
  });
  $("clear").addEventListener("click", () => logger.clear());

  urlInput.value = defaultUrl();
  setState("disconnected");
})();
