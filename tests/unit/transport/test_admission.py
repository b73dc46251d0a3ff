"""Admission: the pure decisions on a fake clock, then the adapters in memory (WebSocket
handshakes through a real Site and Router, tcp clients, the HTTP and TLS handshake deadlines).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from autobahn.twisted.testing import MemoryReactorClock
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from kgateway.certs import make_certificate
from kgateway.config import parse_uri
from kgateway.protocols.websocket import Opcode, close_payload, encode_frame
from kgateway.transport.accept import GatewayWebSocketFactory, StreamServerFactory
from kgateway.transport.admission import (
    ADDRESS_LIMIT,
    HANDSHAKE_TIMEOUT,
    RATE_LIMIT,
    SERVICE_LIMIT,
    TLS_HANDSHAKE_TIMEOUT,
    Admission,
    Limits,
    RefusalLog,
    TokenBuckets,
    client_host,
)
from kgateway.transport.handshake import GatewaySite
from kgateway.transport.tls import ClientTLS, TLSServerEndpoint, load_identity, server_options
from kgateway.transport.tracker import ConnectionTracker
from kgateway.web import Router
from tests.unit.fakes import build, load, memory_gate


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- pure decisions --------------------------------------------------------------------------


@pytest.mark.parametrize("remote, host", [("192.0.2.7:40000", "192.0.2.7"),
                                          ("[2001:db8::1]:443", "2001:db8::1"),
                                          ("2001:db8::1", "2001:db8::1"),
                                          ("gw.example", "gw.example")])
def test_clients_are_counted_by_host_not_port(remote: str, host: str) -> None:
    assert client_host(remote) == host


def test_a_token_bucket_allows_its_burst_then_its_rate() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=2.0, size=3.0, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)  # one token in half a second
    assert buckets.take("b") == 0.0  # another host has its own bucket
    clock.now += 0.5
    assert buckets.take("a") == 0.0
    assert buckets.take("a") == pytest.approx(0.5)
    clock.now += 100  # refills to the burst, never beyond
    assert [buckets.take("a") for _ in range(4)][-1] == pytest.approx(0.5)


def test_token_buckets_are_bounded_in_number() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=1.0, size=2.0, clock=clock, max_buckets=100)
    for i in range(1000):
        buckets.take(f"10.0.{i // 256}.{i % 256}")
    assert len(buckets.buckets) == 100  # the least recently used went first
    assert "10.0.3.231" in buckets.buckets and "10.0.0.0" not in buckets.buckets
    clock.now += 0.5
    buckets.take("hammer")
    buckets.take("hammer")  # half empty: must be remembered
    clock.now += 1.9  # every other bucket is full again: those go first
    for i in range(50):
        buckets.take(f"new{i}")
    assert "hammer" in buckets.buckets and len(buckets.buckets) <= 100


def test_limits_and_rate_decide_in_order_and_zero_turns_each_off() -> None:
    clock = Clock()
    gate = Admission("echo", Limits(connections=10, per_address=2, rate=1.0, burst=2), clock)
    assert gate.check("a", 9, 1) is None
    refusal = gate.check("a", 10, 0)
    assert refusal is not None and (refusal.reason, refusal.status) == (SERVICE_LIMIT, 503)
    refusal = gate.check("a", 3, 2)
    assert refusal is not None and (refusal.reason, refusal.status) == (ADDRESS_LIMIT, 429)
    assert refusal.headers == []
    assert gate.check("a", 3, 1) is None  # the second token of the burst
    refusal = gate.check("a", 3, 1)
    assert refusal is not None and (refusal.reason, refusal.status) == (RATE_LIMIT, 429)
    assert refusal.retry_after == 1 and refusal.headers == [("Retry-After", "1")]
    off = Admission("echo", Limits(), clock)
    assert all(off.check("a", 10**6, 10**6) is None for _ in range(100))


def test_retry_after_says_when_the_next_token_comes() -> None:
    clock = Clock()
    gate = Admission("echo", Limits(rate=0.1, burst=1), clock)  # one every 10 s
    assert gate.check("a", 0, 0) is None
    clock.now += 2.5
    refusal = gate.check("a", 0, 0)
    assert refusal is not None and refusal.retry_after == 8  # 7.5 s, rounded up


def test_burst_defaults_to_one_seconds_rate() -> None:
    assert Limits(rate=0.2).bucket_size == 1
    assert Limits(rate=7.5).bucket_size == 8
    assert Limits(rate=5, burst=20).bucket_size == 20


def test_refusal_logging_is_rate_limited_and_sums_up_the_rest() -> None:
    clock = Clock()
    refusal_log = RefusalLog(clock, per_second=3)
    decisions = [refusal_log.should_log("echo", RATE_LIMIT) for _ in range(10)]
    assert decisions == [0, 0, 0] + [None] * 7
    assert refusal_log.should_log("echo", ADDRESS_LIMIT) == 0  # per reason
    assert refusal_log.should_log("jms", RATE_LIMIT) == 0  # per service
    clock.now += 1
    assert refusal_log.should_log("echo", RATE_LIMIT) == 7
    assert refusal_log.should_log("echo", RATE_LIMIT) == 0


def test_a_gate_holds_admitted_connections_until_released_and_counts_refusals() -> None:
    clock = Clock()
    tracker = ConnectionTracker()
    gate = tracker.gate("echo", Limits(connections=3, per_address=2), clock)
    assert tracker.gate("echo", Limits(), clock) is gate  # one per service
    a1, a2, a3, b1 = object(), object(), object(), object()
    with capturedLogs() as events:
        assert gate.admit(a1, "10.0.0.1:1000") is None
        assert gate.admit(a2, "10.0.0.1:1001") is None
        refusal = gate.admit(a3, "10.0.0.1:1002")  # same host, another port
        assert refusal is not None and refusal.reason == ADDRESS_LIMIT
        assert gate.admit(b1, "10.0.0.2:1000") is None
        refusal = gate.admit(object(), "10.0.0.3:1000")
        assert refusal is not None and refusal.reason == SERVICE_LIMIT
    assert tracker.held("echo") == 3 and tracker.held_by("echo", "10.0.0.1") == 2
    assert tracker.refused == {"echo": {ADDRESS_LIMIT: 1, SERVICE_LIMIT: 1}}
    lines = [e["log_format"].format(**e) for e in events if "refusing" in e["log_format"]]
    assert lines == [
        "refusing 10.0.0.1:1002 for echo: address connection limit: 10.0.0.1 has 2 "
        "connections to service 'echo', its limit",
        "refusing 10.0.0.3:1000 for echo: service connection limit: service 'echo' is at its "
        "limit of 3 connections"]
    gate.release(a1)
    gate.release(a1)  # idempotent
    assert tracker.held_by("echo", "10.0.0.1") == 1
    assert gate.admit(a3, "10.0.0.1:1003") is None
    tracker.ended("echo", a3, "10.0.0.1:1003", 0, 0, "closed")  # ending releases too
    assert tracker.held("echo") == 2 and tracker.held_by("echo", "10.0.0.1") == 1


def test_every_admission_option_has_a_default_that_disables_nothing_unsafe(tmp_path: Path) -> None:
    cfg = load(tmp_path, "<service><accept>ws://gw.test:8000/echo</accept><type>echo</type>"
                         "</service>")
    options = cfg.services[0].accept_options
    assert (options["http.handshake.timeout"], options["ssl.handshake.timeout"]) == (10.0, 10.0)
    assert Limits.from_options(options) == Limits(connections=10_000)
    cfg = load(tmp_path, "<service><accept>ws://gw.test:8000/echo</accept><type>echo</type>"
                         "<accept-options><connection.limit>5</connection.limit>"
                         "<connection.limit.per.address>2</connection.limit.per.address>"
                         "<handshake.rate>600/min</handshake.rate>"
                         "<handshake.burst>4</handshake.burst></accept-options></service>")
    assert Limits.from_options(cfg.services[0].accept_options) == Limits(5, 2, 10.0, 4)


# -- WebSocket handshakes through a real Site and Router, in memory --------------------------


def ws_site(tmp_path: Path, options: str, reactor: Any = None,
            tracker: ConnectionTracker | None = None) -> tuple[GatewaySite, Any, Any]:
    reactor = reactor or MemoryReactorClock()
    tracker = tracker or ConnectionTracker()
    cfg = load(tmp_path, "<service><name>echo</name><accept>ws://gw.test:8000/echo</accept>"
                         f"<type>echo</type><accept-options>{options}</accept-options>"
                         "</service>")
    factory = GatewayWebSocketFactory(build(cfg, reactor=reactor),
                                      parse_uri("ws://gw.test:8000/echo"), reactor, tracker)
    router = Router()
    router.add_websocket("/echo", factory)
    timeout = cfg.services[0].accept_options["http.handshake.timeout"]
    site = GatewaySite(router, reactor, timeout, tracker, tracker.refusal_log(reactor.seconds),
                       "echo")
    return site, reactor, tracker


UPGRADE = (b"GET /echo HTTP/1.1\r\nHost: gw.test:8000\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           b"Sec-WebSocket-Version: 13\r\n\r\n")


class Socket:
    """A raw client connection to a site: bytes in, what the gateway wrote out."""

    def __init__(self, site: GatewaySite, host: str = "192.0.2.1", port: int = 40000) -> None:
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", host, port))
        self.transport.protocol = None  # type: ignore[attr-defined]
        self.channel = site.buildProtocol(None)
        self.channel.makeConnection(self.transport)

    def send(self, data: bytes) -> str:
        self.channel.dataReceived(data)
        return self.transport.value().decode("latin-1")


def test_websockets_over_the_address_limit_get_429_and_others_still_connect(tmp_path: Path) -> None:
    site, _, tracker = ws_site(tmp_path, "<connection.limit.per.address>2"
                                         "</connection.limit.per.address>")
    first = [Socket(site, "192.0.2.1", 40000 + i) for i in range(3)]
    assert [s.send(UPGRADE).split("\r\n")[0] for s in first] == [
        "HTTP/1.1 101 Switching Protocols"] * 2 + ["HTTP/1.1 429 192.0.2.1 has 2 connections "
                                                   "to service 'echo', its limit"]
    other = Socket(site, "192.0.2.2")
    assert other.send(UPGRADE).startswith("HTTP/1.1 101")
    assert tracker.refused == {"echo": {ADDRESS_LIMIT: 1}}
    # One of the first two leaves: its host may connect again.
    first[0].transport.protocol.connectionLost(Failure(ConnectionDone()))  # type: ignore[attr-defined]
    assert Socket(site, "192.0.2.1", 41000).send(UPGRADE).startswith("HTTP/1.1 101")


def test_websockets_over_the_service_limit_get_503(tmp_path: Path) -> None:
    site, _, tracker = ws_site(tmp_path, "<connection.limit>1</connection.limit>")
    assert Socket(site, "192.0.2.1").send(UPGRADE).startswith("HTTP/1.1 101")
    assert Socket(site, "192.0.2.2").send(UPGRADE).startswith("HTTP/1.1 503 service 'echo' is "
                                                              "at its limit of 1 connections")
    assert tracker.refused == {"echo": {SERVICE_LIMIT: 1}}


def test_websocket_handshakes_over_the_rate_get_429_with_retry_after(tmp_path: Path) -> None:
    site, reactor, tracker = ws_site(tmp_path, "<handshake.rate>0.5</handshake.rate>"
                                               "<handshake.burst>2</handshake.burst>")
    with capturedLogs() as events:
        answers = [Socket(site, "192.0.2.1", 40000 + i).send(UPGRADE) for i in range(3)]
    assert [a.split(" ")[1] for a in answers] == ["101", "101", "429"]
    # One line per refusal, the gate's (Autobahn's own two per failed handshake would let a
    # flood past the gate's rate limit on logging).
    logged = [e["log_format"].format(**e) for e in events
              if e["log_level"].name in ("info", "warn", "error")]
    assert logged == ["refusing 192.0.2.1:40002 for echo: handshake rate: 192.0.2.1 opens "
                      "connections to service 'echo' faster than 0.5/s"]
    assert "\r\nRetry-After: 2\r\n" in answers[2]
    reactor.advance(2)
    assert Socket(site, "192.0.2.1", 41000).send(UPGRADE).startswith("HTTP/1.1 101")
    assert tracker.refused == {"echo": {RATE_LIMIT: 1}}


def test_a_refusal_by_origin_releases_what_admission_held(tmp_path: Path) -> None:
    site, _, tracker = ws_site(tmp_path, "<connection.limit.per.address>1"
                                         "</connection.limit.per.address>")
    foreign = UPGRADE.replace(b"\r\n\r\n", b"\r\nOrigin: http://evil.example\r\n\r\n")
    for port in (40000, 40001):
        sock = Socket(site, "192.0.2.1", port)
        assert sock.send(foreign).startswith("HTTP/1.1 403")
        sock.transport.protocol.connectionLost(Failure(ConnectionDone()))  # type: ignore[attr-defined]
    assert tracker.held("echo") == 0
    assert Socket(site, "192.0.2.1").send(UPGRADE).startswith("HTTP/1.1 101")


class ReleaseCounting(ConnectionTracker):
    """A tracker that says which connections it let go of, each time one really was held."""

    def __init__(self) -> None:
        super().__init__()
        self.released: list[object] = []

    def release(self, connection: object) -> None:
        if connection in self._holds:
            self.released.append(connection)
        super().release(connection)


CLOSE_1000 = b"".join(encode_frame(Opcode.CLOSE, close_payload(1000), mask=b"\x01\x02\x03\x04"))


@pytest.mark.parametrize("end", ["origin", "auth", "close", "drop", "autobahn-close",
                                 "autobahn-drop", "drain"])
def test_an_admitted_client_is_released_once_whatever_ends_it(tmp_path: Path, end: str) -> None:
    tracker = ReleaseCounting()
    options = "<ws.fast.path>false</ws.fast.path>" if end.startswith("autobahn") else ""
    cfg = load(tmp_path, "<service><name>echo</name><accept>ws://gw.test:8000/echo</accept>"
                         f"<type>echo</type><accept-options>{options}</accept-options>"
                         "</service>")
    factory = GatewayWebSocketFactory(build(cfg), parse_uri("ws://gw.test:8000/echo"),
                                      MemoryReactorClock(), tracker,
                                      memory_gate() if end == "auth" else None)
    proto = factory.buildProtocol(None)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.1", 40000))
    proto.makeConnection(transport)
    transport.registerProducer(proto, True)  # as twisted.web's channel leaves it
    origin = "Origin: http://evil.example\r\n" if end == "origin" else ""
    proto.dataReceived(UPGRADE.replace(b"\r\n\r\n", f"\r\n{origin}\r\n".encode()))
    answer = transport.value().split(b"\r\n")[0]
    if end in ("origin", "auth"):
        assert answer.startswith(b"HTTP/1.1 403" if end == "origin" else b"HTTP/1.1 401")
        assert tracker.held("echo") == 1  # until the connection is gone
        proto.connectionLost(Failure(ConnectionDone()))
    else:
        assert answer == b"HTTP/1.1 101 Switching Protocols"
        assert (proto.fast is not None) is not end.startswith("autobahn")
        assert tracker.held("echo") == 1 and tracker.counts() == {"echo": 1}
        if end.endswith("close"):
            proto.dataReceived(CLOSE_1000)
            assert transport.disconnecting  # the server drops TCP after the closing handshake
            proto.connectionLost(Failure(ConnectionDone()))
        elif end == "drain":
            proto.going_away()
            proto.abort()
            proto.connectionLost(Failure(ConnectionAborted()))
        else:
            proto.connectionLost(Failure(ConnectionLost()))
        assert tracker.total() == 0
    assert tracker.released == [proto]
    assert tracker.held("echo") == 0 and tracker.held_by("echo", "192.0.2.1") == 0
    proto.connectionLost(Failure(ConnectionDone()))  # even told twice: nothing more to release
    assert tracker.released == [proto] and tracker.held("echo") == 0


def test_a_client_lost_during_its_login_is_released_and_never_tracked(tmp_path: Path) -> None:
    tracker = ReleaseCounting()
    cfg = load(tmp_path, "<service><name>echo</name><accept>ws://gw.test:8000/echo</accept>"
                         "<type>echo</type></service>")
    login: defer.Deferred[Any] = defer.Deferred()

    class SlowGate:
        optional = False

        def credentials(self, headers: Any, params: Any) -> object:
            return object()

        def login(self, credentials: object) -> defer.Deferred[Any]:
            return login

    factory = GatewayWebSocketFactory(build(cfg), parse_uri("ws://gw.test:8000/echo"),
                                      MemoryReactorClock(), tracker, SlowGate())  # type: ignore[arg-type]
    proto = factory.buildProtocol(None)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.1", 40000))
    proto.makeConnection(transport)
    transport.registerProducer(proto, True)
    proto.dataReceived(UPGRADE)
    assert tracker.held("echo") == 1
    proto.connectionLost(Failure(ConnectionLost()))
    assert tracker.released == [proto] and tracker.held("echo") == 0
    login.callback(None)  # the login answers after the client left
    assert tracker.released == [proto] and tracker.held("echo") == 0
    assert tracker.total() == 0 and tracker.accepted == {}


# -- the HTTP handshake deadline ---------------------------------------------------------------


def test_a_half_sent_request_is_dropped_at_the_deadline(tmp_path: Path) -> None:
    site, reactor, tracker = ws_site(tmp_path, "<http.handshake.timeout>3sec"
                                               "</http.handshake.timeout>")
    sock = Socket(site)
    with capturedLogs() as events:
        for _ in range(5):  # a byte a second restarted twisted.web's idle timeout each time
            sock.send(b"G")
            reactor.advance(0.5)
        assert not sock.transport.disconnecting
        reactor.advance(0.6)
    assert sock.transport.disconnecting
    assert tracker.refused == {"echo": {HANDSHAKE_TIMEOUT: 1}}
    assert any("no complete HTTP request within 3s" in e["log_format"].format(**e)
               for e in events)


def test_an_open_websocket_outlives_both_the_deadline_and_the_idle_timeout(tmp_path: Path) -> None:
    site, reactor, tracker = ws_site(tmp_path, "<http.handshake.timeout>3sec"
                                               "</http.handshake.timeout>")
    client_factory = WebSocketClientFactory("ws://gw.test:8000/echo", reactor=reactor)
    got: list[bytes] = []

    class Client(WebSocketClientProtocol):
        def onMessage(self, payload: bytes, isBinary: bool) -> None:
            got.append(payload)

    client_factory.protocol = Client
    client, _, pump = iosim.connectedServerAndClient(
        lambda: site.buildProtocol(None), lambda: client_factory.buildProtocol(None),
        greet=False, clock=reactor)
    pump.flush()
    assert client.state == client.STATE_OPEN
    for _ in range(130):  # past the deadline and twisted.web's 60 s idle timeout, twice
        reactor.advance(1)
        pump.flush()
    client.sendMessage(b"still here")
    pump.flush()
    assert got == [b"still here"] and tracker.refused == {}


class Slow(Resource):
    """A response that takes as long as the test likes (a big file to a slow reader)."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Any] = []

    def render_GET(self, request: Any) -> int:
        request.write(b"first part ")
        self.requests.append(request)
        return NOT_DONE_YET


def test_a_long_response_is_not_cut_by_the_deadline(tmp_path: Path) -> None:
    site, reactor, tracker = ws_site(tmp_path, "<http.handshake.timeout>3sec"
                                               "</http.handshake.timeout>")
    slow = Slow()
    site.resource.add_folder("/big", slow)
    sock = Socket(site)
    sock.send(b"GET /big/file HTTP/1.1\r\nHost: gw.test\r\n\r\n")
    reactor.advance(120)  # the deadline and twisted.web's idle timeout, twice over
    assert not sock.transport.disconnecting
    slow.requests[0].write(b"last part")
    slow.requests[0].finish()
    assert sock.transport.value().endswith(b"last part\r\n0\r\n\r\n")
    assert tracker.refused == {}


def test_a_keep_alive_connection_gets_a_new_deadline_after_each_response(tmp_path: Path) -> None:
    site, reactor, tracker = ws_site(tmp_path, "<http.handshake.timeout>3sec"
                                               "</http.handshake.timeout>")
    sock = Socket(site)
    reactor.advance(2)
    answer = sock.send(b"GET /nothing HTTP/1.1\r\nHost: gw.test\r\n\r\n")
    assert answer.startswith("HTTP/1.1 404")
    reactor.advance(2.9)  # 4.9 s since connecting, 2.9 s since the response
    assert not sock.transport.disconnecting
    reactor.advance(0.2)
    assert sock.transport.disconnecting
    assert tracker.refused == {"echo": {HANDSHAKE_TIMEOUT: 1}}


def test_a_zero_handshake_timeout_leaves_only_twisted_webs_idle_timeout(tmp_path: Path) -> None:
    site, reactor, tracker = ws_site(tmp_path, "<http.handshake.timeout>0</http.handshake.timeout>")
    sock = Socket(site)
    sock.send(b"GET /echo HTTP/1.1\r\n")
    reactor.advance(59)
    assert not sock.transport.disconnecting and tracker.refused == {}


# -- tcp clients ---------------------------------------------------------------------------------


def test_stream_clients_over_a_limit_are_closed_and_never_tracked(tmp_path: Path) -> None:
    cfg = load(tmp_path, "<service><name>echo</name><accept>tcp://gw.test:5000</accept>"
                         "<type>echo</type><accept-options><connection.limit.per.address>1"
                         "</connection.limit.per.address></accept-options></service>")
    tracker = ConnectionTracker()
    clock = Clock()
    factory = StreamServerFactory(build(cfg), tracker, clock)
    protos, transports = [], []
    for port in (40000, 40001):
        transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.1", port))
        proto = factory.buildProtocol(None)
        proto.makeConnection(transport)
        protos.append(proto)
        transports.append(transport)
    assert not transports[0].disconnecting and transports[1].disconnecting
    protos[1].connectionLost(None)  # type: ignore[arg-type]
    assert tracker.counts() == {"echo": 1} and tracker.refused == {"echo": {ADDRESS_LIMIT: 1}}
    protos[0].connectionLost(None)  # type: ignore[arg-type]
    assert tracker.held("echo") == 0 and tracker.total() == 0


# -- the TLS handshake deadline ------------------------------------------------------------------


class Listening:
    """A server endpoint that only remembers the factory it was given."""

    factory: Any = None

    def listen(self, factory: Any) -> defer.Deferred[None]:
        self.factory = factory
        return defer.succeed(None)


def tls_factory(tmp_path: Path, reactor: Any, tracker: ConnectionTracker) -> Any:
    cert, key = make_certificate(str(tmp_path), "localhost")
    inner = Listening()
    TLSServerEndpoint(inner, server_options(load_identity(cert, key)), "echo",
                      reactor=reactor, handshake_timeout=2.0, counts=tracker,
                      refusal_log=tracker.refusal_log(reactor.seconds)).listen(
        Factory.forProtocol(Protocol))
    return inner.factory


def test_a_tls_handshake_that_never_finishes_is_dropped(tmp_path: Path) -> None:
    reactor, tracker = MemoryReactorClock(), ConnectionTracker()
    proto = tls_factory(tmp_path, reactor, tracker).buildProtocol(None)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.9", 40000))
    proto.makeConnection(transport)
    proto.dataReceived(b"\x16\x03\x01")  # the start of a ClientHello, and then nothing
    reactor.advance(1.9)
    assert not transport.disconnecting
    reactor.advance(0.2)
    assert transport.disconnecting
    assert tracker.refused == {"echo": {TLS_HANDSHAKE_TIMEOUT: 1}}


def test_a_finished_tls_handshake_is_not_timed(tmp_path: Path) -> None:
    reactor, tracker = MemoryReactorClock(), ConnectionTracker()
    server = tls_factory(tmp_path, reactor, tracker)
    client = ClientTLS("localhost", os.path.join(tmp_path, "ca.pem"))
    client_side = TLSMemoryBIOFactory(client.creator, True, Factory.forProtocol(Protocol))
    _, server_proto, pump = iosim.connectedServerAndClient(
        lambda: server.buildProtocol(None), lambda: client_side.buildProtocol(None),
        clock=reactor)
    pump.flush()
    assert server_proto._handshakeDone
    assert not reactor.getDelayedCalls() or all(
        c.func != server_proto._handshake_expired for c in reactor.getDelayedCalls())
    reactor.advance(10)
    pump.flush()
    assert not server_proto.transport.disconnecting and tracker.refused == {}

