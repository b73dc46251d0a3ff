"""The accept adapters in memory (twisted.test.iosim): a real Autobahn client against
GatewayWebSocketProtocol, and bytes against StreamServerProtocol, driving real services."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autobahn.twisted.testing import MemoryReactorClock
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.test import iosim
from zope.interface import implementer

from kgateway.config import ACCEPT_OPTIONS, Options, parse_uri
from kgateway.interfaces import IGatewayService, ILink, ISession
from kgateway.transport.accept import GatewayWebSocketFactory, StreamServerFactory
from kgateway.transport.tracker import ConnectionTracker
from tests.unit.auth.test_gate import basic
from tests.unit.fakes import build, load, memory_gate


class Client(WebSocketClientProtocol):
    def onOpen(self) -> None:
        self.factory.events.append(("open", self.websocket_protocol_in_use))

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.events.append(("message", payload, isBinary))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.events.append(("close", code, reason))


def connect(server: GatewayWebSocketFactory, headers: dict[str, str] | None = None,
            protocols: list[str] | None = None) -> tuple[Any, Any, iosim.IOPump]:
    client_factory = WebSocketClientFactory("ws://gw.test:8000/echo", protocols=protocols,
                                            headers=headers, reactor=server.reactor)
    client_factory.protocol = Client
    client_factory.events = []  # type: ignore[attr-defined]
    _, server_proto, pump = iosim.connectedServerAndClient(
        lambda: server.buildProtocol(None), lambda: client_factory.buildProtocol(None),
        greet=False)
    pump.flush()
    return server_proto, client_factory, pump


def echo_factory(tmp_path: Path, extra: str = "") -> GatewayWebSocketFactory:
    cfg = load(tmp_path, "<service><name>echo</name><accept>ws://gw.test:8000/echo</accept>"
                         f"<type>echo</type>{extra}</service>")
    return GatewayWebSocketFactory(build(cfg), parse_uri("ws://gw.test:8000/echo"),
                                   MemoryReactorClock(), ConnectionTracker())


def test_a_websocket_client_reaches_its_session_and_is_tracked(tmp_path: Path) -> None:
    server = echo_factory(tmp_path)
    with capturedLogs() as events:
        server_proto, client, pump = connect(server, protocols=["v12.stomp"])
        assert client.events == [("open", "v12.stomp")]
        assert server.tracker.counts() == {"echo": 1}
        server_proto.link.write(b"hi", False)
        client_proto = pump.client
        client_proto.sendMessage(b"\x00\x01", isBinary=True)
        pump.flush()
        assert ("message", b"\x00\x01", True) in client.events
        # counted as they flow, before the close: echo runs on the fast data path
        # (fastws.py), which counts wire octets: 2 payload + 6 header (masked, from the
        # client); "hi" and the echo, each with its 2-octet header, to the client
        assert server.tracker.received == {"echo": 8}
        assert server.tracker.sent == {"echo": 8}
        assert server.tracker.handshakes()["echo"].count == 1
        client_proto.sendClose(1000)
        pump.flush()
    assert client.events[-1][:2] == ("close", 1000)
    assert server.tracker.total() == 0 and server.tracker.accepted == {"echo": 1}
    access = [e for e in events if e.get("log_format", "").startswith("access:")]
    assert access and access[0]["service"] == "echo" and access[0]["end"] == "close=1000"


def test_a_foreign_origin_is_refused_with_403(tmp_path: Path) -> None:
    server = echo_factory(tmp_path)
    _, client, _ = connect(server, headers={"Origin": "http://evil.test"})
    assert not any(e[0] == "open" for e in client.events)
    assert server.tracker.total() == 0 and server.tracker.accepted == {}
    assert server.tracker.refused == {"echo": {"origin": 1}}


def test_a_cross_site_constraint_admits_its_origin(tmp_path: Path) -> None:
    server = echo_factory(tmp_path, "<cross-site-constraint><allow-origin>http://app.test"
                                    "</allow-origin></cross-site-constraint>")
    _, client, _ = connect(server, headers={"Origin": "http://app.test"})
    assert client.events[0][0] == "open"


def test_trusted_forwarded_header_gives_the_session_the_real_client(tmp_path: Path) -> None:
    server = echo_factory(tmp_path, "<accept-options><http.forwarded.hops>1"
                                    "</http.forwarded.hops></accept-options>")
    server_proto, _, _ = connect(server, headers={"X-Forwarded-For": "198.51.100.7"})
    assert server_proto.link.remote == "198.51.100.7"


@implementer(ISession)
class Waiting:
    """A session whose back end is still connecting: negotiate() is pending."""

    def __init__(self, link: ILink) -> None:
        self.link, self.ready = link, defer.Deferred[None]()
        self.got: list[bytes] = []
        self.ended: list[str] = []

    def negotiate(self, offered: list[str]) -> defer.Deferred[None]:
        return self.ready

    def opened(self) -> None:
        pass

    def received(self, data: bytes, binary: bool) -> None:
        self.got.append(data)

    def closed(self, code: int | None, reason: str) -> None:
        self.ended.append(reason)


@implementer(IGatewayService)
class WaitingService:
    config = type("C", (), {"name": "relay", "accept_options": Options(
        {}, {name: default for name, (_, default) in ACCEPT_OPTIONS.items()})})()

    def __init__(self) -> None:
        self.sessions: list[Waiting] = []

    def session(self, link: ILink) -> Waiting:
        self.sessions.append(Waiting(link))
        return self.sessions[-1]

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


def test_a_stream_client_is_not_read_until_its_session_is_ready() -> None:
    service = WaitingService()
    tracker = ConnectionTracker()
    proto = StreamServerFactory(service, tracker).buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    assert transport.producerState == "paused"
    session = service.sessions[0]
    session.ready.callback(None)
    assert transport.producerState == "producing"
    proto.dataReceived(b"bytes")
    assert session.got == [b"bytes"] and tracker.counts() == {"relay": 1}
    proto.connectionLost(None)  # type: ignore[arg-type]
    assert session.ended == [""] and tracker.total() == 0


def gated_factory(tmp_path: Path, gate: Any) -> GatewayWebSocketFactory:
    cfg = load(tmp_path, "<service><name>echo</name><accept>ws://gw.test:8000/echo</accept>"
                         "<type>echo</type></service>")
    return GatewayWebSocketFactory(build(cfg), parse_uri("ws://gw.test:8000/echo"),
                                   MemoryReactorClock(), ConnectionTracker(), gate)


def raw_handshake(server: GatewayWebSocketFactory, headers: str, path: str = "/echo") -> bytes:
    """What the gateway answers to a hand-written handshake (to read 401s and headers)."""
    proto = server.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    transport.registerProducer(proto, True)  # as twisted.web's channel leaves it
    proto.dataReceived((f"GET {path} HTTP/1.1\r\nHost: gw.test:8000\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                        f"Sec-WebSocket-Version: 13\r\n{headers}\r\n").encode())
    return transport.value()


def test_a_gated_handshake_without_credentials_gets_401_and_the_challenge(tmp_path: Path) -> None:
    answer = raw_handshake(gated_factory(tmp_path, memory_gate()), "")
    assert answer.startswith(b"HTTP/1.1 401 ")
    assert b'WWW-Authenticate: Basic realm="demo"\r\n' in answer


def test_wrong_credentials_get_401_and_a_missing_role_403(tmp_path: Path) -> None:
    factory = gated_factory(tmp_path, memory_gate())
    wrong = raw_handshake(factory, "Authorization: " + basic("alice", "nope") + "\r\n")
    assert wrong.startswith(b"HTTP/1.1 401 ")
    assert factory.tracker.refused == {"echo": {"auth": 1}}
    factory = gated_factory(tmp_path, memory_gate({"ops"}))
    forbidden = raw_handshake(factory, "Authorization: " + basic("bob", "hunter2") + "\r\n")
    assert forbidden.startswith(b"HTTP/1.1 403 ") and b"WWW-Authenticate" not in forbidden
    assert factory.tracker.refused == {"echo": {"forbidden": 1}}


def test_good_credentials_put_the_principal_on_the_link(tmp_path: Path) -> None:
    server = gated_factory(tmp_path, memory_gate({"ops"}))
    server_proto, client, _ = connect(server, headers={"Authorization": basic("alice", "secret")})
    assert client.events[0][0] == "open"
    assert server_proto.link.principal.name == "alice"


def test_a_protocol_that_carries_credentials_may_come_without(tmp_path: Path) -> None:
    server = gated_factory(tmp_path, memory_gate(optional=True))
    server_proto, client, _ = connect(server)
    assert client.events[0][0] == "open" and server_proto.link.principal is None
    # ...but credentials that are there must be right
    assert raw_handshake(server, "Authorization: " + basic("alice", "x") + "\r\n") \
        .startswith(b"HTTP/1.1 401 ")


class _Request:
    def __init__(self, peer: str, headers: dict[str, str]) -> None:
        self.peer, self.headers = peer, headers


def test_behind_a_tls_off_loader_the_origin_is_https_only_if_a_trusted_proxy_says_so(
        tmp_path: Path) -> None:
    trusted = ("<accept-options><http.forwarded.trusted>10.0.0.0/8"
               "</http.forwarded.trusted></accept-options>")
    server = echo_factory(tmp_path, trusted)
    page = {"host": "gw.test:8000", "origin": "https://gw.test:8000",
            "x-forwarded-proto": "https"}
    assert server.origin_refusal(_Request("tcp4:10.0.0.5:4711", page)) is None  # type: ignore[arg-type]
    # The same headers from anyone else: the page would be http, so https is foreign.
    assert server.origin_refusal(_Request("tcp4:203.0.113.9:4711", page)) is not None  # type: ignore[arg-type]
    untrusting = echo_factory(tmp_path)  # no http.forwarded.* option
    assert untrusting.origin_refusal(_Request("tcp4:10.0.0.5:4711", page)) is not None  # type: ignore[arg-type]
