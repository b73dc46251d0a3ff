"""HandshakeHTTPChannel's routing, in memory: a plain upgrade goes from the first bytes to
Autobahn, everything else through twisted.web as before; and, against twisted.web itself,
that the upgrades taken the short way are ones twisted.web would have passed on unchanged.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from autobahn.twisted.testing import MemoryReactorClock
from autobahn.websocket.protocol import parseHttpHeader
from hypothesis import event, given
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Protocol
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.web import http, server

from kgateway.auth.gate import Gate
from kgateway.config import parse_uri
from kgateway.protocols.http_upgrade import Verdict, sniff
from kgateway.transport.accept import GatewayWebSocketFactory, GatewayWebSocketProtocol
from kgateway.transport.admission import HANDSHAKE_TIMEOUT
from kgateway.transport.handshake import GatewaySite
from kgateway.transport.proxyproto import ProxyProtocolFactory
from kgateway.transport.tracker import ConnectionTracker
from kgateway.web import Router
from tests.unit.fakes import build, load, memory_gate

UPGRADE = (b"GET /echo HTTP/1.1\r\nHost: gw.test:8000\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           b"Sec-WebSocket-Version: 13\r\n\r\n")
#: a masked text frame "hi" (mask 0)
HI = b"\x81\x82\x00\x00\x00\x00hi"


class Gateway:
    """An echo service at ws://gw.test:8000/echo on a real GatewaySite and Router."""

    def __init__(self, tmp_path: Path, options: str = "", gate: Gate | None = None) -> None:
        self.reactor = MemoryReactorClock()
        self.tracker = ConnectionTracker()
        cfg = load(tmp_path, "<service><name>echo</name><accept>ws://gw.test:8000/echo</accept>"
                             f"<type>echo</type><accept-options>{options}</accept-options>"
                             "</service>")
        self.factory = GatewayWebSocketFactory(build(cfg, reactor=self.reactor),
                                               parse_uri("ws://gw.test:8000/echo"),
                                               self.reactor, self.tracker, gate)
        self.router = Router()
        self.router.add_websocket("/echo", self.factory)
        self.site = GatewaySite(self.router, self.reactor,
                                cfg.services[0].accept_options["http.handshake.timeout"],
                                self.tracker, self.tracker.refusal_log(self.reactor.seconds),
                                "echo")


class Socket:
    """A raw client connection to a site: bytes in, what the gateway wrote out."""

    def __init__(self, site: Any, host: str = "192.0.2.1", port: int = 40000) -> None:
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", host, port))
        self.transport.protocol = None  # type: ignore[attr-defined]
        self.channel = site.buildProtocol(None)
        self.channel.makeConnection(self.transport)

    def send(self, data: bytes) -> bytes:
        self.channel.dataReceived(data)
        return self.transport.value()

    @property
    def protocol(self) -> Any:
        """Whoever owns the connection now: the channel, or the WebSocket it became."""
        return self.transport.protocol or self.channel  # type: ignore[attr-defined]


def test_an_upgrade_goes_to_autobahn_without_a_twisted_web_request(tmp_path: Path) -> None:
    gw = Gateway(tmp_path)
    sock = Socket(gw.site)
    with capturedLogs() as events:
        answer = sock.send(UPGRADE)
    assert answer.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert sock.channel.handed_over and sock.channel.transport is None
    assert sock.channel.requests == []  # twisted.web made no Request of it
    assert isinstance(sock.protocol, GatewayWebSocketProtocol)
    # The channel, still the transport's producer, no longer pauses the client's reads.
    sock.channel.pauseProducing()
    assert sock.transport.producerState == "producing"
    assert gw.tracker.counts() == {"echo": 1}
    assert sum(gw.tracker.handshakes()["echo"].counts) == 1  # the handshake-time histogram
    assert not [e for e in events if e.get("log_kind") == "http"]  # no plain-HTTP access line
    sock.transport.clear()
    sock.protocol.dataReceived(HI)
    assert sock.transport.value() == b"\x81\x02hi"


def test_an_upgrade_sent_one_byte_at_a_time_is_handed_over_at_its_blank_line(
        tmp_path: Path) -> None:
    sock = Socket(Gateway(tmp_path).site)
    for byte in UPGRADE[:-1]:
        assert sock.send(bytes([byte])) == b""
    assert sock.send(UPGRADE[-1:]).startswith(b"HTTP/1.1 101")
    assert isinstance(sock.protocol, GatewayWebSocketProtocol)


def test_frames_sent_before_the_101_reach_the_session(tmp_path: Path) -> None:
    # twisted.web kept bytes after a request for its next request: they were lost.
    sock = Socket(Gateway(tmp_path).site)
    answer = sock.send(UPGRADE + HI)
    assert answer.startswith(b"HTTP/1.1 101") and answer.endswith(b"\r\n\r\n\x81\x02hi")


@pytest.mark.parametrize("request_bytes, status", [
    (b"GET /echo HTTP/1.1\r\nHost: gw.test\r\n\r\n", b"426"),  # the Router's, as before
    (b"GET /nothing HTTP/1.1\r\nHost: gw.test\r\nUpgrade: websocket\r\n\r\n", b"404"),
    (UPGRADE.replace(b"/echo", b"/echo%00"), b"404"),
    (b"GET /echo\x00 HTTP/1.1\r\nHost: gw.test\r\n\r\n", b"400"),  # twisted.web's
    (UPGRADE.replace(b"HTTP/1.1", b"HTTP/1.0"), b"101"),  # Autobahn's, through the Router
    (UPGRADE.replace(b"GET", b"POST"), b"405"),
])
def test_anything_else_goes_through_twisted_web_as_before(tmp_path: Path, request_bytes: bytes,
                                                          status: bytes) -> None:
    sock = Socket(Gateway(tmp_path).site)
    with capturedLogs() as events:
        answer = sock.send(request_bytes)
    assert answer.split(b" ")[1] == status
    assert not sock.channel.handed_over  # twisted.web's, Autobahn's after WebSocketResource
    if status in (b"426", b"404"):  # a finished plain-HTTP response: its access line
        assert [e["status"] for e in events if e.get("log_kind") == "http"] == [int(status)]


def test_a_keep_alive_connection_upgrades_through_twisted_web(tmp_path: Path) -> None:
    sock = Socket(Gateway(tmp_path).site)
    assert sock.send(b"GET /nothing HTTP/1.1\r\nHost: gw.test\r\n\r\n").startswith(
        b"HTTP/1.1 404")
    assert b"\r\n0\r\n\r\nHTTP/1.1 101 Switching Protocols\r\n" in sock.send(UPGRADE)
    assert isinstance(sock.protocol, GatewayWebSocketProtocol)


def test_the_deadline_stops_at_the_upgrade_and_still_bounds_a_half_sent_one(
        tmp_path: Path) -> None:
    gw = Gateway(tmp_path, "<http.handshake.timeout>3sec</http.handshake.timeout>")
    done, half = Socket(gw.site), Socket(gw.site, port=40001)
    done.send(UPGRADE)
    half.send(UPGRADE[:-2])
    gw.reactor.advance(3.1)
    assert half.transport.disconnecting and not done.transport.disconnecting
    gw.reactor.advance(120)  # twisted.web's idle timeout, twice over
    assert not done.transport.disconnecting
    assert gw.tracker.refused == {"echo": {HANDSHAKE_TIMEOUT: 1}}


def test_a_reload_retargets_upgrades_to_the_new_router(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    old, new = Gateway(tmp_path / "old"), Gateway(tmp_path / "new")
    old.site.resource = new.router  # what Listeners.adopt does
    assert Socket(old.site).send(UPGRADE).startswith(b"HTTP/1.1 101")
    assert (old.tracker.counts(), new.tracker.counts()) == ({}, {"echo": 1})


def test_the_proxy_protocol_client_is_the_websockets_client(tmp_path: Path) -> None:
    gw = Gateway(tmp_path)
    wrapping = ProxyProtocolFactory(gw.site, "v1", gw.reactor)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.5", 50000))
    wrapper = wrapping.buildProtocol(None)
    wrapper.makeConnection(transport)
    wrapper.dataReceived(b"PROXY TCP4 203.0.113.9 192.0.2.10 51000 8000\r\n" + UPGRADE)
    assert transport.value().startswith(b"HTTP/1.1 101")
    websocket = wrapper.wrappedProtocol
    assert isinstance(websocket, GatewayWebSocketProtocol)
    assert websocket.link is not None and websocket.link.remote == "203.0.113.9:51000"


def test_a_realm_and_an_origin_still_refuse_at_the_handshake(tmp_path: Path) -> None:
    gw = Gateway(tmp_path, gate=memory_gate({"ops"}))
    answer = Socket(gw.site).send(UPGRADE)
    assert answer.startswith(b"HTTP/1.1 401") and b'WWW-Authenticate: Basic realm="demo"' in answer
    good = base64.b64encode(b"alice:secret")
    authorised = UPGRADE.replace(b"\r\n\r\n", b"\r\nAuthorization: Basic " + good + b"\r\n\r\n")
    assert Socket(gw.site).send(authorised).startswith(b"HTTP/1.1 101")
    foreign = authorised.replace(b"\r\n\r\n", b"\r\nOrigin: http://evil.example\r\n\r\n")
    assert Socket(gw.site).send(foreign).startswith(b"HTTP/1.1 403")


def test_permessage_deflate_and_kaazings_handshake_are_negotiated(tmp_path: Path) -> None:
    gw = Gateway(tmp_path, "<ws.permessage-deflate>true</ws.permessage-deflate>")
    offer = UPGRADE.replace(b"\r\n\r\n", b"\r\nSec-WebSocket-Extensions: permessage-deflate\r\n"
                                         b"Sec-WebSocket-Protocol: x-kaazing-handshake\r\n\r\n")
    answer = Socket(gw.site).send(offer)
    assert answer.startswith(b"HTTP/1.1 101")
    assert b"Sec-WebSocket-Extensions: permessage-deflate" in answer
    assert b"Sec-WebSocket-Protocol: x-kaazing-handshake" in answer


# -- against twisted.web: the short way changes nothing but the cost --------------------------


class Recorder(Protocol):
    def __init__(self) -> None:
        self.data = b""

    def dataReceived(self, data: bytes) -> None:
        self.data += data


class RecordingFactory:
    """Stands for an Autobahn factory: its protocol records the bytes it is given."""

    def __init__(self) -> None:
        self.built: list[Recorder] = []

    def buildProtocol(self, addr: object) -> Recorder:
        self.built.append(Recorder())
        return self.built[-1]


def twisted_web_hands_autobahn(head: bytes) -> bytes | None:
    """What Autobahn got from twisted.web and WebSocketResource for *head*, or None."""
    factory = RecordingFactory()
    router = Router()
    router.add_websocket("/echo", factory)  # type: ignore[arg-type]
    site = server.Site(router)
    site.protocol = http.HTTPChannel  # twisted.web alone, no sniffing
    Socket(site).send(head)
    return factory.built[0].data if factory.built else None


_REQUEST_LINES = st.sampled_from([b"GET /echo HTTP/1.1", b"GET /echo?a=b&c HTTP/1.1",
                                  b"GET /echo HTTP/1.0", b"HEAD /echo HTTP/1.1",
                                  b"GET /echo?%7e HTTP/1.1"])
_USUAL = [b"Host: gw.test:8000", b"Upgrade: websocket", b"Connection: Upgrade",
          b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", b"Sec-WebSocket-Version: 13"]
_UNUSUAL = st.sampled_from([
    b"upgrade:\tWebSocket ", b"X-A: \x0cform feed", b"X-B: caf\xe9", b"X-C: \x85nel",
    b"Sec-WebSocket-Protocol: a, b,c", b"Origin:http://gw.test:8000", b"X-Empty:",
    b"x-forwarded-for: 198.51.100.1 ,198.51.100.2", b"Host: again", b"Content-Length: 0",
    b"X-D: trailing space   ", b"Sec-WebSocket-Extensions: permessage-deflate; x=1"])


@given(_REQUEST_LINES, st.lists(_UNUSUAL, max_size=3), st.data())
def test_the_short_way_gives_autobahn_the_request_twisted_web_would(
        request_line: bytes, unusual: list[bytes], data: st.DataObject) -> None:
    headers = data.draw(st.permutations(_USUAL + unusual))
    head = b"\r\n".join([request_line, *headers, b"", b""])
    sniffed = sniff(head, {b"/echo"})
    event(sniffed.verdict.value)
    if sniffed.verdict is not Verdict.UPGRADE:
        return
    assert sniffed.length == len(head)
    passed_on = twisted_web_hands_autobahn(head)
    assert passed_on is not None
    # Autobahn's own parse of both: request line, headers (names lower-cased), counts.
    assert parseHttpHeader(passed_on) == parseHttpHeader(head)
