"""The realm, the principal and the JAAS-flagged chain of login modules, with fake checkers."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword, UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock
from zope.interface import implementer

from kgateway.auth.credentials import BearerToken, IToken
from kgateway.auth.portal import ChainChecker, Link, build_portal
from kgateway.auth.principal import Identity, IPrincipal, Principal, Realm
from kgateway.auth.settings import (
    AuthConfigError,
    Success,
    login_module_settings,
    realm_settings,
)
from tests.unit.auth.support import failure_of, result_of

# The JAAS flags, short: the tables below read like a configuration.
R, Q, S, OPT = Success.REQUIRED, Success.REQUISITE, Success.SUFFICIENT, Success.OPTIONAL
CREDS = UsernamePassword(b"alice", b"pw")


@implementer(ICredentialsChecker)
class FakeChecker:
    """Proves a fixed identity, refuses, or blows up; records that it was asked."""

    def __init__(self, outcome: Identity | str | Exception,
                 interfaces: tuple[Any, ...] = (IUsernamePassword,)) -> None:
        self.outcome = outcome
        self.credentialInterfaces = interfaces
        self.asked = 0

    def requestAvatarId(self, credentials: Any) -> defer.Deferred[Any]:
        self.asked += 1
        if isinstance(self.outcome, Exception):
            return defer.fail(self.outcome)
        return defer.succeed(self.outcome)


def ok(name: str = "alice", *roles: str) -> FakeChecker:
    return FakeChecker(Identity(name, frozenset(roles), {"from": name + "".join(roles)}))


def no() -> FakeChecker:
    return FakeChecker(UnauthorizedLogin())


def chain(*links: tuple[Success, FakeChecker]) -> ChainChecker:
    return ChainChecker([Link(f"m{i}", flag, checker) for i, (flag, checker) in enumerate(links)])


def outcome(c: ChainChecker, creds: Any = CREDS) -> Identity | None:
    d = c.requestAvatarId(creds)
    failures: list[Any] = []
    d.addErrback(lambda f: failures.append(f.trap(UnauthorizedLogin)))
    return None if failures else result_of(d)


@pytest.mark.parametrize("flags_and_results, succeeds", [
    ([(R, True), (R, True)], True),
    ([(R, True), (R, False)], False),
    ([(R, False), (S, True)], False),      # a sufficient success does not rescue a failure
    ([(S, False), (R, True)], True),
    ([(OPT, False), (OPT, True)], True),
    ([(OPT, False), (OPT, False)], False),     # no module succeeded at all
    ([(S, False), (S, False)], False),
    ([(R, True), (OPT, False)], True),
    ([(Q, True), (S, True), (R, False)], True),   # the sufficient one ends the chain first
])
def test_jaas_control_flags(flags_and_results: list[tuple[Success, bool]],
                            succeeds: bool) -> None:
    c = chain(*[(flag, ok() if good else no()) for flag, good in flags_and_results])
    assert (outcome(c) is not None) == succeeds


def test_a_requisite_failure_stops_the_chain() -> None:
    later = ok()
    assert outcome(chain((Q, no()), (OPT, later))) is None
    assert later.asked == 0


def test_a_sufficient_success_stops_the_chain() -> None:
    later = no()
    assert outcome(chain((S, ok("alice", "a")), (R, later))) == Identity(
        "alice", frozenset({"a"}), {"from": "alicea"})
    assert later.asked == 0


def test_roles_and_attributes_are_the_union_and_the_first_name_wins() -> None:
    identity = outcome(chain((R, ok("alice", "devs")), (OPT, no()), (OPT, ok("ALICE", "ops"))))
    assert identity == Identity("alice", frozenset({"devs", "ops"}), {"from": "alicedevs"})


def test_a_module_that_cannot_take_the_credentials_counts_as_failed() -> None:
    token_only = FakeChecker(Identity("alice"), (IToken,))
    c = chain((R, ok()), (R, token_only))
    assert c.credentialInterfaces == (IUsernamePassword, IToken)
    assert outcome(c) is None
    assert token_only.asked == 0
    assert outcome(chain((R, ok()), (OPT, token_only))) is not None


def test_a_module_that_errors_counts_as_failed_and_the_chain_says_unauthorized() -> None:
    assert outcome(chain((R, FakeChecker(RuntimeError("ldap down"))))) is None
    assert outcome(chain((S, FakeChecker(RuntimeError("ldap down"))), (R, ok()))) is not None


def test_a_stock_checker_name_becomes_an_identity_without_roles() -> None:
    assert outcome(chain((R, FakeChecker(b"alice")))) == Identity("alice")  # type: ignore[arg-type]


def test_realm_makes_a_principal_with_the_realm_name() -> None:
    iface, principal, logout = Realm("demo").requestAvatar(
        Identity("alice", frozenset({"devs"}), {"dn": "uid=alice"}), None, IPrincipal)
    assert iface is IPrincipal and IPrincipal.providedBy(principal)
    assert principal == Principal("alice", frozenset({"devs"}),
                                  {"dn": "uid=alice", "realm": "demo"})
    assert principal.has_role("devs") and not principal.has_role("ops")
    logout()
    assert Realm("demo").requestAvatar("bob", None, IPrincipal)[1].name == "bob"
    assert Realm("demo").requestAvatar(b"bob", None, IPrincipal)[1].roles == frozenset()


def test_realm_refuses_other_interfaces_and_principals_are_immutable() -> None:
    with pytest.raises(NotImplementedError):
        Realm("demo").requestAvatar(Identity("alice"), None, IToken)
    principal = Principal("alice", frozenset({"devs"}), {"k": "v"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        principal.name = "mallory"  # type: ignore[misc]
    with pytest.raises(TypeError):
        principal.attributes["k"] = "w"  # type: ignore[index]


def test_build_portal_refuses_a_bad_password_file(tmp_path: Path) -> None:
    (tmp_path / "users").write_text("alice:not-a-hash:\n")
    for name in ("users", "missing"):
        module = login_module_settings("file", "required", {"file": name}, str(tmp_path))
        with pytest.raises(AuthConfigError, match="file login module"):
            build_portal(realm_settings("demo", "Basic", [module]), MemoryReactorClock())


def test_build_portal_logs_a_token_in_as_a_principal(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "idp.pem").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    module = login_module_settings("jwt", "required", {
        "issuer": "idp", "audience": "gw", "keyFile": "idp.pem"}, str(tmp_path))
    portal = build_portal(realm_settings("demo", "Bearer", [module]), MemoryReactorClock())
    token = jwt.encode({"iss": "idp", "aud": "gw", "sub": "alice", "exp": 2**33,
                        "roles": "ops"}, key, algorithm="ES256")
    iface, principal, _ = result_of(portal.login(BearerToken(token), None, IPrincipal))
    assert isinstance(principal, Principal)
    assert (principal.name, principal.roles, principal.attributes["realm"]) == (
        "alice", {"ops"}, "demo")
    assert failure_of(portal.login(BearerToken(token + "x"), None, IPrincipal)).check(
        UnauthorizedLogin)
