"""Accept adapters: a client of a service, over tcp/ssl or ws/wss, driving its ISession.

    tcp/ssl client --> StreamServerProtocol ----+
                                                +--> ISession  (echo, proxy, amqp.proxy, jms)
    ws/wss client  --> GatewayWebSocketProtocol +

Both track the connection (ConnectionTracker) and keep the client's reads paused until the
session is ready (its back end connected): ``ISession.negotiate`` may return a Deferred.
The WebSocket factory applies Kaazing's origin rule (same origin, unless a
cross-site-constraint allows it), the trusted Forwarded headers, and, for a service with a
``<realm-name>``, authentication and authorization at the handshake (``kgateway.auth.gate``:
401 with the realm's challenge, 403 for a missing role); the session finds the client's
Principal on its link (``ILink.principal``).

Before anything else, each new client passes its service's admission gate
(``transport.admission``: connection limits per service and per client host, handshake
rate): a refused WebSocket gets HTTP 503 or 429 (with Retry-After), a refused tcp/ssl
client is closed. An admitted client counts until its connection ends.
"""

from __future__ import annotations

import time
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.cred.error import LoginFailed
from twisted.internet import defer
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from kgateway.auth.credentials import MalformedAuthorization
from kgateway.auth.gate import Gate
from kgateway.auth.principal import Principal
from kgateway.config import URI, Options
from kgateway.interfaces import (
    GOING_AWAY,
    IFastPathSession,
    IGatewayService,
    ISession,
    ITrackedConnection,
)
from kgateway.transport.admission import Limits
from kgateway.transport.closecodes import RelayingServerProtocol
from kgateway.transport.compression import configure_deflate
from kgateway.transport.fastws import FastWebSocketLink
from kgateway.transport.forwarded import forwarded_client, forwarded_proto
from kgateway.transport.kaazing import KaazingHandshake, offers_kaazing_handshake
from kgateway.transport.links import (
    StreamLink,
    backlogged,
    configure_websocket,
    format_address,
)
from kgateway.transport.tracker import (
    AUTH,
    FORBIDDEN,
    ORIGIN,
    ConnectionTracker,
    session_going_away,
    session_target,
)

log = Logger()

#: HTTP 401, which autobahn's ConnectionDeny has no name for
UNAUTHORIZED = 401


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
        self.admission = tracker.gate(service.config.name,
                                      Limits.from_options(service.config.accept_options), clock)

    def connectionMade(self) -> None:
        if self.admission.admit(self, format_address(self.transport.getPeer())) is not None:
            self.refused = True  # logged and counted by the gate
            self.transport.abortConnection()
            return
        self.link = link = StreamLink(self)
        link.record = self.tracker.add(self.service.config.name, self, link.remote)
        self.session = self.service.session(link)
        # Nothing is read until the session is ready (e.g. its back end is connected).
        self.transport.pauseProducing()
        d = defer.maybeDeferred(self.session.negotiate, [])
        d.addCallbacks(self._ready, self._refused)

    def _ready(self, _: object) -> None:
        if self.session is None or not self.transport.connected:
            return
        self.tracker.opened(self)
        self.session.opened()
        self.transport.resumeProducing()

    def _refused(self, failure: Failure) -> None:
        log.info("{service}: refusing {peer}: {reason}", service=self.service.config.name,
                 peer=self.link.remote, reason=failure.getErrorMessage())
        self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        self.link.record.count(len(data), 0)
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
                           self.link.sent, reason, target=session_target(session))
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
class GatewayWebSocketProtocol(RelayingServerProtocol):
    """A ws:// or wss:// client of a service."""

    factory: GatewayWebSocketFactory
    session: ISession | None = None
    link: FastWebSocketLink | None = None
    #: the link, once the connection has left Autobahn for the fast data path (fastws.py)
    fast: FastWebSocketLink | None = None
    #: when the upgrade request arrived: the handshake time counts authentication too
    requested: float | None = None

    def connectionMade(self) -> None:
        self.requested = self.factory.tracker.clock()
        super().connectionMade()

    def onConnect(self, request: ConnectionRequest) -> Any:
        factory = self.factory
        options = factory.service.config.accept_options
        transport: Any = self.transport
        remote = forwarded_client(format_address(transport.getPeer()), request.headers,
                                  options["http.forwarded.trusted"],
                                  options["http.forwarded.hops"])
        self.admit(remote)  # limits and rate first (transport.admission): 503 or 429
        reason = factory.origin_refusal(request)
        if reason:
            factory.tracker.refuse(factory.service.config.name, ORIGIN)
            raise ConnectionDeny(ConnectionDeny.FORBIDDEN, reason)
        if factory.gate is None:
            return self._admit(None, remote, request)
        d = self._authenticate(factory.gate, remote, request)
        return d.addCallback(self._admit, remote, request)

    def _authenticate(self, gate: Gate, remote: str,
                      request: ConnectionRequest) -> defer.Deferred[Principal | None]:
        """The client's Principal, None (credentials may come inside the protocol), or a
        ConnectionDeny: 401 with the realm's challenge, 403 for a missing role."""
        service = self.factory.service.config.name

        def deny(code: int, why: str) -> ConnectionDeny:
            log.info("{service}: refusing {peer}: {reason}", service=service, peer=remote,
                     reason=why)
            self.factory.tracker.refuse(service, AUTH if code == UNAUTHORIZED else FORBIDDEN)
            if code == UNAUTHORIZED:
                self.refusal_headers = [("WWW-Authenticate", gate.challenge())]
            return ConnectionDeny(code, why)

        try:
            credentials = gate.credentials(request.headers, request.params)
        except MalformedAuthorization as e:
            return defer.fail(deny(UNAUTHORIZED, f"unreadable credentials: {e}"))
        if credentials is None:
            if gate.optional:
                return defer.succeed(None)
            return defer.fail(deny(UNAUTHORIZED, "authentication required"))

        def allowed(principal: Principal) -> Principal:
            if not gate.allows(principal):
                raise deny(ConnectionDeny.FORBIDDEN,
                           f"user {principal.name!r} may not use service {service!r}")
            return principal

        def refused(failure: Failure) -> None:
            failure.trap(LoginFailed)
            raise deny(UNAUTHORIZED, "authentication failed")

        return gate.login(credentials).addCallbacks(allowed, refused)

    def _admit(self, principal: Principal | None, remote: str,
               request: ConnectionRequest) -> defer.Deferred[Any]:
        factory = self.factory
        if self.lost:
            # Gone during its login: no session (its tracker record would never end, a
            # proxy would dial its back end), and no traceback from the closed socket.
            raise ConnectionDeny(ConnectionDeny.BAD_REQUEST, "client went away")
        self.link = link = FastWebSocketLink(self, remote, principal=principal)
        link.record = factory.tracker.add(factory.service.config.name, self, remote,
                                          self.requested)
        self.session = factory.service.session(link)
        if offers_kaazing_handshake(request.protocols):  # the extended handshake first
            self.session = KaazingHandshake(self.session, link, factory.reactor,
                                            service=factory.service.config.name)
        d = defer.maybeDeferred(self.session.negotiate, list(request.protocols))

        def chosen(protocol: Any) -> Any:
            link.protocol = protocol
            return protocol

        return d.addCallback(chosen)

    def onMessageFrame(self, payload: Any) -> None:  # a list of chunks, typed bytes
        # Autobahn keeps a message's frames as a list of objects: a million one-octet
        # fragments would hold ~44 MB under a 1 MiB ws.maximum.message.size. One buffer
        # holds the message instead (onMessageEnd joins the list: a one-item list here).
        if not self.failedByMe:
            if not self.message_data:
                self.message_data.append(bytearray())  # type: ignore[arg-type]
            self.message_data[0] += b"".join(payload)

    def onPing(self, payload: bytes) -> None:
        # Autobahn pongs every ping: a client pinging without reading would have the
        # gateway buffer pongs without bound (links.backlogged).
        if not backlogged(self.transport):
            super().onPing(payload)

    def onOpen(self) -> None:
        session, link = self.session, self.link
        if session is None:
            return
        # The fast path frames by itself: not with an extension (permessage-deflate).
        if (link is not None and IFastPathSession.providedBy(session)
                and self.factory.service.config.accept_options["ws.fast.path"]
                and not self.websocket_extensions_in_use):
            mode = session.fast_path()
            if mode is not None:
                link.take_over(session, stream=mode == "stream")
                self.fast = link
        self.factory.tracker.opened(self)
        session.opened()
        if self.fast is not None:
            self.fast.start()

    def dataReceived(self, data: bytes) -> None:
        fast = self.fast
        if fast is not None:
            fast.data_received(data)
        else:
            super().dataReceived(data)

    #: the TCP connection is gone (it may go while a login is checked, ~0.2 s)
    lost = False

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost = True
        # Whatever ended it (a refused handshake, a close, a drop, on Autobahn or the fast
        # path), the client no longer counts against the service's limits: released here,
        # once, before onClose (whose tracker.ended then finds nothing more to release).
        self.factory.admission.release(self)
        fast = self.fast
        if fast is not None:
            fast.connection_lost(reason)  # calls onClose, as Autobahn would
        else:
            super().connectionLost(reason)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.session is not None:
            if self.link is not None:
                self.link.record.count(len(payload), 0)
            self.session.received(payload, isBinary)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        session, self.session = self.session, None
        target = session_target(session)  # before closed(), which may forget it
        if session is not None:
            session.closed(code, reason or "")
        link, self.link = self.link, None
        if link is not None:
            stats = self.trafficStats
            self.factory.tracker.ended(self.factory.service.config.name, self, link.remote,
                                       stats.incomingOctetsWireLevel,
                                       stats.outgoingOctetsWireLevel,
                                       f"close={code}" if code else "dropped", target=target)

    def going_away(self) -> None:
        session_going_away(self.session)
        if self.link is not None:
            self.link.close(GOING_AWAY, "gateway shutting down")

    def abort(self) -> None:
        self.dropConnection(abort=True)

    # -- admission (transport.admission) --------------------------------------------------

    #: headers of a refusal: WWW-Authenticate (a 401), Retry-After (a 429)
    refusal_headers: list[tuple[str, str]] | None = None
    #: the refusal was logged already (admission logs its own, rate-limited)
    refusal_logged = False

    def admit(self, remote: str) -> None:
        """Pass the service's admission gate, or raise ConnectionDeny (503, or 429 with
        Retry-After). An admitted client is held until its connection ends, whatever ends it
        (:meth:`connectionLost` releases it: no callback per connection to hold that)."""
        refusal = self.factory.admission.admit(self, remote)
        if refusal is not None:
            self.refusal_headers = refusal.headers
            self.refusal_logged = True
            raise ConnectionDeny(refusal.status, refusal.message)

    def failHandshake(self, reason: str, code: int = 400, responseHeaders: Any = None) -> None:
        # Autobahn turns a ConnectionDeny into failHandshake(reason, code): a refusal's own
        # headers (the realm's challenge, Retry-After) go with it.
        headers = responseHeaders or self.refusal_headers
        if not self.refusal_logged:
            super().failHandshake(reason, code, headers)
            return
        # An admission refusal, already logged (rate-limited) by the gate: Autobahn's own
        # failHandshake would log two more lines for each, which a flood must not get.
        self.sendHttpErrorResponse(code, reason, headers)
        self.droppedByMe = True
        transport: Any = self.transport
        transport.loseConnection()


class GatewayWebSocketFactory(WebSocketServerFactory):
    noisy = False  # no "Starting factory" line per listener or connection
    protocol = GatewayWebSocketProtocol  # type: ignore[assignment]

    def __init__(self, service: IGatewayService, uri: URI, reactor: Any,
                 tracker: ConnectionTracker, gate: Gate | None = None) -> None:
        super().__init__(uri.text, reactor=reactor)
        self.service = service
        self.tracker = tracker
        #: authentication at the handshake (the service's realm), if it has one
        self.gate = gate
        options: Options = service.config.accept_options
        #: connection limits and handshake rate (transport.admission)
        self.admission = tracker.gate(service.config.name, Limits.from_options(options),
                                      self.reactor.seconds)
        configure_websocket(self, options)
        configure_deflate(self, options)  # permessage-deflate, if an accept-option asks
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
        expected = self.client_scheme(request)
        default_port = ":443" if expected == "https" else ":80"
        if scheme == expected and (authority == host or authority + default_port == host
                                   or authority == host + default_port):
            return None
        return f"origin {origin} is not allowed by service {self.service.config.name!r}"

    def client_scheme(self, request: ConnectionRequest) -> str:
        """``https`` or ``http`` as the browser sees this page: our own TLS, or what a TLS
        off-loader in front says (X-Forwarded-Proto / Forwarded proto=), believed only from
        a trusted proxy (http.forwarded.hops / http.forwarded.trusted)."""
        options = self.service.config.accept_options
        peer = request.peer.split(":", 1)[1].rpartition(":")[0] if ":" in request.peer else ""
        proto = forwarded_proto(peer, request.headers, options["http.forwarded.trusted"],
                                options["http.forwarded.hops"])
        return proto or ("https" if self.isSecure else "http")
