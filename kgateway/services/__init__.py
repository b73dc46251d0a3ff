"""The service table: each ``<type>`` of ``<service>`` maps to a checker and a builder.

    SERVICE_TYPES["proxy"] = ServiceType(accept/connect schemes, check(), build())

``check`` runs while the configuration is loaded, before anything listens, and turns the
service's ``<properties>`` into its own frozen settings (or raises ConfigError with the line).
``build`` makes the running IGatewayService. Adding a service type means adding one module
and one line to ``SERVICE_TYPES``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from zope.interface import implementer

from kgateway import tls
from kgateway.config import ConfigError, GatewayConfig, Problem, ServiceConfig
from kgateway.interfaces import IGatewayService, ILink, ISession
from kgateway.links import connect

#: A property parser: text -> value, raising ValueError with a message saying what was expected.
Parser = Callable[[str], Any]
PathResolver = Callable[[str], str]


@dataclass(frozen=True)
class PropertySpec:
    parse: Parser
    default: Any = None
    required: bool = False
    doc: str = ""


def check_properties(
    config: ServiceConfig, specs: Mapping[str, PropertySpec], *, allow_children: bool = False
) -> dict[str, Any]:
    """Validate a service's flat ``<properties>`` against *specs*; defaults fill the gaps."""
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
        if prop.children and not allow_children:
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
    return values


@dataclass(frozen=True)
class ServiceType:
    name: str
    accept_schemes: frozenset[str]
    connect_schemes: frozenset[str]
    min_connects: int
    max_connects: int | None
    check: Callable[[ServiceConfig, PathResolver], Any]
    build: Callable[[Any, ServiceConfig, GatewayConfig], IGatewayService]
    doc: str = ""


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
    """For service types that connect to a back end per client (proxy, amqp.proxy)."""

    #: how back-end connections are made (tests give an in-memory one)
    connect = staticmethod(connect)

    def __init__(self, reactor: Any, config: ServiceConfig, gateway: GatewayConfig) -> None:
        super().__init__(config)
        self.reactor = reactor
        self.settings = config.settings
        self.truststore = gateway.security.truststore_file
        # The client certificate for mutual TLS towards the back end (ssl.present-certificate).
        self.identity = tls.connect_identity(gateway.security, config.connect_options)


def _table() -> dict[str, ServiceType]:
    from kgateway.services import amqp, directory, echo, health, jms, metrics, proxy

    return {t.name: t for t in (echo.SERVICE_TYPE, directory.SERVICE_TYPE, proxy.SERVICE_TYPE,
                                amqp.SERVICE_TYPE, health.SERVICE_TYPE, jms.SERVICE_TYPE,
                                metrics.SERVICE_TYPE)}


SERVICE_TYPES: Mapping[str, ServiceType] = _table()
