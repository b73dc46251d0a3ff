"""A realm's cred ``Portal``: its login modules chained with JAAS's control flags.

``build_portal(settings, reactor)`` is the one entry point the gateway needs::

    portal = build_portal(realm_settings, reactor)
    iface, principal, logout = await portal.login(credentials, None, IPrincipal)

A portal picks one checker per credentials interface, but a Kaazing realm is a *chain*
of login modules, each with a ``<success>`` flag. So the portal gets one ``ChainChecker``
that runs the modules in order with JAAS's rules (``javax.security.auth.login.Configuration``):

- ``required``: must succeed; the chain goes on either way;
- ``requisite``: must succeed; a failure ends the chain at once;
- ``sufficient``: a success ends the chain, successfully, if no required/requisite
  module failed before it; a failure is ignored;
- ``optional``: need not succeed.

The chain succeeds when every required and requisite module that ran succeeded, and at
least one module succeeded. A module that cannot take the credentials (the jwt module
given a user name and password) counts as failed: fail closed. The principal's name is
that of the first module that succeeded; its roles and attributes are the union of all
the modules that succeeded (JAAS collects every module's principals the same way).
Any error of a module (a server down, a bug) is logged and counts as its failure; what
the chain reports is always ``UnauthorizedLogin``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import Portal
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from kgateway.auth.filemodule import (
    PasswordFileChecker,
    PasswordFileError,
    load_password_file,
    reactor_thread_runner,
)
from kgateway.auth.jwtmodule import JwtChecker
from kgateway.auth.ldapmodule import LdapChecker
from kgateway.auth.principal import Identity, Realm
from kgateway.auth.settings import (
    AuthConfigError,
    FileModuleSettings,
    JwtModuleSettings,
    LdapModuleSettings,
    LoginModuleSettings,
    RealmSettings,
    Success,
)

log = Logger()


@dataclass(frozen=True)
class Link:
    """One login module in a chain."""

    name: str
    success: Success
    checker: ICredentialsChecker


def _accepts(checker: ICredentialsChecker, credentials: object) -> bool:
    return any(i.providedBy(credentials) for i in checker.credentialInterfaces)


@implementer(ICredentialsChecker)
class ChainChecker:
    """Login modules run in order with JAAS's control flags (see the module docstring)."""

    def __init__(self, links: Sequence[Link]) -> None:
        if not links:
            raise ValueError("a chain needs at least one login module")
        self.links = tuple(links)
        interfaces: list[Any] = []
        for link in self.links:
            interfaces.extend(i for i in link.checker.credentialInterfaces
                              if i not in interfaces)
        self.credentialInterfaces = tuple(interfaces)

    # Deferred[Any]: cred types the avatar id as bytes; ours is an Identity (principal.py).
    def requestAvatarId(self, credentials: Any) -> defer.Deferred[Any]:
        return defer.Deferred.fromCoroutine(self._run(credentials))

    async def _attempt(self, link: Link, credentials: Any) -> Identity | None:
        if not _accepts(link.checker, credentials):
            return None
        try:
            result = await defer.maybeDeferred(link.checker.requestAvatarId, credentials)
        except UnauthorizedLogin:
            return None
        except Exception:
            log.failure("login module {module} failed", module=link.name)
            return None
        if isinstance(result, Identity):
            return result
        return Identity(result.decode("utf-8") if isinstance(result, bytes) else str(result))

    async def _run(self, credentials: Any) -> Identity:
        proved: list[Identity] = []
        required_failed = False
        for link in self.links:
            identity = await self._attempt(link, credentials)
            if identity is not None:
                proved.append(identity)
                if link.success is Success.SUFFICIENT and not required_failed:
                    break
            elif link.success is Success.REQUISITE:
                required_failed = True
                break
            elif link.success is Success.REQUIRED:
                required_failed = True
        if required_failed or not proved:
            raise UnauthorizedLogin()
        roles: set[str] = set()
        attributes: dict[str, str] = {}
        for identity in reversed(proved):  # the first module's attributes win
            roles |= identity.roles
            attributes.update(identity.attributes)
        return Identity(proved[0].name, frozenset(roles), attributes)


def build_checker(module: LoginModuleSettings, reactor: Any) -> ICredentialsChecker:
    """The cred checker of one login module (``AuthConfigError`` if its files are bad)."""
    s = module.settings
    if isinstance(s, FileModuleSettings):
        try:
            load_password_file(s.path)  # a bad file is a start-up error, not 401s later
        except PasswordFileError as e:
            raise AuthConfigError([f"file login module: {e}"]) from None
        return PasswordFileChecker(s.path, reactor_thread_runner(reactor))
    if isinstance(s, LdapModuleSettings):
        return LdapChecker(s, reactor)
    if isinstance(s, JwtModuleSettings):
        return JwtChecker(s)
    raise TypeError(f"unknown login module settings {s!r}")


def build_portal(settings: RealmSettings, reactor: Any) -> Portal:
    """The portal of one realm: ``Realm`` + one ``ChainChecker`` over its login modules.

    Reads every file the modules need (password file, JWT keys, LDAP trust store) and
    raises ``AuthConfigError`` if one is unusable; opens no connection and starts nothing,
    so ``kgateway check`` can call it (with any reactor) to report those problems too.
    ``Portal.login`` then fails with ``UnauthorizedLogin``, or ``UnhandledCredentials``
    for credentials none of the modules takes: treat cred's ``LoginFailed`` (both) as 401.
    """
    links = [Link(f"{m.type}#{i}", m.success, build_checker(m, reactor))
             for i, m in enumerate(settings.login_modules, 1)]
    return Portal(Realm(settings.name), [ChainChecker(links)])
