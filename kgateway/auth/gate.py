"""The gate of one service: who the client is (its realm's Portal), and whether it may in
(the service's ``<authorization-constraint>``).

    WebSocket handshake / HTTP request headers, query, cookies
        --Gate.credentials()--> UsernamePassword | BearerToken | None
        --Gate.login()--------> Principal          (or LoginFailed: 401 with Gate.challenge())
        --Gate.allows()-------> True / False       (False: 403)
    STOMP CONNECT login/passcode, AMQP Start-Ok PLAIN
        --Gate.login()--> ...                      (the protocol's own refusal)

Where a browser's credentials can come from, and the trade-offs (README "Authentication"):

* ``Authorization: Basic`` / ``Bearer``: programs; browsers cannot set headers on a
  WebSocket handshake.
* ``<http-query-parameter>`` (e.g. ``access_token``): works from any browser, but the URL,
  token included, may end up in proxies' and servers' access logs: use short-lived tokens.
* ``<http-cookie>``: sent by the browser for the gateway's own origin only (a page served by
  the gateway, or a cookie set for its domain); not visible in URLs; but cookies ride along
  on cross-site requests, so keep a ``<cross-site-constraint>`` tight.
* For ``jms`` and ``amqp.proxy`` the credentials may instead come inside the protocol
  (STOMP CONNECT ``login``/``passcode``, AMQP ``PLAIN``): the handshake then lets the
  client in without credentials, and the protocol's first exchange authenticates it.

Token sources (header, query, cookie) carry bearer tokens and need the Bearer scheme.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from typing import Any

from twisted.cred.credentials import UsernamePassword
from twisted.cred.portal import Portal
from twisted.internet import defer

from kgateway.auth.credentials import BearerToken, parse_authorization
from kgateway.auth.principal import IPrincipal, Principal
from kgateway.auth.settings import ChallengeScheme, TokenSources

Credentials = UsernamePassword | BearerToken


@dataclass(frozen=True)
class Constraint:
    """``<authorization-constraint>``: who may use a service once authenticated.

    ``require-role`` may be given several times: any one of the roles admits (as in Java
    EE's auth-constraint); ``*`` or ``<require-valid-user/>`` admits any authenticated user.
    """

    roles: frozenset[str] = frozenset()
    valid_user: bool = False

    def allows(self, principal: Principal) -> bool:
        if self.valid_user or "*" in self.roles:
            return True
        if not self.roles:
            return True  # a realm without a constraint: authentication is the whole check
        return bool(self.roles & principal.roles)


class Gate:
    """Authentication and authorization for one service (see the module docstring)."""

    def __init__(self, portal: Portal, realm: str, scheme: ChallengeScheme,
                 sources: TokenSources | None = None,
                 constraint: Constraint | None = None, optional: bool = False) -> None:
        self.portal = portal
        #: a handshake may come without credentials: the protocol carries them (jms, amqp)
        self.optional = optional
        self.realm = realm
        self.scheme = scheme
        self.sources = sources or TokenSources()
        self.constraint = constraint or Constraint()

    def challenge(self) -> str:
        """The WWW-Authenticate value of a 401."""
        return f'{self.scheme.value} realm="{self.realm}"'

    def credentials(self, headers: Mapping[str, str],
                    query: Mapping[str, Sequence[str]] | None = None) -> Credentials | None:
        """The client's credentials from an HTTP request, or None if it sent none.

        *headers* maps lower-case names to values. Raises ``MalformedAuthorization`` for
        credentials that are there but unreadable (a 401 too).
        """
        authorization = headers.get("authorization")
        if authorization:
            return parse_authorization(authorization)
        token = None
        if self.sources.header:
            token = headers.get(self.sources.header.lower())
        if not token and self.sources.query and query:
            values = query.get(self.sources.query) or ()
            token = values[0] if values else None
        if not token and self.sources.cookie and headers.get("cookie"):
            try:
                jar = SimpleCookie(headers["cookie"])
            except CookieError:
                jar = SimpleCookie()
            morsel = jar.get(self.sources.cookie)
            token = morsel.value if morsel is not None else None
        return BearerToken(token) if token else None

    def login(self, credentials: Credentials) -> defer.Deferred[Principal]:
        """The Principal for *credentials*, or a failure with cred's ``LoginFailed``."""
        def principal(result: tuple[Any, object, Any]) -> Principal:
            avatar = result[1]
            assert isinstance(avatar, Principal)
            return avatar

        return self.portal.login(credentials, None, IPrincipal).addCallback(principal)

    def allows(self, principal: Principal) -> bool:
        return self.constraint.allows(principal)
