"""ClientTLS: the checks of a TLS connect and how a refusal is explained, over real TLS
handshakes in memory (twisted.test.iosim), for plain connects and Shield's reverse dialler."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.test import iosim

from kgateway.certs import make_certificate
from kgateway.config import ACCEPT_OPTIONS, Options, parse_uri
from kgateway.shield.internal import ReverseClientFactory, ReverseConnector
from kgateway.transport.tls import ClientTLS, load_identity, server_options
from kgateway.transport.tracker import ConnectionTracker


class Lost(Protocol):
    reason: Failure | None = None

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.reason = reason


def handshake(tmp_path: Path, server_name: str, client: ClientTLS, *,
              expired: bool = False, client_factory: Any = None) -> Lost:
    """A TLS server with a certificate for *server_name* (expired if asked), in memory."""
    cert, key = make_certificate(str(tmp_path), server_name, expired=expired)
    server = TLSMemoryBIOFactory(server_options(load_identity(cert, key)), False,
                                 Factory.forProtocol(Protocol))
    lost = Lost()
    inner = client_factory or Factory.forProtocol(lambda: lost)
    client_side = TLSMemoryBIOFactory(client.creator, True, inner)
    _, _, pump = iosim.connectedServerAndClient(
        lambda: server.buildProtocol(None), lambda: client_side.buildProtocol(None))
    pump.flush()
    return lost


def ca(tmp_path: Path) -> str:
    make_certificate(str(tmp_path), "bootstrap")  # makes ca.pem once for the folder
    return os.path.join(tmp_path, "ca.pem")


def test_a_good_certificate_passes(tmp_path: Path) -> None:
    client = ClientTLS("gw.test", ca(tmp_path))
    lost = handshake(tmp_path, "gw.test", client)
    assert lost.reason is None


@pytest.mark.parametrize("name, expired, expected", [
    ("other.test", False, "TLS hostname verification failed: certificate does not name gw.test"),
    ("gw.test", True, "TLS certificate verification failed (expired certificate)"),
])
def test_refusals_say_which_check_failed(tmp_path: Path, name: str, expired: bool,
                                         expected: str) -> None:
    client = ClientTLS("gw.test", ca(tmp_path))
    lost = handshake(tmp_path, name, client, expired=expired)
    assert lost.reason is not None
    assert client.explain(lost.reason) == expected


def test_an_untrusted_certificate_is_called_untrusted(tmp_path: Path) -> None:
    other_ca = tmp_path / "other"
    other_ca.mkdir()
    client = ClientTLS("gw.test", ca(other_ca))
    lost = handshake(tmp_path, "gw.test", client)
    assert lost.reason is not None
    assert client.explain(lost.reason) == "TLS certificate verification failed (untrusted " \
                                          "certificate)"


class _Service:
    def __init__(self) -> None:
        defaults = {k: d for k, (_, d) in ACCEPT_OPTIONS.items()}
        self.config = type("C", (), {"name": "internal-echo",
                                     "accept_options": Options({}, defaults)})()


def test_shield_reverse_connections_report_an_expired_dmz_certificate(tmp_path: Path) -> None:
    """The defect the ClientTLS object fixed: the reverse dialler said "untrusted"."""
    cert, key = make_certificate(str(tmp_path), "internal")
    connector = ReverseConnector(MemoryReactorClock(), _Service(),  # type: ignore[arg-type]
                                 parse_uri("reverse+wss://dmz.test:1443/shield/echo"),
                                 load_identity(cert, key), ca(tmp_path), ConnectionTracker())
    connector.running = True
    with capturedLogs() as events:
        handshake(tmp_path, "dmz.test", connector.client_tls, expired=True,
                  client_factory=ReverseClientFactory(connector))
    retries = [e for e in events if "retrying" in e.get("log_format", "")]
    assert retries and retries[0]["why"] == \
        "TLS certificate verification failed (expired certificate)"


def test_a_client_refused_in_the_handshake_is_counted(tmp_path: Path) -> None:
    from kgateway.transport.tls import _LoggingTLSFactory

    cert, key = make_certificate(str(tmp_path), "gw.test")
    refusals: list[str] = []
    server = _LoggingTLSFactory(server_options(load_identity(cert, key)), False,
                                Factory.forProtocol(Protocol))
    server.on_refused = lambda: refusals.append("tls")
    # a client that speaks no TLS at all
    _, _, pump = iosim.connectedServerAndClient(
        lambda: server.buildProtocol(None), lambda: _Garbage())
    pump.flush()
    assert refusals == ["tls"]


class _Garbage(Protocol):
    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(b"GET / HTTP/1.1\r\nHost: gw.test\r\n\r\n")
