"""Connects and Enterprise Shield reverse connections through a real HTTP proxy (tinyproxy
with Basic auth, scripts/tinyproxy.sh), between real twistd gateways on loopback.

    test client --ws--> A (proxy; http.proxy set) --CONNECT--> tinyproxy --> B (echo, wss)
                                  TLS to "localhost" inside the tunnel, name checked

    internal gateway --CONNECT--> tinyproxy --> DMZ backplane (reverse+wss, mutual TLS)

The proxy's log proves each connection went through it: tinyproxy logs every CONNECT line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import websocket

from kgateway.certs import make_certificate
from tests.helpers import Certs, GatewayProcess, free_port, gateway_xml, make_certs, service_xml
from tests.integration.conftest import HttpProxy

TINYPROXY_DIR = os.environ.get("KGW_TINYPROXY_DIR", "/tmp/kgateway-tinyproxy")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(str(tmp_path_factory.mktemp("certs")))


@pytest.fixture(scope="module")
def echo_b(certs: Certs) -> Iterator[str]:
    url = f"wss://localhost:{free_port()}/echo"
    with GatewayProcess(gateway_xml([service_xml("echo", url, name="echo-b")],
                                    certs.security_xml()), name="b"):
        yield url


def proxy_log(proxy: HttpProxy) -> str:
    with open(os.path.join(TINYPROXY_DIR, f"{proxy.host}-{proxy.port}", "tinyproxy.log"),
              errors="replace") as f:
        return f.read()


def credentials(tmp_path: Path, user: str, password: str) -> str:
    path = tmp_path / "proxy.credentials"
    path.write_text(f"{user}:{password}\n")
    path.chmod(0o600)
    return str(path)


def gateway_a(target: str, certs: Certs, proxy: HttpProxy, cred: str | None,
              extra_options: str = "") -> GatewayProcess:
    options = (f"<connect-options><http.proxy>http://{proxy.host}:{proxy.port}</http.proxy>"
               + (f"<http.proxy.credentials.file>{cred}</http.proxy.credentials.file>"
                  if cred else "")
               + extra_options + "</connect-options>")
    accept = f"ws://127.0.0.1:{free_port()}/p"
    gw = GatewayProcess(gateway_xml([service_xml("proxy", accept, target, name="px",
                                                 extra=options)], certs.security_xml()),
                        name="a")
    gw.accept = accept  # type: ignore[attr-defined]
    return gw


def close_frame(client: websocket.WebSocket) -> tuple[int, str]:
    frame = client.recv_data_frame(True)[1]
    assert frame.opcode == websocket.ABNF.OPCODE_CLOSE
    return int.from_bytes(frame.data[:2], "big"), frame.data[2:].decode()


def test_a_wss_connect_goes_through_the_proxy_with_tls_inside(
        http_proxy: HttpProxy, certs: Certs, echo_b: str, tmp_path: Path) -> None:
    cred = credentials(tmp_path, http_proxy.user, http_proxy.password)
    with gateway_a(echo_b, certs, http_proxy, cred) as a:
        client = websocket.create_connection(a.accept, timeout=15)  # type: ignore[attr-defined]
        client.send("through the tunnel")
        assert client.recv() == "through the tunnel"
        client.close()
        port = echo_b.rsplit(":", 1)[1].split("/")[0]
        assert f"CONNECT localhost:{port} HTTP/1.1" in proxy_log(http_proxy)
        assert http_proxy.password not in a.log()


def test_the_real_host_name_is_checked_inside_the_tunnel(
        http_proxy: HttpProxy, certs: Certs, echo_b: str, tmp_path: Path) -> None:
    cred = credentials(tmp_path, http_proxy.user, http_proxy.password)
    with gateway_a(echo_b, certs, http_proxy, cred,
                   "<ssl.hostname>elsewhere.test</ssl.hostname>") as a:
        client = websocket.create_connection(a.accept, timeout=15)  # type: ignore[attr-defined]
        code, reason = close_frame(client)
        assert code == 1014
        assert "TLS hostname verification failed" in reason and "elsewhere.test" in reason


@pytest.mark.parametrize("user, password, words", [
    (None, None, "proxy authentication required"),
    ("kgw", "not-the-password", "proxy authentication failed"),
])
def test_proxy_authentication_failures_reach_the_client(
        http_proxy: HttpProxy, certs: Certs, echo_b: str, tmp_path: Path,
        user: str | None, password: str | None, words: str) -> None:
    cred = credentials(tmp_path, user, password) if user and password else None
    with gateway_a(echo_b, certs, http_proxy, cred) as a:
        client = websocket.create_connection(a.accept, timeout=15)  # type: ignore[attr-defined]
        code, reason = close_frame(client)
        assert code == 1014 and words in reason, reason
        a.wait_for(rf"px: .*{words}")
        if password:
            assert password not in a.log()


def test_an_unreachable_proxy_is_named(certs: Certs, echo_b: str) -> None:
    dead = HttpProxy("127.0.0.1", free_port(), "u", "p")
    with gateway_a(echo_b, certs, dead, None) as a:
        client = websocket.create_connection(a.accept, timeout=15)  # type: ignore[attr-defined]
        code, reason = close_frame(client)
        assert code == 1014 and f"cannot reach proxy 127.0.0.1:{dead.port}" in reason


def test_enterprise_shield_reverse_connections_go_through_the_proxy(
        http_proxy: HttpProxy, tmp_path: Path) -> None:
    folder = str(tmp_path / "pki")
    os.makedirs(folder)
    dmz_id = make_certificate(folder, "dmz.test", ["localhost", "127.0.0.1"])
    internal_id = make_certificate(folder, "internal.test", ["127.0.0.1"])
    ca = os.path.join(folder, "ca.pem")

    def security(identity: tuple[str, str]) -> str:
        return (f"<security><keystore><certificate-file>{identity[0]}</certificate-file>"
                f"<key-file>{identity[1]}</key-file></keystore>"
                f"<truststore><file>{ca}</file></truststore></security>")

    public = f"ws://127.0.0.1:{free_port()}/echo"
    backplane_port = free_port()
    shield = f"reverse+wss://localhost:{backplane_port}/shield/echo"
    dmz = GatewayProcess(gateway_xml([service_xml(
        "proxy", public, shield, name="public-echo",
        extra="<connect-options><reverse.timeout>10sec</reverse.timeout>"
              "<reverse.allowed.names>internal.test</reverse.allowed.names>"
              "</connect-options>")],
        security(dmz_id)), name="dmz")
    cred = credentials(tmp_path, http_proxy.user, http_proxy.password)
    internal = GatewayProcess(gateway_xml([service_xml(
        "echo", shield, name="internal-echo",
        extra=(f"<accept-options><reverse.prepared.connection.count>1"
               f"</reverse.prepared.connection.count>"
               f"<http.proxy>http://{http_proxy.host}:{http_proxy.port}</http.proxy>"
               f"<http.proxy.credentials.file>{cred}</http.proxy.credentials.file>"
               f"</accept-options>"))], security(internal_id)), name="internal")
    with dmz, internal:
        internal.wait_for(r"internal-echo: reverse connection prepared")
        client = websocket.create_connection(public, timeout=15)
        client.send_binary(b"\x00shielded")
        assert client.recv() == b"\x00shielded"
        client.close()
        log = proxy_log(http_proxy)
        assert re.search(rf"CONNECT localhost:{backplane_port} HTTP/1\.1", log)
        assert http_proxy.password not in internal.log()


def test_a_plain_ws_and_a_tcp_connect_go_through_the_proxy_too(
        http_proxy: HttpProxy, certs: Certs, tmp_path: Path) -> None:
    ws_url = f"ws://127.0.0.1:{free_port()}/echo"
    tcp_port = free_port()
    backend = GatewayProcess(gateway_xml([service_xml("echo", [ws_url, f"tcp://127.0.0.1:{tcp_port}"],
                                                      name="echo-c")]), name="c")
    cred = credentials(tmp_path, http_proxy.user, http_proxy.password)
    with backend:
        for target in (ws_url, f"tcp://127.0.0.1:{tcp_port}"):
            with gateway_a(target, certs, http_proxy, cred) as a:
                client = websocket.create_connection(a.accept, timeout=15)  # type: ignore[attr-defined]
                client.send_binary(b"\x01tunnelled")
                assert client.recv() == b"\x01tunnelled"
                client.close()
        log = proxy_log(http_proxy)
        assert f"CONNECT 127.0.0.1:{ws_url.split(':')[2].split('/')[0]} HTTP/1.1" in log
        assert f"CONNECT 127.0.0.1:{tcp_port} HTTP/1.1" in log
