"""Pure tests of the Authorization header parsers (kgateway.auth.credentials)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.cred.credentials import IUsernamePassword, UsernamePassword

from kgateway.auth.credentials import (
    MAX_HEADER,
    BearerToken,
    IToken,
    MalformedAuthorization,
    parse_authorization,
)


def basic(raw: bytes) -> bytes:
    return b"Basic " + base64.b64encode(raw)


def user_password(value: bytes | str) -> UsernamePassword:
    creds = parse_authorization(value)
    assert isinstance(creds, UsernamePassword)
    return creds


def test_basic_gives_username_password_split_at_the_first_colon() -> None:
    creds = user_password(basic(b"alice:se:cret"))
    assert IUsernamePassword.providedBy(creds)
    assert (creds.username, creds.password) == (b"alice", b"se:cret")


def test_scheme_is_case_insensitive_and_str_is_accepted() -> None:
    value = "bAsIc  " + base64.b64encode(b"bob:pw").decode()
    creds = user_password(value)
    assert (creds.username, creds.password) == (b"bob", b"pw")


def test_utf8_user_and_password() -> None:
    creds = user_password(basic("zoë:päss".encode()))
    assert creds.username.decode() == "zoë"


def test_empty_password_is_parsed_and_left_to_the_login_modules() -> None:
    assert user_password(basic(b"alice:")).password == b""


@pytest.mark.parametrize("value, reason", [
    (b"Basic YWxpY2U6c2VjcmV0!", "not base64"),          # a character outside the alphabet
    (b"Basic YWxpY2U6c2VjcmV", "not valid base64"),        # bad padding
    (b"Basic " + base64.b64encode(b"alice"), "no ':'"),
    (b"Basic " + base64.b64encode(b"\xffalice:x"), "not UTF-8"),
    (b"Basic " + base64.b64encode(b"al\x00ice:x"), "control character"),
    (b"Basic " + base64.b64encode(b":secret"), "empty user id"),
    (b"Basic", "expected '<scheme> <credentials>'"),
    (b"Basic   ", "expected '<scheme> <credentials>'"),
    (b"", "expected '<scheme> <credentials>'"),
    (b"Digest username=alice", "unsupported scheme 'digest'"),
    (b"0123456789abcdef0123 x", "unsupported scheme '.not a scheme name.'"),  # a bare token
    (b"Supercalifragilistic x", "unsupported scheme '.not a scheme name.'"),
    (b"Basic \xc3\xa9", "not ASCII"),
    (b"Bearer abc def", "outside b64token"),
    (b"Bearer a\"b", "outside b64token"),
    (b"Bearer " + b"a" * MAX_HEADER, "longer than"),
])
def test_malformed_headers_are_refused_with_a_reason(value: bytes, reason: str) -> None:
    with pytest.raises(MalformedAuthorization, match=reason):
        parse_authorization(value)


def test_bearer_gives_an_itoken_with_the_raw_token() -> None:
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln-_"
    creds = parse_authorization(f"Bearer {token}")
    assert IToken.providedBy(creds)
    assert creds == BearerToken(token)
    assert token not in repr(creds)


@given(st.text(st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters=":"),
               min_size=1),
       st.text(st.characters(blacklist_categories=("Cc", "Cs"))))
def test_any_user_and_password_round_trip(user: str, password: str) -> None:
    creds = user_password(basic(f"{user}:{password}".encode()))
    assert (creds.username.decode(), creds.password.decode()) == (user, password)


@given(st.binary(max_size=200))
def test_any_header_parses_or_raises_malformed(value: bytes) -> None:
    for header in (value, b"Basic " + value, b"Bearer " + value,
                   b"Basic " + base64.b64encode(value)):
        try:
            parse_authorization(header)
        except MalformedAuthorization:
            pass
