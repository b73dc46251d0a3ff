"""amqp.proxy against a real RabbitMQ (scripts/rabbitmq.sh) in a real ``twistd -n kgateway``.

    pika ---------------tcp---------------> amqp.proxy --tcp--> RabbitMQ 127.0.0.1:5672
    pika --tcp--> proxy --ws (/amqp)------> amqp.proxy            ("the WebSocket path")
    pika ---------------ssl---------------> amqp.proxy
    raw AMQP over tcp or ws ----------------> amqp.proxy          (bad input, exact answers)
                                            amqp.proxy --tcp--> a closed port ("dead")

The broker stop/restart test runs last and leaves the broker running.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions
import pytest
import websocket
from pika.adapters.blocking_connection import BlockingChannel as Channel

from kgateway.protocols import amqp as A
from tests.helpers import GatewayProcess, free_port, gateway_xml, make_certs, service_xml
from tests.integration.conftest import rabbitmq_ctl

pytestmark = pytest.mark.slow


@dataclass
class Gateway:
    process: GatewayProcess
    tcp: int  # amqp.proxy, tcp accept
    front: int  # proxy tcp -> ws://.../amqp
    http: int  # ws://127.0.0.1:http/amqp, /dead
    dead_tcp: int  # amqp.proxy to a port nobody listens on
    ssl: int  # amqp.proxy, ssl accept
    ca: str

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.http}/amqp"


@pytest.fixture(scope="module")
def gw(rabbitmq: tuple[str, int], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    host, port = rabbitmq
    tcp, front, http, dead_tcp, nobody, tls = (free_port() for _ in range(6))
    certs = make_certs(str(tmp_path_factory.mktemp("certs")))
    services = [
        service_xml("amqp.proxy", [f"tcp://127.0.0.1:{tcp}", f"ws://127.0.0.1:{http}/amqp",
                                   f"ssl://localhost:{tls}"],
                    f"tcp://{host}:{port}", name="amqp",
                    properties="<virtual.host>/</virtual.host>"),
        service_xml("proxy", f"tcp://127.0.0.1:{front}", f"ws://127.0.0.1:{http}/amqp",
                    name="front"),
        service_xml("amqp.proxy", [f"tcp://127.0.0.1:{dead_tcp}", f"ws://127.0.0.1:{http}/dead"],
                    f"tcp://127.0.0.1:{nobody}", name="dead"),
    ]
    process = GatewayProcess(gateway_xml(services, certs.security_xml()), name="amqp").start()
    yield Gateway(process, tcp, front, http, dead_tcp, tls, certs.ca)
    process.stop()


PATHS = ("tcp", "ws")


def params(gw: Gateway, path: str, **kw: Any) -> pika.ConnectionParameters:
    if path == "ssl":
        context = ssl.create_default_context(cafile=gw.ca)
        kw["ssl_options"] = pika.SSLOptions(context, "localhost")
    port = {"tcp": gw.tcp, "ws": gw.front, "ssl": gw.ssl}[path]
    return pika.ConnectionParameters("localhost" if path == "ssl" else "127.0.0.1", port,
                                     connection_attempts=1, socket_timeout=10,
                                     blocked_connection_timeout=30, **kw)


@pytest.fixture(scope="module")
def witness(gw: Gateway) -> Iterator[Channel]:
    """A client connected all along: after every bad client it must still work."""
    conn = pika.BlockingConnection(params(gw, "tcp"))
    channel = conn.channel()
    yield channel
    try:
        conn.close()
    except pika.exceptions.AMQPError:
        pass  # the broker restart test closed it already


def round_trip(channel: Channel) -> None:
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.basic_publish("", queue, b"ping")
    # The broker handles one channel's commands in order: the get sees the publish.
    method, _, body = channel.basic_get(queue, auto_ack=True)
    assert method is not None and body == b"ping"
    channel.queue_delete(queue)


# -- ordinary traffic -----------------------------------------------------------------------


@pytest.mark.parametrize("path", [*PATHS, "ssl"])
def test_declare_publish_consume_ack_tx_and_1mib_messages(gw: Gateway, path: str) -> None:
    conn = pika.BlockingConnection(params(gw, path))
    ch = conn.channel()
    exchange = f"kg-test-{uuid.uuid4().hex[:8]}"
    ch.exchange_declare(exchange, "fanout", auto_delete=True)
    queue = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(queue, exchange)
    big = os.urandom(1 << 20)
    props = pika.BasicProperties(content_type="text/plain", delivery_mode=2,
                                 headers={"x-test": "yes", "n": 7})
    ch.basic_publish(exchange, "", b"first", props)
    ch.basic_publish(exchange, "", big)
    # transactions: a committed and a rolled-back publish
    tx = conn.channel()
    tx.tx_select()
    tx.basic_publish(exchange, "", b"rolled back")
    tx.tx_rollback()
    tx.basic_publish(exchange, "", b"committed")
    tx.tx_commit()
    received: list[tuple[pika.BasicProperties, bytes]] = []
    for method, properties, body in ch.consume(queue, inactivity_timeout=10):
        assert method is not None, f"only {len(received)} messages arrived"
        received.append((properties, body))
        ch.basic_ack(method.delivery_tag)
        if len(received) == 3:
            break
    ch.cancel()
    assert [b for _, b in received] == [b"first", big, b"committed"]
    first = received[0][0]
    assert first.content_type == "text/plain" and first.delivery_mode == 2
    assert first.headers == {"x-test": "yes", "n": 7}
    # the acks went through: nothing is redelivered
    assert ch.queue_declare(queue, passive=True).method.message_count == 0
    conn.close()


def test_the_client_address_reaches_the_broker(gw: Gateway) -> None:
    name = f"kg-addr-{uuid.uuid4().hex[:8]}"
    conn = pika.BlockingConnection(params(gw, "tcp",
                                          client_properties={"connection_name": name}))
    local = conn._impl._transport._sock.getsockname()
    out = subprocess.run(["rabbitmqctl", "-q", "list_connections", "client_properties"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    conn.close()
    (line,) = [ln for ln in out.splitlines() if name in ln]
    assert '{"x-forwarded-for","127.0.0.1"}' in line
    assert f'{{"kgateway.client","127.0.0.1:{local[1]}"}}' in line


def test_200_concurrent_clients_every_message_accounted_for(gw: Gateway) -> None:
    clients, per_client = 200, 20
    run = uuid.uuid4().hex[:8]
    exchange = f"kg-load-{run}"
    setup = pika.BlockingConnection(params(gw, "tcp"))
    setup.channel().exchange_declare(exchange, "direct", auto_delete=False)
    ready = threading.Barrier(clients, timeout=60)
    got: dict[int, list[bytes]] = {}
    errors: list[str] = []

    def client(i: int) -> None:
        try:
            conn = pika.BlockingConnection(params(gw, PATHS[i % 2]))
            ch = conn.channel()
            ch.confirm_delivery()
            queue = ch.queue_declare(f"{exchange}-{i}", exclusive=True).method.queue
            ch.queue_bind(queue, exchange, str(i))
            ready.wait()
            for k in range(per_client):
                ch.basic_publish(exchange, str((i + 1) % clients), f"{i}:{k}".encode(),
                                 mandatory=True)
            bodies: list[bytes] = []
            for method, _, body in ch.consume(queue, inactivity_timeout=30):
                if method is None:
                    break
                bodies.append(body)
                ch.basic_ack(method.delivery_tag)
                if len(bodies) == per_client:
                    break
            got[i] = bodies
            conn.close()
        except Exception as e:  # reported below with the client number
            errors.append(f"client {i}: {e!r}")
            ready.abort()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    setup.channel().exchange_delete(exchange)
    setup.close()
    assert not errors, errors[:5]
    assert len(got) == clients
    for i, bodies in got.items():
        sender = (i - 1) % clients
        assert bodies == [f"{sender}:{k}".encode() for k in range(per_client)], i
    assert time.monotonic() - started < 60


# -- bad input ------------------------------------------------------------------------------


class RawClient:
    """AMQP by hand over TCP or a WebSocket, to send what real clients never would."""

    def __init__(self, url: str) -> None:
        self.ws: websocket.WebSocket | None = None
        self.sock: socket.socket | None = None
        if url.startswith("ws"):
            self.ws = websocket.create_connection(url, timeout=10)
        else:
            self.sock = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])),
                                                 timeout=10)
        self.reader = A.FrameReader(0xFFFFFFFF)
        self.frames: list[A.Frame] = []
        self.messages: list[bytes] = []
        self.close_code: int | None = None
        self.close_reason = ""
        self.eof = False

    def send(self, data: bytes) -> None:
        if self.ws is not None:
            self.ws.send_binary(data)
        else:
            assert self.sock is not None
            self.sock.sendall(data)

    def _read(self) -> bytes:
        if self.ws is not None:
            opcode, data = self.ws.recv_data()
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                self.eof = True
                self.close_code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
                self.close_reason = data[2:].decode()
                return b""
            self.messages.append(data)
            return bytes(data)
        assert self.sock is not None
        data = self.sock.recv(65536)
        self.eof = not data
        return data

    def read_raw(self, n: int) -> bytes:
        data = b""
        while len(data) < n and not self.eof:
            data += self._read()
        return data

    def frame(self) -> A.Frame:
        while not self.frames:
            if self.eof:
                raise EOFError("closed")
            data = self._read()
            self.frames.extend(self.reader.feed(data))
        return self.frames.pop(0)

    def method(self) -> A.AnyMethod:
        while True:
            frame = self.frame()
            if frame.type == A.FRAME_METHOD:
                return A.decode_method(frame.payload)

    def handshake(self, vhost: str = "/", product: str = "raw") -> A.AnyMethod:
        self.send(A.PROTOCOL_HEADER)
        assert isinstance(self.method(), A.ConnectionStart)
        self.send(A.method_frame(0, A.ConnectionStartOk({"product": product}, "PLAIN",
                                                        b"\0guest\0guest", "en_US")))
        tune = self.method()
        assert isinstance(tune, A.ConnectionTune)
        self.send(A.method_frame(0, A.ConnectionTuneOk(tune.channel_max, tune.frame_max, 0)))
        self.send(A.method_frame(0, A.ConnectionOpen(vhost)))
        return self.method()

    def until_closed(self) -> None:
        """Read (discarding) until the gateway closes; fail if it never does."""
        while not self.eof:
            self._read()

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
        if self.sock is not None:
            self.sock.close()


@pytest.fixture
def raw_urls(gw: Gateway) -> dict[str, str]:
    return {"tcp": f"tcp://127.0.0.1:{gw.tcp}", "ws": gw.ws_url}


@pytest.mark.parametrize("path", PATHS)
def test_wrong_protocol_header_gets_the_supported_one_and_a_close(
        gw: Gateway, witness: Channel, raw_urls: dict[str, str], path: str) -> None:
    c = RawClient(raw_urls[path])
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert c.read_raw(8) == A.PROTOCOL_HEADER
    c.until_closed()
    if path == "ws":
        assert c.close_code == 1002 and "unsupported protocol header" in c.close_reason
    c.close()
    round_trip(witness)


@pytest.mark.parametrize("path", PATHS)
def test_garbage_after_the_handshake(gw: Gateway, witness: Channel, raw_urls: dict[str, str],
        path: str) -> None:
    c = RawClient(raw_urls[path])
    assert isinstance(c.handshake(), A.ConnectionOpenOk)
    c.send(b"\x00garbage, not a frame")
    close = c.method()
    assert isinstance(close, A.ConnectionClose) and close.reply_code == A.FRAME_ERROR
    assert "unknown frame type 0" in close.reply_text
    c.until_closed()
    if path == "ws":
        assert c.close_code == 1002 and "FRAME_ERROR" in c.close_reason
    c.close()
    round_trip(witness)


@pytest.mark.parametrize("path", PATHS)
def test_oversize_frame(gw: Gateway, witness: Channel, raw_urls: dict[str, str],
        path: str) -> None:
    c = RawClient(raw_urls[path])
    assert isinstance(c.handshake(), A.ConnectionOpenOk)
    c.send(A.encode_frame(A.FRAME_METHOD, 1, b"\x00\x14\x00\x0a\x00"))  # channel.open
    assert c.method() == A.Method(20, 11, b"\x00\x00\x00\x00")  # open-ok
    c.send(A.encode_frame(A.FRAME_BODY, 1, b"x" * 200_000)[:70_000])
    close = c.method()
    assert isinstance(close, A.ConnectionClose) and close.reply_code == A.FRAME_ERROR
    assert "exceeds frame_max 131072" in close.reply_text
    c.send(A.method_frame(0, A.ConnectionCloseOk()))
    c.until_closed()
    if path == "ws":
        assert c.close_code == 1002
    c.close()
    round_trip(witness)


@pytest.mark.parametrize("path", PATHS)
def test_wrong_frame_end(gw: Gateway, witness: Channel, raw_urls: dict[str, str],
        path: str) -> None:
    c = RawClient(raw_urls[path])
    assert isinstance(c.handshake(), A.ConnectionOpenOk)
    c.send(A.encode_frame(A.FRAME_METHOD, 1, b"\x00\x14\x00\x0a\x00")[:-1] + b"\xcd")
    close = c.method()
    assert isinstance(close, A.ConnectionClose) and close.reply_code == A.FRAME_ERROR
    assert "frame-end octet 0xcd" in close.reply_text
    c.until_closed()
    c.close()
    round_trip(witness)


@pytest.mark.parametrize("path", PATHS)
def test_a_vhost_not_allowed(gw: Gateway, witness: Channel, raw_urls: dict[str, str],
        path: str) -> None:
    c = RawClient(raw_urls[path])
    close = c.handshake("other")
    assert isinstance(close, A.ConnectionClose)
    assert (close.reply_code, close.class_id, close.method_id) == (A.NOT_ALLOWED, 10, 40)
    assert "access to vhost 'other' refused" in close.reply_text
    c.send(A.method_frame(0, A.ConnectionCloseOk()))
    c.until_closed()
    if path == "ws":
        assert c.close_code == 1008 and "NOT_ALLOWED" in c.close_reason
    c.close()
    # pika reports it as the broker would
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as info:
        pika.BlockingConnection(params(gw, "tcp", virtual_host="other"))
    assert "NOT_ALLOWED" in str(info.value)
    round_trip(witness)


def test_whole_frames_per_websocket_message(gw: Gateway) -> None:
    c = RawClient(gw.ws_url)
    assert isinstance(c.handshake(), A.ConnectionOpenOk)
    # a 300 KiB message, published by hand in 128 KiB body frames, and consumed back
    c.send(A.encode_frame(A.FRAME_METHOD, 1, b"\x00\x14\x00\x0a\x00"))
    c.method()
    queue = f"kg-frames-{uuid.uuid4().hex[:8]}".encode()
    declare = b"\x00\x32\x00\x0a\x00\x00" + bytes([len(queue)]) + queue + b"\x04" + b"\0\0\0\0"
    c.send(A.encode_frame(A.FRAME_METHOD, 1, declare))  # exclusive queue
    c.method()
    body = os.urandom(300 * 1024)
    publish = b"\x00\x3c\x00\x28\x00\x00\x00" + bytes([len(queue)]) + queue + b"\x00"
    header = b"\x00\x3c\x00\x00" + len(body).to_bytes(8, "big") + b"\x00\x00"
    frames = [A.encode_frame(A.FRAME_METHOD, 1, publish), A.encode_frame(A.FRAME_HEADER, 1, header)]
    step = 131072 - 8
    frames += [A.encode_frame(A.FRAME_BODY, 1, body[i:i + step]) for i in range(0, len(body), step)]
    blob = b"".join(frames)
    for i in range(0, len(blob), 1000):  # split across many WebSocket messages
        c.send(blob[i:i + 1000])
    consume = b"\x00\x3c\x00\x14\x00\x00" + bytes([len(queue)]) + queue + b"\x00\x02" + b"\0\0\0\0"
    c.messages.clear()
    c.send(A.encode_frame(A.FRAME_METHOD, 1, consume))  # no-ack consume
    received = b""
    while len(received) < len(body):
        frame = c.frame()
        if frame.type == A.FRAME_BODY:
            received += bytes(frame.payload)
    assert received == body
    for message in c.messages:
        reader = A.FrameReader(0xFFFFFFFF)
        reader.feed(message)
        assert reader.buffered == 0, "a WebSocket message ended inside a frame"
    c.close()


def test_websocket_subprotocol_amqp_when_offered_refused_when_only_others(gw: Gateway) -> None:
    ws = websocket.create_connection(gw.ws_url, timeout=10, subprotocols=["amqp"])
    assert ws.getsubprotocol() == "amqp"
    ws.close()
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        websocket.create_connection(gw.ws_url, timeout=10, subprotocols=["mqtt"])
    assert info.value.status_code == 400


def test_the_seed_configuration_form_works(rabbitmq: tuple[str, int]) -> None:
    """The issue's exact <service> element, with its properties defined."""
    port = free_port()
    props = ("<properties><property><name>gateway.hostname</name><value>127.0.0.1</value>"
             "</property><property><name>gateway.extras.port</name>"
             f"<value>{port}</value></property><property><name>backend.hostname</name>"
             f"<value>{rabbitmq[0]}</value></property></properties>")
    seed = ("<service><type>amqp.proxy</type>"
            "<accept>ws://${gateway.hostname}:${gateway.extras.port}/amqp</accept>"
            "<connect>tcp://${backend.hostname}:5672</connect></service>")
    with GatewayProcess(gateway_xml([seed], properties=props), name="seed") as process:
        c = RawClient(f"ws://127.0.0.1:{port}/amqp")
        assert isinstance(c.handshake(), A.ConnectionOpenOk)
        c.send(A.method_frame(0, A.ConnectionClose(200, "bye", 0, 0)))
        assert isinstance(c.method(), A.ConnectionCloseOk)
        c.close()  # after Close-Ok the client closes (RabbitMQ waits for it to)
        assert process.proc is not None and process.proc.poll() is None


@pytest.mark.parametrize("present", [True, False])
def test_mutual_tls_towards_the_broker_side(rabbitmq: tuple[str, int], tmp_path: Any,
                                            present: bool) -> None:
    """amqp.proxy presents the keystore certificate (ssl.present-certificate) to a broker-side
    gateway that requires one; without it the handshake is refused, and both sides say why.

        pika --tcp--> amqp.proxy --ssl + client cert--> proxy (verify-client required) --> RabbitMQ
    """
    certs = make_certs(str(tmp_path))
    inner, outer = free_port(), free_port()
    host, port = rabbitmq
    option = "true" if present else "false"
    with GatewayProcess(gateway_xml([service_xml(
            "proxy", f"ssl://localhost:{inner}", f"tcp://{host}:{port}", name="broker-side",
            extra="<accept-options><ssl.verify-client>required</ssl.verify-client>"
                  "</accept-options>")], certs.security_xml()), name="mtls-in") as inside, \
            GatewayProcess(gateway_xml([service_xml(
                "amqp.proxy", f"tcp://127.0.0.1:{outer}", f"ssl://localhost:{inner}",
                name="amqp-mtls", extra="<connect-options><ssl.present-certificate>"
                f"{option}</ssl.present-certificate></connect-options>")],
                certs.security_xml()), name="mtls-out") as outside:
        client_params = pika.ConnectionParameters("127.0.0.1", outer, connection_attempts=1,
                                                  socket_timeout=10)
        if present:
            conn = pika.BlockingConnection(client_params)
            round_trip(conn.channel())
            conn.close()
        else:
            with pytest.raises(pika.exceptions.AMQPConnectionError):
                pika.BlockingConnection(client_params)
            inside.wait_for("refused by broker-side: TLS refused: no client certificate")
            outside.wait_for("amqp-mtls: .*TLS refused: no client certificate")


def _vm_hwm_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_a_consumer_that_does_not_read_holds_the_broker_back_not_gateway_memory(
        rabbitmq: tuple[str, int]) -> None:
    """64 MiB of deliveries for a WebSocket client that reads nothing for a while: the
    gateway's peak memory must not grow by anything like that (back-pressure reaches the
    broker), and then every byte arrives."""
    host, port = rabbitmq
    http = free_port()
    process = GatewayProcess(gateway_xml([service_xml(
        "amqp.proxy", f"ws://127.0.0.1:{http}/amqp", f"tcp://{host}:{port}", name="amqp")]),
        name="amqp-stall").start()
    queue = f"kg-stall-{uuid.uuid4().hex[:8]}"
    direct = pika.BlockingConnection(pika.ConnectionParameters(host, port))
    ch = direct.channel()
    ch.queue_declare(queue)
    body, count = os.urandom(512 * 1024), 128
    for _ in range(count):
        ch.basic_publish("", queue, body)
    try:
        c = RawClient(f"ws://127.0.0.1:{http}/amqp")
        assert isinstance(c.handshake(product=queue), A.ConnectionOpenOk)
        before = _vm_hwm_kib(process.pid)
        c.send(A.encode_frame(A.FRAME_METHOD, 1, b"\x00\x14\x00\x0a\x00"))
        c.method()
        name = queue.encode()
        consume = (b"\x00\x3c\x00\x14\x00\x00" + bytes([len(name)]) + name + b"\x00\x02"
                   + b"\0\0\0\0")  # no-ack
        c.send(A.encode_frame(A.FRAME_METHOD, 1, consume))
        # Nothing is read yet: the broker's connection to the gateway must show bytes
        # it cannot send (its send queue), i.e. the gateway stopped reading from it.
        out = subprocess.run(["rabbitmqctl", "-q", "list_connections", "client_properties",
                              "send_pend"],
                             capture_output=True, text=True, timeout=60, check=True).stdout
        (line,) = [ln for ln in out.splitlines() if queue in ln]
        send_pend = int(line.rsplit(None, 1)[1])
        received = 0
        while received < len(body) * count:
            frame = c.frame()
            if frame.type == A.FRAME_BODY:
                received += frame.size
        grown_mib = (_vm_hwm_kib(process.pid) - before) / 1024
        assert grown_mib < 24, f"the gateway buffered {grown_mib:.0f} MiB"
        assert send_pend > 0, "the broker could push everything: no back-pressure"
        c.close()
    finally:
        ch.queue_delete(queue)
        direct.close()
        process.stop()


# -- broker trouble -------------------------------------------------------------------------


def test_broker_unreachable_is_a_clear_close_not_a_hang(gw: Gateway) -> None:
    c = RawClient(f"ws://127.0.0.1:{gw.http}/dead")
    c.send(A.PROTOCOL_HEADER)
    c.until_closed()
    assert c.close_code == 1014 and "cannot connect to tcp://127.0.0.1:" in c.close_reason
    assert "refused" in c.close_reason
    started = time.monotonic()
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", gw.dead_tcp,
                                                          connection_attempts=1))
    assert time.monotonic() - started < 5


@pytest.mark.skipif(os.environ.get("KGATEWAY_SKIP_BROKER_RESTART") == "1",
                    reason="KGATEWAY_SKIP_BROKER_RESTART=1: others are using the broker")
def test_broker_stopped_and_restarted(gw: Gateway) -> None:
    """Last in this module: every other test has its broker. It stops the machine's one
    RabbitMQ for a few seconds; set KGATEWAY_SKIP_BROKER_RESTART=1 when other test runs
    share it."""
    pika_conns = [pika.BlockingConnection(params(gw, path)) for path in PATHS]
    raw = RawClient(gw.ws_url)
    assert isinstance(raw.handshake(), A.ConnectionOpenOk)
    try:
        rabbitmq_ctl("stop")
        stopped = time.monotonic()
        for conn in pika_conns:
            with pytest.raises((pika.exceptions.ConnectionClosedByBroker,
                                pika.exceptions.StreamLostError)) as info:
                while time.monotonic() - stopped < 10:
                    conn.process_data_events(time_limit=0.5)
            if isinstance(info.value, pika.exceptions.ConnectionClosedByBroker):
                assert info.value.reply_code == A.CONNECTION_FORCED
        close = raw.method()
        assert isinstance(close, A.ConnectionClose) and close.reply_code == A.CONNECTION_FORCED
        raw.send(A.method_frame(0, A.ConnectionCloseOk()))
        raw.until_closed()
        assert raw.close_code in (1000, 1014)
        assert time.monotonic() - stopped < 10
        # while it is down: a clear, prompt refusal
        down = RawClient(gw.ws_url)
        down.send(A.PROTOCOL_HEADER)
        down.until_closed()
        assert down.close_code == 1014 and "cannot connect" in down.close_reason
    finally:
        rabbitmq_ctl("start")
    for path in PATHS:
        conn = pika.BlockingConnection(params(gw, path))
        round_trip(conn.channel())
        conn.close()
    assert gw.process.proc is not None and gw.process.proc.poll() is None
