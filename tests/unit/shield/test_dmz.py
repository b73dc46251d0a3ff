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


class _PeerTLS:
    def __init__(self, cert: Any) -> None:
        self.cert = cert

    def getPeerCertificate(self) -> Any:
        return self.cert


def test_the_backplane_accepts_only_the_named_internal_gateways(tmp_path: Any) -> None:
    from kgateway.certs import make_certificate
    from kgateway.config import CONNECT_OPTIONS, Options
    from kgateway.shield.dmz import BackplaneFactory
    from kgateway.transport.tls import load_identity

    defaults = {k: v for k, (_, v) in CONNECT_OPTIONS.items()}
    pool = Backplane(MemoryReactorClock(), "dmz", parse_uri("reverse+wss://dmz:1443/s"))
    internal = load_identity(*make_certificate(str(tmp_path), "internal1.corp",
                                               ["10.1.2.3"])).chain[0]
    rogue = load_identity(*make_certificate(str(tmp_path), "laptop.corp")).chain[0]

    def factory(names: tuple[str, ...]) -> BackplaneFactory:
        options = Options({"reverse.allowed.names": names}, defaults)
        return BackplaneFactory(pool, options, MemoryReactorClock())

    named = factory(("internal1.corp", "internal2.corp"))
    assert named.name_refusal(_PeerTLS(internal)) is None
    refusal = named.name_refusal(_PeerTLS(rogue))
    assert refusal == "certificate names laptop.corp are not in reverse.allowed.names"
    assert named.name_refusal(_PeerTLS(None)) == "no client certificate"
    assert factory(("10.1.2.3",)).name_refusal(_PeerTLS(internal)) is None  # an IP SAN
    assert factory(("*",)).name_refusal(_PeerTLS(rogue)) is None


class DyingBackplaneProto(FakeBackplaneProto):
    """Its internal gateway was killed: the pairing fails as the connection drops."""

    def pair(self, receiver: Any, protocols: Any, client: str) -> defer.Deferred[ILink]:
        from kgateway.shield.dmz import ReverseLost

        self.paired.append(client)
        return defer.fail(ReverseLost("reverse connection lost while opening"))


def test_a_client_paired_with_a_dying_connection_gets_the_next_one() -> None:
    """Two internal gateways on one path, one killed: its prepared connections die one by one,
    and a client paired with one of them is paired again, with the survivor's or by waiting."""
    clock = MemoryReactorClock()
    pool = Backplane(clock, "dmz-echo", parse_uri("reverse+wss://dmz:1443/shield/echo"))
    dead1, dead2, alive = DyingBackplaneProto(), DyingBackplaneProto(), FakeBackplaneProto()
    for proto in (dead1, dead2, alive):
        pool.ready(proto)  # type: ignore[arg-type]
    results: list[Any] = []
    pool.take(None, [], "client-1", 3).addBoth(results.append)  # type: ignore[arg-type]
    assert results == ["link"]
    assert dead1.paired == dead2.paired == alive.paired == ["client-1"]
    # Nothing left: the next client waits, and a dying newcomer does not lose it either.
    later: list[Any] = []
    pool.take(None, [], "client-2", 3).addBoth(later.append)  # type: ignore[arg-type]
    assert later == []
    pool.ready(DyingBackplaneProto())  # type: ignore[arg-type]
    assert later == []
    survivor = FakeBackplaneProto()
    pool.ready(survivor)  # type: ignore[arg-type]
    assert later == ["link"] and survivor.paired == ["client-2"]
