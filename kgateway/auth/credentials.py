"""Credentials from an HTTP ``Authorization`` header: Basic -> UsernamePassword, Bearer -> IToken.

Pure functions over the header's value, no I/O: the accept path calls
``parse_authorization(request.getHeader(b"authorization"))`` and hands the result to the
realm's portal. Anything malformed raises ``MalformedAuthorization`` (a ``ValueError``)
with a short reason for the log; the client only ever learns "401".

Basic (RFC 7617): ``Basic <base64(user-id ":" password)>``. The base64 must be strict
(only the alphabet, correct padding); the user id is what comes before the *first* colon
(a password may contain colons, a user id may not); both must be UTF-8 (the charset
RFC 7617 lets a server announce, and the only one kgateway accepts) and free of control
characters. Bearer (RFC 6750): ``Bearer <b64token>``, checked against the b64token syntax.
Scheme names are case-insensitive. Headers longer than ``MAX_HEADER`` are refused before
any decoding.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass

from twisted.cred.credentials import ICredentials, IUsernamePassword, UsernamePassword
from zope.interface import Attribute, implementer

MAX_HEADER = 16 * 1024

_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class MalformedAuthorization(ValueError):
    """The Authorization header cannot be read (the client gets a 401, the log the reason)."""


class IToken(ICredentials):
    """A bearer token, as sent: the JWT login module checks it."""

    token = Attribute("The raw token (str, ASCII).")


@implementer(IToken)
@dataclass(frozen=True)
class BearerToken:
    token: str

    def __repr__(self) -> str:  # never log a usable token
        return f"BearerToken(<{len(self.token)} chars>)"


def _split(value: bytes | str) -> tuple[str, str]:
    if len(value) > MAX_HEADER:
        raise MalformedAuthorization(f"header longer than {MAX_HEADER} bytes")
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            raise MalformedAuthorization("header is not ASCII") from None
    scheme, _, rest = value.strip().partition(" ")
    if not scheme or not rest.strip():
        raise MalformedAuthorization("expected '<scheme> <credentials>'")
    return scheme.lower(), rest.strip()


def parse_basic(param: str) -> UsernamePassword:
    """The credentials of a Basic header's parameter (what follows ``Basic ``)."""
    if not _B64TOKEN.fullmatch(param):
        raise MalformedAuthorization("Basic credentials are not base64")
    try:
        raw = base64.b64decode(param, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedAuthorization("Basic credentials are not valid base64") from None
    user, colon, password = raw.partition(b":")
    if not colon:
        raise MalformedAuthorization("Basic credentials have no ':'")
    try:
        user_text = user.decode("utf-8")
        password_text = password.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedAuthorization("Basic credentials are not UTF-8") from None
    if not user_text:
        raise MalformedAuthorization("empty user id")
    if _CONTROL.search(user_text) or _CONTROL.search(password_text):
        raise MalformedAuthorization("control character in Basic credentials")
    return UsernamePassword(user, password)


def parse_bearer(param: str) -> BearerToken:
    """The credentials of a Bearer header's parameter (what follows ``Bearer ``)."""
    if not _B64TOKEN.fullmatch(param):
        raise MalformedAuthorization("Bearer token has characters outside b64token")
    return BearerToken(param)


SCHEMES: dict[str, Callable[[str], UsernamePassword | BearerToken]] = {"basic": parse_basic, "bearer": parse_bearer}


def parse_authorization(value: bytes | str) -> UsernamePassword | BearerToken:
    """Credentials from an ``Authorization`` header value; ``MalformedAuthorization`` if none."""
    scheme, param = _split(value)
    parser = SCHEMES.get(scheme)
    if parser is None:
        # The reason reaches the log, the status page's warnings and the 401's status
        # line: name a scheme, never echo what may be a credential sent without one.
        shown = scheme if len(scheme) <= 16 and scheme.isalpha() else "(not a scheme name)"
        raise MalformedAuthorization(f"unsupported scheme {shown!r}")
    return parser(param)


__all__ = [
    "BearerToken",
    "IToken",
    "IUsernamePassword",
    "MalformedAuthorization",
    "parse_authorization",
    "parse_basic",
    "parse_bearer",
]
