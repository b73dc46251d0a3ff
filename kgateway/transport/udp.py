"""UDP accepts and connects: one datagram is one message, sessions per client address.

    udp client 10.0.0.5:4000 --datagram--> [UDPServerProtocol] --ILink--> ISession (proxy, echo)
    udp client 10.0.0.6:4000 --datagram-->       one session per client address, dropped
                                                 after ``udp.idle.timeout`` without traffic
    ISession --ILink--> [connect()] --datagram--> udp server (a connected socket of its own
                                                  per session, idle timeout likewise)

Through a WebSocket hop each datagram becomes one binary message and each message one
datagram, so ``udp:// -> wss:// -> udp://`` keeps datagram boundaries end to end. UDP has
no flow control: a paused reader drops datagrams instead of buffering them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from kgateway.config import URI, Options, format_hostport
from kgateway.interfaces import (
    ConnectError,
    IGatewayService,
    ILink,
    ILinkReceiver,
    ISession,
    ITrackedConnection,
)
from kgateway.timers import IdleTimer
from kgateway.transport.tracker import ConnectionTracker, session_going_away, session_target

log = Logger()

#: datagrams held per new client while its session gets ready (its back end connects)
MAX_EARLY = 64


@implementer(IPushProducer)
class _Gate:
    """Stands in for a transport as a producer: a paused UDP session drops datagrams."""

    paused = False

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False

    def stopProducing(self) -> None:
        self.paused = True


@implementer(ILink)
class UDPLink:
    is_websocket = False
    protocol = None
    principal = None  # datagrams carry no credentials

    def __init__(self, send: Any, remote: str, on_close: Any) -> None:
        self._send = send
        self._on_close = on_close
        self.remote = remote
        self.transport = _Gate()
        self.sent = 0

    def write(self, data: bytes, binary: bool = True) -> None:
        self.sent += len(data)
        self._send(data)

    def close(self, code: int = 1000, reason: str = "") -> None:
        self._on_close(reason)

    def pause_reading(self) -> None:
        self.transport.pauseProducing()

    def resume_reading(self) -> None:
        self.transport.resumeProducing()

    def register_producer(self, producer: object) -> None:
        pass  # writes never block: the kernel drops what it cannot send

    def set_write_limit(self, limit: int) -> None:
        pass


@implementer(ITrackedConnection)
class _Client:
    """One client address of a udp:// accept; tracked like a connection (ConnectionTracker)."""

    def __init__(self, link: UDPLink, session: ISession, idle: IdleTimer,
                 end: Callable[[str], None]) -> None:
        self.link, self.session, self.idle = link, session, idle
        self.ready = False
        self.early: list[bytes] = []
        self.received = 0
        self._end = end

    def going_away(self) -> None:
        session_going_away(self.session)
        self._end("gateway shutting down")

    def abort(self) -> None:
        self._end("gateway shutting down")


class UDPServerProtocol(DatagramProtocol):
    """A udp:// accept: a session per client address."""

    def __init__(self, reactor: Any, service: IGatewayService,
                 tracker: ConnectionTracker) -> None:
        self.reactor = reactor
        self.service = service
        self.tracker = tracker
        self.timeout: float = service.config.accept_options["udp.idle.timeout"]
        self.clients: dict[tuple[str, int], _Client] = {}

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        client = self.clients.get(addr)
        if client is None:
            client = self._new(addr)
        client.idle.touch()
        client.received += len(datagram)
        if not client.ready:
            if len(client.early) < MAX_EARLY:
                client.early.append(datagram)
        elif not client.link.transport.paused:
            client.session.received(datagram, True)

    def _new(self, addr: tuple[str, int]) -> _Client:
        peer = format_hostport(addr[0], addr[1])
        transport: Any = self.transport
        link = UDPLink(lambda data: transport.write(data, addr), peer,
                       lambda reason: self._end(addr, reason or "closed"))
        session = self.service.session(link)
        client = _Client(link, session, IdleTimer(self.reactor, self.timeout,
                                              lambda: self._end(addr, "idle timeout")),
                         lambda reason: self._end(addr, reason))
        self.clients[addr] = client
        self.tracker.add(self.service.config.name, client)
        d = defer.maybeDeferred(session.negotiate, [])

        def ready(_: object) -> None:
            if self.clients.get(addr) is not client:
                return
            client.ready = True
            session.opened()
            early, client.early = client.early, []
            for datagram in early:
                session.received(datagram, True)

        def refused(reason: Failure) -> None:
            log.info("{service}: refusing udp client {peer}: {reason}",
                     service=self.service.config.name, peer=peer,
                     reason=reason.getErrorMessage())
            self._end(addr, "refused")

        d.addCallbacks(ready, refused)
        return client

    def _end(self, addr: tuple[str, int], reason: str) -> None:
        client = self.clients.pop(addr, None)
        if client is None:
            return
        client.idle.cancel()
        self.tracker.ended(self.service.config.name, client, client.link.remote,
                           client.received, client.link.sent, reason,
                           target=session_target(client.session))
        client.session.closed(None, reason)

    def stopProtocol(self) -> None:
        for addr in list(self.clients):
            self._end(addr, "gateway stopping")


class _UDPClientProtocol(DatagramProtocol):
    def __init__(self, reactor: Any, receiver: ILinkReceiver, timeout: float) -> None:
        self.receiver = receiver
        self.idle = IdleTimer(reactor, timeout, lambda: self.end("idle timeout"))
        self.port: Any = None
        self.ended = False

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.idle.touch()
        self.receiver.received(datagram, True)

    def connectionRefused(self) -> None:
        pass  # an ICMP error for one datagram; UDP goes on

    def write(self, data: bytes) -> None:
        if not self.ended:
            self.idle.touch()
            transport: Any = self.transport
            transport.write(data)

    def end(self, reason: str, notify: bool = True) -> None:
        if self.ended:
            return
        self.ended = True
        self.idle.cancel()
        if self.port is not None:
            self.port.stopListening()
        if notify:
            self.receiver.closed(None, reason)


def connect(reactor: Any, uri: URI, options: Options,
            receiver: ILinkReceiver) -> defer.Deferred[ILink]:
    """A connected UDP socket to *uri* for one session."""

    def resolved(address: str) -> ILink:
        proto = _UDPClientProtocol(reactor, receiver, options["udp.idle.timeout"])
        try:
            proto.port = reactor.listenUDP(0, proto, interface="::" if ":" in address else "")
            transport: Any = proto.transport
            transport.connect(address, uri.port)
        except Exception as e:
            raise ConnectError(f"cannot open a UDP socket to {uri}: {e}") from e
        return UDPLink(proto.write, format_hostport(address, uri.port),
                       lambda reason: proto.end(reason, notify=False))

    def unresolved(reason: Failure) -> ILink:
        raise ConnectError(f"cannot resolve {uri.host}: {reason.getErrorMessage()}")

    d: defer.Deferred[str] = reactor.resolve(uri.host)
    return d.addCallbacks(resolved, unresolved)
