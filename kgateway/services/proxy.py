"""Service ``proxy``: relays between each accepted connection and a new one to ``<connect>``.

    client --ws|wss|tcp|ssl--> [gateway] --ws|wss|tcp|ssl--> back end
               reads paused until the back end is connected; each side's transport is the
               other's producer, so a slow reader on either side stops the other's reads.

WebSocket to WebSocket keeps message boundaries and the text/binary kind, and passes the
client's offered subprotocols to the back end, returning the one it chose. Stream data
reaches WebSocket clients as binary messages; anything clients send is written as bytes.
A close on either side closes the other: WebSocket close <-> TCP FIN.

A WebSocket client of a tcp/ssl back end takes the fast data path (``IFastPathSession``,
``kgateway.transport.fastws``): its payloads go to the back end as they are read, one
``sendmsg`` (``links.write_now``) per read, without Autobahn's per-frame work.
"""

from __future__ import annotations

import enum
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from kgateway.balancer import Balancer, Target, parse_strategy
from kgateway.config import parse_duration, parse_size
from kgateway.interfaces import (
    BAD_GATEWAY,
    NORMAL,
    ConnectError,
    IBackendStatus,
    IFastPathSession,
    ILink,
    ILinkReceiver,
    ISession,
)
from kgateway.protocols.kaazing import application_protocols
from kgateway.services.base import BackendService, PropertySpec, ServiceContext, ServiceType
from kgateway.transport.links import write_now
from kgateway.transport.tracker import note_backend

log = Logger()

PROPERTIES = {
    # write-buffer size per side at which reading from the other side pauses; also
    # Twisted's read size on both sockets (README: "Flow control"; 64k paused and resumed
    # a socket about once per 64 KiB message)
    "maximum.pending.bytes": PropertySpec(parse_size, 256 * 1024),
    # with several <connect>: round-robin or least-connections (kgateway.balancer)
    "connect.strategy": PropertySpec(parse_strategy, "round-robin"),
    # TCP probe of each <connect> target; default 5sec with several targets, else off
    "connect.probe.interval": PropertySpec(parse_duration, None),
}


class Client(enum.Enum):
    """Where the client side of a proxy session is."""

    CONNECTING = "connecting"  # WebSocket handshake (or stream set-up) not done yet
    OPEN = "open"
    CLOSED = "closed"


@implementer(ISession, IFastPathSession)
class ProxySession:
    """One client and its back-end connection."""

    def __init__(self, service: ProxyService, client: ILink) -> None:
        self.service = service
        self.client = client
        self.backend: ILink | None = None
        self.failure: str | None = None
        self.state = Client.CONNECTING
        self.target: Target | None = None  # the balancer's target while connected to it
        # A back end may speak first (a banner, a greeting) while the client's WebSocket
        # handshake is still finishing: keep that until the client can take it.
        self.early: list[tuple[bytes, bool]] = []
        self.early_close: tuple[int | None, str] | None = None

    # the client side (ISession)

    def negotiate(self, offered: list[str]) -> defer.Deferred[str | None]:
        # Never x-kaazing-handshake: not chosen for a TCP back end, not passed on to a
        # WebSocket one (whose extended handshake this proxy would then owe it).
        return self._connect(application_protocols(offered), [])

    def _connect(self, offered: list[str], tried: list[Target]) -> defer.Deferred[str | None]:
        config = self.service.config
        balancer = self.service.balancer
        chosen = balancer.pick(tried)
        assert chosen is not None, "a proxy has at least one <connect>"
        tried.append(chosen)
        target = chosen.uri
        d = self.service.connector.connect(target, config.connect_options, _Backend(self),
                                           protocols=offered, client=self.client.remote)

        def connected(backend: ILink) -> str | None:
            if self.state is Client.CLOSED:
                backend.close(NORMAL, "client went away")
                return None
            self.backend = backend
            backend.pause_reading()  # until the client is open too: bounds self.early
            self.target = chosen
            balancer.connected(chosen)
            note_backend(self.client, str(target))
            if backend.is_websocket:
                return backend.protocol
            return offered[0] if offered else None

        def failed(reason: Failure) -> Any:
            reason.trap(ConnectError)
            balancer.failed(chosen, reason.getErrorMessage())
            if self.state is not Client.CLOSED and balancer.untried(tried):
                # Passive fail-over: the next target, before the client notices anything.
                return self._connect(offered, tried)
            self.failure = f"cannot connect to {target}: {reason.getErrorMessage()}"
            log.warn("{service}: {peer}: {failure}", service=config.name,
                     peer=self.client.remote, failure=self.failure, target=str(target))
            if not self.client.is_websocket:
                # A stream client has no close reason to read: refuse the connection.
                raise ConnectError(self.failure)
            # A WebSocket client completes the handshake and then reads a close 1014.
            return offered[0] if offered else None

        return d.addCallbacks(connected, failed)

    def opened(self) -> None:
        self.state = Client.OPEN
        for data, binary in self.early:
            self.backend_received(data, binary)
        self.early = []
        if self.early_close is not None:
            self._end_client(*self.early_close)
            return
        if self.backend is None:
            self.client.close(BAD_GATEWAY, self.failure or "back end unavailable")
            return
        limit = self.service.settings["maximum.pending.bytes"]
        for link in (self.client, self.backend):
            link.set_write_limit(limit)
        self.client.register_producer(self.backend.transport)
        self.backend.register_producer(self.client.transport)
        self.backend.resume_reading()

    def received(self, data: bytes, binary: bool) -> None:
        if self.backend is not None:
            self.backend.write(data, binary)

    def fast_path(self) -> str | None:
        """A tcp/ssl back end needs no message boundaries: the client's bytes go as they
        come. A WebSocket back end keeps Autobahn's messages, and so does a udp one (each
        message is one datagram)."""
        target = self.target
        if self.backend is not None and target is not None and target.uri.is_stream:
            return "stream"
        return None

    def received_stream(self, chunks: list[bytes]) -> None:
        backend = self.backend
        if backend is not None:
            write_now(backend.transport, getattr(backend, "direct", None), chunks)

    def _release(self) -> None:
        target, self.target = self.target, None
        if target is not None:
            self.service.balancer.released(target)

    def closed(self, code: int | None, reason: str) -> None:
        self.state = Client.CLOSED
        self._release()
        if self.backend is not None:
            backend, self.backend = self.backend, None
            backend.close(code or NORMAL, reason)

    # the back-end side, through _Backend

    def backend_received(self, data: bytes, binary: bool) -> None:
        if self.state is Client.CONNECTING:
            self.early.append((data, binary))
            return
        self.client.write(data, binary)

    def backend_closed(self, code: int | None, reason: str) -> None:
        if self.backend is None:
            return
        self.backend = None
        self._release()
        if self.state is Client.CONNECTING:
            self.early_close = (code, reason)
            return
        self._end_client(code, reason)

    def _end_client(self, code: int | None, reason: str) -> None:
        if self.state is not Client.CLOSED:
            self.client.close(code or NORMAL, reason if code else "")


@implementer(ILinkReceiver)
class _Backend:
    """Receives the back-end link's events for the session's backend_* methods (the session
    itself receives the client's: both sides speak ILinkReceiver)."""

    def __init__(self, session: ProxySession) -> None:
        self.session = session

    def received(self, data: bytes, binary: bool) -> None:
        self.session.backend_received(data, binary)

    def closed(self, code: int | None, reason: str) -> None:
        self.session.backend_closed(code, reason)


@implementer(IBackendStatus)
class ProxyService(BackendService):
    def __init__(self, context: ServiceContext) -> None:
        super().__init__(context)
        config = context.config
        interval = self.settings["connect.probe.interval"]
        if interval is None:
            interval = 5.0 if len(config.connects) > 1 else 0.0
        self.balancer = Balancer(
            self.reactor, config.connects, strategy=self.settings["connect.strategy"],
            probe_interval=interval, probe_timeout=config.connect_options["connect.timeout"],
            name=config.name)

    def session(self, link: ILink) -> ProxySession:
        return ProxySession(self, link)

    def backend_status(self) -> dict[str, Any]:
        """For the health service: each target, up or down, and its clients."""
        return self.balancer.status()

    def backend_reachable(self) -> bool:
        return self.balancer.reachable()

    def start(self) -> None:
        self.balancer.start()

    def stop(self) -> None:
        self.balancer.stop()


SERVICE_TYPE = ServiceType(
    name="proxy",
    accept_schemes=frozenset({"ws", "wss", "tcp", "ssl", "udp"}),
    connect_schemes=frozenset({"ws", "wss", "tcp", "ssl", "udp"}),
    min_connects=1,
    max_connects=None,  # several: balanced (kgateway.balancer)
    properties=PROPERTIES,
    build=ProxyService,
)
