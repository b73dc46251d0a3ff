"""Who a client is once authenticated: the ``Principal`` avatar and the ``Realm`` that makes it.

twisted.cred splits a login in two: a credentials checker says *which* identity the
credentials prove (the "avatar id"), then the realm builds the avatar for that id::

    credentials --ICredentialsChecker.requestAvatarId--> Identity
                --IRealm.requestAvatar-------------------> (IPrincipal, Principal, logout)

Why the avatar id is a small object (``Identity``) and not a bare name
------------------------------------------------------------------------
cred's checkers conventionally return a user name (bytes or str), and the realm would then
have to look the roles up itself. Here the roles come from the same place as the proof:
the password file line, the LDAP groups found over the connection that just bound as the
user, the token's claims. A realm that looked them up again would need a second LDAP
connection (after the first one had already proved the password) and would have to know
which login module vouched for the user; for a token it could not look anything up at all.
``Portal.login`` hands whatever ``requestAvatarId`` returns to ``requestAvatar`` untouched,
so each checker returns an immutable ``Identity(name, roles, attributes)`` and the realm
only shapes it into the avatar. The realm also accepts a plain ``str``/``bytes`` id (a stock
cred checker's): that user gets no roles.

The realm is where realm-wide policy would go (a role mapping, a fixed attribute); today
it adds the realm's name as the ``realm`` attribute, so a service can tell which realm
authenticated a principal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from twisted.cred.portal import IRealm
from zope.interface import Attribute, Interface, implementer


class IPrincipal(Interface):
    """An authenticated user as a service sees it (the interface asked of the portal)."""

    name = Attribute("The user name (str).")
    roles = Attribute("The roles granted (frozenset of str).")
    attributes = Attribute("Other facts about the user (read-only mapping of str to str).")


def _frozen_mapping(items: Mapping[str, str] | Iterable[tuple[str, str]]) -> Mapping[str, str]:
    return MappingProxyType(dict(items))


@dataclass(frozen=True)
class Identity:
    """What a login module proved: the avatar id its ``requestAvatarId`` returns."""

    name: str
    roles: frozenset[str] = frozenset()
    attributes: Mapping[str, str] = field(default_factory=lambda: _frozen_mapping({}))

    def __post_init__(self) -> None:
        object.__setattr__(self, "roles", frozenset(self.roles))
        object.__setattr__(self, "attributes", _frozen_mapping(self.attributes))


@implementer(IPrincipal)
@dataclass(frozen=True)
class Principal:
    """The avatar: an authenticated user with its roles. Immutable."""

    name: str
    roles: frozenset[str] = frozenset()
    attributes: Mapping[str, str] = field(default_factory=lambda: _frozen_mapping({}))

    def __post_init__(self) -> None:
        object.__setattr__(self, "roles", frozenset(self.roles))
        object.__setattr__(self, "attributes", _frozen_mapping(self.attributes))

    def has_role(self, role: str) -> bool:
        return role in self.roles


def _no_logout() -> None:
    pass


@implementer(IRealm)
class Realm:
    """The cred realm of one ``<security><realm>``: turns an ``Identity`` into a ``Principal``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def requestAvatar(
        self, avatarId: Any, mind: object, *interfaces: Any
    ) -> tuple[Any, Principal, Callable[[], None]]:
        if IPrincipal not in interfaces:
            raise NotImplementedError(f"realm {self.name!r} only makes IPrincipal avatars")
        if isinstance(avatarId, Identity):
            identity = avatarId
        elif isinstance(avatarId, bytes):
            identity = Identity(avatarId.decode("utf-8"))
        elif isinstance(avatarId, str):
            identity = Identity(avatarId)
        else:
            raise TypeError(f"unexpected avatar id {avatarId!r}")
        attributes = dict(identity.attributes)
        attributes["realm"] = self.name
        return IPrincipal, Principal(identity.name, identity.roles, attributes), _no_logout
