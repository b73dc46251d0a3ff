"""Thin adapters between Twisted/Autobahn protocols and the sessions of ``kgateway.interfaces``.

Accepted connections:

    tcp/ssl client --> StreamServerProtocol ----+
                                                +--> ISession  (echo, proxy, amqp.proxy, jms)
    ws/wss client  --> WebSocketServerProtocol -+

Connections the gateway opens (``connect()``) deliver to an ``IPeer`` and hand back an
``ILink`` once they are fully established (TCP connected, TLS handshake done, WebSocket
handshake done), so a proxy never lets a client talk before its back end can listen.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from autobahn.util import encode_truncate
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest, ConnectionResponse
from OpenSSL import SSL
from service_identity.exceptions import VerificationError
from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import (
    IAddress,
    IHandshakeListener,
    IReactorTime,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from kgateway import tls
from kgateway.clientaddr import forwarded_client
from kgateway.config import URI, Options
from kgateway.interfaces import IGatewayService, ILink, IPeer, ISession

log = Logger()

# Close codes (RFC 6455 section 7.4.1).
NORMAL = 1000
GOING_AWAY = 1001
PROTOCOL_ERROR = 1002
MESSAGE_TOO_BIG = 1009
INTERNAL_ERROR = 1011
BAD_GATEWAY = 1014
#: codes that describe what happened but may never be sent in a close frame
_UNSENDABLE = frozenset({1005, 1006, 1015})


def format_address(address: IAddress) -> str:
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is None:
        return str(address)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ConnectionTracker:
    """Live client connections per service: health and metrics count them, a drain ends them.

    Whatever accepts clients (the adapters here, udp:// accepts, Enterprise Shield's reverse
    connections) adds each one when it connects and removes it when it goes. A tracked
    connection offers ``going_away()`` (the session's own goodbye if it has one, then close
    1001 / FIN) and ``abort()`` (drop it now).
    """

    def __init__(self) -> None:
        self.live: dict[str, set[Any]] = {}
        self._idle: list[defer.Deferred[None]] = []
        #: since start, per service: connections accepted, bytes received and sent by
        #: connections that have ended (the metrics service reports them)
        self.accepted: dict[str, int] = {}
        self.received: dict[str, int] = {}
        self.sent: dict[str, int] = {}

    def add(self, service: str, connection: Any) -> None:
        self.live.setdefault(service, set()).add(connection)
        self.accepted[service] = self.accepted.get(service, 0) + 1

    def remove(self, service: str, connection: Any, received: int = 0, sent: int = 0) -> None:
        self.live.get(service, set()).discard(connection)
        self.received[service] = self.received.get(service, 0) + received
        self.sent[service] = self.sent.get(service, 0) + sent
        if not self.total():
            waiting, self._idle = self._idle, []
            for d in waiting:
                d.callback(None)

    def counts(self) -> dict[str, int]:
        return {name: len(conns) for name, conns in self.live.items()}

    def total(self) -> int:
        return sum(len(conns) for conns in self.live.values())

    def connections(self) -> list[Any]:
        return [c for conns in self.live.values() for c in conns]

    def when_idle(self) -> defer.Deferred[None]:
        """Fires once no client connection is left (at once if none is)."""
        if not self.total():
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._idle.append(d)
        return d


#: this process's connections (one gateway per process; tests may make their own)
TRACKER = ConnectionTracker()


def access_log(service: str, peer: str, started: float, received: int, sent: int,
                reason: str) -> None:
    log.info("access: service={service} peer={peer} duration={duration:.3f}s "
             "bytes_in={received} bytes_out={sent} end={reason}", service=service, peer=peer,
             duration=time.monotonic() - started, received=received, sent=sent,
             reason=reason or "closed")


def session_going_away(session: Any) -> None:
    """Call a session's optional going_away() hook (see IGoingAway); one failure is logged."""
    hook = getattr(session, "going_away", None)
    if hook is not None:
        try:
            hook()
        except Exception:
            log.failure("going_away() of {session} failed", session=session)


def _socket_transport(transport: Any) -> Any:
    """The TCP transport under any TLS wrapping, which owns the write buffer."""
    while not hasattr(transport, "bufferSize") and hasattr(transport, "transport"):
        transport = transport.transport
    return transport


class _LinkBase:
    is_websocket = False
    protocol: str | None = None

    def __init__(self, proto: Any) -> None:
        self._proto = proto
        # The transport never changes once connected: TCP, or TLS over TCP.
        self.transport: Any = proto.transport
        self.peer = format_address(self.transport.getPeer())  # the real client address
        # Relayed protocols are chatty (AMQP, STOMP): Nagle plus delayed ACKs would add 40 ms
        # to some round trips. Set on the socket itself: twisted.web and Autobahn only try the
        # transport they see, which under TLS or the PROXY-protocol wrapper is not a socket.
        socket_transport = _socket_transport(self.transport)
        if hasattr(socket_transport, "setTcpNoDelay"):
            try:
                socket_transport.setTcpNoDelay(True)
            except OSError:
                pass  # already closed: nothing to tune

    def pause_reading(self) -> None:
        self.transport.pauseProducing()

    def resume_reading(self) -> None:
        self.transport.resumeProducing()

    def register_producer(self, producer: object) -> None:
        transport = self.transport
        # A WebSocket taken over from twisted.web still has its HTTPChannel registered.
        transport.unregisterProducer()
        transport.registerProducer(producer, True)

    def set_write_limit(self, limit: int) -> None:
        _socket_transport(self.transport).bufferSize = limit

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.peer}>"


@implementer(ILink)
class StreamLink(_LinkBase):
    sent = 0

    def write(self, data: bytes, binary: bool = True) -> None:
        self.sent += len(data)
        self.transport.write(data)

    def close(self, code: int = NORMAL, reason: str = "") -> None:
        self.transport.loseConnection()


@implementer(ILink)
class WebSocketLink(_LinkBase):
    is_websocket = True
    _proto: WebSocketServerProtocol | WebSocketClientProtocol

    def write(self, data: bytes, binary: bool = True) -> None:
        if self._proto.state == self._proto.STATE_OPEN:
            self._proto.sendMessage(data, isBinary=binary)

    def close(self, code: int = NORMAL, reason: str = "") -> None:
        proto = self._proto
        if proto.state != proto.STATE_OPEN:
            if proto.state in (proto.STATE_CONNECTING, proto.STATE_PROXY_CONNECTING):
                proto.dropConnection(abort=True)
            return
        if code in _UNSENDABLE:
            code = NORMAL if code == 1005 else INTERNAL_ERROR
        # sendClose() only lets applications send 1000 and 3000-4999; a gateway must be able
        # to say 1001, 1009, 1011 and 1014 as well, which sendCloseFrame() allows.
        proto.sendCloseFrame(code, encode_truncate(reason, 123) if reason else None)


# -- accepted connections -------------------------------------------------------------------


class StreamServerProtocol(Protocol):
    """A tcp:// or ssl:// client of a service."""

    session: ISession | None = None
    transport: Any
    received = 0

    def __init__(self, service: IGatewayService, tracker: ConnectionTracker = TRACKER) -> None:
        self.service = service
        self.tracker = tracker

    def connectionMade(self) -> None:
        self.started = time.monotonic()
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
                 peer=format_address(self.transport.getPeer()), reason=failure.getErrorMessage())
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
        session, self.session = self.session, None
        name = self.service.config.name
        self.tracker.remove(name, self, self.received, self.link.sent)
        access_log(name, self.link.peer, self.started, self.received, self.link.sent,
                    reason.getErrorMessage() if reason else "")
        if session is not None:
            session.closed(None, reason.getErrorMessage() if reason else "")


class StreamServerFactory(Factory):
    noisy = False

    def __init__(self, service: IGatewayService, tracker: ConnectionTracker = TRACKER) -> None:
        self.service = service
        self.tracker = tracker

    def buildProtocol(self, addr: IAddress | None) -> StreamServerProtocol:
        return StreamServerProtocol(self.service, self.tracker)


class GatewayWebSocketProtocol(WebSocketServerProtocol):
    """A ws:// or wss:// client of a service."""

    factory: GatewayWebSocketFactory
    session: ISession | None = None
    link: WebSocketLink | None = None

    def onConnect(self, request: ConnectionRequest) -> Any:
        reason = self.factory.origin_refusal(request)
        if reason:
            raise ConnectionDeny(ConnectionDeny.FORBIDDEN, reason)
        self.started = time.monotonic()
        self.link = WebSocketLink(self)
        options = self.factory.service.config.accept_options
        self.link.peer = forwarded_client(self.link.peer, request.headers,
                                          options.get("http.forwarded.trusted", ()),
                                          options.get("http.forwarded.hops", 0))
        self.factory.tracker.add(self.factory.service.config.name, self)
        self.session = self.factory.service.session(self.link)
        d = defer.maybeDeferred(self.session.negotiate, list(request.protocols))

        link = self.link

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
        link = self.link
        if link is not None:
            self.link = None
            name = self.factory.service.config.name
            stats = self.trafficStats
            self.factory.tracker.remove(name, self, stats.incomingOctetsWireLevel,
                                        stats.outgoingOctetsWireLevel)
            access_log(name, link.peer, self.started, stats.incomingOctetsWireLevel,
                        stats.outgoingOctetsWireLevel, f"close {code}" if code else "dropped")

    def going_away(self) -> None:
        session_going_away(self.session)
        if self.link is not None:
            self.link.close(GOING_AWAY, "gateway shutting down")

    def abort(self) -> None:
        self.dropConnection(abort=True)


class GatewayWebSocketFactory(WebSocketServerFactory):
    protocol = GatewayWebSocketProtocol  # type: ignore[assignment]

    def __init__(self, service: IGatewayService, uri: URI, reactor: Any = None,
                 tracker: ConnectionTracker = TRACKER) -> None:
        super().__init__(uri.text, reactor=reactor)
        self.service = service
        self.tracker = tracker
        options: Options = service.config.accept_options
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


def configure_websocket(factory: WebSocketServerFactory | WebSocketClientFactory,
                        options: Options) -> None:
    inactivity = options["ws.inactivity.timeout"]
    factory.setProtocolOptions(
        maxMessagePayloadSize=options["ws.maximum.message.size"],
        maxFramePayloadSize=options["ws.maximum.message.size"],
        # Send a close frame (1009, 1002...) on protocol violations instead of dropping TCP.
        failByDrop=False,
        autoPingInterval=inactivity / 2 if inactivity else 0,
        autoPingTimeout=inactivity / 2 if inactivity else 0,
        openHandshakeTimeout=10,
        closeHandshakeTimeout=5,
    )


# -- connections the gateway opens ----------------------------------------------------------


class ConnectError(Exception):
    """A back end could not be reached; the message says why, for logs and close reasons."""


@implementer(IHandshakeListener)
class _StreamClientProtocol(Protocol):
    def __init__(self, peer: IPeer, ready: defer.Deferred[ILink], tls_hostname: str | None) -> None:
        self.peer = peer
        self.ready: defer.Deferred[ILink] | None = ready
        self.tls_hostname = tls_hostname
        self.link: StreamLink | None = None

    def connectionMade(self) -> None:
        self.link = StreamLink(self)
        if self.tls_hostname is None:
            self._established()

    def handshakeCompleted(self) -> None:
        self._established()

    def _established(self) -> None:
        ready, self.ready = self.ready, None
        if ready is not None and self.link is not None:
            ready.callback(self.link)

    def dataReceived(self, data: bytes) -> None:
        self.peer.received(data, True)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        ready, self.ready = self.ready, None
        # With TLS 1.3 the server judges our certificate after our handshake is done, so a
        # refusal can arrive here as a lost connection: describe it like a failed connect.
        message = _describe(reason, self.tls_hostname) if reason else "connection lost"
        if ready is not None:
            ready.errback(ConnectError(message))
        else:
            self.peer.closed(None, message)


class _WebSocketClientProtocol(WebSocketClientProtocol):
    factory: _WebSocketClientFactory

    def onConnect(self, response: ConnectionResponse) -> None:
        self.link = WebSocketLink(self)
        self.link.protocol = response.protocol

    def onOpen(self) -> None:
        ready, self.factory.ready = self.factory.ready, None
        if ready is not None:
            ready.callback(self.link)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.peer.received(payload, isBinary)

    lost: Failure | None = None

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.lost = reason  # onClose only gets a text; keep the TLS error behind it
        super().connectionLost(reason)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        ready, self.factory.ready = self.factory.ready, None
        if ready is not None:
            if self.lost is not None and isinstance(self.lost.value,
                                                    (SSL.Error, VerificationError)):
                ready.errback(ConnectError(_describe(self.lost, self.factory.hostname)))
            else:
                why = reason or "connection lost"
                ready.errback(ConnectError(f"WebSocket handshake failed: {why}"))
        else:
            self.factory.peer.closed(code, reason or "")


class _WebSocketClientFactory(WebSocketClientFactory):
    protocol = _WebSocketClientProtocol  # type: ignore[assignment]

    def __init__(self, url: str, peer: IPeer, ready: defer.Deferred[ILink],
                 protocols: Sequence[str], reactor: Any, hostname: str | None) -> None:
        super().__init__(url, protocols=list(protocols) or None, reactor=reactor)
        self.hostname = hostname
        self.peer = peer
        self.ready: defer.Deferred[ILink] | None = ready


def _describe(reason: Failure, hostname: str | None = None) -> str:
    """A short reason for a failed connect, fit for a close frame (123 bytes) and a log line."""
    value = reason.value
    if isinstance(value, VerificationError):
        return f"TLS hostname verification failed: certificate does not name {hostname}"
    if isinstance(value, SSL.Error):
        text = str(value)
        if "certificate verify failed" in text:
            detail = tls.server_verify_failure(hostname) or (
                "expired" if "expired" in text else "untrusted")
            return f"TLS certificate verification failed ({detail} certificate)"
        return tls.describe_ssl_error(value)
    return reason.getErrorMessage()


def connect(
    reactor: IReactorTime,
    uri: URI,
    options: Options,
    peer: IPeer,
    *,
    protocols: Sequence[str] = (),
    truststore: str | None = None,
    identity: tls.Identity | None = None,
    client: str = "",
) -> defer.Deferred[ILink]:
    """Open a connection to *uri*; the Deferred fires with an ILink once it is usable.

    *identity*, when given, is presented as a client certificate (services pass
    ``tls.connect_identity()``, which is None unless ``ssl.present-certificate`` is set).
    ``reverse+wss://`` takes a prepared Enterprise Shield connection (kgateway.shield) on
    behalf of *client*; ``udp://`` opens a connected UDP socket (kgateway.udp).
    Failures arrive as ConnectError with a reason fit for a log line or a close reason.
    """
    if uri.is_reverse:
        from kgateway import shield

        return shield.take(reactor, uri, options, peer, protocols, client)
    if uri.scheme == "udp":
        from kgateway import udp

        return udp.connect(reactor, uri, options, peer)
    ready: defer.Deferred[ILink] = defer.Deferred()
    endpoint: Any = HostnameEndpoint(reactor, uri.host, uri.port,
                                     timeout=options["connect.timeout"])
    hostname = None
    if uri.is_tls:
        hostname = tls.VerifiedName(options["ssl.hostname"] or uri.host)
        hostname.creator = tls.client_options(hostname, options["ssl.truststore"] or truststore,
                                              identity)
        endpoint = wrapClientTLS(hostname.creator, endpoint)
    factory: Any
    if uri.is_websocket:
        factory = _WebSocketClientFactory(uri.text, peer, ready, protocols, reactor, hostname)
        configure_websocket(factory, options)
    else:
        factory = Factory.forProtocol(lambda: _StreamClientProtocol(peer, ready, hostname))

    def failed(reason: Failure) -> None:
        if ready.called:
            return
        ready.errback(ConnectError(_describe(reason, hostname)))

    endpoint.connect(factory).addErrback(failed)

    def timeout() -> None:
        if not ready.called:
            ready.errback(ConnectError(f"timed out after {options['connect.timeout']:g}s"))

    call = reactor.callLater(options["connect.timeout"] + 10, timeout)

    def done(result: Any) -> Any:
        if call.active():
            call.cancel()
        return result

    ready.addBoth(done)
    return ready
