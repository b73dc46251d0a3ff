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


class RecordingNotifier:
    """kgateway.systemd.Notifier's interface, recording what systemd would hear."""

    watchdog_interval: float | None = None

    def __init__(self) -> None:
        self.sent: list[tuple[str, ...]] = []

    def notify(self, *fields: str) -> bool:
        self.sent.append(fields)
        return True

    def heard(self, field: str) -> bool:
        return any(field in fields for fields in self.sent)


def reloadable(tmp_path: Path, services: str, **kwargs: Any) -> tuple[GatewayService, Any]:
    reactor = MemoryReactorClock()
    files = {"now": services}
    gw = GatewayService(reactor, load(tmp_path, services), tracker=ConnectionTracker(),
                        loader=lambda: load(tmp_path, files["now"]), **kwargs)
    gw.files = files  # type: ignore[attr-defined]
    gw.privilegedStartService()
    gw.startService()
    return gw, reactor


TCP_ECHO = ("<service><name>tcp-echo</name><accept>tcp://127.0.0.1:7100</accept>"
            "<type>echo</type></service>")


def test_a_reload_keeps_unchanged_services_and_their_socket_and_adds_new_ones(
        tmp_path: Path) -> None:
    gw, reactor = reloadable(tmp_path, ECHO)
    echo, (port,) = gw.status.services["echo"], gw.listeners.by_address[("127.0.0.1", 8000)].ports
    client = FakeConnection(gw.tracker, "echo")
    gw.files["now"] = HEALTH.format(props="") + ECHO + TCP_ECHO  # type: ignore[attr-defined]
    assert gw.reload().result is True
    assert gw.status.services["echo"] is echo and set(gw.status.services) == {
        "echo", "health", "tcp-echo"}
    web = gw.listeners.by_address[("127.0.0.1", 8000)]
    assert web.ports == [port] and web.factory.resource is web.router  # same socket, new routes
    assert gw.listeners.by_address[("127.0.0.1", 7100)].ports
    assert client.told == 0 and gw.tracker.total() == 1
    assert [entry[0] for entry in reactor.tcpServers] == [8000, 7100]  # nothing bound twice


def test_a_reload_closes_what_went_and_tells_its_clients(tmp_path: Path) -> None:
    gw, reactor = reloadable(tmp_path, ECHO + TCP_ECHO)
    leaving = FakeConnection(gw.tracker, "tcp-echo")
    staying = FakeConnection(gw.tracker, "echo")
    gw.files["now"] = ECHO  # type: ignore[attr-defined]
    assert gw.reload().result is True
    assert ("127.0.0.1", 7100) not in gw.listeners.by_address
    assert leaving.told == 1 and staying.told == 0 and set(gw.status.services) == {"echo"}


def test_an_invalid_file_keeps_everything(tmp_path: Path) -> None:
    notifier = RecordingNotifier()
    gw, _ = reloadable(tmp_path, ECHO, notifier=notifier)
    config = gw.config
    gw.files["now"] = ECHO.replace("<type>echo</type>", "<type>nope</type>")  # type: ignore[attr-defined]
    assert gw.reload().result is False
    assert gw.config is config and set(gw.status.services) == {"echo"}
    assert notifier.heard("RELOADING=1") and notifier.sent[-1][0] == "READY=1"


def test_a_moved_service_line_is_not_a_change(tmp_path: Path) -> None:
    gw, _ = reloadable(tmp_path, ECHO)
    echo = gw.status.services["echo"]
    gw.files["now"] = "\n\n<!-- moved -->\n" + ECHO  # type: ignore[attr-defined]
    assert gw.reload().result is True and gw.status.services["echo"] is echo


def test_systemd_hears_ready_then_stopping(tmp_path: Path) -> None:
    notifier = RecordingNotifier()
    gw, reactor = reloadable(tmp_path, ECHO, notifier=notifier)
    reactor.run()  # callWhenRunning: "kgateway ready"
    assert notifier.sent[0][0] == "READY=1"
    gw.stopService()
    assert notifier.heard("STOPPING=1")


def test_an_interrupted_gateway_skips_the_grace_and_the_timeout(tmp_path: Path) -> None:
    gw, reactor = gateway(tmp_path, HEALTH.format(props="") + ECHO, grace=5.0, timeout=10.0)
    stays = FakeConnection(gw.tracker, "echo")
    gw.interrupted = True  # what the SIGINT handler sets
    stopped = gw.stopService()
    assert stays.told == 1 and stopped.called
