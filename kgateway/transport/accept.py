"""Accept adapters: a client of a service, over tcp/ssl or ws/wss, driving its ISession.

    tcp/ssl client --> StreamServerProtocol ----+
                                                +--> ISession  (echo, proxy, amqp.proxy, jms)
    ws/wss client  --> GatewayWebSocketProtocol +

Both track the connection (ConnectionTracker) and keep the client's reads paused until the
session is ready (its back end connected): ``ISession.negotiate`` may return a Deferred.
The WebSocket factory applies Kaazing's origin rule (same origin, unless a
cross-site-constraint allows it) and the trusted Forwarded headers.

Before anything else, each new client passes its service's admission gate
(``transport.admission``: connection limits per service and per client host, handshake
rate): a refused WebSocket gets HTTP 503 or 429 (with Retry-After), a refused tcp/ssl
client is closed. An admitted client counts until its connection ends.
"""

from __future__ import annotations

import time
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet import defer
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from kgateway.config import URI, Options
from kgateway.interfaces import GOING_AWAY, IGatewayService, ISession, ITrackedConnection
from kgateway.transport.admission import Limits
from kgateway.transport.forwarded import forwarded_client
from kgateway.transport.links import (
    StreamLink,
    WebSocketLink,
    configure_websocket,
    format_address,
)
from kgateway.transport.tracker import ConnectionTracker, session_going_away

log = Logger()


@implementer(ITrackedConnection)
class StreamServerProtocol(Protocol):
    """A tcp:// or ssl:// client of a service."""

    session: ISession | None = None
    transport: Any
    received = 0
    refused = False  # by the admission gate: never tracked

    def __init__(self, service: IGatewayService, tracker: ConnectionTracker,
                 clock: Any = time.monotonic) -> None:
        self.service = service
        self.tracker = tracker
        self.gate = tracker.gate(service.config.name,
                                 Limits.from_options(service.config.accept_options), clock)

    def connectionMade(self) -> None:
        if self.gate.admit(self, format_address(self.transport.getPeer())) is not None:
            self.refused = True  # logged and counted by the gate
            self.transport.abortConnection()
            return
        self.link = link = StreamLink(self)
        self.tracker.add(self.service.config.name, self)
        self.session = self.service.session(link)
        # Nothing is read until the session is ready (e.g. its back end is connected).
        self.transport.pauseProducing()
        d = defer.maybeDeferred(self.session.negotiate, [])
        d.addCallbacks(self._ready, self._refused)

    def _ready(self, _: object) -> None:
        if self.session is None or not self.transport.connected:
            return
        self.session.opened()
        self.transport.resumeProducing()

    def _refused(self, failure: Failure) -> None:
        log.info("{service}: refusing {peer}: {reason}", service=self.service.config.name,
                 peer=self.link.remote, reason=failure.getErrorMessage())
        self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        if self.session is not None:
            self.session.received(data, True)

    def going_away(self) -> None:
        session_going_away(self.session)
        self.transport.loseConnection()

    def abort(self) -> None:
        self.transport.abortConnection()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if self.refused:
            return
        session, self.session = self.session, None
        why = reason.getErrorMessage() if reason else ""
        self.tracker.ended(self.service.config.name, self, self.link.remote, self.received,
                           self.link.sent, why)
        if session is not None:
            session.closed(None, why)


class StreamServerFactory(Factory):
    noisy = False

    def __init__(self, service: IGatewayService, tracker: ConnectionTracker,
                 clock: Any = time.monotonic) -> None:
        self.service = service
        self.tracker = tracker
        self.clock = clock

    def buildProtocol(self, addr: IAddress | None) -> StreamServerProtocol:
        return StreamServerProtocol(self.service, self.tracker, self.clock)


@implementer(ITrackedConnection)
class GatewayWebSocketProtocol(WebSocketServerProtocol):
    """A ws:// or wss:// client of a service."""

    factory: GatewayWebSocketFactory
    session: ISession | None = None
    link: WebSocketLink | None = None

    def onConnect(self, request: ConnectionRequest) -> Any:
        self.admit(request)  # limits and rate first (transport.admission): 503 or 429
        factory = self.factory
        reason = factory.origin_refusal(request)
        if reason:
            raise ConnectionDeny(ConnectionDeny.FORBIDDEN, reason)
        options = factory.service.config.accept_options
        transport: Any = self.transport
        remote = forwarded_client(format_address(transport.getPeer()), request.headers,
                                  options["http.forwarded.trusted"],
                                  options["http.forwarded.hops"])
        self.link = link = WebSocketLink(self, remote)
        factory.tracker.add(factory.service.config.name, self)
        self.session = factory.service.session(link)
        d = defer.maybeDeferred(self.session.negotiate, list(request.protocols))

        def chosen(protocol: Any) -> Any:
            link.protocol = protocol
            return protocol

        return d.addCallback(chosen)

    def onOpen(self) -> None:
        if self.session is not None:
            self.session.opened()

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.session is not None:
            self.session.received(payload, isBinary)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        session, self.session = self.session, None
        if session is not None:
            session.closed(code, reason or "")
        link, self.link = self.link, None
        if link is not None:
            stats = self.trafficStats
            self.factory.tracker.ended(self.factory.service.config.name, self, link.remote,
                                       stats.incomingOctetsWireLevel,
                                       stats.outgoingOctetsWireLevel,
                                       f"close {code}" if code else "dropped")

    def going_away(self) -> None:
        session_going_away(self.session)
        if self.link is not None:
            self.link.close(GOING_AWAY, "gateway shutting down")

    def abort(self) -> None:
        self.dropConnection(abort=True)

    # -- admission (transport.admission) --------------------------------------------------

    refusal_headers: list[tuple[str, str]] | None = None

    def admit(self, request: ConnectionRequest) -> None:
        """Pass the service's gate, or raise ConnectionDeny (503, or 429 with Retry-After).
        An admitted client is held until its connection ends, whatever ends it."""
        factory = self.factory
        options = factory.service.config.accept_options
        transport: Any = self.transport
        remote = forwarded_client(format_address(transport.getPeer()), request.headers,
                                  options["http.forwarded.trusted"],
                                  options["http.forwarded.hops"])
        refusal = factory.gate.admit(self, remote)
        if refusal is not None:
            self.refusal_headers = refusal.headers
            raise ConnectionDeny(refusal.status, refusal.message)
        self.is_closed.addCallback(lambda _: factory.gate.release(self))

    def failHandshake(self, reason: str, code: int = 400, responseHeaders: Any = None) -> None:
        if self.refusal_headers is None:
            super().failHandshake(reason, code, responseHeaders)
            return
        # An admission refusal, already logged (rate-limited) by the gate: Autobahn's own
        # failHandshake would log two more lines for each, which a flood must not get.
        self.sendHttpErrorResponse(code, reason, self.refusal_headers)
        self.droppedByMe = True
        transport: Any = self.transport
        transport.loseConnection()


class GatewayWebSocketFactory(WebSocketServerFactory):
    protocol = GatewayWebSocketProtocol  # type: ignore[assignment]

    def __init__(self, service: IGatewayService, uri: URI, reactor: Any,
                 tracker: ConnectionTracker) -> None:
        super().__init__(uri.text, reactor=reactor)
        self.service = service
        self.tracker = tracker
        options: Options = service.config.accept_options
        self.gate = tracker.gate(service.config.name, Limits.from_options(options),
                                 self.reactor.seconds)
        configure_websocket(self, options)
        self.allowed_origins = frozenset(
            c.allow_origin.rstrip("/") for c in service.config.cross_site_constraints
        )

    def origin_refusal(self, request: ConnectionRequest) -> str | None:
        """Kaazing's rule: same origin only, unless a cross-site-constraint allows it."""
        origin = request.headers.get("origin")
        if origin is None or "*" in self.allowed_origins:
            return None
        origin = origin.rstrip("/")
        if origin in self.allowed_origins:
            return None
        scheme, _, authority = origin.partition("://")
        host = request.headers.get("host", "")
        expected = "https" if self.isSecure else "http"
        default_port = ":443" if self.isSecure else ":80"
        if scheme == expected and (authority == host or authority + default_port == host
                                   or authority == host + default_port):
            return None
        return f"origin {origin} is not allowed by service {self.service.config.name!r}"
