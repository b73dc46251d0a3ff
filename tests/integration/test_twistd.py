"""The gateway as users run it: ``twistd -n kgateway``, ``kgateway check``, a fresh install."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import venv

import pytest
import websocket

from tests.helpers import (
    BIN,
    ROOT,
    GatewayProcess,
    free_port,
    gateway_xml,
    service_xml,
)

DEFAULT_CONFIG = os.path.join(ROOT, "etc", "gateway.xml")


def http_get(url: str) -> tuple[int, bytes, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


@pytest.fixture(scope="module")
def default_gateway():  # type: ignore[no-untyped-def]
    port = free_port()
    # No drain grace: nothing balances load onto this gateway, so it may stop at once.
    gw = GatewayProcess(DEFAULT_CONFIG, defines=[f"gateway.port={port}"],
                        args=["--drain-grace", "0"], name="default")
    gw.start()
    yield gw, port
    gw.stop()


def test_default_config_serves_the_tutorials_and_echo(default_gateway) -> None:  # type: ignore[no-untyped-def]
    gw, port = default_gateway
    code, body, headers = http_get(f"http://localhost:{port}/")
    assert code == 200 and b'href="echo/"' in body
    code, body, headers = http_get(f"http://localhost:{port}/echo/")
    assert code == 200 and headers["Content-Type"].startswith("text/html")
    code, body, headers = http_get(f"http://localhost:{port}/echo")
    assert code == 426 and headers["Upgrade"] == "websocket"
    assert http_get(f"http://localhost:{port}/no/such/thing")[0] == 404
    ws = websocket.create_connection(f"ws://localhost:{port}/echo", timeout=10,
                                     origin=f"http://localhost:{port}")
    ws.send("hello")
    assert ws.recv() == "hello"
    ws.close()


def test_default_config_serves_health_and_metrics(default_gateway) -> None:  # type: ignore[no-untyped-def]
    gw, port = default_gateway
    ws = websocket.create_connection(f"ws://localhost:{port}/echo", timeout=10)
    code, body, headers = http_get(f"http://localhost:{port}/health")
    # degraded while the brokers of the jms and amqp services are unreachable (or connecting)
    assert code == 200 and json.loads(body)["status"] in ("ok", "degraded")
    code, body, headers = http_get(f"http://localhost:{port}/metrics")
    assert code == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = dict(line.rsplit(" ", 1) for line in body.decode().splitlines()
                   if not line.startswith("#"))
    # At least ours (an earlier test's connection may still be closing).
    assert float(samples['kgateway_connections{service="echo",type="echo"}']) >= 1
    assert float(samples['kgateway_connections_accepted_total{service="echo",type="echo"}']) >= 1
    assert float(samples["kgateway_draining"]) == 0
    ws.close()


def test_cross_origin_websocket_is_refused_without_a_constraint(default_gateway) -> None:  # type: ignore[no-untyped-def]
    gw, port = default_gateway
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        websocket.create_connection(f"ws://localhost:{port}/echo", timeout=10,
                                    origin="http://evil.example")
    assert info.value.status_code == 403
    # ... and the gateway goes on serving everyone else.
    ws = websocket.create_connection(f"ws://localhost:{port}/echo", timeout=10)
    ws.send("still here")
    assert ws.recv() == "still here"
    ws.close()


def test_a_proxy_in_a_real_gateway_process() -> None:
    echo_port, proxy_port = free_port(), free_port()
    config = gateway_xml([
        service_xml("echo", f"tcp://127.0.0.1:{echo_port}", name="echo"),
        service_xml("proxy", f"ws://127.0.0.1:{proxy_port}/relay",
                    f"tcp://127.0.0.1:{echo_port}", name="relay"),
    ])
    with GatewayProcess(config, name="relay"):
        ws = websocket.create_connection(f"ws://127.0.0.1:{proxy_port}/relay", timeout=10)
        ws.send_binary(b"\x00round trip\xff")
        assert ws.recv() == b"\x00round trip\xff"
        ws.close()


def test_sigterm_stops_the_gateway_cleanly() -> None:
    port = free_port()
    gw = GatewayProcess(gateway_xml([service_xml("echo", f"tcp://127.0.0.1:{port}")]),
                        name="term").start()
    # twistd stops the reactor, shuts the services down, then re-raises the signal so a
    # supervisor sees how it ended: the status is "terminated by SIGTERM" after a clean stop.
    assert gw.stop() == -signal.SIGTERM
    gw.wait_for("kgateway stopped")
    gw.wait_for("Main loop terminated")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)


def test_a_port_in_use_fails_at_start_with_a_clear_message() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        gw = GatewayProcess(gateway_xml([service_xml("echo", f"tcp://127.0.0.1:{port}",
                                                     name="blocked")]), name="inuse")
        gw.start(wait_for=None)
        gw.wait_for(rf"cannot listen on 127.0.0.1:{port} \(services blocked\): "
                    "address already in use")
        assert gw.proc is not None and gw.proc.wait(20) != 0


def test_a_broken_config_is_refused_with_file_and_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "broken.xml"
    path.write_text('<?xml version="1.0"?>\n<gateway-config>\n  <service>\n'
                    "    <accept>ws://localhost:1/x</accept>\n    <type>nonsense</type>\n"
                    "  </service>\n</gateway-config>\n")
    result = subprocess.run([os.path.join(BIN, "twistd"), "-n", "--pidfile=", "kgateway",
                             "-c", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert f"{path}:5: unknown service type 'nonsense'" in result.stdout + result.stderr


def test_kgateway_check_prints_resolved_services(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = subprocess.run([os.path.join(BIN, "kgateway"), "check", DEFAULT_CONFIG,
                             "-D", "gateway.port=9123"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "accept:  ws://localhost:9123/echo" in result.stdout
    broken = tmp_path / "broken.xml"
    broken.write_text("<gateway-config>\n<service>\n<accept>ws://${missing}:1/x</accept>\n"
                      "<type>echo</type>\n</service>\n<bogus/>\n</gateway-config>\n")
    result = subprocess.run([os.path.join(BIN, "kgateway"), "check", str(broken)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"{broken}:3: unresolved property ${{missing}}" in result.stderr
    assert f"{broken}:6: unknown element <bogus> in <gateway-config>" in result.stderr


@pytest.mark.slow
def test_a_fresh_non_editable_install_lists_the_plugin(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    pip = [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q",
           "--disable-pip-version-check"]
    subprocess.run(pip + [ROOT], check=True, timeout=600, cwd=tmp_path,
                   stdout=subprocess.DEVNULL)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run([str(env_dir / "bin" / "twistd"), "--help"], cwd=elsewhere,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "kgateway" in result.stdout
    # The installed plugin runs the installed package, not the checkout.
    result = subprocess.run([str(env_dir / "bin" / "python"), "-c",
                             "import kgateway, twisted.plugins.kgateway_plugin as p; "
                             "print(kgateway.__file__, p.__file__)"],
                            cwd=elsewhere, capture_output=True, text=True, timeout=60)
    assert str(env_dir) in result.stdout and ROOT + "/kgateway" not in result.stdout
    assert sys.prefix != str(env_dir)
