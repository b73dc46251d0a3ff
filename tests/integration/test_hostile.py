"""Hostile clients against a real twistd gateway: what a DMZ gateway must survive.

Each test plays one attack found while attacking the gateway (README "Authentication",
SECURITY.md) and checks the defence that was added for it.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from kgateway.protocols.websocket import frame_header, mask_payload
from tests.helpers import BIN, GatewayProcess, free_port, gateway_xml, service_xml

pytestmark = pytest.mark.slow

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    port, tcp = free_port(), free_port()
    users = str(tmp_path_factory.mktemp("hostile") / "users.passwd")
    subprocess.run([os.path.join(BIN, "kgateway"), "passwd", users, "alice", "--stdin",
                    "--role", "ops"], input="alice-secret\n", text=True, check=True,
                   capture_output=True)
    security = ("<security><realm><name>staff</name><authentication><http-challenge-scheme>"
                "Basic</http-challenge-scheme><login-modules><login-module><type>file</type>"
                f"<success>required</success><options><file>{users}</file></options>"
                "</login-module></login-modules></authentication></realm></security>")
    guarded = ("<realm-name>staff</realm-name><authorization-constraint><require-role>ops"
               "</require-role></authorization-constraint>")
    services = [
        service_xml("proxy", f"ws://127.0.0.1:{port}/guarded", f"tcp://127.0.0.1:{tcp}",
                    name="guarded", extra=guarded),
        service_xml("metrics", f"http://127.0.0.1:{port}/metrics", name="metrics",
                    extra=guarded),
        service_xml("echo", f"tcp://127.0.0.1:{tcp}", name="back"),
        # the fast data path (fastws) and Autobahn's, to the same back end
        service_xml("proxy", f"ws://127.0.0.1:{port}/fast", f"tcp://127.0.0.1:{tcp}",
                    name="fast"),
        service_xml("proxy", f"ws://127.0.0.1:{port}/slow", f"tcp://127.0.0.1:{tcp}",
                    name="slow",
                    extra="<accept-options><ws.fast.path>false</ws.fast.path></accept-options>"),
        service_xml("echo", f"ws://127.0.0.1:{port}/echo", name="echo"),
        service_xml("health", f"http://127.0.0.1:{port}/health", name="health"),
    ]
    with GatewayProcess(gateway_xml(services, security), name="hostile") as process:
        yield {"port": port, "process": process}


def opened(port: int, path: str) -> socket.socket:
    """A WebSocket opened by hand, with a small receive window (a client that stops reading
    fills it at once)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
              f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
              "Sec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


def masked(opcode: int, payload: bytes) -> bytes:
    key = os.urandom(4)
    return frame_header(opcode, len(payload), True, key) + mask_payload(payload, key)


@pytest.mark.parametrize("path", ["/fast", "/slow"])
def test_a_ping_flood_from_a_client_that_never_reads_is_not_buffered(
        gateway: dict[str, Any], path: str) -> None:
    pings = 100_000
    s = opened(gateway["port"], path)
    s.settimeout(10)
    batch = masked(9, b"p" * 125) * 1000
    for _ in range(pings // 1000):  # 13 MB of pings, not one octet read meanwhile
        s.sendall(batch)
    s.sendall(masked(8, b"\x03\xe8"))  # then Close: the gateway answers it and drops TCP
    received = b""
    while True:
        try:
            data = s.recv(1 << 16)
        except TimeoutError:
            raise AssertionError(f"{len(received)} octets, ends {received[-40:]!r}") from None
        if not data:
            break
        received += data
    s.close()
    pong = b"\x8a\x7d" + b"p" * 125
    pongs = received.count(pong)
    # Without the defence every ping got its pong (100000, 12.7 MB held by the gateway);
    # with it, pongs stop once a socket buffer of them waits unread.
    assert 0 < pongs < pings // 2, pongs
    assert received.endswith(b"\x88\x02\x03\xe8")  # and the close handshake still happens


@pytest.mark.parametrize("path, opcode", [
    ("/slow", 2),  # Autobahn's data path
    ("/fast", 1),  # the fast path in stream mode: text waits for its last fragment
    ("/echo", 2),  # the fast path in messages mode (the codec joins the fragments)
])
def test_a_message_of_a_million_one_octet_fragments_costs_about_a_megabyte(
        gateway: dict[str, Any], path: str, opcode: int) -> None:
    process = gateway["process"]
    fragments = 1_000_000  # under the default ws.maximum.message.size of 1 MiB
    s = opened(gateway["port"], path)
    s.settimeout(30)
    before = process.rss_kib()
    s.sendall(frame_header(opcode, 1, False, b"\0\0\0\0") + b"a")
    s.sendall((frame_header(0, 1, False, b"\0\0\0\0") + b"a") * (fragments - 1))
    s.sendall(masked(9, b"done"))  # its pong says every fragment before it was read
    received = b""
    while b"\x8a\x04done" not in received:
        data = s.recv(4096)
        assert data, "the gateway closed the connection"
        received += data
    grown = process.rss_kib() - before
    s.close()
    # A list of one-octet objects held 40-45 MB here (7 MB on the wire, 1 MB of payload).
    assert grown < 15 * 1024, f"{grown} KiB"


def test_clients_gone_while_their_login_is_checked_leave_nothing_behind(
        gateway: dict[str, Any]) -> None:
    process, port = gateway["process"], gateway["port"]
    auth = "Basic " + base64.b64encode(b"alice:alice-secret").decode()
    mark = process.mark()
    for request in (
            f"GET /guarded HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade"
            f"\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: {auth}\r\n\r\n",
            f"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\r\n"):
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(request.encode())  # and gone before the ~0.2 s argon2 check ends
    # A login checked after them (logins run one at a time) says theirs are done.
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(f"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n"
              "Connection: close\r\n\r\n".encode())
    answer = b""
    while data := s.recv(65536):
        answer += data
    s.close()
    assert answer.startswith(b"HTTP/1.1 200")
    log = "\n".join(process.log().split("\n")[mark:])
    assert "Traceback" not in log and "#critical" not in log, log
    health = urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10)
    assert json.loads(health.read())["services"]["guarded"]["connections"] == 0
