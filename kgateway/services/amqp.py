"""Service ``amqp.proxy``: AMQP 0-9-1 clients over ws/wss/tcp/ssl, relayed to a broker.

    browser / pika --ws|wss|tcp|ssl--> AmqpSession --tcp|ssl--> RabbitMQ
                                         |
                                         +-- AmqpRelay (kgateway.amqp.relay): header and
                                             handshake checks, client address added to
                                             Start-Ok, vhost policy, frame-max/frame-end
                                             enforcement, whole frames per WebSocket message

This module is the service's face: its properties, its settings and its sessions
(``kgateway.amqp.session``, the Twisted driver of the sans-IO ``kgateway.amqp.relay``).

Several ``<connect>`` (the nodes of one RabbitMQ cluster): each new client goes to a live
node, chosen by a :class:`kgateway.balancer.Balancer` as the proxy service does
(``connect.strategy``, ``connect.probe.interval``); a node that refuses the connect is
skipped before the client notices. A node that dies closes only its own clients (as a
broker restart does today), who reconnect and are sent to another node; the cluster, not
the gateway, keeps the queues and messages (see docs/amqp.md).

WebSocket subprotocol: none if the client offers none (``@cloudamqp/amqp-client``,
Kaazing's client), ``amqp`` if offered; offering only others is refused with HTTP 400.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zope.interface import implementer

from kgateway.amqp.relay import RelaySettings
from kgateway.amqp.session import AmqpSession
from kgateway.balancer import Balancer, parse_strategy
from kgateway.config import (
    ConfigError,
    PathResolver,
    Problem,
    ServiceConfig,
    parse_duration,
    parse_size,
)
from kgateway.interfaces import IBackendStatus, ILink
from kgateway.protocols.amqp import FRAME_MIN_SIZE
from kgateway.services.base import (
    BackendService,
    PropertySpec,
    ServiceContext,
    ServiceType,
    check_properties,
)


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
    # the only virtual host clients may open; others get Connection.Close 530 (unset: any)
    "virtual.host": PropertySpec(_parse_vhost, None),
    # cap on the frame-max the broker proposes in Connection.Tune (0 = unlimited is capped
    # too): bounds what the gateway buffers per frame
    "maximum.frame.size": PropertySpec(_parse_frame_max, 128 * 1024),
    # write-buffer size per side at which reading from the other side pauses
    "maximum.pending.bytes": PropertySpec(parse_size, 64 * 1024),
    # time from connect to Connection.Open-Ok before both sides are closed
    "handshake.timeout": PropertySpec(_parse_timeout, 10.0),
    # how long to wait for Connection.Close-Ok after the gateway sent Close
    "close.timeout": PropertySpec(_parse_timeout, 5.0),
    # identity promotion: what the broker gets instead of the client's own credentials,
    # once the gateway has authenticated the client (needs <realm-name>)
    "broker.login": PropertySpec(str, None),
    "broker.passcode": PropertySpec(str, None),
    # with several <connect> (a cluster's nodes): round-robin or least-connections
    "connect.strategy": PropertySpec(parse_strategy, "round-robin"),
    # TCP probe of each <connect> target; default 5sec with several targets, else off
    "connect.probe.interval": PropertySpec(parse_duration, None),
}


@implementer(IBackendStatus)
class AmqpService(BackendService):
    """An AmqpHost for its sessions; its Balancer picks each client's node and says whether
    the brokers are up (IBackendStatus): probes (one at start when probes are off), then
    every client's connect outcome."""

    def __init__(self, context: ServiceContext) -> None:
        super().__init__(context)
        s = self.settings
        config = context.config
        self.pending_limit: int = s["maximum.pending.bytes"]
        credentials = None
        if s["broker.login"] is not None:
            credentials = (s["broker.login"], s["broker.passcode"] or "")
        self.relay_settings = RelaySettings(
            virtual_host=s["virtual.host"],
            frame_max=s["maximum.frame.size"],
            handshake_timeout=s["handshake.timeout"],
            close_timeout=s["close.timeout"],
            broker_credentials=credentials,
        )
        interval = s["connect.probe.interval"]
        if interval is None:
            interval = 5.0 if len(config.connects) > 1 else 0.0
        self.balancer = Balancer(
            self.reactor, config.connects, strategy=s["connect.strategy"],
            probe_interval=interval, probe_timeout=config.connect_options["connect.timeout"],
            name=config.name)

    def session(self, link: ILink) -> AmqpSession:
        return AmqpSession(self, link)

    def backend_status(self) -> dict[str, Any]:
        """For the health service: each node, up or down, and its clients."""
        return self.balancer.status()

    def backend_reachable(self) -> bool:
        return self.balancer.reachable()

    def start(self) -> None:
        if self.balancer.probe_interval > 0:
            self.balancer.start()
        else:
            self.balancer.probe_all()

    def stop(self) -> None:
        self.balancer.stop()


def _check(config: ServiceConfig, resolve: PathResolver) -> Mapping[str, Any]:
    values = check_properties(config, PROPERTIES)
    login, passcode = values["broker.login"], values["broker.passcode"]
    line = next((p.line for p in config.properties.items if p.name.startswith("broker.")),
                config.line)
    if (login is None) != (passcode is None):
        raise ConfigError([Problem(config.file, line, "broker.login and broker.passcode go "
                                                      "together")])
    if login is not None and config.realm_name is None:
        # Fail-closed: mapped credentials for unauthenticated clients would let anyone act
        # as the broker user.
        raise ConfigError([Problem(config.file, line, f"service {config.name!r}: broker.login "
                                                      "replaces the credentials of clients the "
                                                      "gateway authenticated: add a "
                                                      "<realm-name>")])
    return values


SERVICE_TYPE = ServiceType(
    name="amqp.proxy",
    protocol_auth=True,
    accept_schemes=frozenset({"ws", "wss", "tcp", "ssl"}),
    connect_schemes=frozenset({"tcp", "ssl"}),
    min_connects=1,
    max_connects=None,  # the nodes of a cluster: balanced (kgateway.balancer)
    custom_check=_check,
    build=AmqpService,
)
