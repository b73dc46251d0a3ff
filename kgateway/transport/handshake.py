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

The first request of a connection is looked at before twisted.web parses it
(``kgateway.protocols.http_upgrade.sniff``): a plain WebSocket upgrade for one of the port's
WebSocket paths goes straight to that path's Autobahn factory, as Autobahn's
``WebSocketResource`` would have sent it, but without a ``Request``, the Router, and the
request re-serialised for Autobahn to parse a second time (in memory, 210 -> 150 us of CPU
per handshake; about a tenth of a proxied one, with its sockets and access line):

    bytes --> sniff --UPGRADE--> factory.buildProtocol; the transport is the protocol's;
                |                protocol.dataReceived(every byte so far): Autobahn parses
                +--OTHER-------> HTTPChannel, as before (426, 404, 400, files, a HEAD...)
                +--MORE--------> wait (within the deadline above)

Both ways end in the same Autobahn protocol (admission, realms, origins, the PROXY and
Forwarded client address, Kaazing's extended handshake, permessage-deflate are all its
``onConnect``), with the same bytes: the deadline is cancelled when the head is in, and
Autobahn's ``openHandshakeTimeout`` bounds the rest.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper
from twisted.web import http, resource

from kgateway.protocols.http_upgrade import Verdict, sniff
from kgateway.transport.admission import HANDSHAKE_TIMEOUT, Counts, RefusalLog, refused
from kgateway.transport.links import format_address
from kgateway.transport.weblog import LoggingSite

log = Logger()


class HandshakeHTTPChannel(http.HTTPChannel):
    """An HTTPChannel that must receive each whole request within the site's deadline."""

    site: GatewaySite
    _deadline: Any = None
    #: the first request's bytes so far, until sniff() tells whose they are
    _head = b""
    #: sniff() decides the first request only; then it is twisted.web's connection
    _sniffing = True

    def connectionMade(self) -> None:
        super().connectionMade()
        self._start_deadline()

    def dataReceived(self, data: bytes) -> None:
        if not self._sniffing:
            super().dataReceived(data)
            return
        if self._head:
            data = self._head + data
        router = self.site.resource
        upgrades = getattr(router, "upgrades", {})
        sniffed = sniff(data, upgrades)
        if sniffed.verdict is Verdict.MORE:
            self._head = data
            self.resetTimeout()  # twisted.web's idle timeout, as HTTPChannel.dataReceived
            return
        self._head = b""
        self._sniffing = False
        if sniffed.verdict is Verdict.UPGRADE and self._upgrade(upgrades[sniffed.path], data):
            return
        super().dataReceived(data)

    def _upgrade(self, factory: Any, data: bytes) -> bool:
        """Give the connection to a protocol of *factory*, with every byte received so far
        (Autobahn's ``WebSocketResource.render``, less twisted.web); False if the factory
        builds none (twisted.web then answers, 500)."""
        transport: Any = self.transport
        protocol = factory.buildProtocol(transport.getPeer())
        if protocol is None:
            return False
        self._cancel_deadline()
        self.setTimeout(None)
        # connectionMade registered this channel as the transport's producer, and so it
        # stays until the session registers its own (links.register_producer), as after
        # WebSocketResource; but it must not pause or resume the WebSocket's reads.
        self.handed_over = True
        self.transport = None
        if isinstance(transport, ProtocolWrapper):  # TLS, or the PROXY-protocol wrapper
            transport.wrappedProtocol = protocol
        elif isinstance(getattr(transport, "protocol", None), ProtocolWrapper):
            transport.protocol.wrappedProtocol = protocol
        else:
            transport.protocol = protocol
        protocol.makeConnection(transport)
        protocol.dataReceived(data)
        return True

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

    #: the connection is a WebSocket's: the channel is left as the transport's producer
    handed_over = False

    def pauseProducing(self) -> None:
        if not self.handed_over:
            super().pauseProducing()

    def resumeProducing(self) -> None:
        if not self.handed_over:
            super().resumeProducing()

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
