"""The health resource and the drain, on a memory reactor with a fake clock."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from twisted.internet.testing import MemoryReactorClock
from twisted.web.test.requesthelper import DummyRequest

from kgateway import config as config_module
from kgateway.gateway import DrainSettings, GatewayService
from kgateway.links import ConnectionTracker


def load(tmp_path: Path, services: str) -> config_module.GatewayConfig:
    path = tmp_path / "gateway.xml"
    path.write_text(f"<gateway-config>{services}</gateway-config>")
    return config_module.load(str(path), environ={})


HEALTH = ("<service><name>health</name><accept>http://127.0.0.1:8000/health</accept>"
          "<type>health</type>{props}</service>")
ECHO = "<service><name>echo</name><accept>ws://127.0.0.1:8000/echo</accept><type>echo</type></service>"
RELAY = ("<service><name>relay</name><accept>tcp://127.0.0.1:7000</accept>"
         "<connect>tcp://127.0.0.1:7001</connect><connect>tcp://127.0.0.1:7002</connect>"
         "<type>proxy</type></service>")


class FakeConnection:
    def __init__(self, tracker: ConnectionTracker, service: str) -> None:
        self.tracker = tracker
        self.service = service
        self.told = 0
        tracker.add(service, self)

    def going_away(self) -> None:
        self.told += 1
        self.tracker.remove(self.service, self)


def gateway(tmp_path: Path, services: str, **drain: Any) -> tuple[GatewayService, Any]:
    reactor = MemoryReactorClock()
    tracker = ConnectionTracker()
    gw = GatewayService(reactor, load(tmp_path, services), drain=DrainSettings(**drain),
                        tracker=tracker)
    gw.privilegedStartService()
    gw.startService()
    return gw, reactor


def get(gw: GatewayService) -> tuple[int, dict[str, Any]]:
    health = gw.gateway_services["health"]
    request = DummyRequest([b""])
    body = health.http_resource().render(request)  # type: ignore[attr-defined]
    return request.responseCode or 200, json.loads(body)


def test_health_counts_connections_per_service(tmp_path: Path) -> None:
    gw, _ = gateway(tmp_path, HEALTH.format(props="") + ECHO)
    FakeConnection(gw.tracker, "echo")
    FakeConnection(gw.tracker, "echo")
    code, body = get(gw)
    assert code == 200 and body["status"] == "ok"
    assert body["services"]["echo"] == {"type": "echo", "connections": 2}
    assert body["connections"] == 2 and body["worker"] is None


def test_unreachable_back_ends_fail_health_only_when_required(tmp_path: Path) -> None:
    for required, expected in (("false", 200), ("true", 503)):
        props = f"<properties><require.backends>{required}</require.backends></properties>"
        gw, _ = gateway(tmp_path, HEALTH.format(props=props) + RELAY)
        relay = gw.gateway_services["relay"]
        for target in relay.balancer.targets:  # type: ignore[attr-defined]
            relay.balancer.failed(target, "Connection refused")  # type: ignore[attr-defined]
        code, body = get(gw)
        assert code == expected
        assert body["backends"]["relay"]["tcp://127.0.0.1:7001"]["up"] is False
        assert body["unreachable"] == ["relay"]


def test_drain_503_then_grace_then_listeners_close_then_1001(tmp_path: Path) -> None:
    gw, reactor = gateway(tmp_path, HEALTH.format(props="") + ECHO, grace=3.0, timeout=4.0)
    stays = FakeConnection(gw.tracker, "echo")
    leaves = FakeConnection(gw.tracker, "echo")
    def listening() -> bool:
        return any(listener.ports for listener in gw.listeners.values())

    stopped = gw.stopService()
    assert get(gw)[0] == 503 and get(gw)[1]["status"] == "draining"
    reactor.advance(2.9)
    assert listening()
    reactor.advance(0.1)
    assert not listening()
    gw.tracker.remove("echo", leaves)  # a client that finished by itself
    reactor.advance(3.9)
    assert stays.told == 0 and not stopped.called
    reactor.advance(0.1)
    assert stays.told == 1 and leaves.told == 0
    assert stopped.called


def test_without_health_or_clients_a_stop_is_immediate(tmp_path: Path) -> None:
    gw, _ = gateway(tmp_path, ECHO)
    assert gw.stopService().called
