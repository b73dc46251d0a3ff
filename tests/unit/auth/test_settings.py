"""Kaazing-style login-module options and realms into frozen settings, or every problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from kgateway.auth.settings import (
    JWT_ALGORITHMS,
    SUPPORTED_SCHEMES,
    SUPPORTED_SUCCESS,
    SUPPORTED_TYPES,
    AuthConfigError,
    ChallengeScheme,
    FileModuleSettings,
    JwtModuleSettings,
    LdapModuleSettings,
    Success,
    login_module_settings,
    realm_settings,
)

LDAP = {"userProvider": "ldap://127.0.0.1:3389/ou=people,dc=example,dc=com",
        "authIdentity": "uid={USERNAME},ou=people,dc=example,dc=com"}
JWT = {"issuer": "https://idp/", "audience": "gw", "keyFile": "idp.pem"}


def problems(type_: str, success: str, options: dict[str, str]) -> list[str]:
    with pytest.raises(AuthConfigError) as e:
        login_module_settings(type_, success, options, "/etc/kgateway")
    return list(e.value.problems)


def test_what_is_supported_is_named() -> None:
    assert SUPPORTED_TYPES == ("file", "ldap", "jwt")
    assert SUPPORTED_SUCCESS == ("required", "requisite", "sufficient", "optional")
    assert SUPPORTED_SCHEMES == ("Basic", "Application Basic", "Bearer")


def test_file_module_path_is_relative_to_the_config_folder() -> None:
    m = login_module_settings("file", "required", {"file": "users.passwd"}, "/etc/kgateway")
    assert (m.type, m.success) == ("file", Success.REQUIRED)
    assert m.settings == FileModuleSettings("/etc/kgateway/users.passwd")
    absolute = login_module_settings("file", " Sufficient ", {"file": "/srv/p"}, "/etc")
    assert absolute.settings == FileModuleSettings("/srv/p")
    assert absolute.success is Success.SUFFICIENT


def test_ldap_module_with_a_dn_template() -> None:
    s = login_module_settings("ldap", "required", dict(
        LDAP, groupBase="ou=groups,dc=example,dc=com", memberOf="true", timeout="2.5",
        nameAttribute="uid")).settings
    assert s == LdapModuleSettings(
        host="127.0.0.1", port=3389, base="ou=people,dc=example,dc=com",
        user_dn_template="uid={USERNAME},ou=people,dc=example,dc=com",
        group_base="ou=groups,dc=example,dc=com", member_of=True, timeout=2.5,
        name_attribute="uid")


def test_ldap_module_search_mode_over_ldaps_with_a_service_account(tmp_path: Path) -> None:
    (tmp_path / "bind.pw").write_text("s3cret\nignored\n")
    s = login_module_settings("ldap", "requisite", {
        "userProvider": "ldaps://ldap.example.com/ou=people,dc=example,dc=com",
        "userFilter": "(&(uid={USERNAME})(objectClass=inetOrgPerson))",
        "bindDn": "cn=gw,dc=example,dc=com", "bindPasswordFile": "bind.pw",
        "trustStore": "ca.pem"}, str(tmp_path)).settings
    assert isinstance(s, LdapModuleSettings)
    assert (s.host, s.port, s.tls, s.start_tls) == ("ldap.example.com", 636, True, False)
    assert (s.bind_dn, s.bind_password) == ("cn=gw,dc=example,dc=com", "s3cret")
    assert s.ca_file == str(tmp_path / "ca.pem")


@pytest.mark.parametrize("options, expected", [
    ({"userProvider": "http://h/"}, "must be ldap://"),
    ({**LDAP, "userFilter": "(uid={USERNAME})"}, "exactly one of <authIdentity>"),
    ({"userProvider": LDAP["userProvider"]}, "exactly one of <authIdentity>"),
    ({**LDAP, "authIdentity": "uid=alice,dc=x"}, "must contain {USERNAME}"),
    ({"userProvider": "ldap://h", "userFilter": "(uid={USERNAME})"}, "which has none"),
    ({**LDAP, "bindDn": "cn=x"}, "needs a password"),
    ({**LDAP, "bindDn": "cn=x", "bindPassword": "p"}, "only used to search"),
    ({**LDAP, "useSSL": "yes"}, "must be true or false"),
    ({**LDAP, "useSSL": "true", "startTls": "true"}, "startTls is for ldap://"),
    ({**LDAP, "groupFilter": "(member=x)"}, "must contain {DN}"),
    ({**LDAP, "timeout": "soon"}, "number of seconds"),
    ({**LDAP, "authzIdentity": "{EMPLOYEENUMBER}"}, "unknown option <authzIdentity>"),
])
def test_ldap_module_problems(options: dict[str, str], expected: str) -> None:
    assert any(expected in p for p in problems("ldap", "required", options))


def test_jwt_module_defaults_and_lists() -> None:
    s = login_module_settings("jwt", "required", JWT, "/etc/gw").settings
    assert s == JwtModuleSettings(issuer="https://idp/", audience="gw",
                                  key_file="/etc/gw/idp.pem", algorithms=JWT_ALGORITHMS)
    s = login_module_settings("jwt", "required", dict(
        JWT, algorithms="RS256, ES256", leeway="5", nameClaim="email")).settings
    assert isinstance(s, JwtModuleSettings)
    assert (s.algorithms, s.leeway, s.name_claim) == (("RS256", "ES256"), 5.0, "email")


@pytest.mark.parametrize("options, expected", [
    ({**JWT, "algorithms": "RS256 none"}, "not none"),
    ({**JWT, "algorithms": "HS256"}, "not HS256"),
    ({"issuer": "i", "audience": "a"}, "exactly one of <keyFile> and <jwksFile>"),
    ({**JWT, "jwksFile": "k.json"}, "exactly one of <keyFile> and <jwksFile>"),
    ({"keyFile": "k.pem"}, "option <issuer> is required"),
    ({"keyFile": "k.pem"}, "option <audience> is required"),
])
def test_jwt_module_problems(options: dict[str, str], expected: str) -> None:
    assert any(expected in p for p in problems("jwt", "required", options))


def test_unsupported_types_and_flags_fail_closed() -> None:
    assert problems("kerberos5", "required", {}) == [
        "login-module <type> 'kerberos5' is not supported (a Kaazing type kgateway does not "
        "implement) (supported: file, ldap, jwt)"]
    assert problems("file", "mandatory", {"file": "p", "debug": "true"}) == [
        "login-module <success> 'mandatory' is not supported "
        "(supported: required, requisite, sufficient, optional)",
        "file login module: unknown option <debug>"]


def test_realm_settings() -> None:
    file_module = login_module_settings("file", "required", {"file": "p"})
    realm = realm_settings("demo", "application basic", [file_module], "Demo")
    assert realm.challenge_scheme is ChallengeScheme.APPLICATION_BASIC
    assert realm.login_modules == (file_module,)


@pytest.mark.parametrize("scheme, modules, expected", [
    ("Negotiate", ["file"], "http-challenge-scheme 'Negotiate' is not supported"),
    ("Bearer", ["file"], "need a user name and password"),
    ("Basic", ["jwt"], "needs the Bearer scheme"),
    ("Basic", [], "has no login module"),
])
def test_realm_problems(scheme: str, modules: list[str], expected: str) -> None:
    options = {"file": {"file": "p"}, "jwt": JWT}
    built = [login_module_settings(m, "required", options[m]) for m in modules]
    with pytest.raises(AuthConfigError) as e:
        realm_settings("demo", scheme, built)
    assert any(expected in p for p in e.value.problems)
