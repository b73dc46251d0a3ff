"""The DMZ end of Enterprise Shield: the pool of prepared reverse connections, in memory."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock

from kgateway.config import parse_uri
from kgateway.interfaces import ConnectError, ILink
from kgateway.shield.dmz import Backplane, Backplanes
from kgateway.shield.pairing import Phase


class FakeBackplaneProto:
    STATE_OPEN = 3
    state = 3

    def __init__(self) -> None:
        self.paired: list[str] = []
        self.machine = type("M", (), {"phase": Phase.IDLE})()

    def pair(self, receiver: Any, protocols: Any, client: str) -> defer.Deferred[ILink]:
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


def test_backplanes_route_by_uri_and_refuse_an_unknown_one() -> None:
    clock = MemoryReactorClock()
    backplanes = Backplanes()
    uri = parse_uri("reverse+wss://dmz:1443/shield/echo")
    pool = Backplane(clock, "dmz-echo", uri)
    backplanes.add(pool)
    options = {"reverse.timeout": 3.0}
    proto = FakeBackplaneProto()
    pool.ready(proto)  # type: ignore[arg-type]
    assert backplanes.ready_count() == {str(uri): 1}
    assert backplanes.take(uri, options, None, [], "c").called  # type: ignore[arg-type]
    assert proto.paired == ["c"]
    failures: list[Any] = []
    other = parse_uri("reverse+wss://dmz:1443/other")
    backplanes.take(other, options, None, [], "c").addErrback(failures.append)  # type: ignore[arg-type]
    assert failures[0].check(ConnectError)
    assert "no Enterprise Shield backplane for reverse+wss://dmz:1443/other" in \
        failures[0].getErrorMessage()
