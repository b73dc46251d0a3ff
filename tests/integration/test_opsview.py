"""The operator's view of a real ``twistd -n kgateway``: health, metrics and the status page
while RabbitMQ and ActiveMQ are unreachable (services pointed at closed ports), and byte
counters that move while a WebSocket is still open."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import websocket
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import GatewayProcess, free_port, gateway_xml, service_xml

MB = 1024 * 1024


def get(url: str, accept: str | None = None) -> tuple[int, bytes, Any]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


def metrics(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    code, body, _ = get(f"http://127.0.0.1:{port}/metrics")
    assert code == 200
    return {(s.name, frozenset(s.labels.items())): s.value
            for f in text_string_to_metric_families(body.decode()) for s in f.samples}


@pytest.fixture(scope="module")
def gateway() -> Iterator[dict[str, Any]]:
    port, mq, rabbit = free_port(), free_port(), free_port()  # nobody listens on mq, rabbit
    web = f"http://127.0.0.1:{port}"
    config = gateway_xml([
        service_xml("echo", f"ws://127.0.0.1:{port}/echo", name="echo"),
        service_xml("jms", f"ws://127.0.0.1:{port}/jms", f"stomp://127.0.0.1:{mq}",
                    name="stomp", properties="<reconnect.delay>200ms</reconnect.delay>"),
        service_xml("amqp.proxy", f"ws://127.0.0.1:{port}/amqp", f"tcp://127.0.0.1:{rabbit}",
                    name="amqp"),
        service_xml("health", f"{web}/health", name="health"),
        service_xml("health", f"{web}/strict", name="strict",
                    properties="<require.backends>true</require.backends>"),
        service_xml("metrics", f"{web}/metrics", name="metrics"),
        service_xml("status", f"{web}/status", name="status"),
    ])
    gw = GatewayProcess(config, args=["--drain-grace", "0"], name="opsview").start()
    try:
        yield {"gw": gw, "port": port, "mq": mq, "rabbit": rabbit}
    finally:
        gw.stop()


def test_unreachable_brokers_make_health_degraded_and_backend_up_zero(
        gateway: dict[str, Any]) -> None:
    gw, port = gateway["gw"], gateway["port"]
    gw.wait_for(r"jms: broker stomp://127\.0\.0\.1:\d+ \(stomp#1\) unreachable")
    gw.wait_for(r"amqp: target tcp://127\.0\.0\.1:\d+ is down")
    code, body, _ = get(f"http://127.0.0.1:{port}/health")
    report = json.loads(body)
    assert code == 200 and report["status"] == "degraded"
    assert sorted(report["down"]) == ["amqp", "stomp"]
    broker = report["backends"]["stomp"][f"stomp://127.0.0.1:{gateway['mq']}"]
    assert broker["up"] is False and "refused" in broker["error"].lower()
    assert report["backends"]["amqp"][f"tcp://127.0.0.1:{gateway['rabbit']}"]["up"] is False
    code, body, _ = get(f"http://127.0.0.1:{port}/strict")
    assert code == 503 and json.loads(body)["status"] == "unavailable"

    samples = metrics(port)
    jms = frozenset({("service", "stomp"), ("target", f"stomp://127.0.0.1:{gateway['mq']}")})
    amqp = frozenset({("service", "amqp"), ("target", f"tcp://127.0.0.1:{gateway['rabbit']}")})
    assert samples[("kgateway_backend_up", jms)] == 0
    assert samples[("kgateway_backend_up", amqp)] == 0
    assert samples[("kgateway_backend_connect_failures_total", jms)] >= 1
    assert samples[("kgateway_log_events_total", frozenset({("level", "warn")}))] >= 2
    assert samples[("process_resident_memory_bytes", frozenset())] > 0

    code, body, _ = get(f"http://127.0.0.1:{port}/status/status.json")
    status = json.loads(body)
    assert code == 200 and status["health"] == "degraded"
    assert any("unreachable" in e["text"] for e in status["errors"])


def test_openmetrics_is_negotiated(gateway: dict[str, Any]) -> None:
    code, body, headers = get(f"http://127.0.0.1:{gateway['port']}/metrics",
                              accept="application/openmetrics-text; version=1.0.0")
    assert code == 200
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")


def test_bytes_count_live_on_an_open_websocket(gateway: dict[str, Any]) -> None:
    port = gateway["port"]
    echo = frozenset({("service", "echo"), ("type", "echo")})
    before = metrics(port)
    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/echo", timeout=30)
    payload = os.urandom(MB)
    ws.send_binary(payload)
    assert ws.recv() == payload
    during = metrics(port)  # the WebSocket is still open
    received = during[("kgateway_received_bytes_total", echo)] - \
        before.get(("kgateway_received_bytes_total", echo), 0)
    sent = during[("kgateway_sent_bytes_total", echo)] - \
        before.get(("kgateway_sent_bytes_total", echo), 0)
    assert received >= MB and sent >= MB
    assert during[("kgateway_connections", echo)] >= 1
    code, body, _ = get(f"http://127.0.0.1:{port}/status/status.json")
    mine = [c for c in json.loads(body)["connections"] if c["service"] == "echo"]
    assert len(mine) == 1 and mine[0]["received"] >= MB and mine[0]["sent"] >= MB
    assert mine[0]["client"].startswith("127.0.0.1:") and mine[0]["open"] is True
    ws.close()
    gateway["gw"].wait_for(r"access: service=echo .*bytes_in=\d{7}")
    after = metrics(port)
    # the close adds the WebSocket framing the live counts (payloads) left out, nothing more
    assert 0 <= after[("kgateway_received_bytes_total", echo)] - \
        during[("kgateway_received_bytes_total", echo)] < 1024
    assert after[("kgateway_connection_duration_seconds_count", echo)] >= 1
    assert after[("kgateway_handshake_duration_seconds_count", echo)] >= 1


def test_refused_origin_is_counted(gateway: dict[str, Any]) -> None:
    port = gateway["port"]
    with pytest.raises(websocket.WebSocketBadStatusException):
        websocket.create_connection(f"ws://127.0.0.1:{port}/echo", timeout=10,
                                    origin="http://evil.example")
    samples = metrics(port)
    assert samples[("kgateway_connections_refused_total",
                    frozenset({("service", "echo"), ("reason", "origin")}))] == 1


def test_a_dmz_gateway_reports_its_ready_reverse_connections(tmp_path: Any) -> None:
    from kgateway.certs import make_certificate
    from tests.helpers import make_certs

    certs = make_certs(str(tmp_path))
    rogue = tmp_path / "rogue"
    rogue.mkdir()
    rogue_cert, rogue_key = make_certificate(str(rogue), "internal.test", ["127.0.0.1"])
    public, backplane = free_port(), free_port()
    web = f"http://127.0.0.1:{public}"
    shield = f"reverse+wss://127.0.0.1:{backplane}/shield/echo"
    dmz = GatewayProcess(gateway_xml([
        service_xml("proxy", f"ws://127.0.0.1:{public}/echo", shield, name="public-echo",
                    extra="<connect-options><reverse.allowed.names>*</reverse.allowed.names>"
                          "</connect-options>"),
        service_xml("health", f"{web}/health", name="health"),
        service_xml("metrics", f"{web}/metrics", name="metrics"),
    ], certs.security_xml()), args=["--drain-grace", "0"], name="dmz")

    def internal(cert: str, key: str) -> GatewayProcess:
        security = (f"<security><keystore><certificate-file>{cert}</certificate-file>"
                    f"<key-file>{key}</key-file></keystore>"
                    f"<truststore><file>{certs.ca}</file></truststore></security>")
        return GatewayProcess(gateway_xml([service_xml(
            "echo", shield, name="internal-echo",
            extra="<accept-options><reverse.prepared.connection.count>2"
                  "</reverse.prepared.connection.count><reverse.retry.maximum.interval>1sec"
                  "</reverse.retry.maximum.interval></accept-options>")], security),
            args=["--drain-grace", "0"], name="internal")

    ready = frozenset({("service", "public-echo"), ("target", shield)})
    with dmz:
        code, body, _ = get(f"{web}/health")
        assert code == 200 and json.loads(body)["status"] == "degraded"
        assert json.loads(body)["backends"]["public-echo"][shield]["ready"] == 0
        assert metrics(public)[("kgateway_backend_up", ready)] == 0
        # an internal gateway with a certificate the DMZ does not trust: a TLS refusal
        with internal(rogue_cert, rogue_key) as impostor:
            impostor.wait_for(r"reverse connection to .* failed \(.*TLS.*\); retrying")
        refused = [value for (name, labels), value in metrics(public).items()
                   if name == "kgateway_connections_refused_total"
                   and ("reason", "tls") in labels]
        assert refused and refused[0] >= 1
        with internal(certs.cert, certs.key) as inside:
            inside.wait_for(r"internal-echo: reverse connection prepared .*\(2/2\)")
            code, body, _ = get(f"{web}/health")
            assert code == 200 and json.loads(body)["status"] == "ok"
            samples = metrics(public)
            assert samples[("kgateway_shield_reverse_connections_ready", ready)] == 2
            assert samples[("kgateway_backend_up", ready)] == 1
