"""The balancer over several <connect> targets, on a fake clock with scripted probes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock

from kgateway.balancer import Balancer
from kgateway.config import URI, parse_uri
from kgateway.interfaces import ConnectError
from kgateway.services import load_config, proxy
from tests.unit.fakes import FakeLink, build

A, B, C = (parse_uri(f"tcp://backend-{n}:5672") for n in "abc")


class ScriptedProbe:
    """Probes that succeed for the URIs in ``alive``; records each probe."""

    def __init__(self, alive: set[URI]) -> None:
        self.alive = alive
        self.calls: list[URI] = []

    def __call__(self, reactor: object, uri: URI, timeout: float) -> defer.Deferred[None]:
        self.calls.append(uri)
        if uri in self.alive:
            return defer.succeed(None)
        return defer.fail(ConnectionRefusedError("Connection refused"))


def test_round_robin_cycles_over_up_targets() -> None:
    balancer = Balancer(Clock(), [A, B, C])
    assert [balancer.pick().uri for _ in range(6)] == [A, B, C, A, B, C]  # type: ignore[union-attr]


def test_a_failed_target_is_skipped_until_it_is_back() -> None:
    balancer = Balancer(Clock(), [A, B, C])
    balancer.failed(balancer.targets[1], "Connection refused")
    assert [balancer.pick().uri for _ in range(4)] == [A, C, A, C]  # type: ignore[union-attr]
    balancer.connected(balancer.targets[1])  # a connect that worked brings it back too
    assert {balancer.pick().uri for _ in range(3)} == {A, B, C}  # type: ignore[union-attr]


def test_every_target_down_still_offers_them_in_turn() -> None:
    balancer = Balancer(Clock(), [A, B])
    for target in balancer.targets:
        balancer.failed(target, "down")
    assert not balancer.reachable()
    first = balancer.pick()
    assert first is not None
    assert balancer.pick([first]) is not None and balancer.pick([first]) is not first
    assert balancer.pick(balancer.targets) is None


def test_untried_does_not_move_the_rotation() -> None:
    balancer = Balancer(Clock(), [A, B])
    a = balancer.pick()
    assert a is not None and balancer.untried([a])
    assert balancer.untried([a])
    assert balancer.pick([a]) is balancer.targets[1]
    assert not balancer.untried(balancer.targets)


def test_least_connections_prefers_the_idlest() -> None:
    balancer = Balancer(Clock(), [A, B, C], strategy="least-connections")
    a, b, c = balancer.targets
    for _ in range(3):
        balancer.connected(a)
    balancer.connected(b)
    assert balancer.pick() is c
    balancer.connected(c)
    balancer.connected(c)
    assert balancer.pick() is b
    balancer.released(a)
    balancer.released(a)
    balancer.released(a)
    assert balancer.pick() is a


def test_probes_mark_targets_down_and_up_on_the_clock() -> None:
    clock = Clock()
    probe = ScriptedProbe({A})
    balancer = Balancer(clock, [A, B], probe_interval=2.0, probe=probe, name="relay")
    balancer.start()
    assert probe.calls == [A, B]
    assert [t.up for t in balancer.targets] == [True, False]
    assert balancer.status()[str(B)]["error"] == "probe: Connection refused"
    probe.alive.add(B)
    clock.advance(1.9)
    assert len(probe.calls) == 2
    clock.advance(0.1)
    assert [t.up for t in balancer.targets] == [True, True]
    balancer.stop()
    clock.advance(10)
    assert len(probe.calls) == 4


def test_a_probe_still_running_is_not_started_twice() -> None:
    clock = Clock()
    pending: list[defer.Deferred[None]] = []

    def slow_probe(reactor: object, uri: URI, timeout: float) -> defer.Deferred[None]:
        d: defer.Deferred[None] = defer.Deferred()
        pending.append(d)
        return d

    balancer = Balancer(clock, [A], probe_interval=1.0, probe=slow_probe)
    balancer.start()
    clock.advance(1)
    clock.advance(1)
    assert len(pending) == 1
    pending[0].errback(ConnectionRefusedError())
    assert not balancer.targets[0].up
    clock.advance(1)
    assert len(pending) == 2
    pending[1].callback(None)
    assert balancer.targets[0].up


def test_no_probes_when_the_interval_is_zero() -> None:
    clock = Clock()
    probe = ScriptedProbe(set())
    balancer = Balancer(clock, [A], probe=probe)
    balancer.start()
    clock.advance(100)
    assert probe.calls == []


# -- the proxy service over several targets, with an in-memory connector -----------------------


class Connector:
    """Stands in for the gateway's Connector: each connect waits for the test to answer it."""

    def __init__(self) -> None:
        self.calls: list[tuple[URI, defer.Deferred[object]]] = []

    def connect(self, uri: URI, options: object, receiver: object,
                **kwargs: object) -> defer.Deferred[object]:
        d: defer.Deferred[object] = defer.Deferred()
        self.calls.append((uri, d))
        return d


def proxy_service(tmp_path: Path, strategy: str = "round-robin") -> tuple[Any, Connector]:
    path = tmp_path / "g.xml"
    path.write_text(
        "<gateway-config><service><name>relay</name><accept>tcp://h:1</accept>"
        "<connect>tcp://a:1</connect><connect>tcp://b:1</connect><type>proxy</type>"
        f"<properties><connect.strategy>{strategy}</connect.strategy></properties>"
        "</service></gateway-config>")
    cfg = load_config(str(path), {}, {})
    connector = Connector()
    service = build(cfg, connector=connector)  # type: ignore[arg-type]
    assert isinstance(service, proxy.ProxyService)
    return service, connector


def test_a_failed_connect_moves_the_client_to_the_next_target(tmp_path: Path) -> None:
    service, connector = proxy_service(tmp_path)
    assert service.balancer.probe_interval == 5.0  # several targets: probed by default
    session = service.session(FakeLink(websocket=False))
    results: list[Any] = []
    session.negotiate([]).addBoth(results.append)
    (uri, d), = connector.calls
    assert str(uri) == "tcp://a:1"
    d.errback(ConnectError("Connection refused"))
    assert str(connector.calls[1][0]) == "tcp://b:1"
    assert results == []  # the client does not notice
    connector.calls[1][1].callback(FakeLink(websocket=False))
    assert results == [None]
    assert service.backend_status()["tcp://a:1"]["up"] is False
    assert service.backend_status()["tcp://b:1"] == {"up": True, "active": 1,
                                                     "connect_failures": 0}
    session.closed(None, "")
    assert service.backend_status()["tcp://b:1"]["active"] == 0
    # The next client goes straight to b while a is down.
    service.session(FakeLink(websocket=False)).negotiate([])
    assert str(connector.calls[2][0]) == "tcp://b:1"


def test_every_target_failing_refuses_the_client_once(tmp_path: Path) -> None:
    service, connector = proxy_service(tmp_path, "least-connections")
    result = service.session(FakeLink(websocket=False)).negotiate([])
    connector.calls[0][1].errback(ConnectError("Connection refused"))
    connector.calls[1][1].errback(ConnectError("Connection refused"))
    assert len(connector.calls) == 2
    failures: list[Any] = []
    result.addErrback(failures.append)
    assert failures and "cannot connect to tcp://b:1" in failures[0].getErrorMessage()
    assert not service.backend_reachable()
