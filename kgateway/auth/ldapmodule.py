"""The ``ldap`` login module: a user is who an LDAP server lets bind with their password.

One login attempt, one connection (ldaptor, Twisted's LDAP client)::

    connect (ldap:// | ldaps:// | ldap:// + StartTLS)
      -> [search mode] bind as the service account (or stay anonymous),
         search BASE for userFilter, exactly one entry -> its DN
         [DN mode]     DN = authIdentity with the user name DN-escaped
      -> simple bind as DN with the password          (invalidCredentials -> refused)
      -> roles: groups under groupBase whose groupFilter matches the DN (their ``cn``),
         and/or the user's own ``memberOf`` values (first RDN value)
      -> unbind, close

Safety:

- An empty password is refused before connecting: an LDAP simple bind with a DN and no
  password is an "unauthenticated bind" (RFC 4513 5.1.2) that many servers answer with
  success. An empty user name is refused too.
- The user name goes into DNs through ldaptor's DN escaping
  (``distinguishedname.escape``: ``,+"\\<>;=``, leading/trailing space and ``#``) and into
  filters through ldaptor's filter escaping (``pureldap.escape``: ``*()\\`` and NUL become
  ``\\2a`` etc.), then the filter text is parsed by ldaptor, so ``*)(uid=*`` can only ever
  be compared as a literal value. The user's DN goes into ``groupFilter`` the same way.
- ldaps:// and StartTLS verify the server's certificate and host name
  (``optionsForClientTLS``) against ``trustStore`` (PEM) or the system's CAs.
  StartTLS uses ldaptor's ``LDAPClient.startTLS``, which schedules itself on the global
  reactor (an ldaptor limitation; harmless in the gateway, which has one reactor).
- The whole exchange has a timeout; when it expires the connection is dropped and the
  login refused.

The principal's name is the user name as sent, or, with ``nameAttribute`` (e.g. ``uid``),
that attribute of the user's entry: LDAP matches DNs and most attributes without regard to
case, so "ALICE" binds as alice, and a service that checks names should see one spelling.

Every failure is a cred ``UnauthorizedLogin``: bad password, unknown user, several users
matching, a server that is down or a service account that cannot bind (the last two are
logged as errors, so an operator sees them; the client only sees 401).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ldaptor.protocols import pureldap
from ldaptor.protocols.ldap import distinguishedname, ldaperrors, ldapsyntax
from ldaptor.protocols.ldap.ldapclient import LDAPClient
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer, endpoints, ssl
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.logger import Logger
from zope.interface import implementer

from kgateway.auth.principal import Identity
from kgateway.auth.settings import AuthConfigError, LdapModuleSettings

log = Logger()

Connect = Callable[[], "defer.Deferred[LDAPClient]"]


def dn_escape(value: str) -> str:
    """*value* as one RDN value (RFC 4514 escaping, ldaptor's)."""
    return str(distinguishedname.escape(value))


def filter_escape(value: str) -> str:
    """*value* as a filter assertion value (RFC 4515 escaping, ldaptor's)."""
    return str(pureldap.escape(value))


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def first_rdn_value(dn: str) -> str:
    """``cn=ops,ou=groups,...`` -> ``ops``."""
    rdn = distinguishedname.DistinguishedName(dn).split()[0]
    return _text(rdn.split()[0].value)


def load_trust(ca_file: str | None) -> Any:
    """The trust root for TLS: the certificates of a PEM bundle, or the platform's."""
    if ca_file is None:
        return ssl.platformTrust()
    try:
        with open(ca_file, "rb") as f:
            data = f.read()
    except OSError as e:
        raise AuthConfigError([f"ldap login module: cannot read trustStore: {e}"]) from None
    marker = b"-----END CERTIFICATE-----"
    blocks = [b + marker for b in data.split(marker) if b"-----BEGIN CERTIFICATE-----" in b]
    try:
        certs = [ssl.Certificate.loadPEM(b) for b in blocks]
    except Exception as e:  # OpenSSL's errors are not one class
        raise AuthConfigError([f"ldap login module: bad trustStore {ca_file}: {e}"]) from None
    if not certs:
        raise AuthConfigError([f"ldap login module: no certificate in trustStore {ca_file}"])
    return ssl.trustRootFromCertificates(certs)


@implementer(ICredentialsChecker)
class LdapChecker:
    """cred checker of ``IUsernamePassword`` against an LDAP server (module docstring).

    *connect* (for tests) replaces the connection to the configured server.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, settings: LdapModuleSettings, reactor: Any,
                 connect: Connect | None = None) -> None:
        self.settings = settings
        self.reactor = reactor
        self._tls: IOpenSSLClientConnectionCreator | None = None
        if settings.tls or settings.start_tls:
            self._tls = ssl.optionsForClientTLS(settings.host,
                                                trustRoot=load_trust(settings.ca_file))
        self._connect = connect or self._connect_endpoint

    def _connect_endpoint(self) -> defer.Deferred[LDAPClient]:
        s = self.settings
        endpoint: Any = endpoints.HostnameEndpoint(self.reactor, s.host, s.port,
                                                   timeout=max(1, int(s.timeout)))
        if self._tls is not None and s.tls:
            endpoint = endpoints.wrapClientTLS(self._tls, endpoint)
        return endpoints.connectProtocol(endpoint, LDAPClient())

    # Deferred[Any]: cred types the avatar id as bytes; ours is an Identity (principal.py).
    def requestAvatarId(self, credentials: Any) -> defer.Deferred[Any]:
        try:
            user = credentials.username.decode("utf-8")
            password = credentials.password.decode("utf-8")
        except UnicodeDecodeError:
            return defer.fail(UnauthorizedLogin())
        if not user or not password:  # an empty password would be an anonymous bind
            return defer.fail(UnauthorizedLogin())
        d = defer.Deferred.fromCoroutine(self._login(user, password))
        d.addTimeout(self.settings.timeout, self.reactor)
        d.addErrback(self._refuse, user)
        return d

    def _refuse(self, failure: Any, user: str) -> None:
        if failure.check(UnauthorizedLogin):
            log.info("ldap refused {user!r}", user=user)
        elif failure.check(defer.TimeoutError, defer.CancelledError):
            log.error("ldap login of {user!r} timed out after {timeout} s ({host}:{port})",
                      user=user, timeout=self.settings.timeout, host=self.settings.host,
                      port=self.settings.port)
        else:
            log.failure("ldap login of {user!r} failed", failure, user=user)
        raise UnauthorizedLogin()

    async def _login(self, user: str, password: str) -> Identity:
        s = self.settings
        client = await self._connect()
        try:
            if s.start_tls:
                await client.startTLS(self._tls)
            if s.user_dn_template is not None:
                dn = s.user_dn_template.replace("{USERNAME}", dn_escape(user))
            else:
                dn = await self._find_user(client, user)
            try:
                await client.bind(dn, password)
            except ldaperrors.LDAPException as e:
                log.info("ldap bind as {dn!r} refused: {error}", dn=dn, error=str(e))
                raise UnauthorizedLogin() from None
            name = await self._name(client, dn) if s.name_attribute else user
            roles = set(await self._roles(client, dn))
            return Identity(name, frozenset(roles), {"dn": dn})
        finally:
            if client.connected:
                client.transport.loseConnection()

    async def _find_user(self, client: LDAPClient, user: str) -> str:
        s = self.settings
        assert s.user_filter is not None
        if s.bind_dn is not None:
            try:
                await client.bind(s.bind_dn, s.bind_password or "")
            except ldaperrors.LDAPException as e:
                raise RuntimeError(f"the service account {s.bind_dn!r} cannot bind: {e}") \
                    from None
        entries = await self._search(
            client, s.base, s.user_filter.replace("{USERNAME}", filter_escape(user)), ["1.1"])
        if len(entries) != 1:
            log.info("ldap search for {user!r} found {count} entries", user=user,
                     count=len(entries))
            raise UnauthorizedLogin()
        return _text(entries[0].dn.getText())

    async def _name(self, client: LDAPClient, dn: str) -> str:
        """The principal's name as the directory spells it (the user typed "ALICE")."""
        attribute = self.settings.name_attribute
        assert attribute is not None
        entries = await self._search(client, dn, "(objectClass=*)", [attribute],
                                     scope=pureldap.LDAP_SCOPE_baseObject)
        values = sorted(_text(v) for e in entries for v in e.get(attribute, ()))
        if len(values) != 1:
            log.error("ldap entry {dn!r} has {count} values of {attribute}, not one",
                      dn=dn, count=len(values), attribute=attribute)
            raise UnauthorizedLogin()
        return values[0]

    async def _roles(self, client: LDAPClient, dn: str) -> Iterable[str]:
        s = self.settings
        roles: set[str] = set()
        if s.member_of:
            for entry in await self._search(client, dn, "(objectClass=*)", ["memberOf"],
                                            scope=pureldap.LDAP_SCOPE_baseObject):
                for group in entry.get("memberOf", ()):
                    roles.add(first_rdn_value(_text(group)))
        if s.group_base is not None:
            found = await self._search(
                client, s.group_base, s.group_filter.replace("{DN}", filter_escape(dn)),
                [s.role_attribute])
            for entry in found:
                roles.update(_text(v) for v in entry.get(s.role_attribute, ()))
        return roles

    @staticmethod
    async def _search(client: LDAPClient, base: str, filter_text: str,
                      attributes: list[str],
                      scope: int = pureldap.LDAP_SCOPE_wholeSubtree) -> list[Any]:
        entry = ldapsyntax.LDAPEntry(client, base)
        return list(await entry.search(filterText=filter_text, attributes=attributes,
                                       scope=scope, sizeLimit=100))
