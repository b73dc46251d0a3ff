"""ClientTLS: the checks of a TLS connect and how a refusal is explained, over real TLS
handshakes in memory (twisted.test.iosim), for plain connects and Shield's reverse dialler."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from OpenSSL import SSL
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
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


class Reads(Protocol):
    """Records each dataReceived call and how the connection ended."""

    def __init__(self) -> None:
        self.reads: list[bytes] = []
        self.reason: Failure | None = None

    def dataReceived(self, data: bytes) -> None:
        self.reads.append(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.reason = reason


class Client:
    """A TLS client on memory BIOs (pyOpenSSL), driven by hand: the test decides which
    octets the server reads at once."""

    def __init__(self, server: Any) -> None:
        self.tls = SSL.Connection(SSL.Context(SSL.TLS_METHOD), None)
        self.tls.set_connect_state()
        self.server = server
        self.server_out = StringTransport()
        server.makeConnection(self.server_out)
        for _ in range(10):  # the handshake's round trips
            try:
                self.tls.do_handshake()
                return
            except SSL.WantReadError:
                pass
            self.server.dataReceived(self.wire())
            self.tls.bio_write(self.server_out.value())
            self.server_out.clear()
        raise AssertionError("no TLS handshake")

    def wire(self) -> bytes:
        """What the client wrote since last asked."""
        out = b""
        while True:
            try:
                out += self.tls.bio_read(1 << 20)
            except SSL.WantReadError:
                return out

    def records(self, records: list[bytes]) -> bytes:
        for record in records:
            self.tls.sendall(record)
        return self.wire()


def accepted(tmp_path: Path) -> tuple[Reads, Client]:
    """An accepting _LoggingTLSProtocol, in memory, its handshake with a client done."""
    from kgateway.transport.tls import _LoggingTLSFactory

    cert, key = make_certificate(str(tmp_path), "gw.test")
    app = Reads()
    server = _LoggingTLSFactory(server_options(load_identity(cert, key)), False,
                                Factory.forProtocol(lambda: app))
    return app, Client(server.buildProtocol(None))


RECORDS = [bytes([i]) * 16384 for i in range(6)]  # six full TLS records


def test_the_records_of_one_read_reach_the_application_in_one_call(tmp_path: Path) -> None:
    app, client = accepted(tmp_path)
    client.server.dataReceived(client.records(RECORDS))  # one read of the server's socket
    assert app.reads == [b"".join(RECORDS)]  # Twisted's own: six calls


def test_data_before_a_close_notify_is_delivered_first(tmp_path: Path) -> None:
    app, client = accepted(tmp_path)
    wire = client.records(RECORDS[:3])
    client.tls.shutdown()  # close_notify right behind the data, in the same read
    client.server.dataReceived(wire + client.wire())
    assert app.reads == [b"".join(RECORDS[:3])]
    assert client.server_out.disconnecting  # our close_notify answered it, then TCP goes
    client.server.connectionLost(Failure(ConnectionDone()))
    assert app.reason is not None and app.reason.check(ConnectionDone)


def test_data_before_a_broken_record_is_delivered_then_the_error(tmp_path: Path) -> None:
    app, client = accepted(tmp_path)
    forged = b"\x17\x03\x03\x00\x20" + b"\x00" * 32  # an application record, not sealed
    client.server.dataReceived(client.records(RECORDS[:2]) + forged)
    assert app.reads == [b"".join(RECORDS[:2])]
    assert client.server_out.disconnecting
    client.server.connectionLost(Failure(ConnectionDone()))
    assert app.reason is not None and app.reason.check(SSL.Error)
