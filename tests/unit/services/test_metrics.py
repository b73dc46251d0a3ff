"""The metrics service's exposition text, from a gateway built in memory (no sockets)."""

from __future__ import annotations

from kgateway.services.metrics import render
from tests.unit.fakes import build_all, load
from tests.unit.services.test_health import FakeConnection


def gateway(tmp_path):  # type: ignore[no-untyped-def]
    cfg = load(tmp_path,
               "<service><name>echo</name><accept>ws://h:1/e</accept><type>echo</type></service>"
               '<service><name>re"lay</name><accept>tcp://h:2</accept>'
               "<connect>tcp://b1:9</connect><connect>tcp://b2:9</connect><type>proxy</type>"
               "<properties><connect.probe.interval>0</connect.probe.interval></properties>"
               "</service><service><name>metrics</name><accept>http://h:1/metrics</accept>"
               "<type>metrics</type></service>")
    return build_all(cfg)


def test_counters_per_service_with_bounded_escaped_labels(tmp_path) -> None:  # type: ignore[no-untyped-def]
    gw = gateway(tmp_path)
    a = FakeConnection(gw.tracker, "echo")
    FakeConnection(gw.tracker, "echo")
    gw.tracker.ended("echo", a, "192.0.2.7:5555", 100, 250, "close 1000")
    text = render(gw)
    assert 'kgateway_connections{service="echo",type="echo"} 1' in text
    assert 'kgateway_connections_accepted_total{service="echo",type="echo"} 2' in text
    assert 'kgateway_received_bytes_total{service="echo",type="echo"} 100' in text
    assert 'kgateway_sent_bytes_total{service="echo",type="echo"} 250' in text
    assert 'kgateway_connections{service="re\\"lay",type="proxy"} 0' in text
    assert 'kgateway_backend_up{service="re\\"lay",target="tcp://b1:9"} 1' in text
    assert "kgateway_draining 0" in text
    assert "# TYPE kgateway_connections_accepted_total counter" in text
    gw.draining = True
    assert "kgateway_draining 1" in render(gw)


def test_every_sample_line_is_well_formed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import re

    sample = re.compile(r'^[a-z_]+(\{([a-z]+="([^"\\]|\\.)*",?)*\})? -?\d+$')
    for line in render(gateway(tmp_path)).splitlines():
        assert line.startswith("# ") or sample.match(line), line
