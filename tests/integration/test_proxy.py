"""The proxy service over real sockets, between real twistd gateway processes.

    test client --a://--> gateway A (16 proxy services) --c://--> gateway B (echo on 4 schemes)

for every accept scheme a and connect scheme c in ws, wss, tcp, ssl; plus back-pressure,
close propagation and unreachable back ends against back ends written in the test.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator

import pytest
import websocket
from websockets.sync.server import serve as ws_serve

from tests.helpers import (
    GatewayProcess,
    connect_tcp,
    free_port,
    gateway_xml,
    make_certs,
    recv_exactly,
    service_xml,
)

SCHEMES = ("ws", "wss", "tcp", "ssl")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return make_certs(str(tmp_path_factory.mktemp("certs")))


@pytest.fixture(scope="module")
def pair(certs) -> Iterator[dict[str, object]]:  # type: ignore[no-untyped-def]
    """Gateway B echoes on every scheme; gateway A proxies every (accept, connect) pair to it."""
    b_ports = {s: free_port() for s in SCHEMES}
    b_urls = {
        "ws": f"ws://localhost:{b_ports['ws']}/echo",
        "wss": f"wss://localhost:{b_ports['wss']}/echo",
        "tcp": f"tcp://localhost:{b_ports['tcp']}",
        "ssl": f"ssl://localhost:{b_ports['ssl']}",
    }
    backend = GatewayProcess(gateway_xml(
        [service_xml("echo", list(b_urls.values()), name="echo-b")], certs.security_xml()),
        name="b").start()
    http, https = free_port(), free_port()
    accepts: dict[tuple[str, str], str] = {}
    services = []
    for a in SCHEMES:
        for c in SCHEMES:
            if a == "ws":
                url = f"ws://localhost:{http}/{c}"
            elif a == "wss":
                url = f"wss://localhost:{https}/{c}"
            else:
                url = f"{a}://localhost:{free_port()}"
            accepts[(a, c)] = url
            services.append(service_xml("proxy", url, b_urls[c], name=f"{a}-to-{c}"))
    front = GatewayProcess(gateway_xml(services, certs.security_xml()), name="a").start()
    yield {"accepts": accepts, "front": front, "backend": backend}
    front.stop()
    backend.stop()


def _ws(url: str, ca: str, **kw: object) -> websocket.WebSocket:
    return websocket.create_connection(url, timeout=10, sslopt={"ca_certs": ca}, **kw)


@pytest.mark.parametrize("accept", SCHEMES)
@pytest.mark.parametrize("connect", SCHEMES)
def test_every_scheme_pair_relays_both_ways(pair, certs, accept: str, connect: str) -> None:  # type: ignore[no-untyped-def]
    url = pair["accepts"][(accept, connect)]
    blob = os.urandom(256 * 1024)
    if accept in ("ws", "wss"):
        ws = _ws(url, certs.ca)
        ws.send("héllo")
        opcode, data = ws.recv_data()
        # Text stays text end to end over WebSocket; a TCP hop turns it into bytes.
        expected = websocket.ABNF.OPCODE_TEXT if connect in ("ws", "wss") else \
            websocket.ABNF.OPCODE_BINARY
        assert (opcode, data) == (expected, "héllo".encode())
        ws.send_binary(blob)
        received = b""
        while len(received) < len(blob):
            opcode, data = ws.recv_data()
            assert opcode == websocket.ABNF.OPCODE_BINARY
            received += data
        assert received == blob
        ws.close()
    else:
        sock = connect_tcp(int(url.rsplit(":", 1)[1]),
                           tls_ca=certs.ca if accept == "ssl" else None)
        sock.sendall(b"hello")
        assert recv_exactly(sock, 5) == b"hello"
        sock.sendall(blob)
        assert recv_exactly(sock, len(blob)) == blob
        sock.close()


class Backend:
    """A TCP back end in a thread: records what it receives and when the client goes."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.accepted = threading.Event()
        self.eof = threading.Event()
        self.conn: socket.socket | None = None
        self.received = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        self.conn, _ = self.server.accept()
        self.accepted.set()

    def read_until_eof(self) -> None:
        assert self.conn is not None
        while chunk := self.conn.recv(65536):
            self.received += len(chunk)
        self.eof.set()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.server.close()


@pytest.fixture
def tcp_backend() -> Iterator[Backend]:
    b = Backend()
    yield b
    b.close()


def _proxy(accept_scheme: str, target: str, options: str = "") -> GatewayProcess:
    port = free_port()
    accept = f"ws://127.0.0.1:{port}/p" if accept_scheme == "ws" else f"tcp://127.0.0.1:{port}"
    gw = GatewayProcess(gateway_xml([service_xml("proxy", accept, target, name="px",
                                                 extra=options)]), name="px").start()
    gw.accept = accept  # type: ignore[attr-defined]
    return gw


def _stalled_send(sock: socket.socket, limit: int) -> int:
    """Send until the peer stops taking data (send times out) or *limit* bytes; count them."""
    sock.settimeout(2)
    chunk = b"x" * 65536
    sent = 0
    try:
        while sent < limit:
            sent += sock.send(chunk)
    except TimeoutError:
        pass
    return sent


@pytest.mark.parametrize("accept_scheme", ["tcp", "ws"])
def test_slow_client_does_not_make_the_gateway_buffer(tcp_backend: Backend,
                                                      accept_scheme: str) -> None:
    limit = 256 * 1024 * 1024
    with _proxy(accept_scheme, f"tcp://127.0.0.1:{tcp_backend.port}") as gw:
        baseline = gw.rss_kib()
        if accept_scheme == "ws":
            client = websocket.create_connection(gw.accept, timeout=30)  # type: ignore[attr-defined]
            client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        else:
            client = socket.create_connection(("127.0.0.1", int(gw.accept.rsplit(":", 1)[1])))  # type: ignore[attr-defined]
        assert tcp_backend.accepted.wait(10)
        assert tcp_backend.conn is not None
        sent = _stalled_send(tcp_backend.conn, limit)
        grown = gw.rss_kib() - baseline
        # The back end stalls long before 256 MiB: only kernel buffers and the gateway's
        # bounded write buffer (64 KiB + one read) hold data.
        assert sent < 48 * 1024 * 1024, sent
        assert grown < 24 * 1024, f"gateway grew by {grown} KiB"
        tcp_backend.conn.shutdown(socket.SHUT_WR)
        received = 0
        if accept_scheme == "ws":
            while True:
                frame = client.recv_data_frame(True)[1]
                if frame.opcode == websocket.ABNF.OPCODE_CLOSE:
                    break
                received += len(frame.data)
        else:
            client.settimeout(30)
            while chunk := client.recv(1 << 20):
                received += len(chunk)
        assert received == sent
        client.close()


def test_slow_back_end_stops_reading_from_the_client(tcp_backend: Backend) -> None:
    with _proxy("tcp", f"tcp://127.0.0.1:{tcp_backend.port}") as gw:
        baseline = gw.rss_kib()
        client = socket.create_connection(("127.0.0.1", int(gw.accept.rsplit(":", 1)[1])))  # type: ignore[attr-defined]
        assert tcp_backend.accepted.wait(10)
        sent = _stalled_send(client, 256 * 1024 * 1024)
        assert sent < 48 * 1024 * 1024
        assert gw.rss_kib() - baseline < 24 * 1024
        client.shutdown(socket.SHUT_WR)
        tcp_backend.read_until_eof()
        assert tcp_backend.received == sent


@pytest.mark.parametrize("accept_scheme", ["ws", "tcp"])
def test_a_back_end_that_speaks_first_is_heard(tcp_backend: Backend, accept_scheme: str) -> None:
    """Servers such as SMTP or SSH greet before the client says anything."""
    with _proxy(accept_scheme, f"tcp://127.0.0.1:{tcp_backend.port}") as gw:
        def greet() -> None:
            assert tcp_backend.accepted.wait(10) and tcp_backend.conn is not None
            tcp_backend.conn.sendall(b"220 kgateway test server ready\r\n")

        greeter = threading.Thread(target=greet)
        greeter.start()
        if accept_scheme == "ws":
            client = websocket.create_connection(gw.accept, timeout=10)  # type: ignore[attr-defined]
            assert client.recv() == b"220 kgateway test server ready\r\n"
        else:
            sock = socket.create_connection(("127.0.0.1", int(gw.accept.rsplit(":", 1)[1])),  # type: ignore[attr-defined]
                                            timeout=10)
            assert recv_exactly(sock, 32) == b"220 kgateway test server ready\r\n"
            sock.close()
        greeter.join(10)


def test_client_close_closes_the_back_end(tcp_backend: Backend) -> None:
    with _proxy("ws", f"tcp://127.0.0.1:{tcp_backend.port}") as gw:
        client = websocket.create_connection(gw.accept, timeout=10)  # type: ignore[attr-defined]
        assert tcp_backend.accepted.wait(10)
        client.send_binary(b"last words")
        client.close()
        tcp_backend.conn.settimeout(10)  # type: ignore[union-attr]
        tcp_backend.read_until_eof()
        assert tcp_backend.eof.is_set() and tcp_backend.received == len(b"last words")


def test_back_end_close_closes_the_client_cleanly(tcp_backend: Backend) -> None:
    with _proxy("ws", f"tcp://127.0.0.1:{tcp_backend.port}") as gw:
        client = websocket.create_connection(gw.accept, timeout=10)  # type: ignore[attr-defined]
        assert tcp_backend.accepted.wait(10)
        tcp_backend.conn.sendall(b"bye")  # type: ignore[union-attr]
        tcp_backend.conn.close()  # type: ignore[union-attr]
        assert client.recv() == b"bye"
        frame = client.recv_data_frame(True)[1]
        assert frame.opcode == websocket.ABNF.OPCODE_CLOSE
        assert int.from_bytes(frame.data[:2], "big") == 1000


def test_tcp_client_close_reaches_the_back_end_and_back(tcp_backend: Backend) -> None:
    with _proxy("tcp", f"tcp://127.0.0.1:{tcp_backend.port}") as gw:
        client = socket.create_connection(("127.0.0.1", int(gw.accept.rsplit(":", 1)[1])))  # type: ignore[attr-defined]
        assert tcp_backend.accepted.wait(10)
        client.close()
        tcp_backend.conn.settimeout(10)  # type: ignore[union-attr]
        tcp_backend.read_until_eof()
        assert tcp_backend.eof.is_set()


def test_unreachable_back_end_gets_the_client_a_1014_and_a_log_line() -> None:
    dead = free_port()
    with _proxy("ws", f"tcp://127.0.0.1:{dead}") as gw:
        client = websocket.create_connection(gw.accept, timeout=10)  # type: ignore[attr-defined]
        frame = client.recv_data_frame(True)[1]
        assert frame.opcode == websocket.ABNF.OPCODE_CLOSE
        assert int.from_bytes(frame.data[:2], "big") == 1014
        assert b"cannot connect to tcp://127.0.0.1:%d" % dead in frame.data[2:]
        gw.wait_for(rf"px: .*cannot connect to tcp://127.0.0.1:{dead}")
        # The gateway goes on serving: a second client gets the same clear answer.
        again = websocket.create_connection(gw.accept, timeout=10)  # type: ignore[attr-defined]
        assert again.recv_data_frame(True)[1].opcode == websocket.ABNF.OPCODE_CLOSE


def test_unreachable_back_end_refuses_a_tcp_client() -> None:
    with _proxy("tcp", f"tcp://127.0.0.1:{free_port()}") as gw:
        client = socket.create_connection(("127.0.0.1", int(gw.accept.rsplit(":", 1)[1])),
                                          timeout=10)
        assert client.recv(1) == b""


def test_oversize_message_is_closed_with_1009(tcp_backend: Backend) -> None:
    options = ("<accept-options><ws.maximum.message.size>1k</ws.maximum.message.size>"
               "</accept-options>")
    with _proxy("ws", f"tcp://127.0.0.1:{tcp_backend.port}", options) as gw:
        client = websocket.create_connection(gw.accept, timeout=10)  # type: ignore[attr-defined]
        client.send_binary(b"a" * 1024)
        client.send_binary(b"b" * 1025)
        frame = client.recv_data_frame(True)[1]
        assert frame.opcode == websocket.ABNF.OPCODE_CLOSE
        assert int.from_bytes(frame.data[:2], "big") == 1009
        tcp_backend.conn.settimeout(10)  # type: ignore[union-attr]
        tcp_backend.read_until_eof()
        assert tcp_backend.received == 1024


def test_websocket_hop_passes_offered_subprotocols_to_the_back_end() -> None:
    """The back end, not the gateway, chooses: here it always takes the last one offered."""
    offered_seen: list[list[str]] = []

    def select(connection, subprotocols):  # type: ignore[no-untyped-def]
        offered_seen.append(list(subprotocols))
        return subprotocols[-1]

    def echo(connection):  # type: ignore[no-untyped-def]
        for message in connection:
            connection.send(message)

    with ws_serve(echo, "127.0.0.1", 0, select_subprotocol=select) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.socket.getsockname()[1]
        with _proxy("ws", f"ws://127.0.0.1:{port}/") as gw:
            client = websocket.create_connection(
                gw.accept, timeout=10, subprotocols=["v12.stomp", "v11.stomp", "amqp"])  # type: ignore[attr-defined]
            assert client.getsubprotocol() == "amqp"
            assert offered_seen == [["v12.stomp", "v11.stomp", "amqp"]]
            client.send("text")
            assert client.recv_data() == (websocket.ABNF.OPCODE_TEXT, b"text")
            client.close()
        server.shutdown()


def test_tls_connect_checks_the_hostname(certs) -> None:  # type: ignore[no-untyped-def]
    """A back end whose certificate does not name the host we dialled is refused."""
    port = free_port()
    backend = GatewayProcess(gateway_xml([service_xml("echo", f"ssl://127.0.0.1:{port}")],
                                         certs.security_xml()), name="tlsb")
    front_port = free_port()
    # The certificate names localhost and 127.0.0.1, not wrong.test: dial it under that name.
    options = "<connect-options><ssl.hostname>wrong.test</ssl.hostname></connect-options>"
    front = GatewayProcess(gateway_xml([service_xml(
        "proxy", f"ws://127.0.0.1:{front_port}/p", f"ssl://127.0.0.1:{port}", name="px",
        extra=options)], certs.security_xml()), name="tlsa")
    with backend, front:
        client = websocket.create_connection(f"ws://127.0.0.1:{front_port}/p", timeout=10)
        frame = client.recv_data_frame(True)[1]
        assert int.from_bytes(frame.data[:2], "big") == 1014
        assert b"TLS" in frame.data and b"wrong.test" in frame.data, frame.data
        front.wait_for("px: .*TLS")
