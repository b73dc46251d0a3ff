"""The ldap login module without a server: escaping, and what it refuses before connecting.

The exchange with a real slapd is in tests/integration/test_auth_ldap.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from ldaptor import ldapfilter
from ldaptor.protocols import pureldap
from ldaptor.protocols.ldap import distinguishedname
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock

from kgateway.auth.ldapmodule import LdapChecker, dn_escape, filter_escape, first_rdn_value
from kgateway.auth.settings import LdapModuleSettings
from tests.unit.auth.support import failure_of

SETTINGS = LdapModuleSettings(host="127.0.0.1", port=3389, base="ou=people,dc=example,dc=com",
                              user_filter="(&(uid={USERNAME})(objectClass=inetOrgPerson))")


def test_an_injection_attempt_stays_one_literal_value_in_the_filter() -> None:
    text = SETTINGS.user_filter.replace("{USERNAME}", filter_escape("*)(uid=*"))  # type: ignore[union-attr]
    parsed = ldapfilter.parseFilter(text)
    assert isinstance(parsed, pureldap.LDAPFilter_and)
    uid = [f for f in parsed if isinstance(f, pureldap.LDAPFilter_equalityMatch)
           and f.attributeDesc.value == "uid"]
    assert len(uid) == 1 and uid[0].assertionValue.value == "*)(uid=*"
    assert len(list(parsed)) == 2


@pytest.mark.parametrize("value", ["a*", "a)(b", "a\\2a", "a\x00b", "(*)", "é"])
def test_filter_escaping_round_trips(value: str) -> None:
    parsed = ldapfilter.parseFilter(f"(uid={filter_escape(value)})")
    assert isinstance(parsed, pureldap.LDAPFilter_equalityMatch)
    assert parsed.assertionValue.value == value


@pytest.mark.parametrize("value", ["a,b", "a+b", 'a"b', "a\\b", "a<b>", "a;b", "a=b", " a ",
                                   "#a"])
def test_dn_escaping_keeps_the_user_name_one_rdn_value(value: str) -> None:
    dn = distinguishedname.DistinguishedName(f"uid={dn_escape(value)},ou=people,dc=example,dc=com")
    assert len(dn.split()) == 4
    assert dn.split()[0].split()[0].value == value


def test_first_rdn_value() -> None:
    assert first_rdn_value("cn=ops,ou=groups,dc=example,dc=com") == "ops"
    assert first_rdn_value("cn=a\\,b,ou=groups") == "a,b"


def never_connect() -> defer.Deferred[Any]:
    raise AssertionError("must not connect")


@pytest.mark.parametrize("user, password", [
    (b"alice", b""),          # would be an unauthenticated ("anonymous") bind: success
    (b"", b"secret"),
    (b"\xff", b"secret"),
    (b"alice", b"\xff"),
])
def test_refused_without_connecting(user: bytes, password: bytes) -> None:
    checker = LdapChecker(SETTINGS, MemoryReactorClock(), connect=never_connect)
    failure = failure_of(checker.requestAvatarId(UsernamePassword(user, password)))
    assert failure.check(UnauthorizedLogin)


def test_a_server_that_never_answers_times_out_into_a_refusal() -> None:
    clock = MemoryReactorClock()
    pending: defer.Deferred[Any] = defer.Deferred()
    checker = LdapChecker(SETTINGS, clock, connect=lambda: pending)
    d = checker.requestAvatarId(UsernamePassword(b"alice", b"secret"))
    result: list[Any] = []
    d.addErrback(lambda f: result.append(f.trap(UnauthorizedLogin)))
    clock.advance(SETTINGS.timeout - 0.1)
    assert result == []
    clock.advance(0.2)
    assert result == [UnauthorizedLogin]
