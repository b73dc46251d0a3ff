"""The Gate: where credentials come from in an HTTP request, and who may in."""

from __future__ import annotations

import base64

import pytest
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import LoginFailed
from twisted.cred.portal import Portal

from kgateway.auth.credentials import BearerToken, MalformedAuthorization
from kgateway.auth.gate import Constraint, Gate
from kgateway.auth.principal import Principal, Realm
from kgateway.auth.settings import ChallengeScheme, TokenSources
from tests.unit.auth.support import failure_of, result_of
from tests.unit.fakes import memory_gate


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_basic_credentials_log_in_and_carry_roles() -> None:
    gate = memory_gate({"ops"})
    credentials = gate.credentials({"authorization": basic("alice", "secret")})
    assert isinstance(credentials, UsernamePassword)
    principal = result_of(gate.login(credentials))
    assert principal.name == "alice" and principal.roles == {"ops", "devs"}
    assert gate.allows(principal)
    assert gate.challenge() == 'Basic realm="demo"'


def test_wrong_password_is_a_login_failure() -> None:
    gate = memory_gate()
    failure = failure_of(gate.login(UsernamePassword(b"alice", b"wrong")))
    assert failure.check(LoginFailed)


def test_no_credentials_is_none_and_garbage_is_malformed() -> None:
    gate = memory_gate()
    assert gate.credentials({}) is None
    with pytest.raises(MalformedAuthorization):
        gate.credentials({"authorization": "Basic !!!"})


def test_token_sources_in_order_header_query_cookie() -> None:
    portal = Portal(Realm("t"), [])
    gate = Gate(portal, "t", ChallengeScheme.BEARER,
                TokenSources(header="X-Token", query="access_token", cookie="kgw"))
    assert gate.challenge() == 'Bearer realm="t"'
    assert gate.credentials({"x-token": "h"}) == BearerToken("h")
    assert gate.credentials({}, {"access_token": ["q", "r"]}) == BearerToken("q")
    assert gate.credentials({"cookie": "a=b; kgw=c"}) == BearerToken("c")
    assert gate.credentials({"cookie": "a=b"}) is None
    # Authorization wins over every other source
    assert gate.credentials({"authorization": "Bearer z", "x-token": "h"}) == BearerToken("z")


@pytest.mark.parametrize("constraint, roles, allowed", [
    (Constraint(), set(), True),  # no constraint: authenticated is enough
    (Constraint(frozenset({"ops"})), {"devs"}, False),
    (Constraint(frozenset({"ops", "admins"})), {"admins"}, True),  # any one role admits
    (Constraint(frozenset({"*"})), set(), True),
    (Constraint(valid_user=True), set(), True),
])
def test_constraints(constraint: Constraint, roles: set[str], allowed: bool) -> None:
    assert constraint.allows(Principal("u", frozenset(roles))) is allowed
