// The echo tutorial: a browser WebSocket to the gateway's echo service.
//
//   this page --ws(s)://<host>/echo--> kgateway echo service --same frame back--> this page
//
// "Send text" sends a text frame; "Send binary" sends the UTF-8 bytes of the message field
// as an ArrayBuffer (a binary frame). binaryType = "arraybuffer", so binary replies arrive
// as ArrayBuffers and are logged as hex with their length.
//
// Every log line is an <li> whose class says what it is and whose data-* attributes carry
// the exact values, for tests that should not parse display text:
//   data-kind   connected | sent-text | sent-binary | received-text | received-binary |
//               closed | error | info
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

  const MAX_LOG_LINES = 500;
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

  function addLine(kind, cssClass, text, data) {
    const li = document.createElement("li");
    li.className = cssClass;
    li.dataset.kind = kind;
    for (const [key, value] of Object.entries(data || {})) li.dataset[key] = String(value);
    li.textContent = text;
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.appendChild(li);
    while (log.childElementCount > MAX_LOG_LINES) log.firstElementChild.remove();
    if (atBottom) log.scrollTop = log.scrollHeight;
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

  function logBinary(kind, cssClass, label, bytes) {
    addLine(kind, cssClass, `${label}: ${spacedHex(bytes)} (${bytes.length} bytes)`,
            { hex: hex(bytes), length: bytes.length });
  }

  function connect() {
    const url = urlInput.value.trim();
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (err) {  // a malformed URL throws synchronously
      addLine("error", "error", `ERROR: ${err.message}`);
      return;
    }
    ws.binaryType = "arraybuffer";
    socket = ws;
    setState("connecting");
    addLine("info", "info", `CONNECTING: ${url}`);

    ws.onopen = () => {
      if (ws !== socket) return;
      setState("connected");
      addLine("connected", "info", "CONNECTED", { url });
    };
    ws.onmessage = (event) => {
      if (ws !== socket) return;
      if (typeof event.data === "string") {
        addLine("received-text", "received", `RECEIVED TEXT: ${event.data}`, { text: event.data });
      } else if (event.data instanceof ArrayBuffer) {
        logBinary("received-binary", "received", "RECEIVED BINARY", new Uint8Array(event.data));
      } else {  // a Blob, should binaryType ever be changed back
        event.data.arrayBuffer().then((buffer) =>
          logBinary("received-binary", "received", "RECEIVED BINARY", new Uint8Array(buffer)));
      }
    };
    ws.onerror = () => {
      if (ws !== socket) return;
      // The browser gives no detail on purpose; the close event follows with a code.
      addLine("error", "error", "ERROR: WebSocket error");
    };
    ws.onclose = (event) => {
      if (ws !== socket) return;
      socket = null;
      setState("disconnected");
      const reason = event.reason ? ` reason "${event.reason}"` : "";
      addLine("closed", "closed", `CLOSED: code ${event.code}${reason}${event.wasClean ? "" : " (not clean)"}`,
              { code: event.code, reason: event.reason, clean: event.wasClean });
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
    addLine("sent-text", "sent", `SENT: ${text}`, { text });
  }

  function sendBinary() {
    if (!socket || socket.readyState !== WebSocket.OPEN) return;
    const bytes = new TextEncoder().encode(messageInput.value);
    // an ArrayBuffer of exactly these bytes: a binary frame
    socket.send(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
    logBinary("sent-binary", "sent", "SENT BINARY", bytes);
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
  $("clear").addEventListener("click", () => log.replaceChildren());

  urlInput.value = defaultUrl();
  setState("disconnected");
})();
