"""TLS contexts for ``wss://``/``ssl://`` accepts and connects.

Accepts present the certificate and key named in ``<security><keystore>``. Connects verify
the server's certificate chain against ``<security><truststore>`` (or the ``ssl.truststore``
connect-option, or the system's trust store when neither is given) AND its hostname, using
service-identity through Twisted's ``optionsForClientTLS``.
"""

from __future__ import annotations

import re
from typing import Any

from OpenSSL import SSL, crypto
from twisted.internet import ssl
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator

_PEM_CERT = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)


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


def server_options(certificate_file: str, key_file: str) -> ssl.CertificateOptions:
    """Options for an accepting TLS endpoint: the leaf certificate, its key and its chain."""
    certificates = load_certificates(certificate_file)
    try:
        key = ssl.KeyPair.load(_read(key_file), crypto.FILETYPE_PEM)
    except (SSL.Error, crypto.Error) as e:
        raise TLSConfigError(f"{key_file}: not a PEM private key ({e})") from e
    try:
        return ssl.CertificateOptions(
            privateKey=key.original,
            certificate=certificates[0].original,
            extraCertChain=[c.original for c in certificates[1:]],
            raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
        )
    except (SSL.Error, ValueError) as e:
        raise TLSConfigError(
            f"{certificate_file} and {key_file} do not make a usable pair: {e}"
        ) from e


def trust_root(ca_file: str | None) -> Any:
    """An IOpenSSLTrustRoot: the CA bundle *ca_file*, or the platform's store."""
    if ca_file is None:
        return ssl.platformTrust()
    return ssl.trustRootFromCertificates(load_certificates(ca_file))


def client_options(hostname: str, ca_file: str | None) -> IOpenSSLClientConnectionCreator:
    """Options for a connecting TLS endpoint that checks the chain and the *hostname*."""
    return ssl.optionsForClientTLS(hostname, trustRoot=trust_root(ca_file))
