"""Admission limits and handshake bounds against a real ``twistd -n kgateway``.

    clients from 127.0.0.1 / 127.0.0.2 ... (all loopback: the client socket is bound to its
    own source address, so the gateway sees distinct client hosts)
        --> ws://127.0.0.1:HTTP/perhost   connection.limit.per.address 2   -> 429
        --> ws://127.0.0.1:HTTP/service   connection.limit 2               -> 503
        --> ws://127.0.0.1:HTTP/rate      handshake.rate 0.5/s, burst 2    -> 429 + Retry-After
            (the port: http.handshake.timeout 1sec, for every service on it)
        --> tcp://127.0.0.1:TCP           connection.limit.per.address 1   -> closed
        --> ssl://127.0.0.1:SSL           ssl.handshake.timeout 1sec       -> dropped

and ``kgateway check`` on a configuration of 39 doubling properties.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
import websocket

from tests.helpers import (
    BIN,
    Certs,
    GatewayProcess,
    free_port,
    gateway_xml,
    make_certs,
    service_xml,
)

TIMEOUT = 1.0  # the short http.handshake.timeout and ssl.handshake.timeout configured here


def options(body: str) -> str:
    return f"<accept-options>{body}</accept-options>"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(str(tmp_path_factory.mktemp("certs")))


@pytest.fixture(scope="module")
def gateway(certs: Certs) -> Iterator[dict[str, object]]:
    http, tcp, ssl_port = free_port(), free_port(), free_port()
    base = f"ws://127.0.0.1:{http}"
    services = [
        service_xml("echo", f"{base}/perhost", name="perhost", extra=options(
            "<connection.limit.per.address>2</connection.limit.per.address>")),
        service_xml("echo", f"{base}/service", name="service", extra=options(
            "<connection.limit>2</connection.limit>")),
        service_xml("echo", f"{base}/rate", name="rate", extra=options(
            "<handshake.rate>0.5</handshake.rate><handshake.burst>2</handshake.burst>")),
        service_xml("echo", f"tcp://127.0.0.1:{tcp}", name="tcp", extra=options(
            "<connection.limit.per.address>1</connection.limit.per.address>")),
        service_xml("echo", f"ssl://127.0.0.1:{ssl_port}", name="ssl"),
    ]
    defaults = ("<service-defaults><accept-options>"
                f"<http.handshake.timeout>{TIMEOUT}sec</http.handshake.timeout>"
                f"<ssl.handshake.timeout>{TIMEOUT}sec</ssl.handshake.timeout>"
                "</accept-options></service-defaults>")
    gw = GatewayProcess(gateway_xml(services, certs.security_xml() + defaults),
                        name="admission").start()
    yield {"gw": gw, "http": http, "tcp": tcp, "ssl": ssl_port}
    gw.stop()


def connect_from(source: str, port: int) -> socket.socket:
    """A TCP connection to the gateway from loopback address *source*."""
    return socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))


def upgrade(port: int, path: str, source: str = "127.0.0.1") -> tuple[int, dict[str, str],
                                                                      socket.socket]:
    """A raw WebSocket handshake: the status, the response headers and the open socket."""
    sock = connect_from(source, port)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, f"closed before a response: {head!r}"
        head += chunk
    lines = head.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ")[1]), headers, sock


def closed_after(sock: socket.socket) -> float:
    """Seconds until the gateway closes *sock* (reading and discarding what it sends)."""
    started = time.monotonic()
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    return time.monotonic() - started


def echo_from(source: str, url: str) -> websocket.WebSocket:
    """A real WebSocket client from *source*; checks one echo."""
    host, _, port = url.split("/")[2].partition(":")
    ws = websocket.create_connection(url, timeout=10, socket=connect_from(source, int(port)))
    ws.send("hello")
    assert ws.recv() == "hello"
    return ws


def test_the_per_address_limit_refuses_with_429_while_other_addresses_are_served(
        gateway: dict[str, object]) -> None:
    port = int(str(gateway["http"]))
    held = [echo_from("127.0.0.2", f"ws://127.0.0.1:{port}/perhost") for _ in range(2)]
    status, _, sock = upgrade(port, "/perhost", "127.0.0.2")
    assert status == 429
    sock.close()
    other = echo_from("127.0.0.3", f"ws://127.0.0.1:{port}/perhost")
    gw = gateway["gw"]
    assert isinstance(gw, GatewayProcess)
    gw.wait_for(r"refusing 127\.0\.0\.2:\d+ for perhost: address connection limit")
    held[0].close()  # one leaves: the address may connect again
    gw.wait_for(r"access: service=perhost peer=127\.0\.0\.2:\d+ .*end=close=1000")
    held.append(echo_from("127.0.0.2", f"ws://127.0.0.1:{port}/perhost"))
    for ws in (*held[1:], other):
        ws.close()


def test_the_service_limit_refuses_with_503(gateway: dict[str, object]) -> None:
    port = int(str(gateway["http"]))
    held = [echo_from(f"127.0.0.{10 + i}", f"ws://127.0.0.1:{port}/service") for i in range(2)]
    status, _, sock = upgrade(port, "/service", "127.0.0.12")
    assert status == 503
    sock.close()
    for ws in held:
        ws.close()


def test_the_handshake_rate_refuses_with_429_and_retry_after(gateway: dict[str, object]) -> None:
    port = int(str(gateway["http"]))
    answers = [upgrade(port, "/rate", "127.0.0.20") for _ in range(3)]
    assert [a[0] for a in answers] == [101, 101, 429]
    assert int(answers[2][1]["Retry-After"]) in (1, 2)  # 0.5/s: the next token within 2 s
    # another address has its own bucket
    assert upgrade(port, "/rate", "127.0.0.21")[0] == 101
    for _, _, sock in answers:
        sock.close()


def test_a_half_sent_request_is_closed_at_the_handshake_timeout_and_open_websockets_stay(
        gateway: dict[str, object]) -> None:
    port = int(str(gateway["http"]))
    ws = echo_from("127.0.0.30", f"ws://127.0.0.1:{port}/perhost")
    sock = connect_from("127.0.0.31", port)
    sock.sendall(b"GET /perhost HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the end
    waited = closed_after(sock)
    assert TIMEOUT * 0.8 <= waited < TIMEOUT + 2.0, waited
    gw = gateway["gw"]
    assert isinstance(gw, GatewayProcess)
    gw.wait_for(r"refusing 127\.0\.0\.31:\d+ for perhost, service, rate: handshake timeout")
    # The WebSocket opened before is past the same timeout, and still echoes.
    ws.send("still here")
    assert ws.recv() == "still here"
    ws.close()


def test_stream_clients_over_the_address_limit_are_closed(gateway: dict[str, object]) -> None:
    port = int(str(gateway["tcp"]))
    first = connect_from("127.0.0.40", port)
    first.sendall(b"ping")
    assert first.recv(4) == b"ping"
    try:
        second = connect_from("127.0.0.40", port)
    except ConnectionResetError:
        pass  # the gateway's reset came before connect() read its result (a loaded machine)
    else:
        assert closed_after(second) < 5
        second.close()
    gw = gateway["gw"]
    assert isinstance(gw, GatewayProcess)
    gw.wait_for(r"refusing 127\.0\.0\.40:\d+ for tcp: address connection limit")
    third = connect_from("127.0.0.41", port)
    third.sendall(b"pong")
    assert third.recv(4) == b"pong"
    for s in (first, third):
        s.close()


def test_a_tls_handshake_that_never_finishes_is_dropped(gateway: dict[str, object]) -> None:
    sock = connect_from("127.0.0.50", int(str(gateway["ssl"])))
    sock.sendall(b"\x16\x03\x01")  # the start of a ClientHello, and then nothing
    waited = closed_after(sock)
    assert TIMEOUT * 0.8 <= waited < TIMEOUT + 2.0, waited
    gw = gateway["gw"]
    assert isinstance(gw, GatewayProcess)
    gw.wait_for(r"refusing 127\.0\.0\.50:\d+ for ssl: TLS handshake timeout")


def test_kgateway_check_refuses_a_property_bomb_quickly(tmp_path) -> None:  # type: ignore[no-untyped-def]
    props = ["<property><name>p0</name><value>ab</value></property>"]
    props += [f"<property><name>p{i}</name><value>${{p{i - 1}}}${{p{i - 1}}}</value></property>"
              for i in range(1, 39)]
    config = tmp_path / "bomb.xml"
    config.write_text(gateway_xml(
        [service_xml("echo", "ws://127.0.0.1:8000/echo", extra="<description>${p38}"
                                                               "</description>")],
        properties="<properties>" + "\n".join(props) + "</properties>"))
    assert config.stat().st_size < 3000
    started = time.monotonic()
    result = subprocess.run([os.path.join(BIN, "kgateway"), "check", str(config)],
                            capture_output=True, text=True, timeout=30)
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert f"{config}:" in output and "property 'p16' expands to more than 64 KiB" in output
    assert elapsed < 10, elapsed  # the interpreter's start is most of it
