"""What the service types share: the ServiceType record, property checking, base classes.

    ServiceType(name, accept/connect schemes, connect counts, properties, check, build)
        check(config, resolve) -> the service's settings (runs while the file loads)
        build(ServiceContext) -> the running IGatewayService

A ServiceContext carries what every service may need from the gateway: the reactor, its
own config, the whole gateway config, and the Connector it reaches back ends through.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from zope.interface import implementer

from kgateway.auth.gate import Gate
from kgateway.config import (
    ConfigError,
    GatewayConfig,
    PathResolver,
    Problem,
    ServiceConfig,
)
from kgateway.interfaces import (
    IBackendStatus,
    IConnector,
    IGatewayService,
    IGatewayStatus,
    ILink,
    ISession,
)
from kgateway.services.recent import RecentEvents
from kgateway.transport.tracker import ConnectionTracker

#: A property parser: text -> value, raising ValueError with a message saying what was expected.
Parser = Callable[[str], Any]


@dataclass(frozen=True)
class PropertySpec:
    parse: Parser
    default: Any = None
    required: bool = False


def check_properties(config: ServiceConfig,
                     specs: Mapping[str, PropertySpec]) -> Mapping[str, Any]:
    """Validate a service's flat ``<properties>`` against *specs*; defaults fill the gaps.

    Returns a read-only mapping of every property name to its value.
    """
    problems: list[Problem] = []
    values: dict[str, Any] = {name: spec.default for name, spec in specs.items()}
    seen: set[str] = set()
    for prop in config.properties.items:
        spec = specs.get(prop.name)
        if spec is None:
            expected = ", ".join(sorted(specs)) or "none"
            problems.append(Problem(config.file, prop.line,
                                    f"unknown property <{prop.name}> for a {config.type} "
                                    f"service; expected: {expected}"))
            continue
        if prop.name in seen:
            problems.append(Problem(config.file, prop.line, f"property <{prop.name}> given twice"))
            continue
        seen.add(prop.name)
        if prop.children:
            problems.append(Problem(config.file, prop.line,
                                    f"property <{prop.name}> takes text, not elements"))
            continue
        try:
            values[prop.name] = spec.parse(prop.value)
        except ValueError as e:
            problems.append(Problem(config.file, prop.line, f"bad value for <{prop.name}>: {e}"))
    for name, spec in specs.items():
        if spec.required and name not in seen:
            problems.append(Problem(config.file, config.line,
                                    f"service {config.name!r} needs property <{name}>"))
    if problems:
        raise ConfigError(problems)
    return MappingProxyType(values)


@implementer(IGatewayStatus)
@dataclass(eq=False)
class GatewayStatus:
    """The running gateway as health, metrics and the status page see it (IGatewayStatus):
    made by the gateway before its services, filled in as they are built, ``draining`` set
    on SIGTERM."""

    tracker: ConnectionTracker
    worker: int | None = None
    draining: bool = False
    services: dict[str, IGatewayService] = field(default_factory=dict)
    #: a DMZ gateway's Enterprise Shield Backplanes (``ready_count()``), if it has any
    backplanes: Any = None
    #: the last warnings and errors, kept by an observer the gateway installs while running
    recent: RecentEvents = field(default_factory=RecentEvents)
    started: float = field(default_factory=time.time)

    def shield_ready(self) -> dict[str, int]:
        """Prepared reverse connections per backplane URI (empty without Enterprise Shield)."""
        if self.backplanes is None:
            return {}
        ready: dict[str, int] = self.backplanes.ready_count()
        return ready

    def backends(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Per service with back ends, per target: ``{"up": bool, ...}``.

        What the services say (``IBackendStatus``: proxy targets, the amqp.proxy broker, the
        jms broker connections), and for a DMZ gateway's ``reverse+wss://`` connects the
        reverse connections ready (``"ready"``): with none ready no client can be served.
        """
        ready = self.shield_ready()
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for name, svc in self.services.items():
            status: dict[str, dict[str, Any]] = {}
            if IBackendStatus.providedBy(svc):
                status = {target: dict(state) for target, state in svc.backend_status().items()}
            for uri in svc.config.connects:
                if uri.is_reverse:
                    count = ready.get(str(uri), 0)
                    entry = status.setdefault(str(uri), {})
                    entry.update(up=count > 0, ready=count)
                    entry.pop("error", None)
                    if count == 0:
                        entry["error"] = "no reverse connection from the internal gateway ready"
            if status:
                out[name] = status
        return out


@dataclass(frozen=True)
class ServiceContext:
    """What a service type's ``build`` gets from the gateway."""

    reactor: Any
    config: ServiceConfig
    gateway: GatewayConfig
    connector: IConnector
    status: GatewayStatus
    #: the service's realm and authorization-constraint, if it has a <realm-name>
    gate: Gate | None = None


@dataclass(frozen=True)
class ServiceType:
    name: str
    accept_schemes: frozenset[str]
    build: Callable[[ServiceContext], IGatewayService]
    connect_schemes: frozenset[str] = frozenset()
    min_connects: int = 0
    max_connects: int | None = 0
    #: the flat <properties> it takes; used by the default check
    properties: Mapping[str, PropertySpec] = field(default_factory=dict)
    #: check(config, resolve) -> settings; default: check_properties against ``properties``
    custom_check: Callable[[ServiceConfig, PathResolver], Any] | None = None
    #: clients may authenticate inside the protocol (STOMP CONNECT, AMQP Start-Ok), so the
    #: handshake lets a client without credentials in and the session authenticates it
    protocol_auth: bool = False

    @property
    def check(self) -> Callable[[ServiceConfig, PathResolver], Any]:
        if self.custom_check is not None:
            return self.custom_check
        return lambda config, resolve: check_properties(config, self.properties)


@implementer(IGatewayService)
class ServiceBase:
    """What service types share: their config; nothing to start or stop unless they say so;
    no sessions unless they provide them (directory, health and metrics only serve HTTP)."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config

    def session(self, link: ILink) -> ISession:
        raise NotImplementedError(f"a {self.config.type} service only serves HTTP")

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


class BackendService(ServiceBase):
    """For service types that reach back ends (proxy, amqp.proxy, jms): the reactor, the
    settings and the Connector."""

    def __init__(self, context: ServiceContext) -> None:
        super().__init__(context.config)
        self.reactor = context.reactor
        self.settings: Any = context.config.settings
        self.connector = context.connector
        #: the service's realm and authorization-constraint, if it has a <realm-name>
        self.gate = context.gate
