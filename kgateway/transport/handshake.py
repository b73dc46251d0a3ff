"""The HTTP phase of ws/wss/http/https accepts, bounded by ``http.handshake.timeout``.

    connect --(PROXY header, TLS handshake, request line, headers, body)--> request in
            |<------------------ http.handshake.timeout: else dropped ----------->|
    request in --(origin, admission, session negotiate: back-end connect)--> WebSocket open
            |<------- http.handshake.timeout again: Autobahn's openHandshakeTimeout ->|

twisted.web's own ``Site.timeOut`` (60 s) is an *idle* timeout: each byte restarts it, so a
client sending a header byte every 59 s holds its connection for as long as it likes. The
:class:`HandshakeHTTPChannel` here starts one deadline when the client connects (before
the TLS handshake and, under a PROXY header, once that header is read) and cancels it only
when a whole request is in. A client that has not sent its complete request by then is
dropped, logged and counted (``ConnectionTracker.refused``).

What happens after the request is in is not cut:

* a plain HTTP response (a big file of a directory service) takes as long as it takes:
  Twisted itself suspends the channel's idle timeout while a request is handled;
* a WebSocket: Autobahn's ``WebSocketResource`` takes the channel's transport over and the
  request never finishes, so neither this deadline (cancelled) nor the idle timeout
  (suspended, never restored) ever fires for it; Autobahn's ``openHandshakeTimeout`` (the
  same option, ``transport.links.configure_websocket``) bounds the rest of its handshake.

On a keep-alive connection the deadline starts again when a response is done, so it also
bounds the pause before the next request.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger
from twisted.web import http, resource

from kgateway.transport.admission import HANDSHAKE_TIMEOUT, Counts, RefusalLog, refused
from kgateway.transport.links import format_address
from kgateway.transport.weblog import LoggingSite

log = Logger()


class HandshakeHTTPChannel(http.HTTPChannel):
    """An HTTPChannel that must receive each whole request within the site's deadline."""

    site: GatewaySite
    _deadline: Any = None

    def connectionMade(self) -> None:
        super().connectionMade()
        self._start_deadline()

    def _start_deadline(self) -> None:
        self._cancel_deadline()
        timeout = self.site.handshake_timeout
        if timeout:
            self._deadline = self.callLater(timeout, self._expired)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def allContentReceived(self) -> None:
        # The request is in: its response, or its WebSocket, may last.
        self._cancel_deadline()
        super().allContentReceived()

    def requestDone(self, request: Any) -> None:
        # Started before Twisted reads any pipelined request, which cancels it again.
        if self.persistent:
            self._start_deadline()
        super().requestDone(request)

    def _expired(self) -> None:
        self._deadline = None
        transport: Any = self.transport
        if transport is None:  # taken over by a WebSocket (cannot happen before the request)
            return
        site = self.site
        refused(site.counts, site.refusal_log, site.services, format_address(transport.getPeer()),
                HANDSHAKE_TIMEOUT, f"no complete HTTP request within {site.handshake_timeout:g}s")
        transport.abortConnection()

    def connectionLost(self, reason: Any = None) -> None:
        self._cancel_deadline()
        super().connectionLost(reason)


class GatewaySite(LoggingSite):
    """The Site of one listening port: its Router, with the port's handshake deadline, and
    an access line per plain HTTP request (weblog.LoggingSite)."""

    protocol = HandshakeHTTPChannel  # type: ignore[assignment]

    def __init__(self, root: resource.IResource, reactor: Any, handshake_timeout: float,
                 counts: Counts, refusal_log: RefusalLog, services: str) -> None:
        super().__init__(root, reactor=reactor)
        self.handshake_timeout = handshake_timeout
        self.counts = counts
        self.refusal_log = refusal_log
        #: the services on this port: refusals before a request picks one are theirs
        self.services = services
        self.displayTracebacks = False
        self.noisy = False
