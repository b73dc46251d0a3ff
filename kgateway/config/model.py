"""The gateway-config model: frozen values the loader builds and every other floor reads.

    GatewayConfig(file, properties, services: ServiceConfig..., security: Security)
    ServiceConfig(name, type, accepts, connects, properties, accept_options, connect_options,
                  cross_site_constraints, realm_name, required_roles, settings)

``Problem`` and ``ConfigError`` are how every floor of the loader reports what is wrong:
with a file and a line, all problems together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from kgateway.auth.settings import RealmSettings, TokenSources
from kgateway.config.options import Options
from kgateway.config.values import URI


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class ConfigError(Exception):
    """One or more problems in a configuration file; ``str()`` lists them all."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class Property:
    """One element of a service's ``<properties>``: text, or nested children (``<topic>``)."""

    name: str
    value: str
    line: int
    children: tuple[Property, ...] = ()


@dataclass(frozen=True)
class Properties:
    """A service's ``<properties>``, kept in document order, with line numbers for checks."""

    items: tuple[Property, ...] = ()


@dataclass(frozen=True)
class CrossSiteConstraint:
    allow_origin: str
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    maximum_age: float | None = None


@dataclass(frozen=True)
class ServiceConfig:
    name: str
    type: str
    accepts: tuple[URI, ...]
    connects: tuple[URI, ...]
    properties: Properties
    accept_options: Options
    connect_options: Options
    description: str = ""
    cross_site_constraints: tuple[CrossSiteConstraint, ...] = ()
    realm_name: str | None = None
    #: <authorization-constraint>: require-role (any one admits; "*" any user)
    required_roles: tuple[str, ...] = ()
    #: <authorization-constraint><require-valid-user/>
    require_valid_user: bool = False
    file: str = ""
    line: int = 0
    #: what the service type's checker made of ``properties`` (its own frozen settings)
    settings: Any = None


@dataclass(frozen=True)
class RealmConfig:
    """One ``<security><realm>``: its login modules' settings and token sources."""

    name: str
    settings: RealmSettings
    sources: TokenSources
    line: int


@dataclass(frozen=True)
class Keystore:
    """One ``<keystore>``: PEM certificate + key files, or a PKCS#12 file and password."""

    certificate_file: str | None = None
    key_file: str | None = None
    keystore_file: str | None = None
    keystore_password: str | None = None


@dataclass(frozen=True)
class Security:
    certificate_file: str | None = None
    key_file: str | None = None
    truststore_file: str | None = None
    #: a PKCS#12 keystore (instead of the PEM files) and its password
    keystore_file: str | None = None
    keystore_password: str | None = None
    #: realm name -> realm
    realms: Mapping[str, RealmConfig] = field(default_factory=lambda: MappingProxyType({}))
    #: the second and later <keystore>s: certificates for other host names, chosen by the
    #: name a TLS client asks for (SNI); the first keystore (above) is the default
    more_keystores: tuple[Keystore, ...] = ()

    @property
    def has_identity(self) -> bool:
        return self.certificate_file is not None or self.keystore_file is not None


@dataclass(frozen=True)
class GatewayConfig:
    file: str
    properties: Mapping[str, str]
    services: tuple[ServiceConfig, ...]
    security: Security = Security()
