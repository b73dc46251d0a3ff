"""The metrics service's collector, rendered by prometheus_client from a gateway built in
memory (no sockets) and parsed back into families, labels and values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from twisted.web.test.requesthelper import DummyRequest

from kgateway.jms.broker import State
from kgateway.services.base import GatewayStatus
from kgateway.services.metrics import registry
from tests.unit.fakes import build_all, load
from tests.unit.services.test_health import FakeConnection

SERVICES = (
    "<service><name>echo</name><accept>ws://h:1/e</accept><type>echo</type></service>"
    '<service><name>re"lay</name><accept>tcp://h:2</accept>'
    "<connect>tcp://b1:9</connect><connect>tcp://b2:9</connect><type>proxy</type>"
    "<properties><connect.probe.interval>0</connect.probe.interval></properties></service>"
    "<service><name>stomp</name><accept>ws://h:1/jms</accept><type>jms</type>"
    "<connect>stomp://mq:61613</connect></service>"
    "<service><name>metrics</name><accept>http://h:1/metrics</accept><type>metrics</type>"
    "</service>")


def gateway(tmp_path: Path) -> GatewayStatus:
    return build_all(load(tmp_path, SERVICES))


def samples(status: GatewayStatus) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape: (name, sorted labels) -> value."""
    text = generate_latest(registry(status, process=False)).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def families(status: GatewayStatus) -> dict[str, str]:
    text = generate_latest(registry(status)).decode()
    return {f.name: f.type for f in text_string_to_metric_families(text)}


def test_families_and_their_types(tmp_path: Path) -> None:
    kinds = families(gateway(tmp_path))
    assert kinds["kgateway_connections"] == "gauge"
    assert kinds["kgateway_connections_accepted"] == "counter"
    assert kinds["kgateway_received_bytes"] == kinds["kgateway_sent_bytes"] == "counter"
    assert kinds["kgateway_connection_duration_seconds"] == "histogram"
    assert kinds["kgateway_handshake_duration_seconds"] == "histogram"
    assert kinds["kgateway_backend_up"] == "gauge"
    assert kinds["kgateway_backend_connect_failures"] == "counter"
    assert kinds["kgateway_jms_messages_delivered"] == "counter"
    assert kinds["process_cpu_seconds"] == "counter"  # prometheus_client's ProcessCollector
    assert kinds["kgateway_info"] == "gauge"  # an info family, as the text format shows it


def test_connections_bytes_and_histograms_per_service(tmp_path: Path) -> None:
    status = gateway(tmp_path)
    clock = [100.0]
    status.tracker.clock = lambda: clock[0]
    a = FakeConnection(status.tracker, "echo")
    FakeConnection(status.tracker, "echo")
    record = status.tracker.records[id(a)]
    clock[0] += 0.02
    status.tracker.opened(a)
    record.count(40, 90)  # live: counted before the connection ends
    got = samples(status)
    echo = (("service", "echo"), ("type", "echo"))
    assert got[("kgateway_connections", echo)] == 2
    assert got[("kgateway_connections_accepted_total", echo)] == 2
    assert got[("kgateway_received_bytes_total", echo)] == 40
    assert got[("kgateway_sent_bytes_total", echo)] == 90
    assert got[("kgateway_handshake_duration_seconds_bucket", (("le", "0.01"), *echo))] == 0
    assert got[("kgateway_handshake_duration_seconds_bucket", (("le", "0.025"), *echo))] == 1
    clock[0] += 30
    # the end reports wire-level totals: what was not counted live is added, nothing twice
    status.tracker.ended("echo", a, "192.0.2.7:5555", 100, 250, "close 1000")
    got = samples(status)
    assert got[("kgateway_connections", echo)] == 1
    assert got[("kgateway_received_bytes_total", echo)] == 100
    assert got[("kgateway_sent_bytes_total", echo)] == 250
    assert got[("kgateway_connection_duration_seconds_bucket", (("le", "10.0"), *echo))] == 0
    assert got[("kgateway_connection_duration_seconds_bucket", (("le", "60.0"), *echo))] == 1
    assert got[("kgateway_connection_duration_seconds_count", echo)] == 1
    assert abs(got[("kgateway_connection_duration_seconds_sum", echo)] - 30.02) < 1e-6
    # the client address is never a label
    assert not any("192.0.2.7" in str(labels) for _, labels in got)


def test_refusals_by_reason_and_batched_counts(tmp_path: Path) -> None:
    status = gateway(tmp_path)
    status.tracker.refuse("echo", "origin")
    status.tracker.refuse("echo", "origin")
    status.tracker.refuse("echo", "auth")
    status.tracker.count("echo", 7, 9)
    got = samples(status)
    assert got[("kgateway_connections_refused_total",
                (("reason", "origin"), ("service", "echo")))] == 2
    assert got[("kgateway_connections_refused_total",
                (("reason", "auth"), ("service", "echo")))] == 1
    assert got[("kgateway_received_bytes_total", (("service", "echo"), ("type", "echo")))] == 7


def test_back_ends_of_proxy_and_jms_with_escaped_labels(tmp_path: Path) -> None:
    status = gateway(tmp_path)
    relay: Any = status.services['re"lay']
    relay.balancer.failed(relay.balancer.targets[0], "Connection refused")
    stomp: Any = status.services["stomp"]
    got = samples(status)
    assert got[("kgateway_backend_up", (("service", 're"lay'), ("target", "tcp://b1:9")))] == 0
    assert got[("kgateway_backend_up", (("service", 're"lay'), ("target", "tcp://b2:9")))] == 1
    assert got[("kgateway_backend_connect_failures_total",
                (("service", 're"lay'), ("target", "tcp://b1:9")))] == 1
    broker = (("service", "stomp"), ("target", "stomp://mq:61613"))
    assert got[("kgateway_backend_up", broker)] == 0  # not connected yet
    stomp.connections[0].state = State.CONNECTED
    assert samples(status)[("kgateway_backend_up", broker)] == 1
    text = generate_latest(registry(status, process=False)).decode()
    assert 'service="re\\"lay"' in text


def test_jms_fan_out_counters(tmp_path: Path) -> None:
    status = gateway(tmp_path)
    stomp: Any = status.services["stomp"]
    stomp.fanout.deliveries.messages = 12
    stomp.fanout.deliveries.slow_consumers = 1
    got = samples(status)
    assert got[("kgateway_jms_messages_delivered_total", (("service", "stomp"),))] == 12
    assert got[("kgateway_jms_slow_consumers_total", (("service", "stomp"),))] == 1
    assert got[("kgateway_jms_broker_subscriptions", (("service", "stomp"),))] == 0


def test_draining_info_and_log_events(tmp_path: Path) -> None:
    from twisted.logger import LogLevel

    status = gateway(tmp_path)
    status.recent({"log_level": LogLevel.error, "log_format": "boom", "log_namespace": "x"})
    status.draining = True
    got = samples(status)
    assert got[("kgateway_draining", ())] == 1
    assert got[("kgateway_info", (("version", __import__("kgateway").__version__),
                                  ("worker", "")))] == 1
    assert got[("kgateway_log_events_total", (("level", "error"),))] == 1


def test_openmetrics_is_negotiated(tmp_path: Path) -> None:
    status = gateway(tmp_path)
    resource: Any = status.services["metrics"]
    plain = DummyRequest([b""])
    body = resource.http_resource().render(plain)
    assert plain.responseHeaders.getRawHeaders(b"content-type")[0].startswith(b"text/plain")
    assert b"# EOF" not in body
    om = DummyRequest([b""])
    om.requestHeaders.setRawHeaders(b"accept", [b"application/openmetrics-text; version=1.0.0"])
    body = resource.http_resource().render(om)
    assert om.responseHeaders.getRawHeaders(b"content-type")[0].decode().startswith(
        CONTENT_TYPE_LATEST.split(";")[0])
    assert body.endswith(b"# EOF\n")
