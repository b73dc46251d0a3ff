"""Frozen settings of a realm and its login modules, and their making from Kaazing's options.

The lead's configuration parser reads ``<security><realm>`` and calls, per realm,
``realm_settings(name, description, challenge_scheme, modules)`` where *modules* holds one
``login_module_settings(type, success, options, base_dir)`` per ``<login-module>``. Each
raises ``AuthConfigError`` listing every problem (unsupported type, success value, scheme,
unknown or missing option, bad value), so a configuration that asks for something kgateway
does not do is refused before anything starts: fail closed. ``SUPPORTED_TYPES``,
``SUPPORTED_SUCCESS`` and ``SUPPORTED_SCHEMES`` name what is supported.

Options are the text of the children of ``<options>``, by element name. Names follow
Kaazing's (JAAS's) where Kaazing had one: ``userProvider``, ``authIdentity``,
``userFilter``, ``useSSL`` for ``ldap`` (as in the JDK's LdapLoginModule, with the
``{USERNAME}`` placeholder); see each ``*ModuleSettings`` class for the full list.

This module imports nothing from the rest of ``kgateway.auth``: it is plain data and checks.
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit


class AuthConfigError(ValueError):
    """A realm or login module that cannot be used as configured; one problem per line."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


class Success(enum.Enum):
    """JAAS control flags (``<success>``), with JAAS's meaning (see ``ChainChecker``)."""

    REQUIRED = "required"
    REQUISITE = "requisite"
    SUFFICIENT = "sufficient"
    OPTIONAL = "optional"


class ChallengeScheme(enum.Enum):
    """What the client is asked for (``<http-challenge-scheme>``) and which header it answers.

    ``Basic`` sends ``WWW-Authenticate: Basic realm="<name>"`` and reads
    ``Authorization: Basic``. ``Application Basic`` is Kaazing's variant for script
    clients: the challenge names the scheme ``Application Basic`` so that browsers do not
    pop up their own dialog; the client's challenge handler still answers
    ``Authorization: Basic`` (Kaazing's clients map the challenge back to Basic). ``Bearer`` (not in Kaazing; RFC 6750) reads
    ``Authorization: Bearer <jwt>``.
    """

    BASIC = "Basic"
    APPLICATION_BASIC = "Application Basic"
    BEARER = "Bearer"


SUPPORTED_TYPES = ("file", "ldap", "jwt")
SUPPORTED_SUCCESS = tuple(s.value for s in Success)
SUPPORTED_SCHEMES = tuple(s.value for s in ChallengeScheme)
# Kaazing's other login-module types and schemes, for a precise "not supported" message.
KAAZING_UNSUPPORTED_TYPES = ("kerberos5", "gss", "jndi", "keystore", "custom")
KAAZING_UNSUPPORTED_SCHEMES = ("Negotiate", "Application Negotiate", "Application Token")

# Algorithms the jwt module may be allowed: asymmetric only (the key's type decides which
# of them apply to a key), never "none" nor HMAC (a shared secret is not a key file).
JWT_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                  "ES256", "ES384", "ES512", "EdDSA")


@dataclass(frozen=True)
class FileModuleSettings:
    """``file``: options ``file`` (the password file; see ``kgateway.auth.filemodule``)."""

    path: str


@dataclass(frozen=True)
class LdapModuleSettings:
    """``ldap``: bind as the user, roles from groups (see ``kgateway.auth.ldapmodule``).

    Options:

    - ``userProvider`` (required): ``ldap://host[:port]/BASE`` or ``ldaps://...``; BASE
      is where ``userFilter`` searches.
    - ``authIdentity``: the user's DN, with ``{USERNAME}`` (DN-escaped), e.g.
      ``uid={USERNAME},ou=people,dc=example,dc=com``: bind directly. Or
    - ``userFilter``: e.g. ``(&(uid={USERNAME})(objectClass=inetOrgPerson))``
      (``{USERNAME}`` filter-escaped): search under BASE, exactly one entry must match,
      then bind as it. Exactly one of ``authIdentity``/``userFilter``.
    - ``bindDn`` + ``bindPassword`` or ``bindPasswordFile``: the service account that
      searches (else the search is anonymous).
    - ``groupBase``: search groups here, with ``groupFilter`` (default
      ``(&(objectClass=groupOfNames)(member={DN}))``, ``{DN}`` = the user's DN,
      filter-escaped); the role is the group's ``roleAttribute`` (default ``cn``).
    - ``memberOf`` (``true``/``false``, default false): also take roles from the user's
      ``memberOf`` values (the first RDN's value, e.g. ``cn=ops,...`` -> ``ops``).
    - ``useSSL``: ``true`` is the same as an ``ldaps://`` URL. ``startTls``: ``true`` to
      upgrade an ``ldap://`` connection with StartTLS before binding.
    - ``trustStore``: PEM CA bundle for ldaps/StartTLS (default: the system's CAs).
    - ``nameAttribute``: take the principal's name from this attribute of the user's entry
      (e.g. ``uid``; it must have exactly one value) instead of the name as typed.
    - ``timeout``: seconds for the whole exchange (default 10).
    """

    host: str
    port: int
    base: str
    tls: bool = False
    start_tls: bool = False
    ca_file: str | None = None
    user_dn_template: str | None = None
    user_filter: str | None = None
    bind_dn: str | None = None
    bind_password: str | None = None
    group_base: str | None = None
    group_filter: str = "(&(objectClass=groupOfNames)(member={DN}))"
    role_attribute: str = "cn"
    member_of: bool = False
    name_attribute: str | None = None
    timeout: float = 10.0


@dataclass(frozen=True)
class JwtModuleSettings:
    """``jwt``: signed bearer tokens (see ``kgateway.auth.jwtmodule``).

    Options: ``issuer`` and ``audience`` (required); ``keyFile`` (a PEM public key or
    certificate) or ``jwksFile`` (a local JWKS document), exactly one; ``algorithms``
    (comma or space separated, from ``JWT_ALGORITHMS``; default all of them; the key's
    type narrows them further); ``leeway`` (seconds of clock skew for exp/nbf/iat, default
    30); ``nameClaim`` (default ``sub``); ``rolesClaim`` (default ``roles``: a JSON list of
    strings or one space-separated string).
    """

    issuer: str
    audience: str
    algorithms: tuple[str, ...] = JWT_ALGORITHMS
    key_file: str | None = None
    jwks_file: str | None = None
    leeway: float = 30.0
    name_claim: str = "sub"
    roles_claim: str = "roles"


ModuleSettings = FileModuleSettings | LdapModuleSettings | JwtModuleSettings


@dataclass(frozen=True)
class LoginModuleSettings:
    type: str
    success: Success
    settings: ModuleSettings


@dataclass(frozen=True)
class TokenSources:
    """Where a bearer token may come from besides ``Authorization`` (Kaazing's elements)."""

    header: str | None = None  #: <http-header>
    query: str | None = None  #: <http-query-parameter>
    cookie: str | None = None  #: <http-cookie>

    def __bool__(self) -> bool:
        return bool(self.header or self.query or self.cookie)


@dataclass(frozen=True)
class RealmSettings:
    name: str
    challenge_scheme: ChallengeScheme
    login_modules: tuple[LoginModuleSettings, ...]
    description: str = ""


def realm_settings(name: str, challenge_scheme: str,
                   login_modules: Iterable[LoginModuleSettings],
                   description: str = "") -> RealmSettings:
    """A realm's settings; ``AuthConfigError`` if the scheme or the chain cannot work."""
    problems = []
    modules = tuple(login_modules)
    if not name:
        problems.append("a realm needs a <name>")
    scheme = next((s for s in ChallengeScheme if s.value.lower() == challenge_scheme.lower()),
                  None)
    if scheme is None:
        problems.append(f"http-challenge-scheme {challenge_scheme!r} is not supported "
                        f"(supported: {', '.join(SUPPORTED_SCHEMES)})")
    if not modules:
        problems.append(f"realm {name!r} has no login module")
    token_modules = {m.type for m in modules if isinstance(m.settings, JwtModuleSettings)}
    password_modules = {m.type for m in modules if not isinstance(m.settings, JwtModuleSettings)}
    if scheme is ChallengeScheme.BEARER and password_modules:
        problems.append(f"the Bearer scheme carries tokens; login module(s) "
                        f"{', '.join(sorted(password_modules))} need a user name and password")
    if scheme in (ChallengeScheme.BASIC, ChallengeScheme.APPLICATION_BASIC) and token_modules:
        problems.append("the Basic schemes carry a user name and password; the jwt login "
                        "module needs the Bearer scheme")
    if problems:
        raise AuthConfigError(problems)
    assert scheme is not None
    return RealmSettings(name, scheme, modules, description)


_TRUE = {"true": True, "false": False}


class _Options:
    """Reads options once each and reports every problem, including options left unread."""

    def __init__(self, kind: str, options: Mapping[str, str], base_dir: str) -> None:
        self.kind = kind
        self.options = {k: v.strip() for k, v in options.items()}
        self.base_dir = base_dir
        self.read: set[str] = set()
        self.problems: list[str] = []

    def text(self, name: str, default: str | None = None, required: bool = False) -> str | None:
        self.read.add(name)
        value = self.options.get(name)
        if value is None or value == "":
            if required:
                self.problems.append(f"{self.kind} login module: option <{name}> is required")
            return default
        return value

    def path(self, name: str, required: bool = False) -> str | None:
        value = self.text(name, required=required)
        return None if value is None else os.path.join(self.base_dir, value)

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.text(name)
        if value is None:
            return default
        if value.lower() not in _TRUE:
            self.problems.append(f"{self.kind} login module: <{name}> must be true or false, "
                                 f"not {value!r}")
            return default
        return _TRUE[value.lower()]

    def number(self, name: str, default: float) -> float:
        value = self.text(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if not 0 <= number < 1e6:
            self.problems.append(f"{self.kind} login module: <{name}> must be a number of "
                                 f"seconds, not {value!r}")
            return default
        return number

    def finish(self) -> None:
        for name in sorted(set(self.options) - self.read):
            self.problems.append(f"{self.kind} login module: unknown option <{name}>")
        if self.problems:
            raise AuthConfigError(self.problems)


def _file_settings(o: _Options) -> FileModuleSettings:
    path = o.path("file", required=True)
    o.finish()
    assert path is not None
    return FileModuleSettings(path)


def _ldap_settings(o: _Options) -> LdapModuleSettings:
    provider = o.text("userProvider", required=True) or ""
    use_ssl = o.flag("useSSL")
    start_tls = o.flag("startTls")
    host, port, base, tls = "", 0, "", use_ssl
    if provider:
        url = urlsplit(provider)
        if url.scheme not in ("ldap", "ldaps") or not url.hostname:
            o.problems.append(f"ldap login module: <userProvider> must be ldap://host[:port]/base "
                              f"or ldaps://..., not {provider!r}")
        else:
            tls = tls or url.scheme == "ldaps"
            host, base = url.hostname, unquote(url.path.lstrip("/"))
            try:
                port = url.port or (636 if tls else 389)
            except ValueError:
                o.problems.append(f"ldap login module: bad port in {provider!r}")
    if tls and start_tls:
        o.problems.append("ldap login module: startTls is for ldap:// URLs, not ldaps://")
    dn_template = o.text("authIdentity")
    user_filter = o.text("userFilter")
    if (dn_template is None) == (user_filter is None):
        o.problems.append("ldap login module: give exactly one of <authIdentity> (a DN with "
                          "{USERNAME}) and <userFilter> (a search filter with {USERNAME})")
    for name, value in (("authIdentity", dn_template), ("userFilter", user_filter)):
        if value is not None and "{USERNAME}" not in value:
            o.problems.append(f"ldap login module: <{name}> must contain {{USERNAME}}")
    if user_filter is not None and not base:
        o.problems.append("ldap login module: <userFilter> searches under the base DN of "
                          "<userProvider>, which has none")
    bind_dn = o.text("bindDn")
    bind_password = o.text("bindPassword")
    password_file = o.path("bindPasswordFile")
    if password_file is not None:
        if bind_password is not None:
            o.problems.append("ldap login module: <bindPassword> or <bindPasswordFile>, not both")
        try:
            with open(password_file, encoding="utf-8") as f:
                bind_password = f.readline().rstrip("\r\n")
        except OSError as e:
            o.problems.append(f"ldap login module: cannot read <bindPasswordFile>: {e}")
    if (bind_dn is None) != (bind_password is None):
        o.problems.append("ldap login module: <bindDn> needs a password, and a password a "
                          "<bindDn>")
    elif bind_dn is not None and user_filter is None:
        o.problems.append("ldap login module: <bindDn> is only used to search (<userFilter>)")
    group_filter = o.text("groupFilter", LdapModuleSettings.group_filter) or ""
    if "{DN}" not in group_filter:
        o.problems.append("ldap login module: <groupFilter> must contain {DN}")
    settings = LdapModuleSettings(
        host=host, port=port, base=base, tls=tls, start_tls=start_tls,
        ca_file=o.path("trustStore"), user_dn_template=dn_template, user_filter=user_filter,
        bind_dn=bind_dn, bind_password=bind_password, group_base=o.text("groupBase"),
        group_filter=group_filter,
        role_attribute=o.text("roleAttribute", LdapModuleSettings.role_attribute) or "cn",
        member_of=o.flag("memberOf"), name_attribute=o.text("nameAttribute"), timeout=o.number("timeout", 10.0) or 10.0)
    o.finish()
    return settings


def _jwt_settings(o: _Options) -> JwtModuleSettings:
    issuer = o.text("issuer", required=True) or ""
    audience = o.text("audience", required=True) or ""
    key_file, jwks_file = o.path("keyFile"), o.path("jwksFile")
    if (key_file is None) == (jwks_file is None):
        o.problems.append("jwt login module: give exactly one of <keyFile> and <jwksFile>")
    algorithms: tuple[str, ...] = JWT_ALGORITHMS
    text = o.text("algorithms")
    if text is not None:
        algorithms = tuple(str(a) for a in re.split(r"[\s,]+", text) if a)
        bad = [a for a in algorithms if a not in JWT_ALGORITHMS]
        if bad or not algorithms:
            o.problems.append(f"jwt login module: <algorithms> may only name "
                              f"{', '.join(JWT_ALGORITHMS)} (not {', '.join(bad) or 'nothing'})")
    settings = JwtModuleSettings(
        issuer=issuer, audience=audience, algorithms=algorithms, key_file=key_file,
        jwks_file=jwks_file, leeway=o.number("leeway", 30.0),
        name_claim=o.text("nameClaim", "sub") or "sub",
        roles_claim=o.text("rolesClaim", "roles") or "roles")
    o.finish()
    return settings


_BUILDERS: dict[str, Callable[[_Options], ModuleSettings]] = {"file": _file_settings, "ldap": _ldap_settings, "jwt": _jwt_settings}


def login_module_settings(type_: str, success: str, options: Mapping[str, str],
                          base_dir: str = ".") -> LoginModuleSettings:
    """One ``<login-module>``'s settings; ``AuthConfigError`` with every problem.

    *options* maps each child element of ``<options>`` to its text; relative file names
    are taken from *base_dir* (the configuration file's folder).
    """
    problems = []
    flag = next((s for s in Success if s.value == success.strip().lower()), None)
    if flag is None:
        problems.append(f"login-module <success> {success!r} is not supported "
                        f"(supported: {', '.join(SUPPORTED_SUCCESS)})")
    builder = _BUILDERS.get(type_.strip())
    if builder is None:
        extra = " (a Kaazing type kgateway does not implement)" if type_ in \
            KAAZING_UNSUPPORTED_TYPES else ""
        problems.append(f"login-module <type> {type_!r} is not supported{extra} "
                        f"(supported: {', '.join(SUPPORTED_TYPES)})")
        raise AuthConfigError(problems)
    try:
        settings = builder(_Options(type_.strip(), options, base_dir))
    except AuthConfigError as e:
        problems.extend(e.problems)
    if problems:
        raise AuthConfigError(problems)
    assert flag is not None
    return LoginModuleSettings(type_.strip(), flag, settings)
