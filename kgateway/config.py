"""The gateway-config file: parsed, substituted and validated into an immutable model.

Loading happens in three passes, and nothing listens until all three succeed:

    gateway.xml --(defusedxml SAX: no DTD, no entities)--> Element tree with line numbers
                --(${name} substitution: -D, environment, <properties>)--> resolved text
                --(schema + per-service-type checks)--> GatewayConfig (frozen)

Every problem found is collected as a ``file:line: message`` and reported together in one
``ConfigError``, so an administrator fixes a broken file in one round.

Property precedence, highest first: ``-D name=value`` on the command line, then the
environment variable ``KGATEWAY_<NAME>`` (the name upper-cased, with ``.`` and ``-`` turned
into ``_``: ``gateway.hostname`` -> ``KGATEWAY_GATEWAY_HOSTNAME``), then the file's
``<properties>``. ``$${x}`` stands for a literal ``${x}``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit
from xml.sax import SAXException, handler
from xml.sax.xmlreader import AttributesNSImpl, InputSource, Locator

import defusedxml.sax
from defusedxml import DefusedXmlException

KAAZING_NAMESPACES = frozenset(
    {
        "http://xmlns.kaazing.org/2016/06/gateway",
        "http://xmlns.kaazing.org/2014/09/gateway",
        "http://xmlns.kaazing.com/2016/06/gateway",
    }
)


# -- errors ---------------------------------------------------------------------------------


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


# -- the element tree -----------------------------------------------------------------------


@dataclass
class Element:
    """An XML element with its line number; text is the concatenated character data."""

    tag: str
    line: int
    attributes: dict[str, str] = field(default_factory=dict)
    children: list[Element] = field(default_factory=list)
    text: str = ""

    def findall(self, tag: str) -> list[Element]:
        return [c for c in self.children if c.tag == tag]

    def find(self, tag: str) -> Element | None:
        found = self.findall(tag)
        return found[0] if found else None


class _TreeBuilder(handler.ContentHandler):
    def __init__(self, filename: str, problems: list[Problem]) -> None:
        super().__init__()
        self.filename = filename
        self.problems = problems
        self.locator: Locator | None = None
        self.stack: list[Element] = []
        self.root: Element | None = None

    def setDocumentLocator(self, locator: Locator) -> None:
        self.locator = locator

    def startElementNS(
        self, name: tuple[str | None, str], qname: str | None, attrs: AttributesNSImpl
    ) -> None:
        uri, local = name
        line = (self.locator.getLineNumber() or 0) if self.locator else 0
        if uri is not None and uri not in KAAZING_NAMESPACES:
            self.problems.append(
                Problem(self.filename, line, f"unknown XML namespace {uri!r} on <{local}>")
            )
        element = Element(
            local, line, {k[1]: v for k, v in attrs.items()}
        )
        if self.stack:
            self.stack[-1].children.append(element)
        else:
            self.root = element
        self.stack.append(element)

    def endElementNS(self, name: tuple[str | None, str], qname: str | None) -> None:
        element = self.stack.pop()
        element.text = element.text.strip()

    def characters(self, content: str) -> None:
        if self.stack:
            self.stack[-1].text += content


def parse_xml(path: str) -> Element:
    """Parse *path* safely (no DTDs, entities or external fetches) keeping line numbers."""
    problems: list[Problem] = []
    builder = _TreeBuilder(path, problems)
    parser = defusedxml.sax.make_parser()
    parser.setFeature(handler.feature_namespaces, True)
    parser.setFeature(handler.feature_external_ges, False)
    parser.setContentHandler(builder)
    try:
        # Open the file ourselves: given a string, SAX would treat it as a URL and fetch it.
        with open(path, "rb") as f:
            source = InputSource(path)
            source.setByteStream(f)
            parser.parse(source)
    except DefusedXmlException as e:
        line = (builder.locator.getLineNumber() or 0) if builder.locator else 0
        raise ConfigError([Problem(path, line, f"forbidden XML construct: {e}")]) from e
    except SAXException as e:
        line = getattr(e, "getLineNumber", lambda: 0)()
        raise ConfigError([Problem(path, line, f"not well-formed XML: {e.getMessage()}")]) from e
    except OSError as e:
        raise ConfigError([Problem(path, 0, f"cannot read configuration: {e.strerror}")]) from e
    if problems:
        raise ConfigError(problems)
    assert builder.root is not None
    return builder.root


# -- values: durations, sizes, URIs ----------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.I)
_DURATION_UNITS = {
    "": 1.0, "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
    "ms": 0.001, "millis": 0.001, "milliseconds": 0.001,
    "m": 60.0, "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hour": 3600.0, "hours": 3600.0,
}  # fmt: skip
_SIZE = re.compile(r"^\s*(\d+)\s*([a-z]*)\s*$", re.I)
_SIZE_UNITS = {
    "": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024,
    "m": 1024**2, "mb": 1024**2, "mib": 1024**2, "g": 1024**3, "gb": 1024**3, "gib": 1024**3,
}  # fmt: skip


def parse_duration(text: str) -> float:
    """``"30"``, ``"30sec"``, ``"500ms"``, ``"5min"`` -> seconds."""
    m = _DURATION.match(text)
    unit = m.group(2).lower() if m else None
    if not m or unit not in _DURATION_UNITS:
        raise ValueError(f"expected a duration such as 30sec, 500ms or 5min, not {text!r}")
    return float(m.group(1)) * _DURATION_UNITS[unit]


def parse_size(text: str) -> int:
    """``"65536"``, ``"64k"``, ``"1MiB"`` -> bytes."""
    m = _SIZE.match(text)
    unit = m.group(2).lower() if m else None
    if not m or unit not in _SIZE_UNITS:
        raise ValueError(f"expected a size such as 65536, 64k or 1MiB, not {text!r}")
    return int(m.group(1)) * _SIZE_UNITS[unit]


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"expected true or false, not {text!r}")


def parse_count(text: str, minimum: int = 0) -> int:
    """A whole number of at least *minimum* (a hop count, a connection count...)."""
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"expected a whole number, not {text!r}") from None
    if value < minimum:
        expected = "0 or more" if minimum == 0 else f"a number of at least {minimum}"
        raise ValueError(f"expected {expected}, not {value}")
    return value


def parse_positive_int(text: str) -> int:
    return parse_count(text, 1)


DEFAULT_PORTS = {"ws": 80, "http": 80, "wss": 443, "https": 443}
WEBSOCKET_SCHEMES = frozenset({"ws", "wss"})
HTTP_SCHEMES = frozenset({"ws", "wss", "http", "https"})
STREAM_SCHEMES = frozenset({"tcp", "ssl"})
TLS_SCHEMES = frozenset({"wss", "https", "ssl", "reverse+wss"})
#: Enterprise Shield: an accept dialled out to the DMZ, a connect served by a reverse connection
REVERSE_SCHEMES = frozenset({"reverse+wss"})
KNOWN_SCHEMES = HTTP_SCHEMES | STREAM_SCHEMES | REVERSE_SCHEMES | {"udp", "stomp", "stomp+ssl"}


@dataclass(frozen=True)
class URI:
    """An accept or connect URI such as ``ws://localhost:8000/echo`` or ``tcp://db:5432``."""

    text: str
    scheme: str
    host: str
    port: int
    path: str

    @property
    def is_websocket(self) -> bool:
        return self.scheme in WEBSOCKET_SCHEMES

    @property
    def is_http(self) -> bool:
        """Served by the shared HTTP listener (WebSocket upgrade or plain HTTP)."""
        return self.scheme in HTTP_SCHEMES

    @property
    def is_reverse(self) -> bool:
        """Enterprise Shield: ``reverse+wss://dmz:port/path`` (see kgateway.shield)."""
        return self.scheme in REVERSE_SCHEMES

    @property
    def is_tls(self) -> bool:
        return self.scheme in TLS_SCHEMES or self.scheme == "stomp+ssl"

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return self.text


def parse_uri(text: str) -> URI:
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError as e:
        raise ValueError(f"bad URI {text!r}: {e}") from None
    scheme = parts.scheme.lower()
    if scheme not in KNOWN_SCHEMES:
        known = ", ".join(sorted(KNOWN_SCHEMES))
        raise ValueError(f"bad URI {text!r}: unknown scheme {scheme!r} (expected one of {known})")
    if not parts.hostname:
        raise ValueError(f"bad URI {text!r}: no host")
    if port is None:
        if scheme not in DEFAULT_PORTS:
            raise ValueError(f"bad URI {text!r}: {scheme}:// needs a port")
        port = DEFAULT_PORTS[scheme]
    if parts.query or parts.fragment:
        raise ValueError(f"bad URI {text!r}: no query or fragment allowed")
    path = parts.path or "/"
    if scheme not in HTTP_SCHEMES and scheme not in REVERSE_SCHEMES and path != "/":
        raise ValueError(f"bad URI {text!r}: {scheme}:// takes no path")
    return URI(text.strip(), scheme, parts.hostname, port, path)


def parse_bind(text: str) -> tuple[str | None, int]:
    """A ``tcp.bind``-style value: ``8000``, ``0.0.0.0:8000`` or ``[::]:8000``."""
    text = text.strip()
    host: str | None
    if text.isdigit():
        host, port_text = None, text
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not port_text.isdigit():
            raise ValueError(f"expected port or host:port, not {text!r}")
        host = host.strip("[]") or None
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port out of range in {text!r}")
    return host, port


# -- options --------------------------------------------------------------------------------

OptionParser = Callable[[str], Any]


def _tls_protocols(text: str) -> tuple[str, ...]:
    from kgateway.tls import parse_protocols

    return parse_protocols(text)


def _tls_ciphers(text: str) -> str:
    from kgateway.tls import parse_ciphers

    return parse_ciphers(text)


def _tls_verify_client(text: str) -> str:
    from kgateway.tls import parse_verify_client

    return parse_verify_client(text)

def _proxy_mode(text: str) -> str:
    from kgateway.clientaddr import parse_proxy_mode

    return parse_proxy_mode(text)


def _networks(text: str) -> tuple[Any, ...]:
    from kgateway.clientaddr import parse_networks

    return parse_networks(text)


#: accept-options: name -> (parser, default). The defaults are documented in README.md.
ACCEPT_OPTIONS: dict[str, tuple[OptionParser, Any]] = {
    "ws.maximum.message.size": (parse_size, 1024 * 1024),
    "ws.inactivity.timeout": (parse_duration, 0.0),
    "tcp.bind": (parse_bind, None),
    "ssl.bind": (parse_bind, None),
    "ws.bind": (parse_bind, None),
    "wss.bind": (parse_bind, None),
    "http.bind": (parse_bind, None),
    "https.bind": (parse_bind, None),
    "proxy.protocol": (_proxy_mode, "none"),
    "http.forwarded.trusted": (_networks, ()),
    "http.forwarded.hops": (parse_count, 0),
    "ssl.protocols": (_tls_protocols, ()),
    "ssl.ciphers": (_tls_ciphers, None),
    "ssl.verify-client": (_tls_verify_client, "none"),
    "udp.idle.timeout": (parse_duration, 60.0),
    "reverse.prepared.connection.count": (parse_positive_int, 1),
    "reverse.retry.initial.interval": (parse_duration, 0.5),
    "reverse.retry.maximum.interval": (parse_duration, 30.0),
    "reverse.keepalive.interval": (parse_duration, 30.0),
}

#: connect-options: name -> (parser, default).
CONNECT_OPTIONS: dict[str, tuple[OptionParser, Any]] = {
    "connect.timeout": (parse_duration, 10.0),
    "ws.maximum.message.size": (parse_size, 1024 * 1024),
    "ws.inactivity.timeout": (parse_duration, 0.0),
    "ssl.truststore": (str, None),
    "ssl.hostname": (str, None),
    "ssl.present-certificate": (parse_bool, False),
    "ssl.verify-client": (_tls_verify_client, "required"),
    "reverse.timeout": (parse_duration, 10.0),
    "udp.idle.timeout": (parse_duration, 60.0),
}


class Options(Mapping[str, Any]):
    """Validated accept- or connect-options; unset ones read as their default."""

    def __init__(self, given: Mapping[str, Any], defaults: Mapping[str, Any]) -> None:
        self._given = MappingProxyType(dict(given))
        self._defaults = MappingProxyType(dict(defaults))

    def __getitem__(self, key: str) -> Any:
        if key in self._given:
            return self._given[key]
        return self._defaults[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._defaults)

    def __len__(self) -> int:
        return len(self._defaults)

    def explicit(self) -> Mapping[str, Any]:
        """Only the options the file set."""
        return self._given

    def __repr__(self) -> str:
        return f"Options({dict(self._given)!r})"


def bind_address(uri: URI, options: Options) -> tuple[str, int]:
    """Where an accept listens: its URI's host and port unless ``<scheme>.bind`` overrides."""
    override = options.get(f"{uri.scheme}.bind")
    if override is None and uri.scheme in ("ws", "http"):
        override = options.get("tcp.bind")
    if override is None:
        return uri.host, uri.port
    host, port = override
    return host or uri.host, port


# -- the model ------------------------------------------------------------------------------


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

    def get(self, name: str, default: str | None = None) -> str | None:
        for item in self.items:
            if item.name == name:
                return item.value
        return default

    def all(self, name: str) -> list[Property]:
        return [item for item in self.items if item.name == name]

    def names(self) -> set[str]:
        return {item.name for item in self.items}


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
    required_roles: tuple[str, ...] = ()
    file: str = ""
    line: int = 0
    #: what the service type's checker made of ``properties`` (its own frozen settings)
    settings: Any = None


@dataclass(frozen=True)
class Security:
    certificate_file: str | None = None
    key_file: str | None = None
    truststore_file: str | None = None
    #: a PKCS#12 keystore (instead of the PEM files) and its password
    keystore_file: str | None = None
    keystore_password: str | None = None

    @property
    def has_identity(self) -> bool:
        return self.certificate_file is not None or self.keystore_file is not None


@dataclass(frozen=True)
class GatewayConfig:
    file: str
    properties: Mapping[str, str]
    services: tuple[ServiceConfig, ...]
    security: Security = Security()


# -- loading --------------------------------------------------------------------------------

_ROOT_CHILDREN = {"properties", "security", "service-defaults", "service"}
_SERVICE_CHILDREN = {
    "name", "description", "accept", "connect", "type", "properties", "accept-options",
    "connect-options", "cross-site-constraint", "realm-name", "authorization-constraint",
}  # fmt: skip
_SINGLE_SERVICE_CHILDREN = {
    "name", "description", "type", "properties", "accept-options", "connect-options",
    "realm-name",
}  # fmt: skip
_PLACEHOLDER = re.compile(r"\$(\$?)\{([^}]*)\}")


def env_name(prop: str) -> str:
    """The environment variable that overrides property *prop*."""
    return "KGATEWAY_" + re.sub(r"[.\-]", "_", prop).upper()


class _Loader:
    def __init__(
        self,
        path: str,
        overrides: Mapping[str, str],
        environ: Mapping[str, str],
        service_types: Mapping[str, Any],
    ) -> None:
        self.path = path
        self.base = os.path.dirname(os.path.abspath(path))
        self.overrides = overrides
        self.environ = environ
        self.types = service_types
        self.problems: list[Problem] = []
        self.properties: dict[str, str] = {}
        # URIs are frozen values without a line of their own: remember where each came from
        self._uri_lines: dict[int, int] = {}

    def problem(self, line: int, message: str) -> None:
        self.problems.append(Problem(self.path, line, message))

    # properties and substitution

    def load_properties(self, root: Element) -> None:
        file_props: dict[str, tuple[str, int]] = {}
        for props in root.findall("properties"):
            for prop in props.children:
                if prop.tag != "property":
                    self.problem(prop.line, f"unknown element <{prop.tag}> in <properties>; "
                                            "expected <property> with <name> and <value>")
                    continue
                name, value = prop.find("name"), prop.find("value")
                if name is None or value is None or not name.text:
                    self.problem(prop.line, "<property> needs a <name> and a <value>")
                    continue
                if name.text in file_props:
                    self.problem(name.line, f"property {name.text!r} is defined twice "
                                            f"(first at line {file_props[name.text][1]})")
                file_props[name.text] = (value.text, value.line)
        resolved: dict[str, str] = {}
        for prop_name in file_props:
            resolved[prop_name] = self._property(prop_name, file_props, resolved, [])
        resolved.update(self.overrides)
        self.properties = resolved

    def _property(
        self,
        name: str,
        file_props: dict[str, tuple[str, int]],
        resolved: dict[str, str],
        chain: list[str],
    ) -> str:
        if name in self.overrides:
            return self.overrides[name]
        if env_name(name) in self.environ:
            return self.environ[env_name(name)]
        if name in resolved:
            return resolved[name]
        text, line = file_props[name]
        if name in chain:
            self.problem(line, f"property {name!r} refers to itself: {' -> '.join(chain + [name])}")
            return ""

        def lookup(ref: str) -> str | None:
            if ref in file_props or ref in self.overrides or env_name(ref) in self.environ:
                return self._property(ref, file_props, resolved, chain + [name])
            return None

        value = self._substitute(text, line, lookup)
        resolved[name] = value
        return value

    def _substitute(self, text: str, line: int, lookup: Callable[[str], str | None]) -> str:
        def replace(m: re.Match[str]) -> str:
            if m.group(1):
                return "${" + m.group(2) + "}"
            value = lookup(m.group(2))
            if value is None:
                self.problem(line, f"unresolved property ${{{m.group(2)}}}: define it in "
                                   f"<properties>, with -D {m.group(2)}=..., or in the "
                                   f"environment as {env_name(m.group(2))}")
                return m.group(0)
            return value

        return _PLACEHOLDER.sub(replace, text)

    def substitute_tree(self, element: Element) -> None:
        if element.tag == "properties" and element.find("property") is not None:
            return
        element.text = self._substitute(element.text, element.line, self._lookup_property)
        for child in element.children:
            self.substitute_tree(child)

    def _lookup_property(self, name: str) -> str | None:
        if name in self.overrides:
            return self.overrides[name]
        if env_name(name) in self.environ:
            return self.environ[env_name(name)]
        return self.properties.get(name)

    # options

    def options(
        self,
        elements: list[Element],
        table: Mapping[str, tuple[OptionParser, Any]],
        kind: str,
    ) -> Options:
        values: dict[str, Any] = {}
        for element in elements:
            for child in element.children:
                if child.tag not in table:
                    self.problem(child.line, f"unknown {kind} <{child.tag}>; expected one of: "
                                             + ", ".join(sorted(table)))
                    continue
                parse = table[child.tag][0]
                try:
                    values[child.tag] = parse(child.text)
                except ValueError as e:
                    self.problem(child.line, f"bad value for <{child.tag}>: {e}")
        defaults = {name: default for name, (_, default) in table.items()}
        return Options(values, defaults)

    # the document

    def load(self) -> GatewayConfig:
        root = parse_xml(self.path)
        if root.tag != "gateway-config":
            raise ConfigError([Problem(self.path, root.line,
                                       f"root element is <{root.tag}>; expected <gateway-config>")])
        self.load_properties(root)
        self.substitute_tree(root)
        for child in root.children:
            if child.tag not in _ROOT_CHILDREN:
                self.problem(child.line, f"unknown element <{child.tag}> in <gateway-config>; "
                                         "expected one of: " + ", ".join(sorted(_ROOT_CHILDREN)))
        security = self.security(root.findall("security"))
        defaults = root.findall("service-defaults")
        for d in defaults:
            for child in d.children:
                if child.tag not in ("accept-options", "connect-options"):
                    self.problem(child.line, f"unknown element <{child.tag}> in "
                                             "<service-defaults>; expected accept-options or "
                                             "connect-options")
        default_accept = [c for d in defaults for c in d.findall("accept-options")]
        default_connect = [c for d in defaults for c in d.findall("connect-options")]
        services = []
        for index, element in enumerate(root.findall("service"), 1):
            service = self.service(element, index, default_accept, default_connect)
            if service is not None:
                services.append(service)
        self.check_accepts(services)
        for service in services:
            for uri in service.accepts:
                if uri.is_tls and not security.has_identity:
                    self.problem(self._uri_lines.get(id(uri), service.line),
                                 f"accept {uri} needs a certificate: add <security><keystore> "
                                 "with <certificate-file> and <key-file>")
            self.check_tls(service, security)
        if not services and not self.problems:
            self.problem(root.line, "no <service> configured: nothing to do")
        if self.problems:
            raise ConfigError(self.problems)
        return GatewayConfig(
            self.path, MappingProxyType(dict(self.properties)), tuple(services), security
        )

    def path_value(self, text: str) -> str:
        return os.path.normpath(os.path.join(self.base, text))

    def security(self, elements: list[Element]) -> Security:
        cert = key = trust = p12 = password = None
        for element in elements:
            for child in element.children:
                if child.tag == "keystore":
                    kind = None
                    for item in child.children:
                        if item.tag == "certificate-file":
                            cert = self.existing_file(item)
                        elif item.tag == "key-file":
                            key = self.existing_file(item)
                        elif item.tag == "file":
                            p12 = self.existing_file(item)
                        elif item.tag == "type":
                            kind = item
                        elif item.tag == "password":
                            password = item.text
                        elif item.tag == "password-file":
                            password = self.password_file(item)
                        else:
                            self.problem(item.line, f"unknown element <{item.tag}> in <keystore>; "
                                                    "expected certificate-file and key-file, or "
                                                    "file (PKCS#12), type, password, "
                                                    "password-file")
                    if kind is not None and kind.text.upper() not in ("PEM", "PKCS12"):
                        self.problem(kind.line, f"keystore type {kind.text} is not supported: "
                                                "convert a Java keystore with keytool "
                                                "-importkeystore -deststoretype PKCS12 (see "
                                                "README, TLS)")
                    if p12 is not None and cert is not None:
                        self.problem(child.line, "<keystore>: give either <file> (PKCS#12) or "
                                                 "<certificate-file> + <key-file>, not both")
                elif child.tag == "truststore":
                    for item in child.children:
                        if item.tag == "file":
                            trust = self.existing_file(item)
                        elif item.tag == "type" and item.text.upper() != "PEM":
                            self.problem(item.line, f"truststore type {item.text} is not "
                                                    "supported: export the CA certificates to "
                                                    "a PEM bundle (see README, TLS)")
                        elif item.tag not in ("type", "password", "password-file"):
                            self.problem(item.line, f"unknown element <{item.tag}> in "
                                                    "<truststore>; expected file")
                else:
                    self.problem(child.line, f"unknown element <{child.tag}> in <security>; "
                                             "expected keystore or truststore")
        return Security(cert, key or cert, trust, p12, password)

    def password_file(self, element: Element) -> str | None:
        path = self.existing_file(element)
        if path is None:
            return None
        with open(path, encoding="utf-8") as f:
            return f.readline().rstrip("\r\n")

    def existing_file(self, element: Element) -> str | None:
        path = self.path_value(element.text)
        if not os.path.isfile(path):
            self.problem(element.line, f"<{element.tag}>: no such file {path}")
            return None
        return path

    def service(
        self,
        element: Element,
        index: int,
        default_accept: list[Element],
        default_connect: list[Element],
    ) -> ServiceConfig | None:
        start = len(self.problems)
        seen: dict[str, int] = {}
        for child in element.children:
            if child.tag not in _SERVICE_CHILDREN:
                self.problem(child.line, f"unknown element <{child.tag}> in <service>; expected "
                                         "one of: " + ", ".join(sorted(_SERVICE_CHILDREN)))
            elif child.tag in _SINGLE_SERVICE_CHILDREN and child.tag in seen:
                self.problem(child.line, f"<{child.tag}> given twice in one <service> "
                                         f"(first at line {seen[child.tag]})")
            seen.setdefault(child.tag, child.line)
        type_el = element.find("type")
        if type_el is None or not type_el.text:
            self.problem(element.line, "<service> has no <type>; expected one of: "
                                       + ", ".join(sorted(self.types)))
            return None
        kind = self.types.get(type_el.text)
        if kind is None:
            self.problem(type_el.line, f"unknown service type {type_el.text!r}; expected one of: "
                                       + ", ".join(sorted(self.types)))
            return None
        name_el = element.find("name")
        name = name_el.text if name_el is not None and name_el.text else f"{type_el.text}#{index}"
        description = element.find("description")
        accepts = self.uris(element.findall("accept"), kind.accept_schemes, "accept", name)
        connects = self.uris(element.findall("connect"), kind.connect_schemes, "connect", name)
        if not element.findall("accept"):
            self.problem(element.line, f"service {name!r} has no <accept>")
        n_connect = len(element.findall("connect"))
        if n_connect < kind.min_connects:
            self.problem(element.line, f"service {name!r} of type {type_el.text} needs a <connect>")
        elif kind.max_connects is not None and n_connect > kind.max_connects:
            if kind.max_connects == 0:
                self.problem(element.line, f"service {name!r} of type {type_el.text} takes no "
                                           "<connect>")
            else:
                self.problem(element.line, f"service {name!r} of type {type_el.text} takes at "
                                           f"most {kind.max_connects} <connect>")
        accept_options = self.options(
            default_accept + element.findall("accept-options"), ACCEPT_OPTIONS, "accept-option"
        )
        connect_options = self.options(
            default_connect + element.findall("connect-options"), CONNECT_OPTIONS,
            "connect-option",
        )
        props_el = element.find("properties")
        properties = Properties(
            tuple(self.property(c) for c in props_el.children) if props_el is not None else ()
        )
        realm = element.find("realm-name")
        config = ServiceConfig(
            name=name,
            type=type_el.text,
            accepts=accepts,
            connects=connects,
            properties=properties,
            accept_options=accept_options,
            connect_options=connect_options,
            description=description.text if description is not None else "",
            cross_site_constraints=tuple(
                self.cross_site(c) for c in element.findall("cross-site-constraint")
            ),
            realm_name=realm.text if realm is not None else None,
            required_roles=tuple(
                role.text
                for c in element.findall("authorization-constraint")
                for role in c.findall("require-role")
            ),
            file=self.path,
            line=element.line,
        )
        try:
            settings = kind.check(config, self.path_value)
        except ConfigError as e:
            self.problems.extend(e.problems)
            return None
        if len(self.problems) > start:
            return None
        return replace(config, settings=settings)

    def property(self, element: Element) -> Property:
        return Property(
            element.tag, element.text, element.line,
            tuple(self.property(c) for c in element.children),
        )

    def cross_site(self, element: Element) -> CrossSiteConstraint:
        origin = element.find("allow-origin")
        if origin is None or not origin.text:
            self.problem(element.line, "<cross-site-constraint> needs an <allow-origin> "
                                       "(an origin such as http://example.com:8000, or *)")
        methods = element.find("allow-methods")
        headers = element.find("allow-headers")
        age = element.find("maximum-age")
        max_age = None
        if age is not None:
            try:
                max_age = parse_duration(age.text)
            except ValueError as e:
                self.problem(age.line, f"bad value for <maximum-age>: {e}")
        for child in element.children:
            if child.tag not in ("allow-origin", "allow-methods", "allow-headers", "maximum-age"):
                self.problem(child.line, f"unknown element <{child.tag}> in "
                                         "<cross-site-constraint>")
        return CrossSiteConstraint(
            origin.text if origin is not None else "",
            tuple(m.strip() for m in methods.text.split(",")) if methods is not None else (),
            tuple(h.strip() for h in headers.text.split(",")) if headers is not None else (),
            max_age,
        )

    def uris(
        self, elements: list[Element], allowed: frozenset[str], what: str, service: str
    ) -> tuple[URI, ...]:
        uris = []
        for element in elements:
            try:
                uri = parse_uri(element.text)
            except ValueError as e:
                self.problem(element.line, str(e))
                continue
            # Enterprise Shield carries whatever a wss:// accept or connect would.
            if uri.scheme not in allowed and not (uri.is_reverse and "wss" in allowed):
                self.problem(element.line, f"service {service!r} cannot {what} {uri.scheme}://; "
                                           "expected one of: " + ", ".join(sorted(allowed)))
                continue
            uris.append(uri)
            self._uri_lines[id(uri)] = element.line
        return tuple(uris)

    def check_tls(self, service: ServiceConfig, security: Security) -> None:
        """Mutual TLS needs a truststore; Enterprise Shield needs mutual TLS."""
        line = service.line
        needs_trust = service.accept_options["ssl.verify-client"] != "none" and any(
            u.is_tls for u in service.accepts)
        reverse_accept = any(u.is_reverse for u in service.accepts)
        reverse_connect = any(u.is_reverse for u in service.connects)
        if reverse_connect and service.connect_options["ssl.verify-client"] != "required":
            self.problem(line, f"service {service.name!r}: a reverse+wss:// connect always "
                              "requires client certificates (ssl.verify-client required)")
        if (needs_trust or reverse_accept or reverse_connect) and security.truststore_file is None:
            self.problem(line, f"service {service.name!r} checks certificates of the other side: "
                               "add <security><truststore><file>ca.pem</file>")
        if (reverse_connect or reverse_accept
                or service.connect_options["ssl.present-certificate"]) \
                and not security.has_identity:
            self.problem(line, f"service {service.name!r} presents a certificate: add "
                               "<security><keystore>")

    def check_accepts(self, services: list[ServiceConfig]) -> None:
        """One URI per accept; no two services on one path; HTTP and raw TCP never share a port."""
        seen_uri: dict[tuple[str, str, int, str], str] = {}
        port_family: dict[tuple[str, int], tuple[str, str]] = {}
        tls_settings: dict[tuple[str, int], tuple[Any, str]] = {}
        for service in services:
            backplanes = [u for u in service.connects if u.is_reverse]
            for uri in (*(u for u in service.accepts if not u.is_reverse), *backplanes):
                line = self._uri_lines.get(id(uri), service.line)
                host, port = bind_address(uri, service.accept_options)
                if uri.is_tls:
                    # One TLS context per port: services sharing it must agree on its settings.
                    settings = ("required",) if uri.is_reverse else tuple(
                        service.accept_options[k]
                        for k in ("ssl.verify-client", "ssl.protocols", "ssl.ciphers"))
                    earlier = tls_settings.setdefault((host, port), (settings, service.name))
                    if earlier[0] != settings:
                        self.problem(line, f"{uri} shares port {port} with service "
                                           f"{earlier[1]!r} but not its TLS settings "
                                           "(ssl.verify-client, ssl.protocols, ssl.ciphers; an "
                                           "Enterprise Shield backplane needs a port of its own)")
                        continue
                family = "http" if uri.is_http or uri.is_reverse else uri.scheme
                tls = uri.is_tls
                key = (uri.scheme.rstrip("s") if uri.is_http else uri.scheme, uri.host, uri.port,
                       uri.path if uri.is_http or uri.is_reverse else "")
                if key in seen_uri:
                    self.problem(line, f"duplicate accept {uri}: already accepted by service "
                                       f"{seen_uri[key]!r}")
                    continue
                seen_uri[key] = service.name
                flavour = f"{family}{'+tls' if tls else ''}"
                previous = port_family.get((host, port))
                if previous is not None and previous[0] != flavour:
                    self.problem(line, f"accept {uri} shares port {port} with service "
                                       f"{previous[1]!r}, which speaks {previous[0]} there: "
                                       "services may share a port only over the same transport")
                    continue
                port_family[(host, port)] = (flavour, service.name)


def load(
    path: str,
    overrides: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    service_types: Mapping[str, Any] | None = None,
) -> GatewayConfig:
    """Load and validate the gateway-config at *path*, or raise ConfigError listing every problem."""
    if service_types is None:
        from kgateway.services import SERVICE_TYPES

        service_types = SERVICE_TYPES
    loader = _Loader(
        path, overrides or {}, os.environ if environ is None else environ, service_types
    )
    return loader.load()
