// Why a WebSocket of a tutorial page closed, in words (shared by echo, amqp and jms).
//
// A browser hides the HTTP status of a refused WebSocket handshake on purpose: the page
// only sees an error event and a close with code 1006. So when a socket closes 1006
// before it ever opened, explainRefused() asks the same URL over plain http(s) with fetch()
// and reads what kgateway answers to a GET without an Upgrade:
//
//   426 Upgrade Required   a WebSocket service is there and the gateway is up: the
//                          handshake itself was refused (401 no/wrong credentials for the
//                          service's realm, 403 origin or role, 503/429 connection limits)
//   404 Not Found          no service at that path
//   200, 3xx, ...          a web page or folder there, not a WebSocket endpoint
//   fetch rejects          nothing answers: gateway not running, wrong port, or (wss) a
//                          TLS certificate this browser does not trust
//
// The GET carries no Upgrade, so the gateway answers it before checking origin or
// credentials: a 426 cannot tell 401 from 403 from 503. From a page of another origin the
// gateway's answer is opaque (it sends no CORS headers), so the probe only learns whether
// anything answered, and a different origin is itself the likely cause (Kaazing's rule:
// same origin only unless a <cross-site-constraint> allows it, else 403).
//
// Close codes the gateway sends after a socket opened are explained by closeMeaning().
// Every explanation has a short `cause` (data-cause in the page) for tests and styling.

"use strict";

(function () {
  const CLOSE_CODES = {
    1000: "normal closure",
    1001: "going away: the gateway is shutting down or reloading (or the page was left); " +
          "connect again",
    1002: "protocol error: one side broke the WebSocket protocol",
    1003: "unsupported data: a frame type the other side does not accept",
    1005: "closed without a status code",
    1006: "closed abnormally: the connection dropped without a close frame",
    1007: "invalid data: a text message that is not valid UTF-8",
    1008: "policy violation: the gateway refused this by policy (credentials expired, " +
          "not allowed, or a limit of the service)",
    1009: "message too big: larger than the service's maximum message size " +
          "(ws.maximum.message.size)",
    1010: "a required extension was not negotiated",
    1011: "internal error: the gateway failed handling this connection (see its log)",
    1012: "service restart: connect again shortly",
    1013: "try again later: the gateway is overloaded",
    1014: "bad gateway: the gateway could not reach (or lost) the service's back end; the " +
          "reason names it",
    1015: "TLS handshake failed",
  };

  function closeMeaning(code) {
    if (CLOSE_CODES[code]) return CLOSE_CODES[code];
    if (code >= 4000 && code <= 4999) return "closed by the application (private code)";
    if (code >= 3000 && code <= 3999) return "closed by a library or framework (registered code)";
    return "unknown close code";
  }

  function httpUrlOf(wsUrl) {
    const url = new URL(wsUrl);
    url.protocol = url.protocol === "wss:" ? "https:" : "http:";
    return url;
  }

  function unreachable(target, secure) {
    return {
      cause: "unreachable",
      text: `Nothing answers at ${target.host}: the gateway is not running, or not listening ` +
            `on that host and port` +
            (secure ? `, or its TLS certificate is not trusted by this browser (open ` +
                      `${target.origin}/ in a tab to see the certificate error)` : "") + ".",
    };
  }

  /** Ask the WebSocket URL over http(s) why its handshake failed; never rejects. */
  async function explainRefused(wsUrl) {
    let target;
    try {
      target = httpUrlOf(wsUrl);
    } catch (err) {
      return { cause: "bad-url", text: `${wsUrl} is not a valid URL (${err.message}).` };
    }
    const secure = target.protocol === "https:";
    if (location.protocol === "https:" && !secure) {
      return { cause: "mixed-content",
               text: "This page came over https, so the browser refuses a plain ws:// " +
                     "connection: use wss://." };
    }
    const path = target.pathname;
    if (target.origin !== location.origin && location.origin !== "null") {
      try {
        await fetch(target, { mode: "no-cors", cache: "no-store" });
      } catch {
        return unreachable(target, secure);
      }
      return {
        cause: "origin",
        text: `The gateway at ${target.host} answers, but this page comes from another ` +
              `origin (${location.origin}). The gateway refuses a WebSocket from a page of ` +
              `another origin with 403 unless the service has a <cross-site-constraint> ` +
              `with <allow-origin>${location.origin}</allow-origin>. (From another origin ` +
              `the page cannot see more: a wrong path, 404, is also possible.)`,
      };
    }
    let response;
    try {
      response = await fetch(target, { cache: "no-store", redirect: "manual" });
    } catch {
      return unreachable(target, secure);
    }
    const status = response.status;
    if (status === 404) {
      return { cause: "not-found", status,
               text: `No service at ${path} on this gateway (HTTP 404): check the path ` +
                     `in the Location (the tutorials' services are /echo, /amqp and /jms).` };
    }
    if (status === 426) {
      return {
        cause: "handshake-refused", status,
        text: `A WebSocket service is at ${path} and the gateway is up, but it refused ` +
              `this handshake. Likely: 401, the service has a realm and the browser sent no ` +
              `valid credentials (a cookie or query parameter the realm reads); 403, the ` +
              `user lacks the required role, or the page's origin is not allowed; 503 or ` +
              `429, too many connections or handshakes (try again later). The gateway's log ` +
              `names the reason.`,
      };
    }
    return { cause: "not-websocket", status,
             text: `${path} answers HTTP ${status} but is not a WebSocket endpoint ` +
                   `(a web page or folder?): check the path in the Location.` };
  }

  /**
   * What a close means. opened: whether the socket ever opened. Resolves to null for a
   * normal close, else {cause, text}.
   */
  async function explainClose(event, wsUrl, opened) {
    const code = event.code;
    if (code === 1000) return null;
    if (code === 1006 && !opened) return explainRefused(wsUrl);
    const reason = event.reason ? ` (reason: "${event.reason}")` : "";
    return { cause: `close-${code}`, text: `Closed ${code}, ${closeMeaning(code)}${reason}.` };
  }

  /** Put an explanation in the log (kind "explain") and in the page's problem box. */
  function report(log, box, explanation) {
    if (!explanation) return;
    log.add("explain", explanation.text, { cause: explanation.cause,
                                          status: explanation.status ?? "" });
    if (box) {
      box.dataset.cause = explanation.cause;
      box.textContent = explanation.text;
      box.hidden = false;
    }
  }

  function hide(box) {
    if (box) {
      box.hidden = true;
      box.textContent = "";
      delete box.dataset.cause;
    }
  }

  window.kgExplain = { closeMeaning, explainRefused, explainClose, report, hide };
})();
