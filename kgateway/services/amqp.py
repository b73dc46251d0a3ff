"""Service ``amqp.proxy``: AMQP 0-9-1 clients over ws/wss/tcp/ssl, relayed to a broker.

    browser / pika --ws|wss|tcp|ssl--> AmqpSession --tcp|ssl--> RabbitMQ
                                         |
                                         +-- AmqpRelay (kgateway.amqp_session): header and
                                             handshake checks, client address added to
                                             Start-Ok, vhost policy, frame-max/frame-end
                                             enforcement, whole frames per WebSocket message

This module is the thin Twisted side: it opens the broker connection when the relay asks
(only after a valid protocol header), turns relay outputs into link writes and closes,
runs its timers on the reactor, and wires back-pressure both ways: each link's write
buffer is bounded by ``maximum.pending.bytes`` and, when full, pauses reading from the other
link (through :class:`_Throttle`, which never closes anything). Both links run with
TCP_NODELAY.

WebSocket subprotocol: none if the client offers none (``@cloudamqp/amqp-client``,
Kaazing's client), ``amqp`` if offered; offering only others is refused with HTTP 400.
"""

from __future__ import annotations

from typing import Any

from autobahn.websocket.types import ConnectionDeny
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IDelayedCall, IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from kgateway.amqp_session import AmqpRelay, RelaySettings
from kgateway.config import GatewayConfig, ServiceConfig, parse_duration, parse_size
from kgateway.interfaces import ILink, IPeer, ISession
from kgateway.links import ConnectError
from kgateway.protocols.amqp import FRAME_MIN_SIZE
from kgateway.services import (
    BackendService,
    PathResolver,
    PropertySpec,
    ServiceType,
    check_properties,
)

log = Logger()

SUBPROTOCOL = "amqp"


def _parse_vhost(text: str) -> str:
    value = text.strip()
    if not value:
        raise ValueError("expected a virtual host name such as /")
    if len(value.encode("utf-8")) > 255:
        raise ValueError("a virtual host name has at most 255 octets")
    return value


def _parse_frame_max(text: str) -> int:
    value = parse_size(text)
    if not FRAME_MIN_SIZE <= value <= 0xFFFFFFFF:
        raise ValueError(f"expected a size of at least {FRAME_MIN_SIZE} (frame-min-size)")
    return value


def _parse_timeout(text: str) -> float:
    value = parse_duration(text)
    if value <= 0:
        raise ValueError("expected a duration above 0")
    return value


PROPERTIES = {
    "virtual.host": PropertySpec(
        _parse_vhost, None,
        doc="The only virtual host clients may open; others get Connection.Close 530. "
            "Unset: any.",
    ),
    "maximum.frame.size": PropertySpec(
        _parse_frame_max, 128 * 1024,
        doc="Cap on the frame-max the broker proposes in Connection.Tune (0 = unlimited "
            "is capped too): bounds what the gateway buffers per frame.",
    ),
    "maximum.pending.bytes": PropertySpec(
        parse_size, 64 * 1024,
        doc="Write-buffer size per side at which reading from the other side pauses.",
    ),
    "handshake.timeout": PropertySpec(
        _parse_timeout, 10.0,
        doc="Time from connect to Connection.Open-Ok before both sides are closed.",
    ),
    "close.timeout": PropertySpec(
        _parse_timeout, 5.0,
        doc="How long to wait for Connection.Close-Ok after the gateway sent Close.",
    ),
}

_LEVELS = {"info": log.info, "warn": log.warn}
#: the reason links report for a clean TCP close (IPeer.closed only passes the text)
_CLEAN = Failure(ConnectionDone()).getErrorMessage()


@implementer(ISession)
class AmqpSession:
    """One AMQP client and its broker connection: ISession for the client, RelayOutput
    for the relay, IPeer (through _BrokerPeer) for the broker link."""

    def __init__(self, service: AmqpService, client: ILink) -> None:
        self.service = service
        self.client = client
        self.broker: ILink | None = None
        self.timers: dict[str, IDelayedCall] = {}
        self.relay = AmqpRelay(self, service.relay_settings, client_address=client.peer,
                               websocket=client.is_websocket)

    # -- ISession (the client) -------------------------------------------------------------

    def negotiate(self, offered: list[str]) -> str | None:
        if not offered:
            return None
        if SUBPROTOCOL in offered:
            return SUBPROTOCOL
        raise ConnectionDeny(
            ConnectionDeny.BAD_REQUEST,
            f"service {self.service.config.name!r} speaks AMQP 0-9-1: offer subprotocol "
            f"'{SUBPROTOCOL}' or none (offered: {', '.join(offered)})",
        )

    def opened(self) -> None:
        self.relay.start()

    def received(self, data: bytes, binary: bool) -> None:
        self.relay.client_data(data)

    def closed(self, code: int | None, reason: str) -> None:
        self.relay.client_lost()

    def going_away(self) -> None:
        """Called by the adapter when a draining gateway is about to close this client."""
        self.relay.going_away()

    # -- RelayOutput -----------------------------------------------------------------------

    def to_client(self, data: bytes) -> None:
        self.client.write(data)

    def to_broker(self, data: bytes) -> None:
        if self.broker is not None:
            self.broker.write(data)

    def connect_broker(self) -> None:
        service = self.service
        config = service.config
        target = config.connects[0]
        # Nothing more is read from the client until the broker can take it.
        self.client.pause_reading()
        d = service.connect(service.reactor, target, config.connect_options, _BrokerPeer(self),
                            truststore=service.truststore, identity=service.identity)

        def connected(broker: ILink) -> None:
            self.broker = broker
            limit = service.settings["maximum.pending.bytes"]
            for link in (self.client, broker):
                link.set_write_limit(limit)
            self.client.register_producer(_Throttle(broker))
            broker.register_producer(_Throttle(self.client))
            self.client.resume_reading()
            self.relay.broker_connected()

        def failed(reason: Failure) -> None:
            reason.trap(ConnectError)
            self.relay.broker_failed(f"cannot connect to {target}: {reason.getErrorMessage()}")

        d.addCallbacks(connected, failed)
        d.addErrback(lambda f: log.failure("{service}: broker connection setup failed", f,
                                           service=config.name))

    def close_client(self, code: int, reason: str) -> None:
        self.client.close(code, reason)
        if self.broker is not None:
            # The broker may still owe a Close-Ok: its reads must not stay throttled.
            self.broker.resume_reading()

    def close_broker(self, reason: str) -> None:
        broker, self.broker = self.broker, None
        if broker is not None:
            broker.close(1000, reason)
            self.client.resume_reading()

    def start_timer(self, name: str, seconds: float) -> None:
        self.cancel_timer(name)
        self.timers[name] = self.service.reactor.callLater(seconds, self._expired, name)

    def cancel_timer(self, name: str) -> None:
        call = self.timers.pop(name, None)
        if call is not None and call.active():
            call.cancel()

    def _expired(self, name: str) -> None:
        self.timers.pop(name, None)
        self.relay.timer_expired(name)

    def event(self, level: str, what: str) -> None:
        _LEVELS[level]("{service}: {peer}: {event}", service=self.service.config.name,
                       peer=self.client.peer, event=what)

    # -- the broker link, through _BrokerPeer ----------------------------------------------

    def broker_received(self, data: bytes) -> None:
        self.relay.broker_data(data)

    def broker_closed(self, reason: str) -> None:
        self.broker = None
        self.relay.broker_lost(reason, clean=reason == _CLEAN)


@implementer(IPushProducer)
class _Throttle:
    """The producer one link registers for the other: back-pressure without lifetimes.

    Registering the other link's transport itself would make Twisted call its
    ``stopProducing()`` - a close - as soon as this side disconnects; but the two sides of
    an AMQP relay end separately (the client still owes a Close-Ok when the broker side
    is dropped, the broker owes one after a client's fatal error), so stopping is the
    relay's decision alone.
    """

    def __init__(self, link: ILink) -> None:
        self.link = link

    def pauseProducing(self) -> None:
        self.link.pause_reading()

    def resumeProducing(self) -> None:
        self.link.resume_reading()

    def stopProducing(self) -> None:
        pass


@implementer(IPeer)
class _BrokerPeer:
    def __init__(self, session: AmqpSession) -> None:
        self.session = session

    def received(self, data: bytes, binary: bool) -> None:
        self.session.broker_received(data)

    def closed(self, code: int | None, reason: str) -> None:
        self.session.broker_closed(reason)


class AmqpService(BackendService):
    def __init__(self, reactor: Any, config: ServiceConfig, gateway: GatewayConfig) -> None:
        super().__init__(reactor, config, gateway)
        s = self.settings
        self.relay_settings = RelaySettings(
            virtual_host=s["virtual.host"],
            frame_max=s["maximum.frame.size"],
            handshake_timeout=s["handshake.timeout"],
            close_timeout=s["close.timeout"],
        )

    def session(self, link: ILink) -> AmqpSession:
        return AmqpSession(self, link)


def _check(config: ServiceConfig, resolve: PathResolver) -> Any:
    return check_properties(config, PROPERTIES)


SERVICE_TYPE = ServiceType(
    name="amqp.proxy",
    accept_schemes=frozenset({"ws", "wss", "tcp", "ssl"}),
    connect_schemes=frozenset({"tcp", "ssl"}),
    min_connects=1,
    max_connects=1,
    check=_check,
    build=AmqpService,
    doc="AMQP 0-9-1 over WebSocket or TCP to a broker, with handshake, vhost and framing "
        "checks and the client address added to the broker's client-properties.",
)
