"""``kgateway certs DIR``: a private test CA and certificates signed by it, for TLS set-ups.

Writes ``ca.pem`` (give it to clients and connecting gateways as their truststore) and, for
each name, ``NAME.pem`` + ``NAME.key`` with the name (and any ``--alt`` names or IP
addresses) as subjectAltName. Every certificate is good for both server and client
authentication, so one per gateway serves mutual TLS and Enterprise Shield; ``--expired``
makes ``NAME-expired.pem`` for testing refusals. Good for tests and first deployments; use your own CA's
certificates in production.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kgateway")])


def _write(path: str, data: bytes, private: bool = False) -> None:
    with open(path, "wb") as f:
        f.write(data)
    if private:
        os.chmod(path, 0o600)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_ca(folder: str, days: int = 825) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Create (or load) ``folder/ca.pem`` + ``folder/ca.key``."""
    cert_path, key_path = os.path.join(folder, "ca.pem"), os.path.join(folder, "ca.key")
    if os.path.exists(cert_path) and os.path.exists(key_path):
        with open(cert_path, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        with open(key_path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return cert, key
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("kgateway test CA")).issuer_name(_name("kgateway test CA"))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    _write(key_path, _key_pem(key), private=True)
    return cert, key


def make_certificate(folder: str, name: str, alt_names: Sequence[str] = (),
                     days: int = 825, expired: bool = False) -> tuple[str, str]:
    """Issue ``folder/NAME.pem`` (leaf then CA) and ``folder/NAME.key``; returns their paths."""
    ca_cert, ca_key = make_ca(folder)
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for alt in (name, *alt_names):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(alt)))
        except ValueError:
            sans.append(x509.DNSName(alt))
    now = datetime.datetime.now(datetime.UTC)
    start = now - datetime.timedelta(days=days + 2) if expired else now - datetime.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name)).issuer_name(ca_cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                              ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    stem = os.path.join(folder, name + ("-expired" if expired else ""))
    _write(stem + ".pem", cert.public_bytes(serialization.Encoding.PEM)
           + ca_cert.public_bytes(serialization.Encoding.PEM))
    _write(stem + ".key", _key_pem(key), private=True)
    return stem + ".pem", stem + ".key"
