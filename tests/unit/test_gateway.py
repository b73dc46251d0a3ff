"""The gateway's life cycle on a memory reactor with a fake clock: binding, the drain."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet.testing import MemoryReactorClock

from kgateway.gateway import DrainSettings, GatewayService
from kgateway.transport.tracker import ConnectionTracker
from tests.unit.fakes import load
from tests.unit.services.test_health import ECHO, HEALTH, FakeConnection, get


def gateway(tmp_path: Path, services: str, **drain: Any) -> tuple[GatewayService, Any]:
    reactor = MemoryReactorClock()
    gw = GatewayService(reactor, load(tmp_path, services), drain=DrainSettings(**drain),
                        tracker=ConnectionTracker())
    gw.privilegedStartService()
    gw.startService()
    return gw, reactor


def test_drain_503_then_grace_then_listeners_close_then_1001(tmp_path: Path) -> None:
    gw, reactor = gateway(tmp_path, HEALTH.format(props="") + ECHO, grace=3.0, timeout=4.0)
    stays = FakeConnection(gw.tracker, "echo")
    leaves = FakeConnection(gw.tracker, "echo")

    def listening() -> bool:
        return any(listener.ports for listener in gw.listeners.by_address.values())

    stopped = gw.stopService()
    health = gw.status.services["health"]
    assert get(health)[0] == 503 and get(health)[1]["status"] == "draining"
    reactor.advance(2.9)
    assert listening()
    reactor.advance(0.1)
    assert not listening()
    leaves.end()  # a client that finished by itself
    reactor.advance(3.9)
    assert stays.told == 0 and not stopped.called
    reactor.advance(0.1)
    assert stays.told == 1 and leaves.told == 0
    assert stopped.called


def test_without_health_or_clients_a_stop_is_immediate(tmp_path: Path) -> None:
    gw, _ = gateway(tmp_path, ECHO)
    assert gw.stopService().called


def test_warnings_reach_the_status_ring_while_the_gateway_runs(tmp_path: Path) -> None:
    from twisted.logger import Logger

    gw, _ = gateway(tmp_path, ECHO)
    assert gw.status.backplanes is gw.connector.backplanes and gw.status.shield_ready() == {}
    log = Logger(namespace="test")
    log.info("not kept")
    log.warn("kept: {what}", what="a warning")
    assert [e["text"] for e in gw.status.recent.recent()] == ["kept: a warning"]
    assert gw.stopService().called
    log.error("after the stop")
    assert len(gw.status.recent.recent()) == 1  # the observer left with the gateway
