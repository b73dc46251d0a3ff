"""TLS contexts for ``wss://``/``ssl://`` accepts and connects, and for Enterprise Shield.

The gateway's identity comes from ``<security><keystore>``: a PEM certificate (chain) and
key, or a PKCS#12 file with a password. Accepts present it; connects present it too when
the ``ssl.present-certificate`` connect-option asks for mutual TLS.

    accept:  identity + ssl.protocols + ssl.ciphers + ssl.verify-client (against truststore)
    connect: chain AND hostname verified (service-identity via optionsForClientTLS) against
             ``ssl.truststore`` or ``<security><truststore>`` or the platform's store;
             optionally the identity as a client certificate

Handshake failures are turned into short reasons (``describe_ssl_error``) that say which
check failed: hostname, untrusted, expired, or a missing client certificate.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.serialization import pkcs12
from OpenSSL import SSL, crypto
from service_identity import VerificationError
from service_identity.hazmat import DNS_ID, IPAddress_ID, verify_service_identity
from service_identity.pyopenssl import extract_patterns
from twisted.internet import ssl
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.python.failure import Failure
from zope.interface import implementer

_PEM_CERT = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)

#: ssl.protocols values, oldest first
PROTOCOLS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
VERIFY_CLIENT = ("none", "optional", "required")


class TLSConfigError(Exception):
    """A certificate, key or CA file that cannot be used."""


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise TLSConfigError(f"cannot read {path}: {e.strerror}") from e


def load_certificates(path: str) -> list[ssl.Certificate]:
    """Every certificate in a PEM bundle (a CA file often holds several)."""
    blocks = _PEM_CERT.findall(_read(path))
    if not blocks:
        raise TLSConfigError(f"{path}: no PEM certificate found")
    return [ssl.Certificate.loadPEM(block) for block in blocks]


# -- option values (parsed while the configuration loads) ------------------------------------


def parse_protocols(text: str) -> tuple[str, ...]:
    """``TLSv1.2,TLSv1.3`` -> a tuple of known protocol names, oldest first."""
    names = [n.strip() for n in text.replace(" ", ",").split(",") if n.strip()]
    for name in names:
        if name not in PROTOCOLS:
            raise ValueError(f"unknown or insecure protocol {name!r}; expected "
                             + " and/or ".join(PROTOCOLS))
    if not names:
        raise ValueError("expected TLSv1.2 and/or TLSv1.3")
    return tuple(n for n in PROTOCOLS if n in names)


def parse_ciphers(text: str) -> str:
    """An OpenSSL cipher string (TLS 1.2 and below); rejected if it selects nothing."""
    context = SSL.Context(SSL.TLS_METHOD)
    try:
        context.set_cipher_list(text.strip().encode())
    except SSL.Error:
        raise ValueError(f"no usable cipher in {text!r} (an OpenSSL cipher string such as "
                         "ECDHE+AESGCM:!aNULL)") from None
    return text.strip()


def parse_verify_client(text: str) -> str:
    value = text.strip().lower()
    if value not in VERIFY_CLIENT:
        raise ValueError(f"expected none, optional or required, not {text!r}")
    return value


# -- the gateway's identity --------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """A private key and its certificate chain (leaf first)."""

    key: crypto.PKey
    chain: tuple[crypto.X509, ...]


def load_identity(certificate_file: str | None, key_file: str | None,
                  pkcs12_file: str | None = None, password: str | None = None) -> Identity:
    """The keystore: PEM certificate (+ chain) and key, or a PKCS#12 file."""
    secret = password.encode() if password else None
    if pkcs12_file is not None:
        try:
            key, cert, extra = pkcs12.load_key_and_certificates(_read(pkcs12_file), secret)
        except ValueError as e:
            raise TLSConfigError(f"{pkcs12_file}: not a PKCS#12 keystore or wrong password "
                                 f"({e})") from e
        if key is None or cert is None:
            raise TLSConfigError(f"{pkcs12_file}: PKCS#12 keystore holds no key and certificate")
        return Identity(crypto.PKey.from_cryptography_key(key),  # type: ignore[arg-type]
                        (crypto.X509.from_cryptography(cert),
                         *(crypto.X509.from_cryptography(c) for c in extra or ())))
    if certificate_file is None or key_file is None:
        raise TLSConfigError("no keystore: add <security><keystore>")
    chain = tuple(c.original for c in load_certificates(certificate_file))
    try:
        pkey = crypto.load_privatekey(crypto.FILETYPE_PEM, _read(key_file), secret or b"")
    except (SSL.Error, crypto.Error) as e:
        raise TLSConfigError(f"{key_file}: not a PEM private key, or wrong password ({e})") from e
    return Identity(pkey, chain)


def security_identity(security: Any) -> Identity:
    """The Identity named by a ``config.Security``."""
    return load_identity(security.certificate_file, security.key_file,
                         security.keystore_file, security.keystore_password)


def connect_identity(security: Any, connect_options: Any) -> Identity | None:
    """The client certificate a service's connects present: the keystore's identity when the
    ``ssl.present-certificate`` connect-option asks for mutual TLS, else none."""
    if not connect_options["ssl.present-certificate"]:
        return None
    return security_identity(security)


# -- contexts ----------------------------------------------------------------------------------


def _protocol_bounds(protocols: Sequence[str]) -> dict[str, Any]:
    if not protocols:
        return {"raiseMinimumTo": ssl.TLSVersion.TLSv1_2}
    versions = [PROTOCOLS[p] for p in protocols]
    return {"insecurelyLowerMinimumTo": versions[0], "lowerMaximumSecurityTo": versions[-1]}


def server_options(identity: Identity, *, protocols: Sequence[str] = (),
                   ciphers: str | None = None, verify_client: str = "none",
                   ca_file: str | None = None) -> ssl.CertificateOptions:
    """Options for an accepting TLS endpoint: the identity, and client checks if asked."""
    extra: dict[str, Any] = _protocol_bounds(protocols)
    if ciphers:
        extra["acceptableCiphers"] = ssl.AcceptableCiphers.fromOpenSSLCipherString(ciphers)
    if verify_client != "none":
        if ca_file is None:
            raise TLSConfigError("ssl.verify-client needs <security><truststore>")
        extra.update(verify=True, caCerts=[c.original for c in load_certificates(ca_file)],
                     requireCertificate=verify_client == "required")
    try:
        options = ssl.CertificateOptions(
            privateKey=identity.key, certificate=identity.chain[0],
            extraCertChain=list(identity.chain[1:]), **extra,
        )
        context = options.getContext()
    except (SSL.Error, ValueError) as e:
        raise TLSConfigError(f"keystore certificate and key do not make a usable pair: {e}") from e
    if verify_client != "none":
        # Same checks as Twisted's, but remember why a client certificate failed, for the log.
        context.set_verify(context.get_verify_mode(), _remember_verify_error)
    return options


#: X509_V_ERR_CERT_HAS_EXPIRED
_EXPIRED = 10


def _remember_verify_error(connection: SSL.Connection, certificate: crypto.X509, errno: int,
                           depth: int, ok: int) -> bool:
    if not ok:
        connection.kgateway_verify_error = errno  # type: ignore[attr-defined]
        if errno == _EXPIRED:
            # OpenSSL would only say "certificate verify failed"; pyOpenSSL re-raises this
            # from the handshake, so the log can say which check failed.
            raise SSL.Error([("", "", "certificate verify failed: certificate has expired")])
    return bool(ok)


def client_verify_error(connection: SSL.Connection | None) -> str | None:
    """Why the client certificate on *connection* failed verification, if it did."""
    errno = getattr(connection, "kgateway_verify_error", None)
    if errno is None:
        return None
    return "TLS refused: expired client certificate" if errno == _EXPIRED else \
        "TLS refused: untrusted client certificate"


def trust_root(ca_file: str | None) -> Any:
    """An IOpenSSLTrustRoot: the CA bundle *ca_file*, or the platform's store."""
    if ca_file is None:
        return ssl.platformTrust()
    return ssl.trustRootFromCertificates(load_certificates(ca_file))


def client_options(hostname: str, ca_file: str | None,
                   identity: Identity | None = None) -> IOpenSSLClientConnectionCreator:
    """Options for a connecting TLS endpoint that checks the chain and the *hostname*,
    presenting *identity* as a client certificate when given (mutual TLS)."""
    client_cert = None
    extra: dict[str, Any] = {}
    if identity is not None:
        client_cert = ssl.PrivateCertificate.fromCertificateAndKeyPair(
            ssl.Certificate(identity.chain[0]), ssl.KeyPair(identity.key))
        if len(identity.chain) > 1:
            extra["extraCertChain"] = list(identity.chain[1:])
    return _Explaining(ssl.optionsForClientTLS(hostname, trustRoot=trust_root(ca_file),
                                               clientCertificate=client_cert,
                                               extraCertificateOptions=extra or None),
                       hostname)


@implementer(IOpenSSLClientConnectionCreator)
class _Explaining:
    """Twisted's client TLS, with a verify callback that also remembers an expired chain.

    Same checks as Twisted's own callback: OpenSSL's chain verdict, then service-identity on
    the leaf; a hostname mismatch fails the connection with VerificationError as before.
    """

    def __init__(self, inner: IOpenSSLClientConnectionCreator, hostname: str) -> None:
        self.inner = inner
        self.expired = False
        if isIPAddress(hostname) or isIPv6Address(hostname):
            self.identity: Any = IPAddress_ID(hostname)
        else:
            self.identity = DNS_ID(hostname)

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        connection = self.inner.clientConnectionForTLS(tlsProtocol)

        def verify(conn: SSL.Connection, cert: crypto.X509, errno: int, depth: int,
                   ok: int) -> bool:
            if not ok:
                self.expired = self.expired or errno == _EXPIRED
                return False
            if depth != 0:
                return True
            try:
                verify_service_identity(extract_patterns(cert), [self.identity], [])
            except VerificationError:
                tlsProtocol.failVerification(Failure())
                return False
            return True

        connection.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, verify)
        return connection


class VerifiedName(str):
    """A hostname being verified, with the creator that can say why verification failed."""

    creator: Any = None


def server_verify_failure(hostname: object) -> str | None:
    """"expired" or None, for a connect to *hostname* (a VerifiedName) whose handshake failed."""
    return "expired" if getattr(getattr(hostname, "creator", None), "expired", False) else None


def describe_ssl_error(error: BaseException, server_side: bool = False) -> str:
    """Which TLS check failed, in a few words, from an OpenSSL error."""
    text = str(error).lower()
    whose = "client" if server_side else "server"
    if "peer did not return a certificate" in text or "certificate required" in text:
        return "TLS refused: no client certificate"
    if "certificate verify failed" in text or "bad certificate" in text \
            or "unknown ca" in text or "certificate expired" in text:
        if "expired" in text:
            return f"TLS refused: expired {whose} certificate"
        return f"TLS refused: untrusted {whose} certificate"
    if server_side and "unexpected eof" in text:
        return "TLS refused: the client left during the handshake (does it trust our certificate?)"
    if "no shared cipher" in text or "unsupported protocol" in text or "version" in text:
        return "TLS refused: no common protocol version or cipher"
    return f"TLS handshake failed ({_openssl_reason(error)})"


def _openssl_reason(error: BaseException) -> str:
    """The reason strings of an OpenSSL error stack, e.g. ``no shared cipher``."""
    stack = error.args[0] if error.args and isinstance(error.args[0], list) else []
    reasons = [str(item[-1]) for item in stack if isinstance(item, tuple) and item]
    return ", ".join(reasons) or str(error) or type(error).__name__
