"""The internal end of Enterprise Shield: reverse connections dialled out to the DMZ gateway.

    ReverseConnector (one per reverse+wss:// accept)
        keeps reverse.prepared.connection.count ReverseClientProtocols prepared at the DMZ,
        replaces a used one at once, reconnects with back-off (reverse.retry.initial.interval
        doubling up to reverse.retry.maximum.interval)
    ReverseClientProtocol: Autobahn <-> ReverseMachine (pairing.py); once a public client is
        OPENed, a session of the accepting service, tracked like any client connection

TLS is mutual: the internal gateway presents its keystore certificate and verifies the DMZ's
chain and host name (``ClientTLS``, which also says why a handshake failed).
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory
from autobahn.websocket.types import ConnectionResponse
from twisted.internet import defer
from twisted.internet.endpoints import wrapClientTLS
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from kgateway.config import URI, Options
from kgateway.interfaces import (
    GOING_AWAY,
    ConnectError,
    IGatewayService,
    ISession,
    ITrackedConnection,
)
from kgateway.protocols import shield_control as control
from kgateway.shield.adapter import MachineOutput
from kgateway.shield.pairing import Phase, ReverseMachine
from kgateway.timers import NamedTimers
from kgateway.transport.closecodes import RelayingClientProtocol
from kgateway.transport.httpproxy import dial_endpoint
from kgateway.transport.links import WebSocketLink, configure_websocket
from kgateway.transport.tls import ClientTLS, Identity, is_tls_failure
from kgateway.transport.tracker import ConnectionTracker, session_going_away

log = Logger()

#: seconds to wait for the TCP connection to the DMZ backplane
CONNECT_TIMEOUT = 10


class ReverseConnector:
    """Keeps ``reverse.prepared.connection.count`` connections prepared at the DMZ gateway."""

    def __init__(self, reactor: Any, service: IGatewayService, uri: URI,
                 identity: Identity, truststore: str, tracker: ConnectionTracker) -> None:
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
        self.client_tls = ClientTLS(uri.host, truststore, identity)
        self.unpaired: set[ReverseClientProtocol] = set()
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
        try:  # directly, or through an HTTP CONNECT tunnel (http.proxy); TLS inside it
            dial = dial_endpoint(self.reactor, self.uri.host, self.uri.port, self.options,
                                 CONNECT_TIMEOUT)
        except ConnectError as e:
            self.retry(str(e))
            return
        endpoint = wrapClientTLS(self.client_tls.creator, dial)
        endpoint.connect(ReverseClientFactory(self)).addErrback(self._dial_failed)

    def _dial_failed(self, reason: Failure) -> None:
        self.retry(self.client_tls.explain(reason))

    def retry(self, why: str) -> None:
        """A connection failed before it was prepared: dial again after the back-off."""
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
        self.unpaired.add(proto)

    def welcomed(self, proto: ReverseClientProtocol) -> None:
        self.failures = 0
        log.info("{service}: reverse connection prepared at {url} ({ready}/{count})",
                 service=self.name, url=self.url, count=self.count,
                 ready=sum(1 for p in self.unpaired if p.machine.phase is Phase.IDLE))

    def paired(self, proto: ReverseClientProtocol) -> None:
        """*proto* now carries a client: prepare its replacement at once."""
        self.unpaired.discard(proto)
        self._dial()

    def lost(self, proto: ReverseClientProtocol, why: str) -> None:
        """An unpaired connection ended (or never completed its handshake)."""
        self.unpaired.discard(proto)
        self.retry(why)


@implementer(ITrackedConnection)
# mypy compares a class's bases once it has two: Autobahn's own two disagree on `peer`
# and `_transport_details`, nothing of ours
class ReverseClientProtocol(MachineOutput, RelayingClientProtocol):  # type: ignore[misc]
    """One reverse connection, as the internal gateway sees it: Autobahn <-> ReverseMachine."""

    factory: ReverseClientFactory
    session: ISession | None = None
    link: WebSocketLink | None = None
    lost_reason: Failure | None = None

    def __init__(self, connector: ReverseConnector) -> None:
        super().__init__()
        self.connector = connector
        self.timers = NamedTimers(connector.reactor)
        self.machine = ReverseMachine(self, connector.keepalive, connector.name)

    def onConnect(self, response: ConnectionResponse) -> None:
        self.connector.connected(self)

    def onOpen(self) -> None:
        self.machine.connected()

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.machine.phase is Phase.PAIRED:
            if self.session is not None:
                self.session.received(payload, isBinary)
            return
        self.machine.receive(payload)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.lost_reason = reason
        super().connectionLost(reason)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        was = self.machine.phase
        self.machine.lost()
        if was in (Phase.CONNECTING, Phase.HELLO, Phase.IDLE):
            if is_tls_failure(self.lost_reason):
                assert self.lost_reason is not None
                why = self.connector.client_tls.explain(self.lost_reason)
            elif was is Phase.CONNECTING:
                why = f"WebSocket handshake failed: {reason or 'connection lost'}"
            else:
                why = "connection lost"
            self.connector.lost(self, why)
            return
        session, self.session = self.session, None
        if session is not None:
            session.closed(code, reason or "")
        link, self.link = self.link, None
        if link is not None:
            stats = self.trafficStats
            self.connector.tracker.ended(self.connector.name, self, link.remote,
                                         stats.incomingOctetsWireLevel,
                                         stats.outgoingOctetsWireLevel,
                                         f"close={code}" if code else "dropped")

    # ReverseOutput (send, close, drop and the timers: MachineOutput)

    def welcomed(self) -> None:
        self.connector.welcomed(self)

    def open(self, client: str, protocols: tuple[str, ...]) -> None:
        """A public client, as the DMZ gateway saw it: a session of our service for it."""
        connector = self.connector
        connector.paired(self)
        self.link = link = WebSocketLink(self, remote=client)
        connector.tracker.add(connector.name, self)
        self.session = session = connector.service.session(link)
        d = defer.maybeDeferred(session.negotiate, list(protocols))

        def ready(protocol: Any) -> None:
            if self.session is None:  # the DMZ side went away meanwhile
                return
            link.protocol = protocol
            self.machine.session_ready(protocol)
            self.session.opened()

        def refused(reason: Failure) -> None:
            why = reason.getErrorMessage()
            log.info("{service}: refusing {peer} (via the DMZ gateway): {reason}",
                     service=connector.name, peer=client, reason=why)
            self.machine.session_refused(why)

        d.addCallbacks(ready, refused)

    def event(self, what: str) -> None:
        log.warn("{service}: {event}", service=self.connector.name, event=what)

    # ITrackedConnection: a draining internal gateway ends its paired connections

    def going_away(self) -> None:
        session_going_away(self.session)
        if self.state == self.STATE_OPEN:
            self.sendCloseFrame(GOING_AWAY)

    def abort(self) -> None:
        self.dropConnection(abort=True)


class ReverseClientFactory(WebSocketClientFactory):
    noisy = False

    def __init__(self, connector: ReverseConnector) -> None:
        super().__init__(connector.url, protocols=[control.SUBPROTOCOL],
                         reactor=connector.reactor)
        self.connector = connector
        configure_websocket(self, connector.options)

    def buildProtocol(self, addr: Any) -> Any:
        proto = ReverseClientProtocol(self.connector)
        proto.factory = self
        return proto
