"""Enterprise Shield: reverse connectivity between an internal gateway and a DMZ gateway.

The internal gateway opens NO listening socket towards the DMZ. It dials OUT, over mutually
authenticated TLS, to the DMZ gateway's backplane and keeps ``prepared.connection.count``
idle WebSocket connections there; the DMZ gateway pairs each public client with one.

    public client --wss--> [DMZ gateway] proxy: connect reverse+wss://dmz:1443/shield/echo
                                |   backplane listener on dmz:1443 (TLS, client cert required)
                                |   pool of prepared reverse connections, per path
                  firewall: nothing inbound to the trusted network
                                ^   dialled out by the internal gateway, kept alive with PINGs
    broker <--tcp-- [internal gateway] proxy: accept reverse+wss://dmz:1443/shield/echo

One URI names the same backplane on both sides: the DMZ gateway *connects* its clients
through it, the internal gateway *accepts* its clients from it. The control messages are
in ``kgateway.protocols.shield`` (sans-IO); these classes are the thin adapters and the
pool/reconnect state around them:

* ``Backplane`` (DMZ): the pool of idle reverse connections for one path and the clients
  waiting for one (``reverse.timeout``, then a clear refusal).
* ``ReverseConnector`` (internal): keeps the pool full, replaces a used connection at once,
  reconnects with exponential back-off (``reverse.retry.initial.interval`` doubling up to
  ``reverse.retry.maximum.interval``) and pings every ``reverse.keepalive.interval``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest, ConnectionResponse
from OpenSSL import SSL
from service_identity.exceptions import VerificationError
from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from kgateway import tls
from kgateway.config import URI, Options
from kgateway.interfaces import IGatewayService, ILink, IPeer, ISession
from kgateway.links import (
    BAD_GATEWAY,
    GOING_AWAY,
    PROTOCOL_ERROR,
    TRACKER,
    ConnectError,
    ConnectionTracker,
    WebSocketLink,
    _describe,
    access_log,
    configure_websocket,
    format_address,
    session_going_away,
)
from kgateway.protocols import shield as codec

log = Logger()

#: seconds to wait for the TCP connection to the DMZ backplane
CONNECT_TIMEOUT = 10

#: the DMZ gateway's pools, by backplane (host, port, path); registered by gateway.py
_BACKPLANES: dict[tuple[str, int, str], Backplane] = {}


def _key(uri: URI) -> tuple[str, int, str]:
    return (uri.host, uri.port, uri.path)


def register(backplane: Backplane) -> None:
    _BACKPLANES[_key(backplane.uri)] = backplane


def unregister(backplane: Backplane) -> None:
    if _BACKPLANES.get(_key(backplane.uri)) is backplane:
        del _BACKPLANES[_key(backplane.uri)]


def take(reactor: Any, uri: URI, options: Options, peer: IPeer, protocols: Sequence[str],
         client: str) -> defer.Deferred[ILink]:
    """links.connect() for ``reverse+wss://``: a prepared reverse connection, paired."""
    backplane = _BACKPLANES.get(_key(uri))
    if backplane is None:
        return defer.fail(ConnectError(f"no Enterprise Shield backplane for {uri}"))
    return backplane.take(peer, protocols, client, options["reverse.timeout"])


def _peer_subject(transport: Any) -> str:
    get = getattr(transport, "getPeerCertificate", None)
    cert = get() if get is not None else None
    if cert is None:
        return "no certificate"
    return str(cert.get_subject().commonName)


# -- the DMZ side -------------------------------------------------------------------------


class Backplane:
    """Prepared reverse connections for one backplane path, and clients waiting for one."""

    def __init__(self, reactor: Any, service: str, uri: URI) -> None:
        self.reactor = reactor
        self.service = service
        self.uri = uri
        self.idle: deque[BackplaneProtocol] = deque()
        self.waiting: deque[tuple[defer.Deferred[ILink], IPeer, Sequence[str], str,
                                  IDelayedCall]] = deque()

    def take(self, peer: IPeer, protocols: Sequence[str], client: str,
             timeout: float) -> defer.Deferred[ILink]:
        while self.idle:
            proto = self.idle.popleft()
            if proto.state == proto.STATE_OPEN:
                return proto.pair(peer, protocols, client)
        d: defer.Deferred[ILink] = defer.Deferred()

        def expire() -> None:
            self.waiting = deque(w for w in self.waiting if w[0] is not d)
            d.errback(ConnectError(f"no reverse connection from the internal gateway within "
                                   f"{timeout:g}s (reverse.timeout)"))

        call = self.reactor.callLater(timeout, expire)
        self.waiting.append((d, peer, protocols, client, call))
        log.info("{service}: {client} waits for a reverse connection on {uri}",
                 service=self.service, client=client, uri=str(self.uri))
        return d

    def ready(self, proto: BackplaneProtocol) -> None:
        """*proto* said HELLO: hand it to the longest-waiting client, or keep it idle."""
        while self.waiting:
            d, peer, protocols, client, call = self.waiting.popleft()
            if call.active():
                call.cancel()
                proto.pair(peer, protocols, client).chainDeferred(d)
                return
        self.idle.append(proto)

    def lost(self, proto: BackplaneProtocol) -> None:
        if proto in self.idle:
            self.idle.remove(proto)

    def close(self) -> None:
        while self.idle:
            self.idle.popleft().dropConnection(abort=True)


class BackplaneProtocol(WebSocketServerProtocol):
    """One reverse connection, as the DMZ gateway sees it."""

    factory: BackplaneFactory
    phase = "hello"  # hello -> idle -> opening -> paired
    target: IPeer | None = None
    opening: defer.Deferred[ILink] | None = None
    watchdog: IDelayedCall | None = None

    def onConnect(self, request: ConnectionRequest) -> str:
        if codec.SUBPROTOCOL not in request.protocols:
            raise ConnectionDeny(ConnectionDeny.BAD_REQUEST,
                                 f"expected subprotocol {codec.SUBPROTOCOL}")
        self.decoder = codec.Decoder()
        transport: Any = self.transport
        self.who = f"{format_address(transport.getPeer())} " \
                   f"(certificate {_peer_subject(transport)})"
        return codec.SUBPROTOCOL

    def _send_control(self, message: codec.Message) -> None:
        self.sendMessage(codec.encode(message), isBinary=True)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.phase == "paired":
            if self.target is not None:
                self.target.received(payload, isBinary)
            return
        try:
            messages = self.decoder.feed(payload)
        except codec.ShieldProtocolError as e:
            log.warn("{service}: reverse connection from {who}: {error}",
                     service=self.factory.backplane.service, who=self.who, error=str(e))
            self.sendCloseFrame(PROTOCOL_ERROR)
            return
        for message in messages:
            self._control(message)

    def _control(self, message: codec.Message) -> None:
        backplane = self.factory.backplane
        if isinstance(message, codec.Hello) and self.phase == "hello":
            self.phase = "idle"
            self.keepalive = message.keepalive_ms / 1000
            self._send_control(codec.Welcome())
            self._watch()
            log.info("{service}: reverse connection from {who} prepared for {uri}",
                     service=backplane.service, who=self.who, uri=str(backplane.uri))
            backplane.ready(self)
        elif isinstance(message, codec.Ping):
            self._send_control(codec.Pong(message.n))
            self._watch()
        elif isinstance(message, codec.Opened) and self.phase == "opening":
            self.phase = "paired"
            self._unwatch()
            link = WebSocketLink(self)
            link.protocol = message.protocol
            opening, self.opening = self.opening, None
            if opening is not None:
                opening.callback(link)
        elif isinstance(message, codec.Refused) and self.phase == "opening":
            opening, self.opening = self.opening, None
            if opening is not None:
                opening.errback(ConnectError(f"internal gateway refused: {message.reason}"))
            self.sendCloseFrame(1000)
        else:
            log.warn("{service}: unexpected {message} from {who} while {phase}",
                     service=backplane.service, message=type(message).__name__,
                     who=self.who, phase=self.phase)

    def _watch(self) -> None:
        """Drop a prepared connection whose pings stop: the firewall or the peer lost it."""
        self._unwatch()
        if self.keepalive > 0:
            self.watchdog = self.factory.reactor.callLater(
                self.keepalive * 3, self.dropConnection, True)

    def _unwatch(self) -> None:
        if self.watchdog is not None and self.watchdog.active():
            self.watchdog.cancel()
        self.watchdog = None

    def pair(self, peer: IPeer, protocols: Sequence[str], client: str) -> defer.Deferred[ILink]:
        self.phase = "opening"
        self._unwatch()  # the internal side stops pinging once it has a client
        self.target = peer
        self.opening = defer.Deferred()
        self._send_control(codec.Open(client, tuple(protocols)))
        return self.opening

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self._unwatch()
        self.factory.backplane.lost(self)
        opening, self.opening = self.opening, None
        if opening is not None:
            opening.errback(ConnectError("reverse connection lost while opening"))
        elif self.phase == "paired" and self.target is not None:
            peer, self.target = self.target, None
            peer.closed(code, reason or "")


class BackplaneFactory(WebSocketServerFactory):
    protocol = BackplaneProtocol  # type: ignore[assignment]

    def __init__(self, backplane: Backplane, options: Options, reactor: Any) -> None:
        super().__init__(backplane.uri.text.replace("reverse+", "", 1), reactor=reactor)
        self.backplane = backplane
        self.reactor = reactor
        configure_websocket(self, options)


# -- the internal side -------------------------------------------------------------------------


class ReverseConnector:
    """Keeps ``reverse.prepared.connection.count`` connections prepared at the DMZ gateway."""

    def __init__(self, reactor: Any, service: IGatewayService, uri: URI,
                 identity: tls.Identity, truststore: str,
                 tracker: ConnectionTracker = TRACKER) -> None:
        self.reactor = reactor
        self.service = service
        self.tracker = tracker  # a paired reverse connection is a client of the service
        self.uri = uri
        self.name = service.config.name
        options: Options = service.config.accept_options
        self.options = options
        self.count: int = options["reverse.prepared.connection.count"]
        self.initial: float = options["reverse.retry.initial.interval"]
        self.maximum: float = options["reverse.retry.maximum.interval"]
        self.keepalive: float = options["reverse.keepalive.interval"]
        self.url = f"wss://{uri.authority}{uri.path}"
        self.tls_options = tls.client_options(uri.host, truststore, identity)
        self.unpaired: set[ReverseClientProtocol] = set()
        self.dialling = 0
        self.retries: list[IDelayedCall] = []
        self.failures = 0
        self.running = False

    # keeping the pool full

    def start(self) -> None:
        self.running = True
        log.info("{service}: keeping {count} reverse connection(s) prepared at {url}",
                 service=self.name, count=self.count, url=self.url)
        for _ in range(self.count):
            self._dial()

    def stop(self) -> None:
        self.running = False
        for call in self.retries:
            if call.active():
                call.cancel()
        self.retries.clear()
        for proto in list(self.unpaired):
            proto.dropConnection(abort=True)

    def _dial(self) -> None:
        if not self.running:
            return
        self.dialling += 1
        endpoint = wrapClientTLS(self.tls_options, HostnameEndpoint(
            self.reactor, self.uri.host, self.uri.port, timeout=CONNECT_TIMEOUT))
        factory = ReverseClientFactory(self)
        endpoint.connect(factory).addErrback(self._dial_failed)

    def _dial_failed(self, reason: Failure) -> None:
        self.dialling -= 1
        self._retry(_describe(reason, self.uri.host))

    def _retry(self, why: str) -> None:
        if not self.running:
            return
        delay = min(self.maximum, self.initial * 2 ** self.failures)
        self.failures += 1
        log.info("{service}: reverse connection to {url} failed ({why}); retrying in "
                 "{delay:.3g}s", service=self.name, url=self.url, why=why, delay=delay)

        def again() -> None:
            self.retries = [c for c in self.retries if c.active()]
            self._dial()

        self.retries.append(self.reactor.callLater(delay, again))

    # events from the connections

    def connected(self, proto: ReverseClientProtocol) -> None:
        self.dialling -= 1
        self.unpaired.add(proto)

    def welcomed(self, proto: ReverseClientProtocol) -> None:
        self.failures = 0
        log.info("{service}: reverse connection prepared at {url} ({ready}/{count})",
                 service=self.name, url=self.url, count=self.count,
                 ready=sum(1 for p in self.unpaired if p.phase == "idle"))

    def paired(self, proto: ReverseClientProtocol) -> None:
        """*proto* now carries a client: prepare its replacement at once."""
        self.unpaired.discard(proto)
        self._dial()

    def lost(self, proto: ReverseClientProtocol, why: str) -> None:
        if proto in self.unpaired:
            self.unpaired.discard(proto)
            self._retry(why)


class ReverseClientProtocol(WebSocketClientProtocol):
    """One reverse connection, as the internal gateway sees it."""

    factory: ReverseClientFactory
    phase = "connecting"  # connecting -> hello -> idle -> opening -> paired
    session: ISession | None = None
    lost_reason: Failure | None = None
    ping: IDelayedCall | None = None
    awaiting_pong: int | None = None
    pings = 0

    @property
    def connector(self) -> ReverseConnector:
        return self.factory.connector

    def onConnect(self, response: ConnectionResponse) -> None:
        self.decoder = codec.Decoder()
        self.connector.connected(self)

    def onOpen(self) -> None:
        self.phase = "hello"
        self._send_control(codec.Hello(int(self.connector.keepalive * 1000), self.connector.name))

    def _send_control(self, message: codec.Message) -> None:
        self.sendMessage(codec.encode(message), isBinary=True)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.phase == "paired":
            if self.session is not None:
                self.session.received(payload, isBinary)
            return
        try:
            messages = self.decoder.feed(payload)
        except codec.ShieldProtocolError as e:
            log.warn("{service}: from the DMZ gateway: {error}", service=self.connector.name,
                     error=str(e))
            self.sendCloseFrame(PROTOCOL_ERROR)
            return
        for message in messages:
            self._control(message)

    def _control(self, message: codec.Message) -> None:
        if isinstance(message, codec.Welcome) and self.phase == "hello":
            self.phase = "idle"
            self.connector.welcomed(self)
            self._schedule_ping()
        elif isinstance(message, codec.Pong):
            if message.n == self.awaiting_pong:
                self.awaiting_pong = None
        elif isinstance(message, codec.Open) and self.phase == "idle":
            self._stop_pings()
            self.phase = "opening"
            self.connector.paired(self)
            self._open(message)
        else:
            log.warn("{service}: unexpected {message} from the DMZ gateway while {phase}",
                     service=self.connector.name, message=type(message).__name__,
                     phase=self.phase)

    def _open(self, message: codec.Open) -> None:
        link = WebSocketLink(self)
        link.peer = message.client  # the public client, as the DMZ gateway saw it
        self.link = link
        self.started = time.monotonic()
        self.connector.tracker.add(self.connector.name, self)
        self.session = session = self.connector.service.session(link)
        d = defer.maybeDeferred(session.negotiate, list(message.protocols))

        def ready(protocol: Any) -> None:
            if self.session is None:  # the DMZ side went away meanwhile
                return
            link.protocol = protocol
            self.phase = "paired"
            self._send_control(codec.Opened(protocol))
            self.session.opened()

        def refused(reason: Failure) -> None:
            why = reason.getErrorMessage()
            log.info("{service}: refusing {peer} (via the DMZ gateway): {reason}",
                     service=self.connector.name, peer=message.client, reason=why)
            self._send_control(codec.Refused(why[:1000]))
            self.sendCloseFrame(BAD_GATEWAY)

        d.addCallbacks(ready, refused)

    # keep-alive

    def _schedule_ping(self) -> None:
        if self.connector.keepalive > 0:
            self.ping = self.connector.reactor.callLater(self.connector.keepalive, self._ping)

    def _ping(self) -> None:
        if self.awaiting_pong is not None:
            log.info("{service}: no PONG from the DMZ gateway within {interval:g}s; reconnecting",
                     service=self.connector.name, interval=self.connector.keepalive)
            self.dropConnection(abort=True)
            return
        self.pings += 1
        self.awaiting_pong = self.pings
        self._send_control(codec.Ping(self.pings))
        self._schedule_ping()

    def _stop_pings(self) -> None:
        if self.ping is not None and self.ping.active():
            self.ping.cancel()
        self.ping = None

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.lost_reason = reason
        super().connectionLost(reason)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self._stop_pings()
        if self.phase in ("connecting", "hello", "idle"):
            lost = self.lost_reason
            if lost is not None and isinstance(lost.value, (SSL.Error, VerificationError)):
                why = _describe(lost, self.connector.uri.host)
            elif self.phase == "connecting":
                why = f"WebSocket handshake failed: {reason or 'connection lost'}"
            else:
                why = "connection lost"
            if self.phase == "connecting" and self not in self.connector.unpaired:
                self.connector.dialling -= 1
                self.connector._retry(why)
            else:
                self.connector.lost(self, why)
            return
        session, self.session = self.session, None
        if session is not None:
            session.closed(code, reason or "")
        if self.phase in ("opening", "paired"):
            stats = self.trafficStats
            self.connector.tracker.remove(self.connector.name, self,
                                          stats.incomingOctetsWireLevel,
                                          stats.outgoingOctetsWireLevel)
            access_log(self.connector.name, self.link.peer, self.started,
                       stats.incomingOctetsWireLevel, stats.outgoingOctetsWireLevel,
                       f"close {code}" if code else "dropped")

    # a tracked connection (ConnectionTracker): a draining internal gateway ends it

    def going_away(self) -> None:
        session_going_away(self.session)
        if self.state == self.STATE_OPEN:
            self.sendCloseFrame(GOING_AWAY)

    def abort(self) -> None:
        self.dropConnection(abort=True)


class ReverseClientFactory(WebSocketClientFactory):
    protocol = ReverseClientProtocol  # type: ignore[assignment]
    noisy = False

    def __init__(self, connector: ReverseConnector) -> None:
        super().__init__(connector.url, protocols=[codec.SUBPROTOCOL],
                         reactor=connector.reactor)
        self.connector = connector
        configure_websocket(self, connector.options)

