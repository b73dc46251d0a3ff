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

Expansion is bounded: a property's value or an element's text may not grow past
:data:`MAX_EXPANDED_VALUE` once substituted, nor all substituted text of one file past
:data:`MAX_EXPANDED_TOTAL`. The bound is checked piece by piece while a value is built, so a
"billion laughs" of doubling properties is refused after a few kilobytes, not after the
memory is spent (cycles are caught separately).

The service types are passed in (crossbar's "personality"): each contributes its accept and
connect schemes, how many connects it takes, and a ``check`` turning its ``<properties>``
into settings. See :class:`ServiceTypeChecks`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any, Protocol

from kgateway.config import checks
from kgateway.config.model import (
    ConfigError,
    CrossSiteConstraint,
    GatewayConfig,
    Problem,
    Properties,
    Property,
    Security,
    ServiceConfig,
)
from kgateway.config.options import ACCEPT_OPTIONS, CONNECT_OPTIONS, OptionParser, Options
from kgateway.config.security import SecurityReader
from kgateway.config.values import URI, parse_duration, parse_uri
from kgateway.config.xmltree import Element, parse_xml

#: resolves a path in the configuration relative to the configuration file's folder
PathResolver = Callable[[str], str]


class ServiceTypeChecks(Protocol):
    """What the loader needs of a service type (``kgateway.services.base.ServiceType``)."""

    @property
    def accept_schemes(self) -> frozenset[str]: ...

    @property
    def connect_schemes(self) -> frozenset[str]: ...

    @property
    def min_connects(self) -> int: ...

    @property
    def max_connects(self) -> int | None: ...

    @property
    def check(self) -> Callable[[ServiceConfig, PathResolver], Any]: ...

    @property
    def protocol_auth(self) -> bool:
        """Clients may authenticate inside the protocol (STOMP CONNECT, AMQP Start-Ok)."""


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

#: the longest a property's value, or an element's text, may be once ${...} are substituted
MAX_EXPANDED_VALUE = 64 * 1024
#: the most substituted text one configuration may produce, all values and texts together
MAX_EXPANDED_TOTAL = 1024 * 1024


def env_name(prop: str) -> str:
    """The environment variable that overrides property *prop*."""
    return "KGATEWAY_" + re.sub(r"[.\-]", "_", prop).upper()


class _Loader:
    def __init__(
        self,
        path: str,
        overrides: Mapping[str, str],
        environ: Mapping[str, str],
        service_types: Mapping[str, ServiceTypeChecks],
    ) -> None:
        self.path = path
        self.base = os.path.dirname(os.path.abspath(path))
        self.overrides = overrides
        self.environ = environ
        self.types = service_types
        self.problems: list[Problem] = []
        self.properties: dict[str, str] = {}
        self.security = Security()
        #: characters produced by substitution so far (bounded by MAX_EXPANDED_TOTAL)
        self._expanded = 0
        self._over_total = False
        # URIs are frozen values without a line of their own: remember where each came from
        self._uri_lines: dict[int, int] = {}

    def problem(self, line: int, message: str) -> None:
        self.problems.append(Problem(self.path, line, message))

    def uri_line(self, uri: URI, default: int) -> int:
        return self._uri_lines.get(id(uri), default)

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

        value = self._substitute(text, line, lookup, f"property {name!r}")
        resolved[name] = value
        return value

    def _substitute(self, text: str, line: int, lookup: Callable[[str], str | None],
                    what: str) -> str:
        """*text* with every ``${name}`` replaced, or "" (and a problem) if it grows too large.

        Built piece by piece so that the bound stops the growth before memory is spent.
        """
        if "$" not in text:
            return text
        parts: list[str] = []
        size = pos = 0
        for m in _PLACEHOLDER.finditer(text):
            found = None if m.group(1) else lookup(m.group(2))
            if m.group(1):
                value = "${" + m.group(2) + "}"
            elif found is None:
                self.problem(line, f"unresolved property ${{{m.group(2)}}}: define it in "
                                   f"<properties>, with -D {m.group(2)}=..., or in the "
                                   f"environment as {env_name(m.group(2))}")
                value = m.group(0)
            else:
                value = found
            parts += (text[pos:m.start()], value)
            size += m.start() - pos + len(value)
            pos = m.end()
            if size > MAX_EXPANDED_VALUE:
                self.problem(line, f"{what} expands to more than {MAX_EXPANDED_VALUE // 1024} "
                                   "KiB (at ${" + m.group(2) + "}): substituted values are "
                                   "bounded")
                return ""
        if pos == 0:
            return text
        parts.append(text[pos:])
        size += len(text) - pos
        if size > MAX_EXPANDED_VALUE:
            self.problem(line, f"{what} expands to more than {MAX_EXPANDED_VALUE // 1024} KiB: "
                               "substituted values are bounded")
            return ""
        self._expanded += size
        if self._expanded > MAX_EXPANDED_TOTAL:
            if not self._over_total:
                self._over_total = True
                self.problem(line, f"{what}: property substitution produces more than "
                                   f"{MAX_EXPANDED_TOTAL // (1024 * 1024)} MiB of text in all: "
                                   "substituted values are bounded")
            return ""
        return "".join(parts)

    def substitute_tree(self, element: Element) -> None:
        if element.tag == "properties" and element.find("property") is not None:
            return
        element.text = self._substitute(element.text, element.line, self._lookup_property,
                                        f"the text of <{element.tag}>")
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
        security = self.security = SecurityReader(self.base, self.problem).read(
            root.findall("security"))
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
        checks.check_accepts(services, self.uri_line, self.problem)
        for service in services:
            for uri in service.accepts:
                if uri.is_tls and not security.has_identity:
                    self.problem(self.uri_line(uri, service.line),
                                 f"accept {uri} needs a certificate: add <security><keystore> "
                                 "with <certificate-file> and <key-file>")
            checks.check_tls(service, security, self.problem)
        if not services and not self.problems:
            self.problem(root.line, "no <service> configured: nothing to do")
        if self.problems:
            raise ConfigError(self.problems)
        return GatewayConfig(
            self.path, MappingProxyType(dict(self.properties)), tuple(services), security
        )

    def path_value(self, text: str) -> str:
        return os.path.normpath(os.path.join(self.base, text))

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
        roles, valid_user = self.authorization(element.findall("authorization-constraint"))
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
            required_roles=roles,
            require_valid_user=valid_user,
            file=self.path,
            line=element.line,
        )
        checks.check_auth(config, self.security, kind.protocol_auth,
                          lambda line, message: self.problem(line or element.line, message))
        try:
            settings = kind.check(config, self.path_value)
        except ConfigError as e:
            self.problems.extend(e.problems)
            return None
        if len(self.problems) > start:
            return None
        return replace(config, settings=settings)

    def authorization(self, elements: list[Element]) -> tuple[tuple[str, ...], bool]:
        """``<authorization-constraint>``: its require-role texts and require-valid-user."""
        roles: list[str] = []
        valid_user = False
        for element in elements:
            for child in element.children:
                if child.tag == "require-role" and child.text:
                    roles.append(child.text)
                elif child.tag == "require-valid-user":
                    valid_user = True
                else:
                    self.problem(child.line, f"<{child.tag}> in <authorization-constraint> is "
                                             "not supported; expected require-role (a role "
                                             "name, or *) or require-valid-user")
        return tuple(roles), valid_user

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


def load(
    path: str,
    overrides: Mapping[str, str] | None,
    environ: Mapping[str, str] | None,
    service_types: Mapping[str, ServiceTypeChecks],
) -> GatewayConfig:
    """Load and validate the gateway-config at *path*, or raise ConfigError listing every problem.

    *service_types* is the table of service types (``kgateway.services.SERVICE_TYPES``):
    passed in, so that configuration never imports the floors above it.
    """
    loader = _Loader(
        path, overrides or {}, os.environ if environ is None else environ, service_types
    )
    return loader.load()
