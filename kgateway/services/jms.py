"""Service ``jms``: STOMP clients over WebSocket on a JMS broker's topics and queues.

    <service><type>jms</type>
      <accept>ws://localhost:8000/jms</accept>     browsers, stomp.py, any STOMP 1.0-1.2
      <connect>stomp://localhost:61613</connect>   the broker's STOMP connector
      <properties> ... see PROPERTIES and docs/jms.md ... </properties>
    </service>

The service keeps ``connection.count`` STOMP connections to the broker for all its clients
(see ``kgateway.jms``). The seed's JNDI-style properties are accepted as pasted: without a
``<connect>``, the brokers' STOMP connectors are derived from ``env.java.naming.provider.url``
(``tcp://mq:61616`` -> ``stomp://mq:61613``; ``failover:(...)`` -> several brokers; see
``kgateway.jms.provider``), logged at start and shown by ``kgateway check``.

Several brokers (several ``<connect>``, or a failover URL): each broker connection starts on
one of them (spread over them in turn; at random or on the first for a failover URL, as its
``randomize`` says) and, when its broker is lost or unreachable, moves to the next one and
subscribes again there (``kgateway.jms.broker``). The brokers are expected to be one cluster
(an ActiveMQ network of brokers), which carries messages between them.
"""

from __future__ import annotations

import enum
import itertools
import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from twisted.logger import Logger
from zope.interface import implementer

from kgateway.config import (
    URI,
    ConfigError,
    PathResolver,
    Problem,
    Properties,
    ServiceConfig,
    parse_duration,
    parse_positive_int,
    parse_size,
)
from kgateway.interfaces import IBackendStatus, ILink, IMessageStats
from kgateway.jms.broker import BrokerConnection, BrokerSettings, State
from kgateway.jms.destinations import DestinationMap
from kgateway.jms.fanout import TopicFanout
from kgateway.jms.provider import STOMP_PORT, STOMP_SSL_PORT, ProviderBrokers, parse_provider_url
from kgateway.jms.rules import DEFAULTS, DestinationRule, DestinationRules, Pattern
from kgateway.jms.session import Admission, JmsSession
from kgateway.services.base import (
    BackendService,
    PropertySpec,
    ServiceContext,
    ServiceType,
    check_properties,
)

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


def _positive_duration(text: str) -> float:
    value = parse_duration(text)
    if value <= 0:
        raise ValueError(f"expected a duration above zero such as 20sec, not {text!r}")
    return value


def _default(text: str) -> str:
    value = text.strip()
    if value not in DEFAULTS:
        raise ValueError(f"expected plain or none, not {text!r}")
    return value


PROPERTIES: dict[str, PropertySpec] = {
    # the JNDI names of the seed configurations (informational: the gateway speaks STOMP)
    "connection.factory.name": PropertySpec(str, "ConnectionFactory"),
    "env.java.naming.factory.initial": PropertySpec(str, None),
    # JNDI names of /topic/NAME and /queue/NAME
    "context.lookup.topic.format": PropertySpec(_format, "dynamicTopics/%s"),
    "context.lookup.queue.format": PropertySpec(_format, "dynamicQueues/%s"),
    # the broker's JNDI/OpenWire URL; a stomp:// URL here serves as the <connect>
    "env.java.naming.provider.url": PropertySpec(str, None),
    # how the broker's STOMP names physical topics and queues
    "broker.topic.prefix": PropertySpec(_prefix, "/topic/"),
    "broker.queue.prefix": PropertySpec(_prefix, "/queue/"),
    # the gateway's own CONNECT: login, passcode, host (default: the connect URI's host)
    "broker.login": PropertySpec(str, None),
    "broker.passcode": PropertySpec(str, None),
    "broker.virtual.host": PropertySpec(str, None),
    # shared STOMP connections to the broker, and their reconnect back-off
    "connection.count": PropertySpec(parse_positive_int, 1),
    "reconnect.delay": PropertySpec(parse_duration, 0.5),
    "reconnect.delay.maximum": PropertySpec(parse_duration, 10.0),
    # per-client write buffer (see the slow-consumer policy in docs/jms.md)
    "maximum.pending.bytes": PropertySpec(parse_size, 512 * 1024),
    # the largest STOMP frame a client may send
    "maximum.frame.size": PropertySpec(parse_size, 4 * 1024 * 1024),
    # unacknowledged messages per queue subscription
    "queue.prefetch": PropertySpec(parse_positive_int, 100),
    # heart-beats offered to clients, and asked of the broker both ways (0: none)
    "heartbeat.interval": PropertySpec(_duration_or_zero, 10.0),
    "broker.heartbeat.interval": PropertySpec(_duration_or_zero, 10.0),
    # frames kept per broker connection while it is down
    "outage.buffer.size": PropertySpec(parse_size, 8 * 1024 * 1024),
    # identity promotion: the header naming the authenticated user on every SEND (the
    # client's own value is always removed; a JMS property name, usable in selectors)
    "user.header": PropertySpec(str, "kgateway_user"),
    # -- limits (docs/jms.md "Limits"): every client is held to them, whoever it is --------
    # plain: /topic/NAME and /queue/NAME with plain names; none: only what a rule allows
    "destinations.default": PropertySpec(_default, "plain"),
    # a socket that sends no complete CONNECT within this is sent ERROR and closed
    "connect.timeout": PropertySpec(_positive_duration, 20.0),
    # nothing at all received from a client for this long: ERROR, close (0: no limit)
    "idle.timeout": PropertySpec(_duration_or_zero, 600.0),
    # subscriptions one client connection may hold
    "maximum.subscriptions": PropertySpec(parse_positive_int, 1000),
    # broker subscriptions the whole service may hold (shared topics + queue consumers)
    "maximum.broker.subscriptions": PropertySpec(parse_positive_int, 2000),
    # one client's frames sent toward the broker and not yet confirmed by it: past either,
    # only that client's reads pause until the broker catches up
    "maximum.inflight.bytes": PropertySpec(parse_size, 256 * 1024),
    "maximum.inflight.frames": PropertySpec(parse_positive_int, 32),
    # new broker subscriptions of all clients waiting for the broker at once; SUBSCRIBEs
    # beyond wait their turn (the client's reads paused), so floods cannot queue up
    # thousands of them ahead of everyone else's frames on the shared connection
    "maximum.pending.subscribes": PropertySpec(parse_positive_int, 64),
    # the brokers' STOMP ports when they are derived from an OpenWire provider URL
    "broker.stomp.port": PropertySpec(parse_positive_int, STOMP_PORT),
    "broker.stomp.ssl.port": PropertySpec(parse_positive_int, STOMP_SSL_PORT),
}

class BrokerOrder(enum.Enum):
    """Which broker each broker connection starts on, when there are several."""

    SPREAD = "spread"  # connection i on broker i (several <connect>)
    FIRST = "first"  # every connection on the first (failover URL with randomize=false)
    RANDOM = "random"  # each on a random one (failover URL, ActiveMQ's default)


@dataclass(frozen=True)
class JmsSettings:
    broker: URI
    destinations: DestinationMap
    connection_count: int = 1
    reconnect_delay: float = 0.5
    reconnect_delay_maximum: float = 10.0
    maximum_pending_bytes: int = 512 * 1024
    maximum_frame_size: int = 4 * 1024 * 1024
    queue_prefetch: int = 100
    heartbeat_interval: float = 10.0
    broker_heartbeat_interval: float = 10.0
    outage_buffer_size: int = 8 * 1024 * 1024
    user_header: str = "kgateway_user"
    login: str | None = None
    passcode: str | None = None
    virtual_host: str | None = None
    #: broker destination -> last-value cache size
    caches: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    rules: DestinationRules = DestinationRules()
    connect_timeout: float = 20.0
    idle_timeout: float = 600.0
    maximum_subscriptions: int = 1000
    maximum_broker_subscriptions: int = 2000
    maximum_inflight_bytes: int = 256 * 1024
    maximum_inflight_frames: int = 32
    maximum_pending_subscribes: int = 64
    #: every broker (``broker`` first); a lost one is replaced by the next
    brokers: tuple[URI, ...] = ()
    order: BrokerOrder = BrokerOrder.SPREAD
    #: the provider URL the brokers were read from, if they come from there
    provider: ProviderBrokers | None = None
    provider_url: str | None = None

    def describe(self) -> list[str]:
        """What ``kgateway check`` adds for this service: where it really connects."""
        brokers = self.brokers or (self.broker,)
        lines = []
        provider = self.provider
        if provider is not None:
            how = ("STOMP connector derived from" if provider.derived else "from")
            note = ("; the port is ActiveMQ's STOMP port unless broker.stomp.port / "
                    "broker.stomp.ssl.port say otherwise" if provider.derived else "")
            lines += [f"  connect: {uri}" for uri in brokers]
            lines.append(f"    ({how} env.java.naming.provider.url {self.provider_url}"
                         f"{note})")
            if provider.ignored:
                lines.append(f"    failover options ignored (OpenWire only): "
                             f"{_options(provider.ignored)}")
        if len(brokers) > 1:
            lines.append(f"  fail-over: {len(brokers)} brokers; broker connections start "
                         f"{_ORDER_TEXT[self.order]} and move to the next when theirs is lost")
        return lines

    def where(self) -> str:
        """The brokers and where they come from, for the start log."""
        brokers = self.brokers or (self.broker,)
        text = ", ".join(str(uri) for uri in brokers)
        provider = self.provider
        if provider is not None:
            how = ("STOMP connector(s) derived from" if provider.derived else "from")
            text += f" ({how} env.java.naming.provider.url {self.provider_url}"
            if provider.ignored:
                text += f"; failover options ignored: {_options(provider.ignored)}"
            text += ")"
        if len(brokers) > 1:
            text += f"; connections start {_ORDER_TEXT[self.order]} and fail over to the next"
        return text


def _options(options: Mapping[str, str]) -> str:
    return "&".join(f"{k}={v}" for k, v in options.items())


_ORDER_TEXT = {BrokerOrder.SPREAD: "on each in turn", BrokerOrder.FIRST: "on the first",
               BrokerOrder.RANDOM: "on a random one"}


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


def _rules(config: ServiceConfig, elements: list[Any]
           ) -> tuple[tuple[DestinationRule, ...], list[Problem]]:
    """``<destination-rule>`` elements: optional ``<role>``s, ``<subscribe>``/``<publish>``
    patterns (each repeatable)."""
    rules: list[DestinationRule] = []
    problems: list[Problem] = []
    for element in elements:
        roles: list[str] = []
        patterns: dict[str, list[Pattern]] = {"subscribe": [], "publish": []}
        for child in element.children:
            value = child.value.strip()
            if child.name == "role":
                if not value:
                    problems.append(Problem(config.file, child.line, "<role> is empty"))
                    continue
                roles.append(value)
                if config.realm_name is None:
                    problems.append(Problem(
                        config.file, child.line,
                        f"<destination-rule> <role>{value}</role> needs authenticated clients, "
                        f"but service {config.name!r} has no <realm-name>: add one, or drop "
                        "the <role> to make the rule apply to every client"))
            elif child.name in patterns:
                try:
                    patterns[child.name].append(Pattern.parse(value))
                except ValueError as e:
                    problems.append(Problem(config.file, child.line,
                                            f"bad <{child.name}> in <destination-rule>: {e}"))
            else:
                problems.append(Problem(config.file, child.line,
                                        f"unknown element <{child.name}> in <destination-rule>;"
                                        " expected role, subscribe or publish"))
        if element.value.strip() and not element.children:
            problems.append(Problem(config.file, element.line,
                                    "<destination-rule> takes <role>, <subscribe> and <publish> "
                                    "elements, not text"))
            continue
        if not patterns["subscribe"] and not patterns["publish"]:
            problems.append(Problem(config.file, element.line,
                                    "<destination-rule> needs at least one <subscribe> or "
                                    "<publish> pattern"))
            continue
        rules.append(DestinationRule(frozenset(roles), tuple(patterns["subscribe"]),
                                     tuple(patterns["publish"]), element.line))
    return tuple(rules), problems


_NESTED = ("topic", "destination-rule")


def _check(config: ServiceConfig, resolve: PathResolver) -> JmsSettings:
    topic_elements = [p for p in config.properties.items if p.name == "topic"]
    rule_elements = [p for p in config.properties.items if p.name == "destination-rule"]
    flat = replace(config, properties=Properties(
        tuple(p for p in config.properties.items if p.name not in _NESTED)))
    values = check_properties(flat, PROPERTIES)
    problems: list[Problem] = []
    destinations = DestinationMap(values["context.lookup.topic.format"],
                                  values["context.lookup.queue.format"],
                                  values["broker.topic.prefix"], values["broker.queue.prefix"])
    brokers: tuple[URI, ...] = tuple(config.connects)
    provider_url = values["env.java.naming.provider.url"]
    provider: ProviderBrokers | None = None
    order = BrokerOrder.SPREAD
    if not brokers:
        provider_line = next((p.line for p in config.properties.items
                              if p.name == "env.java.naming.provider.url"), config.line)
        if provider_url:
            try:
                provider = parse_provider_url(provider_url,
                                              stomp_port=values["broker.stomp.port"],
                                              stomp_ssl_port=values["broker.stomp.ssl.port"])
            except ValueError as e:
                problems.append(Problem(
                    config.file, provider_line,
                    f"service {config.name!r}: env.java.naming.provider.url: {e}; or add "
                    "<connect>stomp://host:61613</connect> naming the broker's STOMP "
                    "connector"))
            else:
                brokers = provider.brokers
                if len(brokers) > 1:
                    order = BrokerOrder.RANDOM if provider.randomize else BrokerOrder.FIRST
        else:
            problems.append(Problem(
                config.file, config.line,
                f"service {config.name!r} of type jms needs the broker's STOMP connector: add "
                "<connect>stomp://host:61613</connect> (or an env.java.naming.provider.url)"))
    caches, topic_problems = _topics(config, topic_elements, destinations)
    problems += topic_problems
    rules, rule_problems = _rules(config, rule_elements)
    problems += rule_problems
    if problems:
        raise ConfigError(problems)
    given = {p.name for p in config.properties.items}
    delay, maximum = values["reconnect.delay"], values["reconnect.delay.maximum"]
    # The failover URL's own delays apply unless the service sets ours.
    if provider is not None and provider.reconnect_delay and "reconnect.delay" not in given:
        delay = provider.reconnect_delay
    if (provider is not None and provider.reconnect_delay_maximum
            and "reconnect.delay.maximum" not in given):
        maximum = provider.reconnect_delay_maximum
    return JmsSettings(
        broker=brokers[0], destinations=destinations,
        connection_count=values["connection.count"],
        reconnect_delay=delay,
        reconnect_delay_maximum=max(maximum, delay),
        maximum_pending_bytes=values["maximum.pending.bytes"],
        maximum_frame_size=values["maximum.frame.size"],
        queue_prefetch=values["queue.prefetch"],
        heartbeat_interval=values["heartbeat.interval"],
        broker_heartbeat_interval=values["broker.heartbeat.interval"],
        outage_buffer_size=values["outage.buffer.size"],
        user_header=values["user.header"],
        login=values["broker.login"], passcode=values["broker.passcode"],
        virtual_host=values["broker.virtual.host"], caches=MappingProxyType(caches),
        rules=DestinationRules(values["destinations.default"], rules),
        connect_timeout=values["connect.timeout"], idle_timeout=values["idle.timeout"],
        maximum_subscriptions=values["maximum.subscriptions"],
        maximum_broker_subscriptions=values["maximum.broker.subscriptions"],
        maximum_inflight_bytes=values["maximum.inflight.bytes"],
        maximum_inflight_frames=values["maximum.inflight.frames"],
        maximum_pending_subscribes=values["maximum.pending.subscribes"],
        brokers=brokers, order=order, provider=provider,
        provider_url=provider_url if provider is not None else None)


@implementer(IBackendStatus, IMessageStats)
class JmsService(BackendService):
    """The running service, a JmsHost for its sessions: shared broker connections, topic
    fan-out, sessions. Health and metrics see its shared broker connections as its back end
    (up while one is CONNECTED, degraded while some are not) and its fan-out's counters."""

    def __init__(self, context: ServiceContext) -> None:
        super().__init__(context)
        config = context.config
        self.settings: JmsSettings = config.settings
        self.destinations = self.settings.destinations
        # Qualifies temporary destination names, so gateways and restarts never collide.
        self.instance = uuid.uuid4().hex[:8]
        s = self.settings
        self.broker_settings = BrokerSettings(
            uri=s.broker, options=config.connect_options, login=s.login, passcode=s.passcode,
            virtual_host=s.virtual_host, reconnect_delay=s.reconnect_delay,
            reconnect_delay_maximum=s.reconnect_delay_maximum,
            outage_buffer_size=s.outage_buffer_size,
            max_frame_size=max(s.maximum_frame_size, 16 << 20),
            heartbeat=s.broker_heartbeat_interval, brokers=s.brokers or (s.broker,))
        #: picks the first broker of a connection made with BrokerOrder.RANDOM
        self.random = random.Random()
        self._starts = itertools.count()
        self.connections = [self._connection(f"{config.name}#{i + 1}")
                            for i in range(s.connection_count)]
        self.fanout = TopicFanout(self.connections, s.caches)
        self.admission = Admission(s.maximum_pending_subscribes)
        self.sessions: set[JmsSession] = set()
        #: client-id connections of live sessions (their subscriptions count too)
        self.dedicated: set[BrokerConnection] = set()
        self._next = itertools.count()

    def _first_broker(self) -> int:
        """The broker a new broker connection starts on (an index into the brokers)."""
        count = len(self.broker_settings.brokers)
        order = self.settings.order
        if order is BrokerOrder.FIRST or count == 1:
            return 0
        if order is BrokerOrder.RANDOM:
            return self.random.randrange(count)
        return next(self._starts) % count

    def _connection(self, label: str, client_id: str | None = None) -> BrokerConnection:
        return BrokerConnection(self.reactor, self.broker_settings, label, self.connector,
                                client_id=client_id, first=self._first_broker())

    def session(self, link: ILink) -> JmsSession:
        return JmsSession(self, link)

    def opened(self, session: JmsSession) -> None:
        self.sessions.add(session)

    def ended(self, session: JmsSession) -> None:
        self.sessions.discard(session)
        if session.dedicated is not None:
            self.dedicated.discard(session.dedicated)

    def broker_subscriptions(self) -> int:
        """Subscriptions the service holds on the broker: shared topics and queue consumers
        on the shared connections, and those of client-id connections."""
        return (sum(len(c.subscriptions) for c in self.connections)
                + sum(len(c.subscriptions) for c in self.dedicated))

    def pick_connection(self) -> BrokerConnection:
        """The shared connections in turn, skipping those between brokers while others are
        connected (a new client's frames would wait in the outbox meanwhile)."""
        count = len(self.connections)
        start = next(self._next)
        for i in range(count):
            connection = self.connections[(start + i) % count]
            if connection.connected:
                return connection
        return self.connections[start % count]

    def dedicated_connection(self, client_id: str, tag: str) -> BrokerConnection:
        connection = self._connection(f"{self.config.name} client-id {client_id} ({tag})",
                                      client_id)
        self.dedicated.add(connection)
        return connection

    def backend_status(self) -> dict[str, dict[str, object]]:
        """For health, metrics and the status page, per broker: up while one of the shared
        connections is CONNECTED on it (``active`` of them), else the last error seen on it.
        With one broker, also the service's own view: its connections, how many are
        connected (``degraded`` while only some are), its clients, the bytes buffered for
        the broker and the failed connects."""
        connections = self.connections
        brokers = self.broker_settings.brokers or (self.settings.broker,)
        status: dict[str, dict[str, object]] = {}
        for index, uri in enumerate(brokers):
            on = [c for c in connections if c.current == index and c.state is State.CONNECTED]
            entry: dict[str, object] = {"up": bool(on), "active": len(on)}
            errors = [c.broker_errors[index] for c in connections if index in c.broker_errors]
            if not on and errors:
                entry["error"] = errors[-1]
            status[str(uri)] = entry
        if len(brokers) == 1:
            (entry,) = status.values()
            up = [c for c in connections if c.state is State.CONNECTED]
            entry.update({
                "connections": len(connections),
                "connected": len(up),
                "clients": len(self.sessions),
                "buffered": sum(c.buffered for c in connections),
                "connect_failures": sum(c.failures for c in connections),
            })
            errors_now = sorted({c.last_error for c in connections
                                 if c.state is not State.CONNECTED and c.last_error})
            if errors_now:
                entry["error"] = "; ".join(errors_now)
            if up and len(up) < len(connections):
                entry["degraded"] = True
        return status

    def backend_reachable(self) -> bool:
        return any(c.state is State.CONNECTED for c in self.connections)

    def message_stats(self) -> dict[str, int]:
        broker_subs, client_subs = self.fanout.subscriptions()
        return {"broker_subscriptions": broker_subs,
                "client_subscriptions": sum(len(s.subscriptions) for s in self.sessions),
                "topic_client_subscriptions": client_subs,
                "messages_delivered": self.fanout.deliveries.messages,
                "slow_consumers": self.fanout.deliveries.slow_consumers}

    def start(self) -> None:
        log.info("jms service {service}: broker(s) {brokers} over {count} STOMP "
                 "connection(s)", service=self.config.name, brokers=self.settings.where(),
                 broker=str(self.settings.broker), count=len(self.connections))
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
    protocol_auth=True,
    accept_schemes=frozenset({"ws", "wss", "tcp", "ssl"}),
    connect_schemes=frozenset({"stomp", "stomp+ssl"}),
    min_connects=0,
    max_connects=None,  # several brokers of one cluster: fail-over (kgateway.jms.broker)
    custom_check=_check,
    build=JmsService,
)
