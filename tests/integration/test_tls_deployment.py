"""TLS for real deployments through a real twistd gateway: one certificate per host name
(SNI) on one port, and client certificates checked against a CRL."""

from __future__ import annotations

import datetime
import os
import socket
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from kgateway.certs import make_ca, make_certificate
from tests.helpers import GatewayProcess, free_port, gateway_xml, service_xml


def _keystore(pair: tuple[str, str]) -> str:
    return (f"<keystore><certificate-file>{pair[0]}</certificate-file>"
            f"<key-file>{pair[1]}</key-file></keystore>")


def _served_name(port: int, host: str, ca: str, client: tuple[str, str] | None = None) -> str:
    context = ssl.create_default_context(cafile=ca)
    if client is not None:
        context.load_cert_chain(*client)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=host) as tls:
        cert = tls.getpeercert()
        assert cert is not None
        subject = dict(item[0] for item in cert["subject"])
        return str(subject["commonName"])


def test_one_port_serves_each_host_its_own_certificate(tmp_path: Path) -> None:
    folder = str(tmp_path)
    gw = make_certificate(folder, "gw.example", ["localhost"])
    api = make_certificate(folder, "api.example")
    ca = os.path.join(folder, "ca.pem")
    port = free_port()
    config = gateway_xml(
        [service_xml("echo", [f"wss://gw.example:{port}/echo", f"wss://api.example:{port}/echo"],
                     name="echo",
                     extra=f"<accept-options><wss.bind>127.0.0.1:{port}</wss.bind>"
                           "</accept-options>")],
        f"<security>{_keystore(gw)}{_keystore(api)}<truststore><file>{ca}</file>"
        "</truststore></security>")
    with GatewayProcess(config, name="sni"):
        assert _served_name(port, "gw.example", ca) == "gw.example"
        assert _served_name(port, "api.example", ca) == "api.example"
        with pytest.raises(ssl.SSLCertVerificationError):
            _served_name(port, "other.example", ca)  # the default certificate: wrong name


def _crl(folder: str, revoked_cert: str) -> str:
    ca_cert, ca_key = make_ca(folder)
    with open(revoked_cert, "rb") as f:
        serial = x509.load_pem_x509_certificate(f.read()).serial_number
    now = datetime.datetime.now(datetime.UTC)
    crl = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
           .last_update(now - datetime.timedelta(minutes=5))
           .next_update(now + datetime.timedelta(days=7))
           .add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(serial)
                                    .revocation_date(now).build())
           .sign(ca_key, hashes.SHA256()))
    path = os.path.join(folder, "ca.crl")
    with open(path, "wb") as f:
        f.write(crl.public_bytes(serialization.Encoding.DER))
    return path


def test_a_revoked_client_certificate_is_refused_and_logged(tmp_path: Path) -> None:
    folder = str(tmp_path)
    server = make_certificate(folder, "localhost", ["127.0.0.1"])
    good = make_certificate(folder, "alice.example")
    revoked = make_certificate(folder, "mallory.example")
    ca = os.path.join(folder, "ca.pem")
    crl = _crl(folder, revoked[0])
    port = free_port()
    config = gateway_xml(
        [service_xml("echo", f"ssl://localhost:{port}", name="mtls",
                     extra=f"<accept-options><ssl.verify-client>required</ssl.verify-client>"
                           f"<ssl.crl>{crl}</ssl.crl></accept-options>")],
        f"<security>{_keystore(server)}<truststore><file>{ca}</file></truststore></security>")
    with GatewayProcess(config, name="crl") as gw:
        assert _served_name(port, "localhost", ca, good) == "localhost"
        with pytest.raises((ssl.SSLError, ConnectionResetError, OSError)):
            # TLS 1.3: the refusal may only surface on the first read
            context = ssl.create_default_context(cafile=ca)
            context.load_cert_chain(*revoked)
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                    context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"x")
                if not tls.recv(1):
                    raise ConnectionResetError("closed")
        gw.wait_for(r"TLS client 127\.0\.0\.1:\d+ refused by mtls: TLS refused: revoked client "
                    r"certificate")
