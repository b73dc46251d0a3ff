"""The DMZ end of Enterprise Shield: pools of prepared reverse connections, one per path.

    public client --> proxy service --Connector.connect(reverse+wss://dmz:1443/p)-->
        Backplanes[dmz,1443,/p] --take()--> an idle BackplaneProtocol, paired with the client
                                            (or the client waits up to reverse.timeout)

The gateway owns one :class:`Backplanes` registry and hands it to the Connector; the
backplane listener (a wss port requiring client certificates) serves a
:class:`BackplaneFactory` per path. The pairing rules are in ``pairing.BackplaneMachine``;
this module only adapts Autobahn to it and keeps the pool.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from kgateway.config import URI, Options
from kgateway.interfaces import ConnectError, ILink, ILinkReceiver
from kgateway.protocols import shield_control as control
from kgateway.shield.adapter import MachineOutput
from kgateway.shield.pairing import BackplaneMachine, Phase
from kgateway.timers import NamedTimers
from kgateway.transport.closecodes import RelayingServerProtocol
from kgateway.transport.links import WebSocketLink, configure_websocket, format_address
from kgateway.transport.tls import certificate_names

log = Logger()

BackplaneKey = tuple[str, int, str]


class ReverseLost(ConnectError):
    """A prepared reverse connection died while being paired (its internal gateway went
    away): another one may still serve the client."""


def backplane_key(uri: URI) -> BackplaneKey:
    return (uri.host, uri.port, uri.path)


class Backplanes:
    """The DMZ gateway's pools, by backplane (host, port, path): owned by the gateway,
    filled by the backplane listeners, read by the Connector for ``reverse+wss://``."""

    def __init__(self) -> None:
        self.pools: dict[BackplaneKey, Backplane] = {}

    def add(self, backplane: Backplane) -> None:
        self.pools[backplane_key(backplane.uri)] = backplane

    def take(self, uri: URI, options: Options, receiver: ILinkReceiver,
             protocols: Sequence[str], client: str) -> defer.Deferred[ILink]:
        """A prepared reverse connection for *client*, paired (Connector.connect)."""
        backplane = self.pools.get(backplane_key(uri))
        if backplane is None:
            return defer.fail(ConnectError(f"no Enterprise Shield backplane for {uri}"))
        return backplane.take(receiver, protocols, client, options["reverse.timeout"])

    def ready_count(self) -> dict[str, int]:
        """Prepared (idle) reverse connections per backplane URI."""
        return {str(b.uri): len(b.idle) for b in self.pools.values()}

    def close(self) -> None:
        for backplane in self.pools.values():
            backplane.close()


class Backplane:
    """Prepared reverse connections for one backplane path, and clients waiting for one."""

    def __init__(self, reactor: Any, service: str, uri: URI) -> None:
        self.reactor = reactor
        self.service = service
        self.uri = uri
        self.idle: deque[BackplaneProtocol] = deque()
        self.waiting: deque[tuple[defer.Deferred[ILink], ILinkReceiver, Sequence[str], str,
                                  IDelayedCall, float]] = deque()

    def take(self, receiver: ILinkReceiver, protocols: Sequence[str], client: str,
             timeout: float) -> defer.Deferred[ILink]:
        while self.idle:
            proto = self.idle.popleft()
            if proto.state == proto.STATE_OPEN and proto.machine.phase is Phase.IDLE:
                return self._pair(proto, receiver, protocols, client, timeout)
        d: defer.Deferred[ILink] = defer.Deferred()

        def expire() -> None:
            self.waiting = deque(w for w in self.waiting if w[0] is not d)
            d.errback(ConnectError(f"no reverse connection from the internal gateway within "
                                   f"{timeout:g}s (reverse.timeout)"))

        call = self.reactor.callLater(timeout, expire)
        self.waiting.append((d, receiver, protocols, client, call, timeout))
        log.info("{service}: {client} waits for a reverse connection on {uri}",
                 service=self.service, client=client, uri=str(self.uri))
        return d

    def _pair(self, proto: BackplaneProtocol, receiver: ILinkReceiver,
              protocols: Sequence[str], client: str, timeout: float) -> defer.Deferred[ILink]:
        """Pair *client* with *proto*; if *proto* dies meanwhile (several internal gateways
        on one path, one of them killed), try the next prepared connection or wait."""

        def lost(failure: Any) -> Any:
            failure.trap(ReverseLost)
            log.info("{service}: reverse connection lost while pairing {client}; trying "
                     "another", service=self.service, client=client)
            return self.take(receiver, protocols, client, timeout)

        return proto.pair(receiver, protocols, client).addErrback(lost)

    def ready(self, proto: BackplaneProtocol) -> None:
        """*proto* said HELLO: hand it to the longest-waiting client, or keep it idle."""
        while self.waiting:
            d, receiver, protocols, client, call, timeout = self.waiting.popleft()
            if call.active():
                call.cancel()
                self._pair(proto, receiver, protocols, client, timeout).chainDeferred(d)
                return
        self.idle.append(proto)

    def lost(self, proto: BackplaneProtocol) -> None:
        if proto in self.idle:
            self.idle.remove(proto)

    def close(self) -> None:
        while self.idle:
            self.idle.popleft().dropConnection(abort=True)


# mypy compares a class's bases once it has two: Autobahn's own two disagree on `peer`
# and `_transport_details`, nothing of ours
class BackplaneProtocol(MachineOutput, RelayingServerProtocol):  # type: ignore[misc]
    """One reverse connection, as the DMZ gateway sees it: Autobahn <-> BackplaneMachine."""

    factory: BackplaneFactory
    receiver: ILinkReceiver | None = None
    opening: defer.Deferred[ILink] | None = None

    def onConnect(self, request: ConnectionRequest) -> str:
        if control.SUBPROTOCOL not in request.protocols:
            raise ConnectionDeny(ConnectionDeny.BAD_REQUEST,
                                 f"expected subprotocol {control.SUBPROTOCOL}")
        transport: Any = self.transport
        self.who = f"{format_address(transport.getPeer())} " \
                   f"(certificate {_peer_subject(transport)})"
        refusal = self.factory.name_refusal(transport)
        if refusal is not None:
            log.warn("{service}: refusing reverse connection from {who}: {reason}",
                     service=self.factory.backplane.service, who=self.who, reason=refusal)
            raise ConnectionDeny(ConnectionDeny.FORBIDDEN, refusal)
        self.timers = NamedTimers(self.factory.reactor)
        self.machine = BackplaneMachine(self)
        return control.SUBPROTOCOL

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.machine.phase is Phase.PAIRED:
            if self.receiver is not None:
                self.receiver.received(payload, isBinary)
            return
        self.machine.receive(payload)

    def pair(self, receiver: ILinkReceiver, protocols: Sequence[str],
             client: str) -> defer.Deferred[ILink]:
        self.receiver = receiver
        self.opening = defer.Deferred()
        self.machine.pair(client, protocols)
        return self.opening

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        machine = getattr(self, "machine", None)
        if machine is None:
            return  # refused at the handshake
        was = machine.phase
        machine.lost()
        self.factory.backplane.lost(self)
        opening, self.opening = self.opening, None
        if opening is not None:
            opening.errback(ReverseLost("reverse connection lost while opening"))
        elif was is Phase.PAIRED and self.receiver is not None:
            receiver, self.receiver = self.receiver, None
            receiver.closed(code, reason or "")

    # BackplaneOutput (send, close, drop and the timers: MachineOutput)

    def prepared(self) -> None:
        backplane = self.factory.backplane
        log.info("{service}: reverse connection from {who} prepared for {uri}",
                 service=backplane.service, who=self.who, uri=str(backplane.uri))
        backplane.ready(self)

    def opened(self, protocol: str | None) -> None:
        opening, self.opening = self.opening, None
        if opening is not None:
            opening.callback(WebSocketLink(self, protocol=protocol))

    def refused(self, reason: str) -> None:
        opening, self.opening = self.opening, None
        if opening is not None:
            opening.errback(ConnectError(f"internal gateway refused: {reason}"))

    def event(self, what: str) -> None:
        log.warn("{service}: reverse connection from {who}: {event}",
                 service=self.factory.backplane.service, who=self.who, event=what)


class BackplaneFactory(WebSocketServerFactory):
    noisy = False  # no "Starting factory" line per listener or connection
    protocol = BackplaneProtocol  # type: ignore[assignment]

    def __init__(self, backplane: Backplane, options: Options, reactor: Any) -> None:
        super().__init__(backplane.uri.text.replace("reverse+", "", 1), reactor=reactor)
        self.backplane = backplane
        self.reactor = reactor
        #: reverse.allowed.names: ("*",) for any certificate the truststore vouches for
        self.allowed_names: tuple[str, ...] = options["reverse.allowed.names"]
        configure_websocket(self, options)

    def name_refusal(self, transport: Any) -> str | None:
        """Why the internal gateway's certificate may not prepare connections here (its
        CN and SANs name none of reverse.allowed.names), or None."""
        if "*" in self.allowed_names:
            return None
        get = getattr(transport, "getPeerCertificate", None)
        cert = get() if get is not None else None
        if cert is None:
            return "no client certificate"
        names = certificate_names(cert)
        if names & set(self.allowed_names):
            return None
        return (f"certificate names {', '.join(sorted(names)) or '(none)'} are not in "
                "reverse.allowed.names")


def _peer_subject(transport: Any) -> str:
    get = getattr(transport, "getPeerCertificate", None)
    cert = get() if get is not None else None
    if cert is None:
        return "no certificate"
    return str(cert.get_subject().commonName)
