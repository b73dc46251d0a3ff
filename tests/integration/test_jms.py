"""The jms service end to end: stomp.py over WebSocket -> real twistd gateway -> real ActiveMQ.

    stomp.WSStompConnection ---ws://127.0.0.1:PORT/jms---> twistd -n kgateway
    raw websocket-client / asyncio websockets                 |  STOMP 1.2, 1 connection
                                                              v
                                          ActiveMQ (scripts/activemq.sh), 127.0.0.1:61613

Every wait is on an event (a RECEIPT, a MESSAGE, a log line) with a timeout; nothing sleeps
to synchronise. Destination names are unique per test, so leftovers never interfere. The
broker-outage test kills and restarts ActiveMQ, so it runs last.
"""

from __future__ import annotations

import asyncio
import json
import queue
import resource
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import stomp
import websocket
import websockets

from tests.helpers import GatewayProcess, free_port, gateway_xml, service_xml
from tests.integration.conftest import activemq_ctl

pytestmark = pytest.mark.slow

TIMEOUT = 10.0


def unique(prefix: str) -> str:
    return f"{prefix}.{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def gateway(activemq: tuple[str, int]) -> Iterator[GatewayProcess]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # 1,000 WebSocket clients here and 1,000 sockets in the gateway (which inherits this).
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20000), hard))
    port, tcp_port = free_port(), free_port()
    props = ("<connection.factory.name>ConnectionFactory</connection.factory.name>"
             "<context.lookup.topic.format>dynamicTopics/%s</context.lookup.topic.format>"
             "<context.lookup.queue.format>dynamicQueues/%s</context.lookup.queue.format>"
             "<env.java.naming.factory.initial>org.apache.activemq.jndi."
             "ActiveMQInitialContextFactory</env.java.naming.factory.initial>"
             "<env.java.naming.provider.url>tcp://localhost:61616"
             "</env.java.naming.provider.url>"
             "<reconnect.delay>200ms</reconnect.delay>"
             "<reconnect.delay.maximum>1sec</reconnect.delay.maximum>"
             "<maximum.pending.bytes>256k</maximum.pending.bytes>"
             "<maximum.frame.size>256k</maximum.frame.size>"
             "<topic><name>lvc</name><cache.size>3</cache.size></topic>"
             # the dead-letter test reads the broker's DLQ: an internal destination that
             # only a rule opens (docs/jms.md "Destination rules")
             "<destination-rule><subscribe>/queue/ActiveMQ.DLQ</subscribe>"
             "</destination-rule>")
    xml = gateway_xml([service_xml("jms", [f"ws://localhost:{port}/jms",
                                           f"tcp://localhost:{tcp_port}"],
                                   f"stomp://{activemq[0]}:{activemq[1]}", name="jms",
                                   properties=props)])
    gw = GatewayProcess(xml, name="jms").start()
    gw.wait_for(r"connected to broker .*jms#1", TIMEOUT)
    gw.port = port  # type: ignore[attr-defined]
    gw.tcp_port = tcp_port  # type: ignore[attr-defined]
    yield gw
    gw.stop()
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


class Client(stomp.ConnectionListener):
    """A stomp.py STOMP 1.2 client over WebSocket, with queues to wait on."""

    def __init__(self, port: int, *, client_id: str | None = None, connect: bool = True) -> None:
        self.messages: queue.Queue[stomp.utils.Frame] = queue.Queue()
        self.errors: queue.Queue[stomp.utils.Frame] = queue.Queue()
        self.receipts: set[str] = set()
        self.disconnected = threading.Event()
        self._cond = threading.Condition()
        self.conn = stomp.WSStompConnection([("127.0.0.1", port)], ws_path="/jms", vhost="/",
                                            header={"Sec-WebSocket-Protocol": "v12.stomp"},
                                            reconnect_attempts_max=1)
        self.conn.set_listener("test", self)
        if connect:
            headers = {"client-id": client_id} if client_id else {}
            self.conn.connect(wait=True, headers=headers)

    def on_message(self, frame: Any) -> None:
        self.messages.put(frame)

    def on_error(self, frame: Any) -> None:
        self.errors.put(frame)

    def on_receipt(self, frame: Any) -> None:
        with self._cond:
            self.receipts.add(frame.headers["receipt-id"])
            self._cond.notify_all()

    def on_disconnected(self) -> None:
        self.disconnected.set()

    def wait_receipt(self, rid: str, timeout: float = TIMEOUT) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: rid in self.receipts, timeout), \
                f"no RECEIPT {rid}; errors: {list(self.errors.queue)}"

    def subscribe(self, dest: str, sid: str, ack: str = "auto", **headers: str) -> None:
        rid = unique("sub")
        self.conn.subscribe(dest, id=sid, ack=ack, headers={"receipt": rid, **headers})
        self.wait_receipt(rid)

    def send(self, dest: str, body: str | bytes, **headers: str) -> None:
        rid = unique("send")
        self.conn.send(dest, body, headers={"receipt": rid, **headers})
        self.wait_receipt(rid)

    def get(self, timeout: float = TIMEOUT) -> Any:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no MESSAGE within {timeout}s; errors: "
                                 f"{[e.headers for e in self.errors.queue]}") from None

    def nothing_more(self) -> None:
        """No message is waiting. Call it after receiving one that was sent later on the
        same path, which proves that anything sent before it has been delivered."""
        assert self.messages.empty(), self.messages.get_nowait().body

    def close(self) -> None:
        if self.conn.is_connected():
            self.conn.disconnect()


@pytest.fixture
def clients(gateway: GatewayProcess) -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for c in made:
        try:
            c.close()
        except Exception:
            pass


def new(clients: list[Client], gateway: GatewayProcess, **kw: Any) -> Client:
    c = Client(gateway.port, **kw)  # type: ignore[attr-defined]
    clients.append(c)
    return c


class Raw:
    """A raw WebSocket STOMP client for other versions and malformed input."""

    def __init__(self, port: int, protocol: str = "v12.stomp") -> None:
        self.ws = websocket.create_connection(f"ws://127.0.0.1:{port}/jms", timeout=TIMEOUT,
                                              subprotocols=[protocol])
        self.buffer = b""

    def send(self, data: bytes | str, binary: bool = False) -> None:
        if isinstance(data, str):
            data = data.encode()
        if binary:
            self.ws.send_binary(data)
        else:
            self.ws.send(data.decode())

    def frame(self) -> tuple[str, dict[str, str], bytes]:
        """The next frame (honouring content-length), skipping heart-beats."""
        while True:
            self.buffer = self.buffer.lstrip(b"\r\n")
            head_end = self.buffer.find(b"\n\n")
            if head_end >= 0:
                lines = self.buffer[:head_end].decode().split("\n")
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    headers.setdefault(k, v)
                start = head_end + 2
                if "content-length" in headers:
                    end = start + int(headers["content-length"])
                    if len(self.buffer) > end:
                        body, self.buffer = self.buffer[start:end], self.buffer[end + 1:]
                        return lines[0], headers, body
                else:
                    nul = self.buffer.find(b"\0", start)
                    if nul >= 0:
                        body, self.buffer = self.buffer[start:nul], self.buffer[nul + 1:]
                        return lines[0], headers, body
            data = self.ws.recv()
            if data == "" or data == b"":
                raise AssertionError("connection closed")
            self.buffer += data.encode() if isinstance(data, str) else data

    def expect_error_and_close(self) -> dict[str, str]:
        command, headers, body = self.frame()
        assert command == "ERROR", (command, headers, body)
        with pytest.raises(websocket.WebSocketConnectionClosedException):
            while True:
                if self.ws.recv() in ("", b""):
                    raise websocket.WebSocketConnectionClosedException()
        headers["body"] = body.decode()
        return headers

    def connect(self, version: str = "1.2") -> dict[str, str]:
        self.send(f"CONNECT\naccept-version:{version}\nhost:/\n\n\0")
        command, headers, _ = self.frame()
        assert command == "CONNECTED", headers
        return headers


# -- topics ----------------------------------------------------------------------------------


def test_topic_fanout_gives_each_client_its_own_subscription_id(gateway, clients) -> None:
    topic = f"/topic/{unique('fan')}"
    a, b, pub = new(clients, gateway), new(clients, gateway), new(clients, gateway)
    a.subscribe(topic, "alpha")
    b.subscribe(topic, "beta")
    pub.send(topic, "hello", colour="blue")
    for client, sid in ((a, "alpha"), (b, "beta")):
        m = client.get()
        assert m.body == "hello"
        assert m.headers["subscription"] == sid
        assert m.headers["destination"] == topic
        assert m.headers["colour"] == "blue"


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
def test_every_stomp_version_receives_topic_messages(gateway, clients, version: str) -> None:
    topic = f"/topic/{unique('ver')}"
    raw = Raw(gateway.port, f"v{version.replace('.', '')}.stomp")
    assert raw.connect(version)["version"] == version
    raw.send(f"SUBSCRIBE\ndestination:{topic}\nid:x\nreceipt:r1\n\n\0")
    assert raw.frame()[:2] == ("RECEIPT", {"receipt-id": "r1"})
    # A header value with ':' is escaped for 1.1/1.2 and raw for 1.0.
    new(clients, gateway).send(topic, "v", note="a:b")
    command, headers, body = raw.frame()
    assert (command, body, headers["subscription"], headers["note"]) == ("MESSAGE", b"v", "x",
                                                                        "a\\cb" if version != "1.0"
                                                                        else "a:b")
    raw.ws.close()


def test_a_plain_tcp_stomp_client_shares_the_topic(gateway, clients) -> None:
    topic = f"/topic/{unique('tcp')}"
    tcp = stomp.Connection([("127.0.0.1", gateway.tcp_port)], vhost="/")
    listener = Client.__new__(Client)
    Client.__init__(listener, gateway.port, connect=False)
    tcp.set_listener("test", listener)
    tcp.connect(wait=True)
    try:
        rid = unique("sub")
        tcp.subscribe(topic, id="t", headers={"receipt": rid})
        listener.wait_receipt(rid)
        new(clients, gateway).send(topic, "to tcp and ws alike")
        assert listener.get().body == "to tcp and ws alike"
    finally:
        tcp.disconnect()


def test_selectors_filter_per_subscriber(gateway, clients) -> None:
    topic = f"/topic/{unique('sel')}"
    red, blue, pub = new(clients, gateway), new(clients, gateway), new(clients, gateway)
    red.subscribe(topic, "r", selector="colour = 'red'")
    blue.subscribe(topic, "b", selector="colour = 'blue'")
    pub.send(topic, "r1", colour="red")
    pub.send(topic, "b1", colour="blue")
    pub.send(topic, "r2", colour="red")
    pub.send(topic, "b2", colour="blue")
    assert [red.get().body, red.get().body] == ["r1", "r2"]
    assert [blue.get().body, blue.get().body] == ["b1", "b2"]
    red.nothing_more()
    blue.nothing_more()


def test_a_selector_the_broker_rejects_is_an_error_for_that_client_only(gateway, clients) -> None:
    topic = f"/topic/{unique('badsel')}"
    ok, bad, pub = new(clients, gateway), new(clients, gateway), new(clients, gateway)
    ok.subscribe(topic, "ok")
    bad.conn.subscribe(topic, id="bad", headers={"selector": "colour = "})
    error = bad.errors.get(timeout=TIMEOUT)
    assert error.headers["message"] == "subscription refused by the broker"
    assert topic in error.body
    pub.send(topic, "still fine")
    assert ok.get().body == "still fine"


def test_last_value_cache_replays_to_a_late_subscriber(gateway, clients) -> None:
    pub, witness = new(clients, gateway), new(clients, gateway)
    witness.subscribe("/topic/lvc", "w")
    while not witness.messages.empty():  # the cache's earlier content
        witness.get()
    marker = unique("lvc")
    for i in range(5):
        pub.send("/topic/lvc", f"{marker}-{i}")
    # Once the witness has the last one, the gateway has cached all five.
    assert [witness.get().body for _ in range(5)][-1] == f"{marker}-4"
    late = new(clients, gateway)
    late.subscribe("/topic/lvc", "late")
    assert [late.get().body for _ in range(3)] == [f"{marker}-{i}" for i in (2, 3, 4)]


def test_binary_body_with_nul_survives(gateway, clients) -> None:
    topic = f"/topic/{unique('bin')}"
    raw = Raw(gateway.port)
    raw.connect()
    raw.send(f"SUBSCRIBE\ndestination:{topic}\nid:1\nreceipt:r\n\n\0")
    raw.frame()
    body = bytes(range(256))
    raw.send(f"SEND\ndestination:{topic}\ncontent-length:{len(body)}\n\n".encode() + body
             + b"\0", binary=True)
    command, headers, got = raw.frame()
    assert command == "MESSAGE" and got == body
    raw.ws.close()


# -- queues ----------------------------------------------------------------------------------


def test_queue_competing_consumers_share_the_messages(gateway, clients) -> None:
    q = f"/queue/{unique('compete')}"
    a, b, pub = new(clients, gateway), new(clients, gateway), new(clients, gateway)
    a.subscribe(q, "a")
    b.subscribe(q, "b")
    for i in range(20):
        pub.send(q, str(i))
    got = []
    while len(got) < 20:
        for c in (a, b):
            try:
                got.append(c.messages.get(timeout=0.05).body)
            except queue.Empty:
                pass
    assert sorted(got, key=int) == [str(i) for i in range(20)]
    assert a.messages.empty() and b.messages.empty()


def test_client_ack_unacked_messages_go_to_another_consumer(gateway, clients) -> None:
    q = f"/queue/{unique('unacked')}"
    pub = new(clients, gateway)
    for i in range(5):
        pub.send(q, str(i), persistent="true")
    first = new(clients, gateway)
    first.subscribe(q, "1", ack="client")
    received = [first.get() for _ in range(5)]
    # Cumulative ack of the first two only; then vanish without acking the rest.
    rid = unique("ack")
    first.conn.ack(received[1].headers["ack"], receipt=rid)
    first.wait_receipt(rid)
    first.close()
    second = new(clients, gateway)
    second.subscribe(q, "2", ack="client-individual")
    again = [second.get() for _ in range(3)]
    assert [m.body for m in again] == ["2", "3", "4"]
    assert all(m.headers.get("redelivered") == "true" for m in again)
    for m in again:
        second.conn.ack(m.headers["ack"])
    second.nothing_more()


def test_client_individual_nack_sends_to_the_dead_letter_queue(gateway, clients) -> None:
    """ActiveMQ treats a STOMP NACK as a poison ack: the message goes to ActiveMQ.DLQ."""
    q = f"/queue/{unique('nack')}"
    tag = unique("nacked")
    c = new(clients, gateway)
    c.subscribe(q, "n", ack="client-individual")
    c.send(q, "keep", kgwtest=tag)
    c.send(q, "poison", kgwtest=tag, persistent="true")
    keep, poison = c.get(), c.get()
    c.conn.ack(keep.headers["ack"])
    c.conn.nack(poison.headers["ack"])
    dlq = new(clients, gateway)
    dlq.subscribe("/queue/ActiveMQ.DLQ", "dlq", selector=f"kgwtest = '{tag}'")
    dead = dlq.get()
    assert dead.body == "poison"
    dlq.nothing_more()


def test_request_reply_with_a_temp_queue(gateway, clients) -> None:
    service_q = f"/queue/{unique('rpc')}"
    server, requester, other = (new(clients, gateway), new(clients, gateway),
                                new(clients, gateway))
    server.subscribe(service_q, "srv")
    requester.subscribe("/temp-queue/replies", "rep")
    other.subscribe("/temp-queue/replies", "rep")  # same name, another client: separate
    requester.send(service_q, "ping", **{"reply-to": "/temp-queue/replies"})
    request = server.get()
    reply_to = request.headers["reply-to"]
    assert reply_to.startswith("/queue/kgw.tmp."), reply_to
    server.send(reply_to, "pong")
    reply = requester.get()
    assert reply.body == "pong"
    assert reply.headers["destination"] == "/temp-queue/replies"
    other.nothing_more()


# -- transactions ------------------------------------------------------------------------------


def test_transactions_commit_delivers_and_abort_discards(gateway, clients) -> None:
    q = f"/queue/{unique('tx')}"
    c, sub = new(clients, gateway), new(clients, gateway)
    sub.subscribe(q, "s")
    tx = c.conn.begin()
    c.conn.send(q, "rolled back", transaction=tx)
    rid = unique("abort")
    c.conn.abort(tx, headers={"receipt": rid})
    c.wait_receipt(rid)
    tx = c.conn.begin()
    c.conn.send(q, "committed", transaction=tx)
    rid = unique("commit")
    c.conn.commit(tx, headers={"receipt": rid})
    c.wait_receipt(rid)
    assert sub.get().body == "committed"
    sub.nothing_more()


def test_an_open_transaction_is_aborted_when_its_client_disconnects(gateway, clients) -> None:
    q = f"/queue/{unique('txgone')}"
    c, sub = new(clients, gateway), new(clients, gateway)
    tx = c.conn.begin()
    c.conn.send(q, "never", transaction=tx)
    c.send(q, "marker")  # receipted, so the transactional SEND reached the broker first
    c.close()
    sub.subscribe(q, "s")
    assert sub.get().body == "marker"
    sub.send(q, "after")
    assert sub.get().body == "after"


def test_commit_of_an_unknown_transaction_is_an_error(gateway, clients) -> None:
    c = new(clients, gateway)
    c.conn.commit("nope")
    error = c.errors.get(timeout=TIMEOUT)
    assert error.headers["message"] == "unknown transaction"
    assert c.disconnected.wait(TIMEOUT)


# -- durable subscriptions ---------------------------------------------------------------------


def test_durable_subscription_keeps_messages_across_a_reconnect(gateway, clients) -> None:
    topic = f"/topic/{unique('durable')}"
    name = unique("sub")
    cid = unique("client")
    c = new(clients, gateway, client_id=cid)
    c.subscribe(topic, "d", **{"activemq.subscriptionName": name})
    c.close()
    pub = new(clients, gateway)
    pub.send(topic, "while away", persistent="true")
    back = new(clients, gateway, client_id=cid)
    back.subscribe(topic, "d", **{"activemq.subscriptionName": name})
    m = back.get()
    assert m.body == "while away" and m.headers["destination"] == topic
    # Remove the durable subscription for good.
    rid = unique("unsub")
    back.conn.unsubscribe("d", headers={"activemq.subscriptionName": name, "receipt": rid})
    back.wait_receipt(rid)


def test_durable_subscription_without_client_id_is_refused(gateway, clients) -> None:
    c = new(clients, gateway)
    c.conn.subscribe(f"/topic/{unique('d')}", id="d",
                     headers={"activemq.subscriptionName": "x"})
    assert "client-id" in c.errors.get(timeout=TIMEOUT).headers["message"]


def test_two_clients_with_one_client_id_the_second_is_refused(gateway, clients) -> None:
    cid = unique("dup")
    new(clients, gateway, client_id=cid)
    raw = Raw(gateway.port)
    raw.send(f"CONNECT\naccept-version:1.2\nhost:/\nclient-id:{cid}\n\n\0")
    error = raw.expect_error_and_close()
    assert error["message"] == "broker refused the connection"
    assert cid in error["body"]


# -- bad input ------------------------------------------------------------------------------------


def test_malformed_frame_gets_error_then_close(gateway) -> None:
    raw = Raw(gateway.port)
    raw.connect()
    raw.send("SEND\ndestination\n\nx\0")
    assert raw.expect_error_and_close()["message"] == "malformed header"


def test_unknown_command_gets_error_then_close(gateway) -> None:
    raw = Raw(gateway.port)
    raw.connect()
    raw.send("FROB\n\n\0")
    assert raw.expect_error_and_close()["message"] == "unknown command"


def test_bad_destination_gets_error_then_close(gateway) -> None:
    raw = Raw(gateway.port)
    raw.connect()
    raw.send("SUBSCRIBE\ndestination:/exchange/x\nid:1\nreceipt:r\n\n\0")
    error = raw.expect_error_and_close()
    assert error["message"] == "bad destination" and error["receipt-id"] == "r"
    assert "/topic/NAME" in error["body"]


def test_oversize_frame_gets_error_then_close(gateway) -> None:
    raw = Raw(gateway.port)
    raw.connect()
    raw.send(b"SEND\ndestination:/queue/big\n\n" + b"x" * (300 * 1024) + b"\0", binary=True)
    error = raw.expect_error_and_close()
    assert error["message"] == "frame too large"


def test_frame_before_connect_is_refused(gateway) -> None:
    raw = Raw(gateway.port)
    raw.send("SUBSCRIBE\ndestination:/topic/x\nid:1\n\n\0")
    assert raw.expect_error_and_close()["message"] == "not connected"


def test_unsupported_version_is_refused(gateway) -> None:
    raw = Raw(gateway.port)
    raw.send("CONNECT\naccept-version:2.0\nhost:/\n\n\0")
    error = raw.expect_error_and_close()
    assert error["message"] == "unsupported STOMP version"


def test_slow_consumer_is_disconnected_and_others_get_everything(gateway, clients) -> None:
    topic = f"/topic/{unique('slow')}"
    slow = Raw(gateway.port)
    slow.connect()
    slow.send(f"SUBSCRIBE\ndestination:{topic}\nid:s\nreceipt:r\n\n\0")
    slow.frame()
    slow.ws.sock.setsockopt(__import__("socket").SOL_SOCKET,
                            __import__("socket").SO_RCVBUF, 4096)
    fast = new(clients, gateway)
    fast.subscribe(topic, "f")
    pub = new(clients, gateway)
    body = "x" * 60_000
    count = 200  # 12 MB: far beyond socket buffers plus 2 x maximum.pending.bytes
    mark = gateway.mark()
    # In rounds of four, so the fast reader (Python too) is never 256 KiB behind.
    for i in range(0, count, 4):
        for j in range(i, i + 4):
            pub.conn.send(topic, body, headers={"n": str(j)})
        for j in range(i, i + 4):
            assert fast.get().headers["n"] == str(j)
    gateway.wait_for("ERROR slow consumer", TIMEOUT, start=mark)
    # The slow client finally reads: its backlog, then the ERROR saying why and the close;
    # or, if the close handshake timed out while it was not reading, a dropped connection.
    ended = None
    try:
        while True:
            command, headers, _ = slow.frame()
            if command == "ERROR":
                ended = headers["message"]
                break
    except (AssertionError, ConnectionError, websocket.WebSocketException):
        ended = "dropped"
    assert ended in ("slow consumer", "dropped")


# -- 1,000 subscribers -------------------------------------------------------------------------------


def broker_consumer_count(physical: str) -> int:
    """ActiveMQ's own count of consumers on a destination (statistics plugin, over STOMP)."""
    reply = f"/queue/{unique('kgw.stats')}"
    c = stomp.Connection([("127.0.0.1", 61613)])
    got: queue.Queue[Any] = queue.Queue()

    class L(stomp.ConnectionListener):
        def on_message(self, frame: Any) -> None:
            got.put(frame)

    c.set_listener("l", L())
    c.connect(wait=True)
    try:
        c.subscribe(reply, id="1", ack="auto", headers={"transformation": "jms-map-json"})
        c.send(f"/topic/ActiveMQ.Statistics.Destination.{physical}", "",
               headers={"reply-to": reply})
        frame = got.get(timeout=TIMEOUT)
    finally:
        c.disconnect()
    # {"map": {"entry": [{"string": "consumerCount", "long": 1}, ...]}}
    for entry in json.loads(frame.body)["map"]["entry"]:
        if entry.get("string") == "consumerCount":
            return int(next(v for k, v in entry.items() if k != "string"))
    raise AssertionError(f"no consumerCount in {frame.body[:500]}")


async def _subscriber(port: int, topic: str, ready: asyncio.Queue[int], expect: int,
                      done: list[int]) -> None:
    async with websockets.connect(f"ws://127.0.0.1:{port}/jms", subprotocols=["v12.stomp"],
                                  open_timeout=30, max_queue=None) as ws:
        await ws.send("CONNECT\naccept-version:1.2\nhost:/\n\n\0")
        await ws.send(f"SUBSCRIBE\ndestination:{topic}\nid:1\nreceipt:r\n\n\0")
        seen = 0
        got_receipt = False
        async for data in ws:
            text = data if isinstance(data, str) else data.decode()
            for frame in text.split("\0"):
                frame = frame.lstrip("\n")
                if frame.startswith("RECEIPT"):
                    got_receipt = True
                    await ready.put(1)
                elif frame.startswith("MESSAGE"):
                    assert got_receipt
                    seen += 1
            if seen >= expect:
                done.append(seen)
                return


def test_thousand_subscribers_one_broker_subscription(gateway) -> None:
    topic_name = unique("thousand")
    topic = f"/topic/{topic_name}"
    n, messages = 1000, 20

    async def run() -> tuple[list[int], int]:
        ready: asyncio.Queue[int] = asyncio.Queue()
        done: list[int] = []
        tasks = [asyncio.create_task(_subscriber(gateway.port, topic, ready, messages, done))
                 for _ in range(n)]
        for _ in range(n):
            await asyncio.wait_for(ready.get(), 60)
        count = await asyncio.to_thread(broker_consumer_count, topic_name)
        async with websockets.connect(f"ws://127.0.0.1:{gateway.port}/jms",
                                      subprotocols=["v12.stomp"]) as pub:
            await pub.send("CONNECT\naccept-version:1.2\nhost:/\n\n\0")
            for i in range(messages):
                await pub.send(f"SEND\ndestination:{topic}\n\nmessage {i}\0")
            await pub.send("SEND\ndestination:/queue/x\nreceipt:done\n\nx\0")
            await asyncio.wait_for(asyncio.gather(*tasks), 120)
        return done, count

    started = time.monotonic()
    done, consumers = asyncio.run(run())
    assert len(done) == n and all(seen == messages for seen in done)
    assert consumers == 1, f"the broker sees {consumers} consumers on {topic}"
    print(f"1000 subscribers x {messages} messages in {time.monotonic() - started:.1f}s")


# -- broker outage (kills the shared broker: keep last) -------------------------------------------


def test_zz_broker_killed_and_restarted(gateway, clients) -> None:
    topic = f"/topic/{unique('outage')}"
    q = f"/queue/{unique('outageq')}"
    sub, pub = new(clients, gateway), new(clients, gateway)
    sub.subscribe(topic, "t")
    for i in range(5):
        pub.send(q, f"persistent {i}", persistent="true")
    consumer = new(clients, gateway)
    consumer.subscribe(q, "q", ack="client-individual")
    before = [consumer.get() for _ in range(5)]
    consumer.conn.ack(before[0].headers["ack"])  # one acked; four unacked at the kill
    rid = unique("flush")
    consumer.conn.send(f"/queue/{unique('flush')}", "x", headers={"receipt": rid})
    consumer.wait_receipt(rid)
    mark = gateway.mark()
    activemq_ctl("kill")
    gateway.wait_for("lost broker", TIMEOUT, start=mark)
    # A receipted SEND during the outage waits for the broker, then gets its RECEIPT.
    pending_rid = unique("during")
    pub.conn.send(topic, "sent during the outage", headers={"receipt": pending_rid})
    activemq_ctl("start")
    gateway.wait_for("connected to broker .*jms#1", 30, start=mark)
    pub.wait_receipt(pending_rid, 30)
    assert sub.get().body == "sent during the outage"
    pub.send(topic, "after restart")
    assert sub.get().body == "after restart"
    # The four unacked persistent messages come back; none is lost.
    bodies = {consumer.get(30).body for _ in range(4)}
    assert bodies == {f"persistent {i}" for i in range(1, 5)}
    assert sub.conn.is_connected() and consumer.conn.is_connected()
