"""Service ``proxy``: relays between each accepted connection and a new one to ``<connect>``.

    client --ws|wss|tcp|ssl--> [gateway] --ws|wss|tcp|ssl--> back end
               reads paused until the back end is connected; each side's transport is the
               other's producer, so a slow reader on either side stops the other's reads.

WebSocket to WebSocket keeps message boundaries and the text/binary kind, and passes the
client's offered subprotocols to the back end, returning the one it chose. Stream data
reaches WebSocket clients as binary messages; anything clients send is written as bytes.
A close on either side closes the other: WebSocket close <-> TCP FIN.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from kgateway.balancer import Balancer, Target, parse_strategy
from kgateway.config import GatewayConfig, ServiceConfig, parse_duration, parse_size
from kgateway.interfaces import ILink, IPeer, ISession
from kgateway.links import BAD_GATEWAY, NORMAL, ConnectError
from kgateway.services import (
    BackendService,
    PathResolver,
    PropertySpec,
    ServiceType,
    check_properties,
)

log = Logger()

PROPERTIES = {
    "maximum.pending.bytes": PropertySpec(
        parse_size, 64 * 1024,
        doc="Write-buffer size per side at which reading from the other side pauses.",
    ),
    "connect.strategy": PropertySpec(
        parse_strategy, "round-robin",
        doc="With several <connect>: round-robin or least-connections (kgateway.balancer).",
    ),
    "connect.probe.interval": PropertySpec(
        parse_duration, None,
        doc="TCP probe of each <connect> target; default 5sec with several targets, else off.",
    ),
}


@implementer(ISession)
class ProxySession:
    """One client and its back-end connection."""

    def __init__(self, service: ProxyService, client: ILink) -> None:
        self.service = service
        self.client = client
        self.backend: ILink | None = None
        self.failure: str | None = None
        self.client_closed = False
        self.target: Target | None = None  # the balancer's target while connected to it
        # A back end may speak first (a banner, a greeting) while the client's WebSocket
        # handshake is still finishing: keep that until the client can take it.
        self.client_open = False
        self.early: list[tuple[bytes, bool]] = []
        self.early_close: tuple[int | None, str] | None = None

    # the client side (ISession)

    def negotiate(self, offered: list[str]) -> defer.Deferred[str | None]:
        return self._connect(offered, [])

    def _connect(self, offered: list[str], tried: list[Target]) -> defer.Deferred[str | None]:
        config = self.service.config
        balancer = self.service.balancer
        chosen = balancer.pick(tried)
        assert chosen is not None, "a proxy has at least one <connect>"
        tried.append(chosen)
        target = chosen.uri
        d = self.service.connect(self.service.reactor, target, config.connect_options,
                                 _BackendPeer(self), protocols=offered,
                                 truststore=self.service.truststore,
                                 identity=self.service.identity, client=self.client.peer)

        def connected(backend: ILink) -> str | None:
            if self.client_closed:
                backend.close(NORMAL, "client went away")
                return None
            self.backend = backend
            backend.pause_reading()  # until the client is open too: bounds self.early
            self.target = chosen
            balancer.connected(chosen)
            if backend.is_websocket:
                return backend.protocol
            return offered[0] if offered else None

        def failed(reason: Failure) -> Any:
            reason.trap(ConnectError)
            balancer.failed(chosen, reason.getErrorMessage())
            if not self.client_closed and balancer.untried(tried):
                # Passive fail-over: the next target, before the client notices anything.
                return self._connect(offered, tried)
            self.failure = f"cannot connect to {target}: {reason.getErrorMessage()}"
            log.warn("{service}: {peer}: {failure}", service=config.name,
                     peer=self.client.peer, failure=self.failure, target=str(target))
            if not self.client.is_websocket:
                # A stream client has no close reason to read: refuse the connection.
                raise ConnectError(self.failure)
            # A WebSocket client completes the handshake and then reads a close 1014.
            return offered[0] if offered else None

        return d.addCallbacks(connected, failed)

    def opened(self) -> None:
        self.client_open = True
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
            self.backend.write(data, binary or not self.backend.is_websocket)

    def _release(self) -> None:
        target, self.target = self.target, None
        if target is not None:
            self.service.balancer.released(target)

    def closed(self, code: int | None, reason: str) -> None:
        self.client_closed = True
        self._release()
        if self.backend is not None:
            backend, self.backend = self.backend, None
            backend.close(code or NORMAL, reason)

    # the back-end side, through _BackendPeer

    def backend_received(self, data: bytes, binary: bool) -> None:
        if not self.client_open:
            self.early.append((data, binary))
            return
        self.client.write(data, binary or not self.client.is_websocket)

    def backend_closed(self, code: int | None, reason: str) -> None:
        if self.backend is None:
            return
        self.backend = None
        self._release()
        if not self.client_open:
            self.early_close = (code, reason)
            return
        self._end_client(code, reason)

    def _end_client(self, code: int | None, reason: str) -> None:
        if not self.client_closed:
            self.client.close(code or NORMAL, reason if code else "")


@implementer(IPeer)
class _BackendPeer:
    """Routes back-end events to the session's backend_* methods."""

    def __init__(self, session: ProxySession) -> None:
        self.session = session

    def received(self, data: bytes, binary: bool) -> None:
        self.session.backend_received(data, binary)

    def closed(self, code: int | None, reason: str) -> None:
        self.session.backend_closed(code, reason)


class ProxyService(BackendService):
    def __init__(self, reactor: Any, config: ServiceConfig, gateway: GatewayConfig) -> None:
        super().__init__(reactor, config, gateway)
        interval = self.settings.get("connect.probe.interval")
        if interval is None:
            interval = 5.0 if len(config.connects) > 1 else 0.0
        self.balancer = Balancer(
            reactor, config.connects, strategy=self.settings.get("connect.strategy",
                                                                 "round-robin"),
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


def _check(config: ServiceConfig, resolve: PathResolver) -> Any:
    return check_properties(config, PROPERTIES)


SERVICE_TYPE = ServiceType(
    name="proxy",
    accept_schemes=frozenset({"ws", "wss", "tcp", "ssl", "udp"}),
    connect_schemes=frozenset({"ws", "wss", "tcp", "ssl", "udp"}),
    min_connects=1,
    max_connects=None,  # several: balanced (kgateway.balancer)
    check=_check,
    build=ProxyService,
    doc="Relays bytes or messages between clients and the <connect> target.",
)
