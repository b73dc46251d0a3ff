"""The ``jwt`` login module: signed bearer tokens (JWT) checked with PyJWT against local keys.

A token is accepted when, all checked by PyJWT:

- its signature verifies with a configured public key, using an algorithm that is both in
  the configured allow-list and made for that key's type (RSA: RS*/PS*, EC: the ES* of
  its curve, Ed25519/Ed448: EdDSA). The key's type decides: "none" and HMAC are never
  allowed, so a token signed with HS256 using the RSA public key as the "secret" (the
  classic algorithm-confusion attack) is refused before any verification;
- ``iss`` and ``aud`` equal the configured issuer and (one of) the audience(s);
- ``exp`` is present and not past (``nbf`` and ``iat``, if present, not in the future),
  give or take the configured leeway;
- the name claim (default ``sub``) is a non-empty string.

Keys come from one PEM file (a public key or a certificate) or one local JWKS file; a
JWKS key is picked by the token's ``kid`` (a token without ``kid`` is accepted only when
the set has a single key). Symmetric (``oct``) keys in a JWKS are a configuration error.
Nothing is ever fetched from a URL (no ``jku``/``x5u``, no PyJWKClient): the keys are
read once, when the module is built, so a bad key file is a start-up error.

Roles come from the roles claim (default ``roles``): a JSON list of strings or one
space-separated string (as OAuth's ``scope``); anything else refuses the token. The
principal's attributes are the token's string-valued claims.

A check takes about 0.2 ms (RS256, 2048-bit key, all of PyJWT's decoding and claim checks,
measured on the 2-core test machine): it runs in the reactor thread.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from kgateway.auth.credentials import IToken
from kgateway.auth.principal import Identity
from kgateway.auth.settings import AuthConfigError, JwtModuleSettings

log = Logger()

MAX_TOKEN = 8 * 1024

_RSA = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_CURVES = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}


def algorithms_for_key(key: Any) -> frozenset[str]:
    """The signature algorithms made for *key*'s type (empty if kgateway does not use it)."""
    if isinstance(key, rsa.RSAPublicKey):
        return _RSA
    if isinstance(key, ec.EllipticCurvePublicKey):
        alg = _CURVES.get(key.curve.name)
        return frozenset({alg}) if alg else frozenset()
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return frozenset({"EdDSA"})
    return frozenset()


@dataclass(frozen=True)
class VerificationKey:
    kid: str | None
    key: Any
    algorithms: frozenset[str]


def _load_pem(path: str, allowed: frozenset[str]) -> list[VerificationKey]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise AuthConfigError([f"jwt login module: cannot read {path}: {e}"]) from None
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            key: Any = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = load_pem_public_key(data)
    except ValueError as e:
        raise AuthConfigError([f"jwt login module: {path} holds no PEM public key or "
                               f"certificate ({e})"]) from None
    algorithms = algorithms_for_key(key) & allowed
    if not algorithms:
        raise AuthConfigError([f"jwt login module: the key in {path} ({type(key).__name__}) "
                               f"fits none of the allowed algorithms {sorted(allowed)}"])
    return [VerificationKey(None, key, algorithms)]


def _load_jwks(path: str, allowed: frozenset[str]) -> list[VerificationKey]:
    try:
        with open(path, encoding="utf-8") as f:
            document = json.load(f)
    except (OSError, ValueError) as e:
        raise AuthConfigError([f"jwt login module: cannot read JWKS {path}: {e}"]) from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise AuthConfigError([f"jwt login module: {path} is not a JWKS (no \"keys\" list)"])
    keys, problems = [], []
    for i, entry in enumerate(entries):
        where = f"jwt login module: {path}: key {i}"
        if not isinstance(entry, dict):
            problems.append(f"{where} is not an object")
            continue
        if entry.get("kty") == "oct":
            problems.append(f"{where} is a symmetric (oct) key; only public keys are used")
            continue
        if entry.get("use", "sig") != "sig":
            continue
        try:
            jwk = jwt.PyJWK.from_dict(entry)
        except jwt.PyJWTError as e:
            problems.append(f"{where}: {e}")
            continue
        algorithms = algorithms_for_key(jwk.key) & allowed
        if "alg" in entry:
            algorithms &= {entry["alg"]}
        if not algorithms:
            problems.append(f"{where} ({jwk.key_type}) fits none of the allowed algorithms")
            continue
        keys.append(VerificationKey(jwk.key_id, jwk.key, algorithms))
    if problems:
        raise AuthConfigError(problems)
    if not keys:
        raise AuthConfigError([f"jwt login module: {path} has no signing key"])
    return keys


def load_keys(settings: JwtModuleSettings) -> list[VerificationKey]:
    """The verification keys of *settings*; ``AuthConfigError`` if there are none usable."""
    allowed = frozenset(settings.algorithms)
    if settings.key_file is not None:
        return _load_pem(settings.key_file, allowed)
    if settings.jwks_file is not None:
        return _load_jwks(settings.jwks_file, allowed)
    raise AuthConfigError(["jwt login module: no keyFile or jwksFile"])


def _roles(value: Any) -> Iterable[str]:
    if value is None:
        return ()
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list) and all(isinstance(r, str) for r in value):
        return value
    raise jwt.InvalidTokenError("roles claim is neither a list of strings nor a string")


@implementer(ICredentialsChecker)
class JwtChecker:
    """cred checker of ``IToken`` credentials (see the module docstring)."""

    credentialInterfaces = (IToken,)

    def __init__(self, settings: JwtModuleSettings,
                 keys: list[VerificationKey] | None = None) -> None:
        self.settings = settings
        self.keys = keys if keys is not None else load_keys(settings)

    def _key_for(self, header: dict[str, Any]) -> VerificationKey:
        kid = header.get("kid")
        if kid is None:
            candidates = self.keys if len(self.keys) == 1 else []
        else:
            candidates = [k for k in self.keys if k.kid == kid]
        for key in candidates:
            if header.get("alg") in key.algorithms:
                return key
        raise jwt.InvalidAlgorithmError(f"no key for kid={kid!r} and alg={header.get('alg')!r}")

    def check(self, token: str) -> Identity:
        """The identity a token proves; ``jwt.InvalidTokenError`` says why not."""
        s = self.settings
        if len(token) > MAX_TOKEN:
            raise jwt.InvalidTokenError("token too long")
        key = self._key_for(jwt.get_unverified_header(token))
        claims = jwt.decode(
            token, key.key, algorithms=sorted(key.algorithms), audience=s.audience,
            issuer=s.issuer, leeway=s.leeway,
            options={"require": ["exp", "iss", "aud"]})
        name = claims.get(s.name_claim)
        if not isinstance(name, str) or not name:
            raise jwt.MissingRequiredClaimError(s.name_claim)
        roles = _roles(claims.get(s.roles_claim))
        attributes = {k: v for k, v in claims.items() if isinstance(v, str)}
        return Identity(name, frozenset(roles), attributes)

    # Deferred[Any]: cred types the avatar id as bytes; ours is an Identity (principal.py).
    def requestAvatarId(self, credentials: Any) -> defer.Deferred[Any]:
        try:
            return defer.succeed(self.check(credentials.token))
        except jwt.InvalidTokenError as e:
            log.info("jwt refused: {reason}", reason=f"{type(e).__name__}: {e}")
            return defer.fail(UnauthorizedLogin())
