// The log of the tutorial pages (echo, amqp, jms): one line format for all three.
//
//   <li class="TONE" data-kind="KIND" data-...="exact values">
//     <time>14:03:07.412</time> <span class="kind">KIND</span> <span class="text">TEXT</span>
//   </li>
//
// Lines are appended (newest at the bottom) and the list follows them while it is scrolled
// to the bottom. TONE is the colour style.css gives the line: sent | received | error |
// closed | hint | info; by default it follows from the kind (sent*, received* / message,
// error, closed, explain). data-* attributes carry exact values for tests and for anyone
// reading the DOM, so nothing needs to parse the displayed text.
//
// A classic script (no module): the echo and jms pages are classic scripts, the amqp page is
// a module; all three find it as window.kgLog.

"use strict";

(function () {
  const MAX_LINES = 500;

  function toneOf(kind) {
    if (kind.startsWith("sent")) return "sent";
    if (kind.startsWith("received") || kind === "message") return "received";
    if (kind === "error") return "error";
    if (kind === "closed") return "closed";
    if (kind === "explain") return "hint";
    return "info";
  }

  function clock() {
    return new Date().toISOString().slice(11, 23);  // UTC, HH:MM:SS.mmm
  }

  /**
   * A log on an <ol>/<ul>: add(kind, text, data, tone) appends one line, clear() empties it.
   * @param {HTMLElement} list
   */
  function create(list) {
    function add(kind, text, data, tone) {
      const li = document.createElement("li");
      li.className = `line ${tone || toneOf(kind)}`;
      li.dataset.kind = kind;
      for (const [key, value] of Object.entries(data || {})) li.dataset[key] = String(value);
      const time = document.createElement("time");
      time.textContent = clock();
      const label = document.createElement("span");
      label.className = "kind";
      label.textContent = kind;
      const body = document.createElement("span");
      body.className = "text";
      body.textContent = text;
      li.append(time, " ", label, " ", body);
      const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
      list.appendChild(li);
      while (list.childElementCount > MAX_LINES) list.firstElementChild.remove();
      if (atBottom) list.scrollTop = list.scrollHeight;
      return li;
    }
    return { add, clear: () => list.replaceChildren() };
  }

  window.kgLog = { create, toneOf };
})();
