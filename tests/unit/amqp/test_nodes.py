"""amqp.proxy over the nodes of a cluster (several <connect>): a new client goes to a live
node, a refused node is skipped before the client notices, a node that dies closes only
its own clients and is avoided by the next ones. In memory: FakeLinks, a FakeConnector."""

from __future__ import annotations

from pathlib import Path

from twisted.internet.testing import MemoryReactorClock

from kgateway.interfaces import ConnectError
from kgateway.protocols import amqp as A
from kgateway.services.amqp import AmqpService
from tests.unit.fakes import FakeConnector, FakeLink, build, load

START = A.method_frame(0, A.ConnectionStart(0, 9, {"product": "RabbitMQ"}, b"PLAIN",
                                            b"en_US"))


def cluster(tmp_path: Path, properties: str = "") -> tuple[AmqpService, FakeConnector]:
    props = f"<properties>{properties}</properties>" if properties else ""
    cfg = load(tmp_path, "<service><name>amqp</name><accept>ws://h:1/amqp</accept>"
                         "<connect>tcp://kgw1:5701</connect><connect>tcp://kgw2:5702</connect>"
                         f"<type>amqp.proxy</type>{props}</service>")
    connector = FakeConnector()
    service = build(cfg, reactor=MemoryReactorClock(), connector=connector)
    assert isinstance(service, AmqpService)
    return service, connector


def client(service: AmqpService) -> FakeLink:
    link = FakeLink()
    session = service.session(link)
    session.negotiate([])
    session.opened()
    session.received(A.PROTOCOL_HEADER, True)
    return link


def test_new_clients_take_the_nodes_in_turn(tmp_path: Path) -> None:
    service, connector = cluster(tmp_path)
    for _ in range(4):
        client(service)
    assert [c.uri.host for c in connector.calls] == ["kgw1", "kgw2", "kgw1", "kgw2"]


def test_a_refused_node_is_skipped_before_the_client_notices(tmp_path: Path) -> None:
    service, connector = cluster(tmp_path)
    link = client(service)
    connector.calls[0].d.errback(ConnectError("Connection refused"))
    assert [c.uri.host for c in connector.calls] == ["kgw1", "kgw2"]
    broker = FakeLink(websocket=False)
    connector.calls[1].d.callback(broker)
    assert broker.data == A.PROTOCOL_HEADER and link.closes == []
    status = service.backend_status()
    assert status["tcp://kgw1:5701"]["up"] is False
    assert status["tcp://kgw2:5702"] == {"up": True, "active": 1, "connect_failures": 0}
    # Until a probe finds kgw1 back, new clients go to kgw2.
    client(service)
    assert connector.calls[-1].uri.host == "kgw2"


def test_every_node_refused_is_a_clear_close(tmp_path: Path) -> None:
    service, connector = cluster(tmp_path)
    link = client(service)
    connector.calls[0].d.errback(ConnectError("Connection refused"))
    connector.calls[1].d.errback(ConnectError("Connection refused"))
    assert link.closes == [(1014, "cannot connect to tcp://kgw2:5702: Connection refused")]
    assert not service.backend_reachable()


def test_a_dying_node_closes_only_its_clients_and_is_avoided(tmp_path: Path) -> None:
    service, connector = cluster(tmp_path)
    on_1, on_2 = client(service), client(service)
    brokers = [FakeLink(websocket=False), FakeLink(websocket=False)]
    for call, broker in zip(connector.calls, brokers, strict=True):
        call.d.callback(broker)
        call.receiver.received(START, True)
    connector.calls[0].receiver.closed(None, "Connection lost.")  # kgw1 killed
    assert on_1.closes == [(1014, "broker connection lost: Connection lost.")]
    assert on_2.closes == []
    assert service.backend_status()["tcp://kgw1:5701"]["up"] is False
    client(service)  # on_1 reconnects: to the live node
    assert connector.calls[-1].uri.host == "kgw2"


def test_a_client_leaving_releases_its_node(tmp_path: Path) -> None:
    service, connector = cluster(tmp_path, "<connect.strategy>least-connections"
                                           "</connect.strategy>")
    link = FakeLink()
    session = service.session(link)
    session.negotiate([])
    session.opened()
    session.received(A.PROTOCOL_HEADER, True)
    broker = FakeLink(websocket=False)
    connector.calls[0].d.callback(broker)
    assert service.backend_status()["tcp://kgw1:5701"]["active"] == 1
    session.closed(1000, "")
    assert broker.closes and service.backend_status()["tcp://kgw1:5701"]["active"] == 0
    assert service.backend_status()["tcp://kgw1:5701"]["up"] is True
