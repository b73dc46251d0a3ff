"""UDP sessions and the Enterprise Shield pool, in memory with a fake clock."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock
from zope.interface import implementer

from kgateway.config import ACCEPT_OPTIONS, Options, parse_uri
from kgateway.interfaces import ILink, ISession
from kgateway.links import ConnectError, ConnectionTracker
from kgateway.shield import Backplane
from kgateway.udp import UDPServerProtocol


@implementer(ISession)
class Recorder:
    def __init__(self, link: ILink, ready: defer.Deferred[None]) -> None:
        self.link, self.ready = link, ready
        self.got: list[bytes] = []
        self.closed_with: str | None = None
        self.opened_ = False

    def negotiate(self, offered: list[str]) -> defer.Deferred[None]:
        return self.ready

    def opened(self) -> None:
        self.opened_ = True

    def received(self, data: bytes, binary: bool) -> None:
        self.got.append(data)

    def closed(self, code: int | None, reason: str) -> None:
        self.closed_with = reason


class Service:
    def __init__(self, timeout: float) -> None:
        self.config = type("C", (), {"name": "udp-svc", "accept_options": Options(
            {"udp.idle.timeout": timeout}, {k: d for k, (_, d) in ACCEPT_OPTIONS.items()})})()
        self.sessions: list[Recorder] = []
        self.ready: defer.Deferred[None] = defer.Deferred()

    def session(self, link: ILink) -> Recorder:
        s = Recorder(link, self.ready if not self.sessions else defer.succeed(None))
        self.sessions.append(s)
        return s


class FakeUDPTransport:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    def write(self, data: bytes, addr: Any) -> None:
        self.sent.append((data, addr))


def test_udp_sessions_per_client_address_with_idle_timeout() -> None:
    clock = MemoryReactorClock()
    service = Service(timeout=5)
    proto = UDPServerProtocol(clock, service, ConnectionTracker())  # type: ignore[arg-type]
    proto.transport = FakeUDPTransport()  # type: ignore[assignment]
    a, b = ("10.0.0.1", 4000), ("10.0.0.2", 4000)
    proto.datagramReceived(b"a1", a)
    proto.datagramReceived(b"a2", a)
    first = service.sessions[0]
    # Held until the session is ready (its back end connected), then delivered in order.
    assert first.got == [] and not first.opened_
    service.ready.callback(None)
    assert first.opened_ and first.got == [b"a1", b"a2"]
    proto.datagramReceived(b"b1", b)
    assert len(service.sessions) == 2 and service.sessions[1].got == [b"b1"]
    first.link.write(b"reply")
    assert proto.transport.sent == [(b"reply", a)]  # type: ignore[union-attr]
    clock.advance(4)
    proto.datagramReceived(b"a3", a)  # traffic resets a's idle timer
    clock.advance(2)
    assert first.closed_with is None and service.sessions[1].closed_with == "idle timeout"
    clock.advance(5)
    assert first.closed_with == "idle timeout"
    proto.datagramReceived(b"a4", a)  # a new session for a returning client
    assert len(service.sessions) == 3


def test_udp_clients_are_counted_and_drained_like_connections() -> None:
    clock = MemoryReactorClock()
    service = Service(timeout=60)
    tracker = ConnectionTracker()
    proto = UDPServerProtocol(clock, service, tracker)  # type: ignore[arg-type]
    proto.transport = FakeUDPTransport()  # type: ignore[assignment]
    service.ready.callback(None)
    proto.datagramReceived(b"hello", ("10.0.0.1", 4000))
    proto.datagramReceived(b"hi", ("10.0.0.2", 4000))
    service.sessions[0].link.write(b"reply!")
    assert tracker.counts() == {"udp-svc": 2} and tracker.accepted == {"udp-svc": 2}
    idle = tracker.when_idle()
    for client in tracker.connections():
        client.going_away()  # what a drain does when its time is up
    assert [s.closed_with for s in service.sessions] == ["gateway shutting down"] * 2
    assert idle.called and tracker.total() == 0
    assert tracker.received == {"udp-svc": 7} and tracker.sent == {"udp-svc": 6}


class FakeBackplaneProto:
    STATE_OPEN = 3
    state = 3

    def __init__(self) -> None:
        self.paired: list[str] = []

    def pair(self, peer: Any, protocols: Any, client: str) -> defer.Deferred[ILink]:
        self.paired.append(client)
        return defer.succeed("link")  # type: ignore[arg-type]


def test_backplane_pairs_waiting_clients_and_refuses_after_the_timeout() -> None:
    clock = MemoryReactorClock()
    pool = Backplane(clock, "dmz-echo", parse_uri("reverse+wss://dmz:1443/shield/echo"))
    first = pool.take(None, [], "client-1", 3)  # type: ignore[arg-type]
    second = pool.take(None, [], "client-2", 3)  # type: ignore[arg-type]
    proto = FakeBackplaneProto()
    pool.ready(proto)  # type: ignore[arg-type]
    assert proto.paired == ["client-1"] and first.called
    clock.advance(3)
    failures: list[Any] = []
    second.addErrback(failures.append)
    assert failures and failures[0].check(ConnectError)
    assert "no reverse connection from the internal gateway within 3s" in \
        failures[0].getErrorMessage()
    # A prepared connection with nobody waiting stays idle for the next client.
    idle = FakeBackplaneProto()
    pool.ready(idle)  # type: ignore[arg-type]
    assert pool.idle and pool.take(None, [], "client-3", 3).called  # type: ignore[arg-type]
    assert idle.paired == ["client-3"] and not pool.idle


@pytest.mark.parametrize("failures, expected", [(0, 0.5), (1, 1.0), (3, 4.0), (10, 30.0)])
def test_reconnect_back_off_doubles_up_to_the_maximum(failures: int, expected: float) -> None:
    from kgateway.shield import ReverseConnector

    clock = MemoryReactorClock()
    connector = ReverseConnector.__new__(ReverseConnector)
    connector.reactor, connector.running, connector.retries = clock, True, []
    connector.initial, connector.maximum, connector.failures = 0.5, 30.0, failures
    connector.name, connector.url = "svc", "wss://dmz:1443/shield"
    connector._retry("refused")
    assert clock.getDelayedCalls()[0].getTime() == pytest.approx(expected)


def test_reverse_connection_pings_and_reconnects_when_pongs_stop() -> None:
    from kgateway.protocols import shield as codec
    from kgateway.shield import ReverseClientProtocol

    clock = MemoryReactorClock()
    events: list[str] = []

    class Connector:
        reactor, keepalive, name = clock, 2.0, "svc"

        def welcomed(self, proto: Any) -> None:
            events.append("welcomed")

    proto = ReverseClientProtocol()
    proto.factory = type("F", (), {"connector": Connector()})()  # type: ignore[assignment]
    proto.decoder = codec.Decoder()
    sent: list[Any] = []
    proto._send_control = sent.append  # type: ignore[method-assign]
    proto.dropConnection = lambda abort=False: events.append("dropped")  # type: ignore[method-assign]
    proto.phase = "hello"
    proto.onMessage(codec.encode(codec.Welcome()), True)
    assert events == ["welcomed"] and proto.phase == "idle"
    clock.advance(2)
    assert sent == [codec.Ping(1)]
    proto.onMessage(codec.encode(codec.Pong(1)), True)
    clock.advance(2)
    assert sent == [codec.Ping(1), codec.Ping(2)] and "dropped" not in events
    clock.advance(2)  # no PONG for ping 2 by the next interval: the connection is dropped
    assert events[-1] == "dropped"
