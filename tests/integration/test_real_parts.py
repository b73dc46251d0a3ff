"""Smoke tests of the real parts that later tests build on, proving each one is real.

    pika ---> kgw1@localhost:5701 ==cluster== kgw2@localhost:5702 <--- pika      (rabbitmq_cluster)
    stomp.py -> amqA STOMP 61713 ==network bridge== amqB STOMP 61723 <- stomp.py  (activemq_network)
    raw socket -> tinyproxy 127.0.0.1:3128 (Basic auth) -- CONNECT --> echo server (http_proxy)

Each part also loses one member (SIGKILL) and gets it back, proving that the fixtures' kill
and restart work and leave the part whole for the tests after. Every wait is on an event
(a confirm, a RECEIPT, an advisory, a socket read) with a timeout; nothing sleeps.
"""

from __future__ import annotations

import base64
import os
import queue
import socket
import socketserver
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pika
import pytest
import stomp

from tests.integration.conftest import AmqBroker, AmqNetwork, HttpProxy, RabbitCluster, RabbitNode

pytestmark = pytest.mark.slow

TIMEOUT = 10.0

# The kill/restart tests take ~10 s each and disturb any other session sharing the part.
outage = pytest.mark.skipif(os.environ.get("KGATEWAY_SKIP_BROKER_RESTART") == "1",
                            reason="KGATEWAY_SKIP_BROKER_RESTART=1: others are using the parts")


def unique(prefix: str) -> str:
    return f"{prefix}.{uuid.uuid4().hex[:10]}"


# --- RabbitMQ cluster ---------------------------------------------------------------


def amqp(node: RabbitNode) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters(
        node.host, node.port, credentials=pika.PlainCredentials("guest", "guest"),
        connection_attempts=1, socket_timeout=TIMEOUT, blocked_connection_timeout=TIMEOUT))


def publish_confirmed(node: RabbitNode, queue_name: str, body: bytes) -> None:
    """Publish through `node` with confirms; mandatory, so an unroutable message (a queue
    this node's cluster does not know) raises UnroutableError instead of vanishing."""
    conn = amqp(node)
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish("", queue_name, body, mandatory=True)
    finally:
        conn.close()


def get_one(node: RabbitNode, queue_name: str) -> bytes | None:
    conn = amqp(node)
    try:
        _, _, body = conn.channel().basic_get(queue_name, auto_ack=True)
        return body
    finally:
        conn.close()


@pytest.fixture
def queue_on_kgw2(rabbitmq_cluster: RabbitCluster) -> Iterator[str]:
    """A classic queue declared through kgw2, so homed there: it stays available while
    kgw1 is down (a quorum queue would need 3 nodes for that)."""
    name = unique("kgw.smoke")
    conn = amqp(rabbitmq_cluster.node("kgw2"))
    conn.channel().queue_declare(name, durable=False, auto_delete=False)
    conn.close()
    yield name
    conn = amqp(rabbitmq_cluster.node("kgw2"))
    conn.channel().queue_delete(name)
    conn.close()


def test_a_message_published_on_kgw1_is_consumed_on_kgw2(
        rabbitmq_cluster: RabbitCluster, queue_on_kgw2: str) -> None:
    kgw1, kgw2 = rabbitmq_cluster.node("kgw1"), rabbitmq_cluster.node("kgw2")
    assert (kgw1.port, kgw2.port) == (5701, 5702)
    publish_confirmed(kgw1, queue_on_kgw2, b"from-kgw1")
    assert get_one(kgw2, queue_on_kgw2) == b"from-kgw1"
    assert get_one(kgw2, queue_on_kgw2) is None


@outage
def test_kgw2_serves_its_queue_while_kgw1_is_killed_and_kgw1_rejoins(
        rabbitmq_cluster: RabbitCluster, queue_on_kgw2: str) -> None:
    kgw1, kgw2 = rabbitmq_cluster.node("kgw1"), rabbitmq_cluster.node("kgw2")
    rabbitmq_cluster.kill("kgw1")
    try:
        with pytest.raises(pika.exceptions.AMQPConnectionError):
            amqp(kgw1)
        publish_confirmed(kgw2, queue_on_kgw2, b"while-kgw1-is-down")
        assert get_one(kgw2, queue_on_kgw2) == b"while-kgw1-is-down"
    finally:
        rabbitmq_cluster.restart("kgw1")
    # Back in the cluster: kgw1 routes to the queue homed on kgw2 again.
    publish_confirmed(kgw1, queue_on_kgw2, b"kgw1-is-back")
    assert get_one(kgw2, queue_on_kgw2) == b"kgw1-is-back"


# --- ActiveMQ network of brokers ------------------------------------------------------


class Stomp(stomp.ConnectionListener):
    """A stomp.py STOMP 1.2 client over TCP, with queues to wait on."""

    def __init__(self, broker: AmqBroker) -> None:
        self.messages: queue.Queue[Any] = queue.Queue()
        self.errors: queue.Queue[Any] = queue.Queue()
        self.receipts: set[str] = set()
        self._cond = threading.Condition()
        self.conn = stomp.Connection12([(broker.host, broker.stomp_port)],
                                       reconnect_attempts_max=1)
        self.conn.set_listener("test", self)
        self.conn.connect(wait=True)

    def on_message(self, frame: Any) -> None:
        self.messages.put(frame)

    def on_error(self, frame: Any) -> None:
        self.errors.put(frame)

    def on_receipt(self, frame: Any) -> None:
        with self._cond:
            self.receipts.add(frame.headers["receipt-id"])
            self._cond.notify_all()

    def _wait_receipt(self, rid: str) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: rid in self.receipts, TIMEOUT), \
                f"no RECEIPT {rid}; errors: {[e.body for e in self.errors.queue]}"

    def subscribe(self, dest: str, **headers: str) -> None:
        """Returns once the broker has the subscription (its RECEIPT)."""
        rid = unique("sub")
        self.conn.subscribe(dest, id=unique("id"), ack="auto", headers={"receipt": rid, **headers})
        self._wait_receipt(rid)

    def send(self, dest: str, body: str) -> None:
        rid = unique("send")
        self.conn.send(dest, body, headers={"receipt": rid})
        self._wait_receipt(rid)

    def get(self) -> Any:
        try:
            return self.messages.get(timeout=TIMEOUT)
        except queue.Empty:
            raise AssertionError(f"no MESSAGE within {TIMEOUT}s; errors: "
                                 f"{[e.body for e in self.errors.queue]}") from None

    def close(self) -> None:
        if self.conn.is_connected():
            self.conn.disconnect()


@pytest.fixture
def stomp_clients() -> Iterator[list[Stomp]]:
    made: list[Stomp] = []
    yield made
    for client in made:
        client.close()


def topic_across_the_bridge(net: AmqNetwork, clients: list[Stomp]) -> None:
    """Subscribe a topic on A, send it on B, receive it on A.

    A topic message on B is forwarded only once A's subscription has crossed the bridge
    and become a consumer on B; B announces that consumer on its advisory topic, so the
    test waits for that advisory instead of for a guessed time."""
    topic = unique("kgw.smoke.t")
    on_a, on_b, watch_b = Stomp(net.a), Stomp(net.b), Stomp(net.b)
    clients += [on_a, on_b, watch_b]
    watch_b.subscribe(f"/topic/ActiveMQ.Advisory.Consumer.Topic.{topic}")
    on_a.subscribe(f"/topic/{topic}")
    advisory = watch_b.get()
    assert int(advisory.headers["consumerCount"]) >= 1, advisory.headers
    on_b.send(f"/topic/{topic}", "sent-on-B")
    frame = on_a.get()
    assert (frame.body, frame.headers["destination"]) == ("sent-on-B", f"/topic/{topic}")


def test_a_topic_message_sent_on_b_reaches_a_subscriber_on_a(
        activemq_network: AmqNetwork, stomp_clients: list[Stomp]) -> None:
    topic_across_the_bridge(activemq_network, stomp_clients)


def test_a_queue_message_waits_on_b_until_a_consumer_appears_on_a(
        activemq_network: AmqNetwork, stomp_clients: list[Stomp]) -> None:
    dest = f"/queue/{unique('kgw.smoke.q')}"
    on_b = Stomp(activemq_network.b)
    stomp_clients.append(on_b)
    on_b.send(dest, "stored-on-B")
    on_a = Stomp(activemq_network.a)
    stomp_clients.append(on_a)
    on_a.subscribe(dest)
    assert on_a.get().body == "stored-on-B"


@outage
def test_a_serves_while_b_is_killed_and_the_bridge_returns_with_b(
        activemq_network: AmqNetwork, stomp_clients: list[Stomp]) -> None:
    activemq_network.kill("B")
    try:
        with pytest.raises(stomp.exception.ConnectFailedException):
            Stomp(activemq_network.b)
        local = Stomp(activemq_network.a)
        stomp_clients.append(local)
        dest = f"/queue/{unique('kgw.smoke.alone')}"
        local.subscribe(dest)
        local.send(dest, "A-alone")
        assert local.get().body == "A-alone"
    finally:
        activemq_network.restart("B")
    topic_across_the_bridge(activemq_network, stomp_clients)


# --- HTTP CONNECT proxy -----------------------------------------------------------------


class Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def echo_server() -> Iterator[int]:
    """A TCP echo server on 127.0.0.1; yields its port."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def connect_through(proxy: HttpProxy, port: int,
                    credentials: tuple[str, str] | None) -> tuple[socket.socket, int, bytes]:
    """Send CONNECT 127.0.0.1:port to the proxy; the socket, the status code and the head."""
    sock = socket.create_connection((proxy.host, proxy.port), timeout=TIMEOUT)
    head = f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    if credentials:
        token = base64.b64encode(":".join(credentials).encode()).decode()
        head += f"Proxy-Authorization: Basic {token}\r\n"
    sock.sendall((head + "\r\n").encode())
    reply = b""
    while b"\r\n\r\n" not in reply:
        chunk = sock.recv(4096)
        if not chunk:
            break
        reply += chunk
    return sock, int(reply.split(b" ", 2)[1]), reply


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, f"tunnel closed after {data!r}"
        data += chunk
    return data


def test_connect_with_credentials_tunnels_to_the_echo_server(
        http_proxy: HttpProxy, echo_server: int) -> None:
    sock, status, reply = connect_through(http_proxy, echo_server,
                                          (http_proxy.user, http_proxy.password))
    with sock:
        assert status == 200, reply
        payload = uuid.uuid4().bytes * 100
        sock.sendall(payload)
        assert recv_exactly(sock, len(payload)) == payload


def test_connect_without_credentials_gets_407(http_proxy: HttpProxy, echo_server: int) -> None:
    sock, status, reply = connect_through(http_proxy, echo_server, None)
    sock.close()
    assert status == 407, reply
    assert b"proxy-authenticate: basic" in reply.lower()


def test_connect_with_a_wrong_password_is_refused(http_proxy: HttpProxy,
                                                  echo_server: int) -> None:
    sock, status, reply = connect_through(http_proxy, echo_server, (http_proxy.user, "wrong"))
    sock.close()
    # tinyproxy 1.11 answers 401 here (407 only when no credentials came at all).
    assert status in (401, 407), reply
