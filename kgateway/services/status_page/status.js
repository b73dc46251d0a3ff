// The status page: polls status.json (kgateway.services.status) and redraws the tables.
// Data is only ever inserted as text (textContent), never as HTML.
"use strict";

const POLL_MS = 2000;
const $ = (id) => document.getElementById(id);

function el(tag, text, attrs) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}

function bytes(n) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return (i ? n.toFixed(1) : String(n)) + " " + units[i];
}

function duration(s) {
  s = Math.floor(s);
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24;
  const m = Math.floor(s / 60) % 60, sec = s % 60;
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${sec}s`;
  return `${sec}s`;
}

function row(cells, attrs) {
  const tr = el("tr", null, attrs);
  for (const cell of cells) {
    if (cell instanceof Node) {
      const td = el("td");
      td.append(cell);
      tr.append(td);
    } else if (cell && typeof cell === "object") {
      tr.append(el("td", cell.text, cell.attrs));
    } else {
      tr.append(el("td", cell));
    }
  }
  return tr;
}

function badge(state) {
  return el("span", state, { class: "badge", "data-state": state });
}

function fill(tbody, rows, empty, columns) {
  tbody.replaceChildren(...rows);
  if (!rows.length) tbody.append(row([{ text: empty, attrs: { colspan: columns, class: "empty" } }]));
}

function backendDetail(state) {
  const parts = [];
  if ("active" in state) parts.push(`${state.active} active`);
  if ("connections" in state) parts.push(`${state.connected}/${state.connections} connected`);
  if ("clients" in state) parts.push(`${state.clients} clients`);
  if ("ready" in state) parts.push(`${state.ready} reverse connections ready`);
  if (state.buffered) parts.push(`${bytes(state.buffered)} buffered for the broker`);
  if (state.connect_failures) parts.push(`${state.connect_failures} failed connects`);
  if (state.error) parts.push(state.error);
  return parts.join(" · ");
}

function render(data) {
  const gw = data.gateway;
  const health = gw.draining ? "draining" : data.health;
  $("health").textContent = health;
  $("health").dataset.state = health;
  const worker = gw.worker === null ? "" : ` · worker ${gw.worker}`;
  $("summary").textContent =
    `kgateway ${gw.version} · pid ${gw.pid}${worker} · up ${duration(gw.uptime)} · ` +
    `${data.connections_total} open connection${data.connections_total === 1 ? "" : "s"}`;
  const problem = $("problem");
  if (gw.draining) {
    problem.textContent = "Draining: health answers 503 and the gateway is shutting down.";
  } else if (data.down.length) {
    problem.textContent = `A back end is down for: ${data.down.join(", ")}.`;
  }
  problem.hidden = !(gw.draining || data.down.length);

  const services = [], backends = [];
  for (const s of data.services) {
    const refused = Object.entries(s.refused).map(([k, v]) => `${k} ${v}`).join(", ");
    const name = s.secured ? `${s.name} 🔒` : s.name;
    services.push(row([name, s.type, s.accepts.join(" "), s.connects.join(" "),
      { text: s.connections, attrs: { class: "num" } },
      { text: s.accepted, attrs: { class: "num" } },
      { text: bytes(s.received), attrs: { class: "num" } },
      { text: bytes(s.sent), attrs: { class: "num" } }, refused], { "data-service": s.name }));
    for (const [target, state] of Object.entries(s.backends)) {
      const st = state.up ? (state.degraded ? "degraded" : "up") : "down";
      backends.push(row([s.name, target, badge(st), backendDetail(state)],
        { "data-service": s.name, "data-state": st }));
    }
    if (s.messages) {
      const m = s.messages;
      backends.push(row([s.name, "topic fan-out", badge("info"),
        `${m.broker_subscriptions} broker subscriptions for ${m.topic_client_subscriptions} ` +
        `client topic subscriptions (${m.client_subscriptions} client subscriptions in all) · ` +
        `${m.messages_delivered} messages delivered · ${m.slow_consumers} slow consumers dropped`],
        { "data-service": s.name }));
    }
  }
  fill($("services").tBodies[0], services, "no services", 9);
  fill($("backends").tBodies[0], backends, "no service with back ends", 4);

  const conns = data.connections.map((c) => row([c.service, c.client,
    { text: duration(c.age) + (c.open ? "" : " (opening)"), attrs: { class: "num" } },
    { text: bytes(c.received), attrs: { class: "num" } },
    { text: bytes(c.sent), attrs: { class: "num" } }, c.backend || "—"],
    { "data-service": c.service }));
  fill($("connections").tBodies[0], conns, "no open connections", 6);
  const hidden = data.connections_total - data.connections.length;
  $("conn-count").textContent = hidden > 0 ? `(${hidden} more not shown)` : "";

  const errors = data.errors.map((e) => {
    const when = new Date(e.time * 1000).toISOString().replace("T", " ").slice(0, 19);
    return el("li", `${when} ${e.level.toUpperCase()} ${e.source}: ${e.text}`,
      { class: e.level === "warn" ? "info" : "error" });
  });
  if (!errors.length) errors.push(el("li", "nothing logged at warning level or above", { class: "info" }));
  $("errors").replaceChildren(...errors);
}

async function poll() {
  const updated = $("updated");
  try {
    // The page's query goes along: a realm reading a token from the query sees it here too.
    const response = await fetch("status.json" + location.search, { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    render(await response.json());
    updated.dataset.state = "connected";
    updated.textContent = `live · updated ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    updated.dataset.state = "disconnected";
    updated.textContent = `cannot reach the gateway (${e.message}); retrying`;
  }
  setTimeout(poll, POLL_MS);
}

poll();
