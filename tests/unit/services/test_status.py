"""The status service: its JSON report, its page and its files, for a gateway built in memory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from twisted.logger import LogLevel
from twisted.web.test.requesthelper import DummyRequest

from kgateway.config import ConfigError
from kgateway.services.base import GatewayStatus
from kgateway.services.status import report
from tests.helpers import make_certs
from tests.unit.fakes import build_all, load
from tests.unit.services.test_health import FakeConnection

SERVICES = (
    "<service><name>echo</name><accept>ws://h:1/e</accept><type>echo</type></service>"
    "<service><name>relay</name><accept>tcp://h:2</accept>"
    "<connect>tcp://b1:9</connect><type>proxy</type></service>"
    "<service><name>stomp</name><accept>ws://h:1/jms</accept><type>jms</type>"
    "<connect>stomp://mq:61613</connect></service>"
    "<service><name>status</name><accept>http://localhost:1/status</accept><type>status</type>"
    "{props}</service>")


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def gateway(tmp_path: Path, props: str = "") -> tuple[GatewayStatus, Clock]:
    """The services, on a tracker whose monotonic clock is *clock* and wall clock 1000 ahead."""
    status = build_all(load(tmp_path, SERVICES.format(props=props)))
    status.started = 1000.0
    clock = Clock(50.0)
    status.tracker.clock = clock
    status.tracker.wall = lambda: 1000.0 + clock.now
    return status, clock


def get(status: GatewayStatus, *path: bytes, uri: bytes = b"/status/") -> tuple[int, Any, Any]:
    request = DummyRequest(list(path))
    request.uri = uri
    body = status.services["status"].http_resource().render(request)  # type: ignore[attr-defined]
    return request.responseCode or 200, request, body


def test_report_lists_services_connections_back_ends_and_errors(tmp_path: Path) -> None:
    status, clock = gateway(tmp_path)
    conn = FakeConnection(status.tracker, "relay")
    record = status.tracker.records[id(conn)]
    record.remote, record.backend = "198.51.100.4:40000", "tcp://b1:9"
    record.count(1000, 2000)
    clock.now = 57.5
    status.tracker.refuse("echo", "origin")
    relay: Any = status.services["relay"]
    relay.balancer.failed(relay.balancer.targets[0], "Connection refused")
    status.recent({"log_level": LogLevel.warn, "log_format": "target {t} is down",
                   "t": "tcp://b1:9", "log_namespace": "kgateway.balancer", "log_time": 1040.0})
    status.recent({"log_level": LogLevel.info, "log_format": "not kept"})
    data = report(status)
    assert data["health"] == "degraded" and data["down"] == ["relay", "stomp"]
    assert data["gateway"]["uptime"] == 57.5 and data["gateway"]["draining"] is False
    by_name = {s["name"]: s for s in data["services"]}
    assert by_name["relay"]["connects"] == ["tcp://b1:9"]
    assert by_name["relay"]["connections"] == 1 and by_name["relay"]["received"] == 1000
    assert by_name["relay"]["backends"]["tcp://b1:9"]["up"] is False
    assert by_name["echo"]["refused"] == {"origin": 1}
    assert by_name["stomp"]["messages"]["broker_subscriptions"] == 0
    assert by_name["stomp"]["backends"]["stomp://mq:61613"]["up"] is False
    assert data["connections"] == [{"service": "relay", "client": "198.51.100.4:40000",
                                    "age": 7.5, "open": False, "received": 1000,
                                    "sent": 2000, "backend": "tcp://b1:9"}]
    assert data["errors"] == [{"time": 1040.0, "level": "warn", "source": "kgateway.balancer",
                               "text": "target tcp://b1:9 is down"}]
    json.dumps(data)  # all of it JSON-ready


def test_connections_shown_are_bounded_oldest_first(tmp_path: Path) -> None:
    status, clock = gateway(tmp_path, "<properties><connections.shown>2</connections.shown>"
                                      "</properties>")
    for n in range(3):
        clock.now = float(n)
        FakeConnection(status.tracker, "echo")
    data = report(status, 2)
    assert data["connections_total"] == 3
    assert [c["age"] for c in data["connections"]] == [2.0, 1.0]


def test_json_page_script_redirect_and_404(tmp_path: Path) -> None:
    status, _ = gateway(tmp_path)
    code, request, body = get(status, b"status.json")
    assert code == 200 and json.loads(body)["services"][0]["name"] == "echo"
    assert request.responseHeaders.getRawHeaders(b"cache-control") == [b"no-store"]
    code, request, body = get(status, b"")
    assert code == 200 and b'<script src="status.js"' in body
    assert request.responseHeaders.getRawHeaders(b"content-type")[0].startswith(b"text/html")
    code, request, body = get(status, b"status.js")
    assert code == 200 and b'fetch("status.json" + location.search' in body
    code, request, _ = get(status, uri=b"/status")
    assert code in (301, 302)
    assert request.responseHeaders.getRawHeaders(b"location") == [b"/status/"]
    code, _, _ = get(status, b"secrets.txt")
    assert code == 404


def test_shield_ready_counts_make_a_dmz_degraded_until_an_internal_gateway_dials_in(
        tmp_path: Path) -> None:
    certs = make_certs(str(tmp_path))

    class Backplanes:
        ready = 0

        def ready_count(self) -> dict[str, int]:
            return {"reverse+wss://dmz:9443/shield": self.ready}

    cfg = load(tmp_path, certs.security_xml() + "<service><name>dmz</name><accept>ws://h:1/app</accept>"
                         "<connect>reverse+wss://dmz:9443/shield</connect><type>proxy</type>"
                         "<connect-options><reverse.allowed.names>*</reverse.allowed.names>"
                         "</connect-options></service>")
    status = build_all(cfg)
    status.backplanes = backplanes = Backplanes()
    data = report(status)
    assert data["health"] == "degraded"
    assert data["services"][0]["backends"]["reverse+wss://dmz:9443/shield"]["ready"] == 0
    backplanes.ready = 2
    data = report(status)
    assert data["health"] == "ok" and data["shield"] == {"reverse+wss://dmz:9443/shield": 2}


@pytest.mark.parametrize("host", ["0.0.0.0", "gw.example.com", "[2001:db8::1]", "10.0.0.1"])
def test_a_status_page_reachable_from_other_machines_needs_a_realm(tmp_path: Path,
                                                                   host: str) -> None:
    body = f"<service><name>ops</name><accept>http://{host}:1/status</accept>" \
           "<type>status</type></service>"
    with pytest.raises(ConfigError) as e:
        load(tmp_path, body)
    [problem] = [str(p) for p in e.value.problems]
    assert "'ops'" in problem and "<realm-name>" in problem and host in problem


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.0.0.2", "[::1]"])
def test_a_status_page_on_loopback_only_needs_no_realm(tmp_path: Path, host: str) -> None:
    body = f"<service><name>ops</name><accept>http://{host}:1/status</accept>" \
           "<type>status</type></service>"
    assert load(tmp_path, body).services[0].realm_name is None
