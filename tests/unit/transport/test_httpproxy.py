"""The CONNECT-tunnel endpoint in memory: a fake proxy endpoint hands over a StringTransport,
the test plays the proxy's answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from kgateway.config import CONNECT_OPTIONS, Options
from kgateway.interfaces import ConnectError
from kgateway.transport.httpproxy import HTTPTunnelEndpoint, dial_endpoint, read_credentials


@implementer(IStreamClientEndpoint)
class FakeProxyEndpoint:
    """Connects at once (or fails with *error*); the test then answers as the proxy."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.transport = StringTransport()
        self.proto: Any = None

    def connect(self, factory: Any) -> defer.Deferred[Any]:
        if self.error is not None:
            return defer.fail(self.error)
        self.proto = factory.buildProtocol(None)
        self.proto.makeConnection(self.transport)
        return defer.succeed(self.proto)


class Recorder(Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.lost: Failure | None = None

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lost = reason


def results(d: defer.Deferred[Any]) -> list[Any]:
    out: list[Any] = []
    d.addBoth(out.append)
    return out


def test_the_tunnel_opens_and_then_passes_everything_through() -> None:
    proxy = FakeProxyEndpoint()
    endpoint = HTTPTunnelEndpoint(proxy, "db.example", 5432, ("kgw", "pw"), "proxy:3128")
    factory = Factory.forProtocol(Recorder)
    got = results(endpoint.connect(factory))
    assert proxy.transport.value().startswith(b"CONNECT db.example:5432 HTTP/1.1\r\n")
    assert b"Proxy-Authorization: Basic a2d3OnB3\r\n" in proxy.transport.value()
    assert got == []  # not before the proxy answers
    proxy.proto.dataReceived(b"HTTP/1.1 200 Connection established\r\n\r\nbanner")
    (wrapped,) = got
    assert isinstance(wrapped, Recorder)
    assert wrapped.transport is proxy.transport and wrapped.data == b"banner"
    proxy.proto.dataReceived(b" more")
    assert wrapped.data == b"banner more"
    proxy.transport.clear()
    wrapped.transport.write(b"hello")  # type: ignore[union-attr]
    assert proxy.transport.value() == b"hello"
    proxy.proto.connectionLost(Failure(ConnectionRefusedError()))
    assert wrapped.lost is not None


@pytest.mark.parametrize("answer, words", [
    (b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", "proxy authentication required"),
    (b"HTTP/1.1 502 Bad Gateway\r\n\r\n", "proxy cannot reach db.example:5432"),
])
def test_a_refusal_is_a_connect_error_naming_the_proxy(answer: bytes, words: str) -> None:
    proxy = FakeProxyEndpoint()
    endpoint = HTTPTunnelEndpoint(proxy, "db.example", 5432, None, "proxy:3128")
    got = results(endpoint.connect(Factory.forProtocol(Recorder)))
    proxy.proto.dataReceived(answer)
    (failure,) = got
    assert failure.check(ConnectError)
    assert words in str(failure.value) and "[proxy proxy:3128]" in str(failure.value)
    assert proxy.transport.disconnecting or getattr(proxy.transport, "aborted", False)


def test_a_proxy_that_hangs_up_is_a_connect_error() -> None:
    proxy = FakeProxyEndpoint()
    got = results(HTTPTunnelEndpoint(proxy, "db", 1, None, "p:1").connect(
        Factory.forProtocol(Recorder)))
    proxy.proto.connectionLost(Failure(ConnectionRefusedError()))
    assert "closed the connection before answering" in str(got[0].value)


def test_an_unreachable_proxy_is_named() -> None:
    proxy = FakeProxyEndpoint(ConnectionRefusedError("Connection refused"))
    got = results(HTTPTunnelEndpoint(proxy, "db", 1, None, "p:3128").connect(
        Factory.forProtocol(Recorder)))
    assert got[0].check(ConnectError)
    assert str(got[0].value).startswith("cannot reach proxy p:3128: ")


def test_cancelling_while_the_proxy_thinks_aborts_the_connection() -> None:
    proxy = FakeProxyEndpoint()
    d = HTTPTunnelEndpoint(proxy, "db", 1, None, "p:1").connect(Factory.forProtocol(Recorder))
    got = results(d)
    d.cancel()
    assert got[0].check(defer.CancelledError)
    assert getattr(proxy.transport, "aborted", False) or proxy.transport.disconnecting
    proxy.proto.dataReceived(b"HTTP/1.1 200 OK\r\n\r\n")  # too late: ignored


def test_credentials_come_from_the_first_line_and_errors_never_quote_it(tmp_path: Path) -> None:
    good = tmp_path / "proxy.cred"
    good.write_text("kgw:pa:ss\nignored\n")
    assert read_credentials(str(good)) == ("kgw", "pa:ss")
    bad = tmp_path / "bad.cred"
    bad.write_text("justapassword\n")
    with pytest.raises(ConnectError) as e:
        read_credentials(str(bad))
    assert "justapassword" not in str(e.value) and "user:password" in str(e.value)
    with pytest.raises(ConnectError, match="No such file"):
        read_credentials(str(tmp_path / "missing"))


def test_dial_endpoint_goes_direct_unless_http_proxy_is_set(tmp_path: Path) -> None:
    reactor = MemoryReactorClock()
    defaults = {k: v for k, (_, v) in CONNECT_OPTIONS.items()}
    direct = dial_endpoint(reactor, "db", 5432, Options({}, defaults), 10)
    assert isinstance(direct, HostnameEndpoint)
    cred = tmp_path / "c"
    cred.write_text("u:p\n")
    options = Options({"http.proxy": ("proxy.corp", 3128),
                       "http.proxy.credentials.file": str(cred)}, defaults)
    tunnel = dial_endpoint(reactor, "db", 5432, options, 10)
    assert isinstance(tunnel, HTTPTunnelEndpoint)
    assert (tunnel.host, tunnel.port, tunnel.credentials) == ("db", 5432, ("u", "p"))
    assert tunnel.proxy_name == "proxy.corp:3128"


def test_an_ip_address_is_dialled_without_the_resolver() -> None:
    reactor = MemoryReactorClock()
    defaults = {k: v for k, (_, v) in CONNECT_OPTIONS.items()}
    options = Options({}, defaults)
    v4 = dial_endpoint(reactor, "127.0.0.1", 5432, options, 7)
    v6 = dial_endpoint(reactor, "::1", 5432, options, 7)
    assert isinstance(v4, TCP4ClientEndpoint) and isinstance(v6, TCP6ClientEndpoint)
    v4.connect(Factory.forProtocol(Protocol))
    v6.connect(Factory.forProtocol(Protocol))
    assert [(host, port, timeout) for host, port, _, timeout, _ in reactor.tcpClients] == \
        [("127.0.0.1", 5432, 7), ("::1", 5432, 7)]
    proxied = dial_endpoint(reactor, "db", 5432, Options({"http.proxy": ("10.0.0.1", 3128)},
                                                            defaults), 7)
    assert isinstance(proxied, HTTPTunnelEndpoint)
    assert isinstance(proxied.proxy, TCP4ClientEndpoint)
