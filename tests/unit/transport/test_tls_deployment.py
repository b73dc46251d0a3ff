"""TLS for real deployments, over real handshakes in memory (twisted.test.iosim): one
certificate per host name (SNI), ssl.protocols/ssl.ciphers on connects, CRL checks on both
sides, and the certificate names the Shield backplane matches."""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import capturedLogs
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.test import iosim

from kgateway.certs import make_ca, make_certificate
from kgateway.transport.tls import (
    ClientTLS,
    Identity,
    TLSConfigError,
    _LoggingTLSFactory,
    certificate_names,
    load_identity,
    server_options,
)


class Side(Protocol):
    reason: Failure | None = None
    made = False

    def connectionMade(self) -> None:
        self.made = True

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.reason = reason


def run(server_options_: Any, client: ClientTLS) -> tuple[Side, Any, Any]:
    """A handshake (and a byte) in memory; returns the client's protocol and both TLS ends."""
    server_side = Side()
    client_side = Side()
    # The accept side as listeners build it: its log says why a client was refused.
    server = _LoggingTLSFactory(server_options_, False, Factory.forProtocol(lambda: server_side))
    server.services = "svc"
    client_factory = TLSMemoryBIOFactory(client.creator, True,
                                         Factory.forProtocol(lambda: client_side))
    client_tls, server_tls, pump = iosim.connectedServerAndClient(
        lambda: server.buildProtocol(None), lambda: client_factory.buildProtocol(None))
    pump.flush()
    return client_side, client_tls, server_tls


def identity(folder: Path, name: str, *alt: str) -> Identity:
    return load_identity(*make_certificate(str(folder), name, list(alt)))


def served_name(client_tls: Any) -> str:
    cert = client_tls.getPeerCertificate().to_cryptography()
    return str(cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)


def test_sni_picks_the_certificate_for_the_asked_host(tmp_path: Path) -> None:
    ca = str(tmp_path / "ca.pem")
    default = identity(tmp_path, "gw.example")
    options = server_options(default, alternatives=[identity(tmp_path, "api.example"),
                                                    identity(tmp_path, "*.apps.example")])
    for host, expected in (("gw.example", "gw.example"), ("api.example", "api.example"),
                           ("chat.apps.example", "*.apps.example")):
        client = ClientTLS(host, ca)
        side, client_tls, _ = run(options, client)
        assert side.reason is None, client.explain(side.reason)
        assert served_name(client_tls) == expected


def test_an_unknown_host_gets_the_first_keystore(tmp_path: Path) -> None:
    ca = str(tmp_path / "ca.pem")
    options = server_options(identity(tmp_path, "gw.example"),
                             alternatives=[identity(tmp_path, "api.example")])
    client = ClientTLS("other.example", ca)
    side, _, _ = run(options, client)
    assert side.reason is not None
    assert client.explain(side.reason) == ("TLS hostname verification failed: certificate "
                                           "does not name other.example")


def test_connect_ssl_protocols_must_meet_the_server(tmp_path: Path) -> None:
    ca = str(tmp_path / "ca.pem")
    tls12_only = server_options(identity(tmp_path, "gw.example"), protocols=("TLSv1.2",))
    client = ClientTLS("gw.example", ca, protocols=("TLSv1.3",))
    side, _, _ = run(tls12_only, client)
    assert side.reason is not None
    assert "no common protocol version or cipher" in client.explain(side.reason)
    ok, _, _ = run(tls12_only, ClientTLS("gw.example", ca, protocols=("TLSv1.2", "TLSv1.3")))
    assert ok.reason is None and ok.made


def test_connect_ssl_ciphers_must_meet_the_server(tmp_path: Path) -> None:
    ca = str(tmp_path / "ca.pem")
    server = server_options(identity(tmp_path, "gw.example"), protocols=("TLSv1.2",),
                            ciphers="ECDHE-ECDSA-AES128-GCM-SHA256")
    refused = ClientTLS("gw.example", ca, ciphers="ECDHE-ECDSA-CHACHA20-POLY1305")
    side, _, _ = run(server, refused)
    assert side.reason is not None
    agreed, _, _ = run(server, ClientTLS("gw.example", ca, ciphers="ECDHE+AESGCM"))
    assert agreed.reason is None and agreed.made


def write_crl(folder: Path, revoked_cert: str | None) -> str:
    """A CRL from the folder's CA, revoking the certificate in *revoked_cert* if given."""
    ca_cert, ca_key = make_ca(str(folder))
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
               .last_update(now - datetime.timedelta(minutes=5))
               .next_update(now + datetime.timedelta(days=7)))
    if revoked_cert is not None:
        with open(revoked_cert, "rb") as f:
            serial = x509.load_pem_x509_certificate(f.read()).serial_number
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial)
            .revocation_date(now - datetime.timedelta(minutes=1)).build())
    crl = builder.sign(ca_key, hashes.SHA256())
    path = os.path.join(folder, "ca.crl")
    with open(path, "wb") as f:
        f.write(crl.public_bytes(serialization.Encoding.PEM))
    return path


def test_a_connect_refuses_a_revoked_server_certificate(tmp_path: Path) -> None:
    ca = str(tmp_path / "ca.pem")
    revoked = make_certificate(str(tmp_path), "gw.example")
    good = make_certificate(str(tmp_path), "api.example")
    crl = write_crl(tmp_path, revoked[0])
    client = ClientTLS("gw.example", ca, crl_file=crl)
    side, _, _ = run(server_options(load_identity(*revoked)), client)
    assert side.reason is not None
    assert client.explain(side.reason) == "TLS certificate verification failed (revoked " \
                                          "certificate)"
    ok, _, _ = run(server_options(load_identity(*good)),
                   ClientTLS("api.example", ca, crl_file=crl))
    assert ok.reason is None and ok.made


def test_an_accept_refuses_a_revoked_client_certificate(tmp_path: Path) -> None:
    ca = str(tmp_path / "ca.pem")
    server_id = identity(tmp_path, "gw.example")
    revoked = make_certificate(str(tmp_path), "internal-old.example")
    crl = write_crl(tmp_path, revoked[0])
    options = server_options(server_id, verify_client="required", ca_file=ca, crl_file=crl)
    with capturedLogs() as events:
        side, _, _ = run(options, ClientTLS("gw.example", ca, load_identity(*revoked)))
    assert side.reason is not None  # refused
    refusals = [e["reason"] for e in events if "refused by" in e.get("log_format", "")]
    assert refusals == ["TLS refused: revoked client certificate"]
    fresh = identity(tmp_path, "internal.example")
    ok, _, _ = run(options, ClientTLS("gw.example", ca, fresh))
    assert ok.reason is None and ok.made


def test_a_crl_that_is_not_one_is_a_configuration_error(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.crl"
    bogus.write_text("not a CRL")
    with pytest.raises(TLSConfigError, match="not a CRL"):
        ClientTLS("gw.example", None, crl_file=str(bogus))


def test_certificate_names_are_the_cn_and_the_sans(tmp_path: Path) -> None:
    ident = identity(tmp_path, "Internal.Example", "gw2.example", "10.0.0.7")
    assert certificate_names(ident.chain[0]) == {"internal.example", "gw2.example",
                                                 "10.0.0.7"}
