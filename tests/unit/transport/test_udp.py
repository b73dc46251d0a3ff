"""UDP accepts: a session per client address, idle timeouts, drains; in memory."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock
from zope.interface import implementer

from kgateway.config import ACCEPT_OPTIONS, Options
from kgateway.interfaces import ILink, ISession
from kgateway.transport.tracker import ConnectionTracker
from kgateway.transport.udp import UDPServerProtocol


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
    proto.makeConnection(FakeUDPTransport())  # type: ignore[arg-type]
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
    proto.makeConnection(FakeUDPTransport())  # type: ignore[arg-type]
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
