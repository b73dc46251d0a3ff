"""The Site of every HTTP/WebSocket listener, with an access log in the gateway's own style.

twisted.web's Site writes an Apache-style line to its own log file; the gateway wants one
key=value line per plain HTTP request in the same log (and the same JSON fields with
``--log-format json``) as the WebSocket and TCP access lines of ``transport.tracker``:

    http: service=health peer=127.0.0.1:40000 method=GET path=/health status=200
          bytes_out=97 duration=0.001s agent="HAProxy"

WebSocket upgrades are not logged here: their access line is written when they end.
Factory start/stop lines ("Starting factory <Site at 0x...>") are off (``noisy``).
"""

from __future__ import annotations

import time
from typing import Any

from twisted.logger import Logger
from twisted.web import server

log = Logger()


class GatewayRequest(server.Request):
    """Remembers when it started, for the access line's duration."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kgateway_started = time.monotonic()


class LoggingSite(server.Site):
    """A Site that logs each request as a key=value line through twisted.logger."""

    noisy = False
    displayTracebacks = False
    requestFactory = GatewayRequest

    def log(self, request: Any) -> None:
        started = getattr(request, "kgateway_started", None)
        duration = time.monotonic() - started if started is not None else 0.0
        agent = (request.getHeader(b"user-agent") or b"-").decode("latin-1", "replace")
        peer = request.getClientAddress()
        host, port = getattr(peer, "host", None), getattr(peer, "port", None)
        log.info("http: service={service} peer={peer} method={method} path={path} "
                 "status={status} bytes_out={sent} duration={duration:.3f}s agent={agent!r}",
                 service=getattr(request, "kgateway_service", None) or "-",
                 peer=f"{host}:{port}" if host is not None else str(peer),
                 method=request.method.decode("latin-1", "replace"),
                 path=request.path.decode("latin-1", "replace"), status=request.code,
                 sent=request.sentLength, duration=round(duration, 3), agent=agent,
                 log_kind="http")
