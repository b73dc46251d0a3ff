"""The health service's report, for services built in memory around one GatewayStatus."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from twisted.web.test.requesthelper import DummyRequest
from zope.interface import implementer

from kgateway.interfaces import ITrackedConnection
from kgateway.services.base import GatewayStatus
from kgateway.transport.tracker import ConnectionTracker
from tests.unit.fakes import build_all, load

HEALTH = ("<service><name>health</name><accept>http://127.0.0.1:8000/health</accept>"
          "<type>health</type>{props}</service>")
ECHO = "<service><name>echo</name><accept>ws://127.0.0.1:8000/echo</accept><type>echo</type></service>"
RELAY = ("<service><name>relay</name><accept>tcp://127.0.0.1:7000</accept>"
         "<connect>tcp://127.0.0.1:7001</connect><connect>tcp://127.0.0.1:7002</connect>"
         "<type>proxy</type></service>")


@implementer(ITrackedConnection)
class FakeConnection:
    def __init__(self, tracker: ConnectionTracker, service: str) -> None:
        self.tracker = tracker
        self.service = service
        self.told = 0
        tracker.add(service, self)

    def going_away(self) -> None:
        self.told += 1
        self.end()

    def abort(self) -> None:
        self.end()

    def end(self) -> None:
        self.tracker.ended(self.service, self, "192.0.2.7:5555", 0, 0, "")


def get(health: Any) -> tuple[int, dict[str, Any]]:
    request = DummyRequest([b""])
    body = health.http_resource().render(request)
    return request.responseCode or 200, json.loads(body)


def services(tmp_path: Path, body: str) -> GatewayStatus:
    return build_all(load(tmp_path, body))


def test_health_counts_connections_per_service(tmp_path: Path) -> None:
    status = services(tmp_path, HEALTH.format(props="") + ECHO)
    FakeConnection(status.tracker, "echo")
    FakeConnection(status.tracker, "echo")
    code, body = get(status.services["health"])
    assert code == 200 and body["status"] == "ok"
    assert body["services"]["echo"] == {"type": "echo", "connections": 2}
    assert body["connections"] == 2 and body["worker"] is None


def test_unreachable_back_ends_fail_health_only_when_required(tmp_path: Path) -> None:
    for required, expected in (("false", 200), ("true", 503)):
        props = f"<properties><require.backends>{required}</require.backends></properties>"
        status = services(tmp_path, HEALTH.format(props=props) + RELAY)
        relay = status.services["relay"]
        for target in relay.balancer.targets:  # type: ignore[attr-defined]
            relay.balancer.failed(target, "Connection refused")  # type: ignore[attr-defined]
        code, body = get(status.services["health"])
        assert code == expected
        assert body["backends"]["relay"]["tcp://127.0.0.1:7001"]["up"] is False
        assert body["unreachable"] == ["relay"]


def test_draining_is_503(tmp_path: Path) -> None:
    status = services(tmp_path, HEALTH.format(props=""))
    status.draining = True
    code, body = get(status.services["health"])
    assert code == 503 and body["status"] == "draining"


BROKERS = ("<service><name>stomp</name><accept>ws://127.0.0.1:8000/jms</accept><type>jms</type>"
           "<connect>stomp://127.0.0.1:61613</connect></service>"
           "<service><name>amqp</name><accept>ws://127.0.0.1:8000/amqp</accept>"
           "<type>amqp.proxy</type><connect>tcp://127.0.0.1:5672</connect></service>")


def test_a_broker_down_makes_health_degraded_still_200(tmp_path: Path) -> None:
    from kgateway.jms.broker import State

    status = services(tmp_path, HEALTH.format(props="") + BROKERS)
    stomp: Any = status.services["stomp"]
    amqp: Any = status.services["amqp"]
    # jms: its broker connection is not CONNECTED (yet, or any more)
    code, body = get(status.services["health"])
    assert code == 200 and body["status"] == "degraded" and body["down"] == ["stomp"]
    assert body["backends"]["stomp"]["stomp://127.0.0.1:61613"]["up"] is False
    stomp.connections[0].state = State.CONNECTED
    code, body = get(status.services["health"])
    assert code == 200 and body["status"] == "ok" and "down" not in body
    # amqp.proxy: a client's connect to RabbitMQ failed
    node = amqp.balancer.targets[0]
    amqp.balancer.failed(node, "Connection refused")
    code, body = get(status.services["health"])
    assert code == 200 and body["status"] == "degraded" and body["down"] == ["amqp"]
    assert body["backends"]["amqp"]["tcp://127.0.0.1:5672"] == {
        "up": False, "active": 0, "connect_failures": 1, "error": "Connection refused"}
    amqp.balancer.connected(node)
    assert get(status.services["health"])[1]["status"] == "ok"


def test_require_backends_covers_brokers(tmp_path: Path) -> None:
    from kgateway.jms.broker import State

    props = "<properties><require.backends>true</require.backends></properties>"
    status = services(tmp_path, HEALTH.format(props=props) + BROKERS)
    stomp: Any = status.services["stomp"]
    code, body = get(status.services["health"])
    assert code == 503 and body["status"] == "unavailable" and body["unreachable"] == ["stomp"]
    stomp.connections[0].state = State.CONNECTED
    assert get(status.services["health"])[0] == 200


def test_jms_with_some_connections_down_is_degraded_not_unreachable(tmp_path: Path) -> None:
    from kgateway.jms.broker import State

    props = "<properties><require.backends>true</require.backends></properties>"
    two = BROKERS.replace("</connect></service>",
                          "</connect><properties><connection.count>2</connection.count>"
                          "</properties></service>", 1)
    status = services(tmp_path, HEALTH.format(props=props) + two)
    stomp: Any = status.services["stomp"]
    stomp.connections[0].state = State.CONNECTED
    code, body = get(status.services["health"])
    assert code == 200 and body["status"] == "degraded" and "unreachable" not in body
    state = body["backends"]["stomp"]["stomp://127.0.0.1:61613"]
    assert state["connected"] == 1 and state["connections"] == 2 and state["degraded"] is True
