"""Service ``jms``: STOMP clients over WebSocket on a JMS broker's topics and queues.

    <service><type>jms</type>
      <accept>ws://localhost:8000/jms</accept>     browsers, stomp.py, any STOMP 1.0-1.2
      <connect>stomp://localhost:61613</connect>   the broker's STOMP connector
      <properties> ... see PROPERTIES and docs/jms.md ... </properties>
    </service>

The service keeps ``connection.count`` STOMP connections to the broker for all its clients
(see ``kgateway.jms``). The seed's JNDI-style properties are accepted; since the gateway
speaks STOMP, not OpenWire, an OpenWire ``env.java.naming.provider.url`` (``tcp://``) without
a ``stomp://`` connect is refused at configuration time with the fix in the message.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from twisted.logger import Logger
from zope.interface import implementer

from kgateway import tls
from kgateway.config import (
    URI,
    ConfigError,
    GatewayConfig,
    Problem,
    Properties,
    ServiceConfig,
    parse_duration,
    parse_positive_int,
    parse_size,
    parse_uri,
)
from kgateway.interfaces import IGatewayService, ILink
from kgateway.jms.broker import BrokerConnection, BrokerSettings, TopicFanout
from kgateway.jms.destinations import DestinationMap
from kgateway.jms.session import JmsSession
from kgateway.links import connect as links_connect
from kgateway.services import PathResolver, PropertySpec, ServiceType, check_properties

log = Logger()


def _format(text: str) -> str:
    if text.count("%s") != 1:
        raise ValueError(f"expected a format with exactly one %s, such as dynamicTopics/%s, "
                         f"not {text!r}")
    return text


def _prefix(text: str) -> str:
    if not text.startswith("/") or not text.endswith("/"):
        raise ValueError(f"expected a STOMP destination prefix such as /topic/, not {text!r}")
    return text


def _duration_or_zero(text: str) -> float:
    return 0.0 if text.strip() == "0" else parse_duration(text)


PROPERTIES: dict[str, PropertySpec] = {
    "connection.factory.name": PropertySpec(
        str, "ConnectionFactory", doc="The JNDI connection factory (informational: the "
        "gateway reaches the broker over STOMP)."),
    "context.lookup.topic.format": PropertySpec(
        _format, "dynamicTopics/%s", doc="JNDI name of the topic /topic/NAME."),
    "context.lookup.queue.format": PropertySpec(
        _format, "dynamicQueues/%s", doc="JNDI name of the queue /queue/NAME."),
    "env.java.naming.factory.initial": PropertySpec(
        str, None, doc="The JNDI initial context factory (informational)."),
    "env.java.naming.provider.url": PropertySpec(
        str, None, doc="The broker's JNDI/OpenWire URL; a stomp:// URL here serves as the "
        "<connect> when there is none."),
    "broker.topic.prefix": PropertySpec(_prefix, "/topic/",
                                        doc="How the broker's STOMP names physical topics."),
    "broker.queue.prefix": PropertySpec(_prefix, "/queue/",
                                        doc="How the broker's STOMP names physical queues."),
    "broker.login": PropertySpec(str, None, doc="login header of the gateway's CONNECT."),
    "broker.passcode": PropertySpec(str, None, doc="passcode header of the gateway's CONNECT."),
    "broker.virtual.host": PropertySpec(str, None, doc="host header of the gateway's CONNECT "
                                        "(default: the connect URI's host)."),
    "connection.count": PropertySpec(parse_positive_int, 1,
                                     doc="Shared STOMP connections to the broker."),
    "reconnect.delay": PropertySpec(parse_duration, 0.5,
                                    doc="First wait before reconnecting to the broker."),
    "reconnect.delay.maximum": PropertySpec(parse_duration, 10.0,
                                            doc="The back-off doubles up to this."),
    "maximum.pending.bytes": PropertySpec(
        parse_size, 512 * 1024, doc="Per-client write buffer; see the slow-consumer policy."),
    "maximum.frame.size": PropertySpec(parse_size, 4 * 1024 * 1024,
                                       doc="Largest STOMP frame a client may send."),
    "queue.prefetch": PropertySpec(parse_positive_int, 100,
                                   doc="Unacknowledged messages per queue subscription."),
    "heartbeat.interval": PropertySpec(_duration_or_zero, 10.0,
                                       doc="Client heart-beats the gateway offers (0: none)."),
    "broker.heartbeat.interval": PropertySpec(
        _duration_or_zero, 10.0, doc="Heart-beats asked of the broker both ways (0: none)."),
    "outage.buffer.size": PropertySpec(parse_size, 8 * 1024 * 1024,
                                       doc="Frames kept per broker connection while it is down."),
}

_OPENWIRE_SCHEMES = ("tcp", "ssl", "nio", "nio+ssl", "failover", "vm", "auto", "auto+ssl")


@dataclass(frozen=True)
class JmsSettings:
    broker: URI
    destinations: DestinationMap
    connection_count: int = 1
    reconnect_delay: float = 0.5
    reconnect_delay_maximum: float = 10.0
    maximum_pending_bytes: int = 512 * 1024
    max_frame_size: int = 4 * 1024 * 1024
    prefetch: int = 100
    heartbeat_interval: float = 10.0
    broker_heartbeat_interval: float = 10.0
    outage_buffer_size: int = 8 * 1024 * 1024
    login: str | None = None
    passcode: str | None = None
    virtual_host: str | None = None
    #: broker destination -> last-value cache size
    caches: dict[str, int] = field(default_factory=dict)


def _topics(config: ServiceConfig, elements: list[Any],
            destinations: DestinationMap) -> tuple[dict[str, int], list[Problem]]:
    caches: dict[str, int] = {}
    problems: list[Problem] = []
    for element in elements:
        name = size = None
        for child in element.children:
            if child.name == "name":
                name = child.value.strip()
            elif child.name == "cache.size":
                try:
                    size = parse_positive_int(child.value)
                except ValueError as e:
                    problems.append(Problem(config.file, child.line,
                                            f"bad value for <cache.size>: {e}"))
                    size = 0
            else:
                problems.append(Problem(config.file, child.line,
                                        f"unknown element <{child.name}> in <topic>; "
                                        "expected name or cache.size"))
        if not name:
            problems.append(Problem(config.file, element.line,
                                    "<topic> needs a <name> (the NAME of /topic/NAME)"))
            continue
        if size is None:
            problems.append(Problem(config.file, element.line,
                                    f"<topic> {name!r} needs a <cache.size>"))
            continue
        name = name.removeprefix("/topic/")
        broker = destinations.broker_topic_prefix + destinations.physical("topic", name)
        if broker in caches:
            problems.append(Problem(config.file, element.line, f"<topic> {name!r} given twice"))
        caches[broker] = size
    return caches, problems


def check(config: ServiceConfig, resolve: PathResolver) -> JmsSettings:
    topic_elements = [p for p in config.properties.items if p.name == "topic"]
    flat = replace(config, properties=Properties(
        tuple(p for p in config.properties.items if p.name != "topic")))
    values = check_properties(flat, PROPERTIES)
    problems: list[Problem] = []
    destinations = DestinationMap(values["context.lookup.topic.format"],
                                  values["context.lookup.queue.format"],
                                  values["broker.topic.prefix"], values["broker.queue.prefix"])
    broker: URI | None = config.connects[0] if config.connects else None
    provider = values["env.java.naming.provider.url"]
    if broker is None:
        provider_line = next((p.line for p in config.properties.items
                              if p.name == "env.java.naming.provider.url"), config.line)
        scheme = provider.partition("://")[0].lower() if provider else ""
        if scheme in ("stomp", "stomp+ssl"):
            try:
                broker = parse_uri(provider)
            except ValueError as e:
                problems.append(Problem(config.file, provider_line, str(e)))
        elif provider:
            host = provider.partition("://")[2].split("/")[0].rsplit(":", 1)[0] or "localhost"
            why = ("is OpenWire, which the gateway does not speak"
                   if scheme in _OPENWIRE_SCHEMES else "is not a STOMP URL")
            problems.append(Problem(
                config.file, provider_line,
                f"service {config.name!r}: env.java.naming.provider.url {provider} {why}; "
                f"add <connect>stomp://{host}:61613</connect> naming the broker's STOMP "
                "connector"))
        else:
            problems.append(Problem(
                config.file, config.line,
                f"service {config.name!r} of type jms needs the broker's STOMP connector: add "
                "<connect>stomp://host:61613</connect>"))
    caches, topic_problems = _topics(config, topic_elements, destinations)
    problems += topic_problems
    if problems:
        raise ConfigError(problems)
    assert broker is not None
    return JmsSettings(
        broker=broker, destinations=destinations,
        connection_count=values["connection.count"],
        reconnect_delay=values["reconnect.delay"],
        reconnect_delay_maximum=max(values["reconnect.delay.maximum"],
                                    values["reconnect.delay"]),
        maximum_pending_bytes=values["maximum.pending.bytes"],
        max_frame_size=values["maximum.frame.size"],
        prefetch=values["queue.prefetch"],
        heartbeat_interval=values["heartbeat.interval"],
        broker_heartbeat_interval=values["broker.heartbeat.interval"],
        outage_buffer_size=values["outage.buffer.size"],
        login=values["broker.login"], passcode=values["broker.passcode"],
        virtual_host=values["broker.virtual.host"], caches=caches)


@implementer(IGatewayService)
class JmsService:
    """The running service: shared broker connections, topic fan-out, sessions."""

    #: how broker connections are made (tests give an in-memory one)
    connect: Callable[..., Any] = staticmethod(links_connect)

    def __init__(self, reactor: Any, config: ServiceConfig, gateway: GatewayConfig) -> None:
        self.reactor = reactor
        self.config = config
        self.settings: JmsSettings = config.settings
        self.destinations = self.settings.destinations
        # Qualifies temporary destination names, so gateways and restarts never collide.
        self.instance = uuid.uuid4().hex[:8]
        s = self.settings
        self.broker_settings = BrokerSettings(
            uri=s.broker, options=config.connect_options, login=s.login, passcode=s.passcode,
            virtual_host=s.virtual_host, reconnect_delay=s.reconnect_delay,
            reconnect_delay_maximum=s.reconnect_delay_maximum,
            outbox_limit=s.outage_buffer_size, max_frame_size=max(s.max_frame_size, 16 << 20),
            truststore=gateway.security.truststore_file,
            identity=tls.connect_identity(gateway.security, config.connect_options),
            heartbeat=s.broker_heartbeat_interval)
        self.connections = [self._connection(f"{config.name}#{i + 1}")
                            for i in range(s.connection_count)]
        self.fanout = TopicFanout(self.connections, s.caches)
        self.sessions: set[JmsSession] = set()
        self.slow_consumers = 0
        self._next = itertools.count()

    def _connection(self, label: str, client_id: str | None = None) -> BrokerConnection:
        # Looked up at dial time, so a test can swap self.connect after construction.
        connection = BrokerConnection(self.reactor, self.broker_settings, label,
                                      client_id=client_id,
                                      connect=lambda *a, **k: self.connect(*a, **k))

        def writable(ok: bool) -> None:
            # The broker link is backed up: stop reading from the clients that send on it,
            # so a fast publisher cannot make the gateway buffer without bound.
            for session in list(self.sessions):
                if session.connection is connection:
                    session.set_reading(ok)

        connection.on_writable.append(writable)
        return connection

    def session(self, link: ILink) -> JmsSession:
        return JmsSession(self, link)

    def pick_connection(self) -> BrokerConnection:
        return self.connections[next(self._next) % len(self.connections)]

    def dedicated_connection(self, client_id: str, tag: str) -> BrokerConnection:
        return self._connection(f"{self.config.name} client-id {client_id} ({tag})", client_id)

    def start(self) -> None:
        log.info("jms service {service}: broker {broker} over {count} STOMP connection(s)",
                 service=self.config.name, broker=str(self.settings.broker),
                 count=len(self.connections))
        for connection in self.connections:
            connection.start()
        self.fanout.start(lambda d: self.destinations.to_client(d, ""))

    def stop(self) -> None:
        for session in list(self.sessions):
            session.fail("gateway shutting down", "the gateway is stopping")
        for connection in self.connections:
            connection.stop()


SERVICE_TYPE = ServiceType(
    name="jms",
    accept_schemes=frozenset({"ws", "wss", "tcp", "ssl"}),
    connect_schemes=frozenset({"stomp", "stomp+ssl"}),
    min_connects=0,
    max_connects=1,
    check=check,
    build=JmsService,
    doc="STOMP clients on a JMS broker's topics and queues through shared broker connections.",
)
