"""Soak run: every service type of one real gateway under a churning mixed load for N minutes.

    .venv/bin/python -m bench.soak --minutes 60        (make soak MINUTES=60)
    .venv/bin/python -m bench.soak --seconds 20        (the integration test's short run)

One ``twistd -n kgateway`` with, on one HTTP port:

    /echo     echo (ws)
    /proxy    proxy ws -> tcp, to an echo back end this driver runs (asyncio, in process)
    /amqp     amqp.proxy -> RabbitMQ 127.0.0.1:5672 (also a tcp accept; a tcp -> ws proxy
              "front" gives pika the WebSocket path)
    /jms      jms -> ActiveMQ STOMP 127.0.0.1:61613
    /metrics  metrics, scraped by the sampler

The load, all of it churning (clients connect, do a little, leave):

* echo and proxy clients (websockets): a few messages of 10 B..70 kB each, every byte checked;
* amqp publishers with publisher confirms and consumers with manual ack and a random
  prefetch (pika BlockingConnection threads, half over tcp, half over the WebSocket path);
  a consumer sometimes leaves with a message unacknowledged (RabbitMQ requeues it);
* jms: a topic publisher and churning topic subscribers that each publish a few messages of
  their own and must get them back, one long-lived topic witness that must get every
  receipted topic message; a queue producer (persistent, receipted) and client-individual
  queue consumers that sometimes leave with messages unacknowledged or vanish without
  DISCONNECT (ActiveMQ redelivers);
* misbehaving clients: half a WebSocket frame then a close of the socket (FIN), a drop with
  RST and no close frame, half an AMQP frame, half an HTTP upgrade request.

Every message is counted: for confirmed (AMQP) and receipted (STOMP) messages the driver
keeps the ids sent and received; lost = sent - received after a drain, and must be 0.
Duplicates are counted too, and those not flagged redelivered separately. Every
``--sample-interval`` (10 s) the sampler records the gateway's RSS (/proc/PID/status),
open fds (/proc/PID/fd), CPU (/proc/PID/stat) against the driver's own (os.times: every
thread of this process, back end included), the gateway's gauges from its /metrics, its heap
(Python's allocated blocks, gc objects, glibc malloc in use and free: bench/soak_site, off
with --no-introspect) and the consumer count of the soak queue at RabbitMQ (a passive
queue.declare: rabbitmqctl costs ~0.5 s of CPU per call, too much every 10 s on 2 cores).
ActiveMQ's consumer counts are not sampled (the gateway's kgateway_jms_broker_subscriptions
stands for its topic side).

``--tracemalloc``: the gateway starts with bench/soak_site on its PYTHONPATH (a
sitecustomize that starts tracing and dumps snapshots when asked through a FIFO, see
there): tracing starts with the load (25 frames), a first snapshot is taken once the load
is warm (a tenth of the run, 5 s to 5 min), the last one after the drain, all without
touching kgateway/; the top differences by line go into the report. Tracing slows the
gateway and adds to its RSS: compare slopes only between runs of the same mode.

Ctrl-C (or SIGTERM) ends the load early: the drain and the report follow as after a full
run, marked "interrupted"; a second Ctrl-C aborts.

Writes bench/out/soak.json, soak.md (samples table, totals, lost and duplicate counts, fds
and RSS start/peak/end, RSS slope in MiB/h over the second half) and soak.png (RSS and fds
over time, matplotlib from the bench extra; skipped with a note if it is missing).
``--out DIR`` writes there instead (the test uses a temporary folder).

STOMP frames are built and split by hand here (parsed by stomp.py's ``parse_frame``):
stomp.py's own WebSocket transport runs a thread per connection, too heavy for a driver that
opens a few connections a second and must stay light next to the gateway it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pika
import pika.exceptions
import stomp.utils
import websockets
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection, connect
from websockets.frames import Frame, Opcode
from websockets.typing import Subprotocol

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.common import OUT, machine  # noqa: E402
from tests.helpers import GatewayProcess, free_port, gateway_xml, service_xml  # noqa: E402

RABBITMQ = ("127.0.0.1", 5672)
ACTIVEMQ = ("127.0.0.1", 61613)
STOMP12 = Subprotocol("v12.stomp")
TIMEOUT = 30.0
FLOWS = ("amqp", "jms.queue", "jms.topic", "jms.topic.own")
ACKED = ("amqp", "jms.queue")  # consumed for good only once acknowledged
CLIENT_SERVICES = ("echo", "proxy", "amqp", "front", "jms")
WS_ERRORS = (OSError, TimeoutError, websockets.WebSocketException, ConnectionError)


# -- the ledger: every message sent and received ---------------------------------------------


class Ledger:
    """Counts and message ids, shared by the asyncio tasks and the pika threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: collections.Counter[str] = collections.Counter()
        self.sent: dict[str, set[str]] = {flow: set() for flow in FLOWS}
        self.received: dict[str, collections.Counter[str]] = {
            flow: collections.Counter() for flow in FLOWS}
        self.acks: dict[str, set[str]] = {flow: set() for flow in ACKED}
        self.duplicates_not_redelivered = collections.Counter[str]()
        self.unflagged: list[dict[str, Any]] = []  # the first duplicates not flagged
        self.errors: collections.Counter[str] = collections.Counter()
        self.error_examples: dict[str, str] = {}

    def count(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.counts[name] += n

    def confirmed(self, flow: str, mid: str) -> None:
        with self.lock:
            self.sent[flow].add(mid)

    def got(self, flow: str, mid: str, redelivered: bool = False) -> None:
        with self.lock:
            received = self.received[flow]
            if received[mid] and not redelivered:
                self.duplicates_not_redelivered[flow] += 1
                if len(self.unflagged) < 20:
                    self.unflagged.append({"flow": flow, "id": mid, "deliveries": received[mid],
                                           "acked_before": mid in self.acks.get(flow, ())})
            received[mid] += 1

    def acked(self, flow: str, mid: str) -> None:
        with self.lock:
            self.acks[flow].add(mid)

    def _done(self, flow: str) -> set[str] | collections.Counter[str]:
        return self.acks[flow] if flow in self.acks else self.received[flow]

    def error(self, where: str, exc: BaseException) -> None:
        key = f"{where}: {type(exc).__name__}"
        with self.lock:
            self.errors[key] += 1
            self.error_examples.setdefault(key, str(exc)[:200])

    def missing(self, flow: str) -> int:
        with self.lock:
            done = self._done(flow)
            return sum(1 for mid in self.sent[flow] if mid not in done)

    def totals(self) -> dict[str, dict[str, int | None]]:
        with self.lock:
            out: dict[str, dict[str, int | None]] = {}
            for flow in FLOWS:
                sent, received, done = self.sent[flow], self.received[flow], self._done(flow)
                out[flow] = {
                    "confirmed_sent": len(sent),
                    "received": sum(received.values()),
                    "received_unique": len(received),
                    "duplicates": sum(received.values()) - len(received),
                    "duplicates_not_redelivered": self.duplicates_not_redelivered[flow],
                    "acked": len(self.acks[flow]) if flow in self.acks else None,
                    "lost": sum(1 for mid in sent if mid not in done),
                    "received_unconfirmed": sum(1 for mid in received if mid not in sent),
                }
            return out


def mid() -> str:
    return uuid.uuid4().hex


async def pause(stop: asyncio.Event, seconds: float) -> None:
    """Pace the load (not a synchronisation): wait *seconds* or until *stop*."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass


# -- echo and proxy --------------------------------------------------------------------------


async def echo_back_end() -> tuple[asyncio.Server, int]:
    """The proxy service's back end: a TCP echo server in this process."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def echo_clients(name: str, url: str, ledger: Ledger, stop: asyncio.Event,
                       rng: random.Random, pace: float) -> None:
    """Connect, send 1-20 messages and check every byte comes back, leave; again."""
    sizes = (10, 200, 4000, 70000)
    while not stop.is_set():
        try:
            async with connect(url, max_size=None, ping_interval=None, open_timeout=TIMEOUT,
                               close_timeout=5) as ws:
                ledger.count(f"{name}.connections")
                for _ in range(rng.randint(1, 20)):
                    payload = rng.randbytes(rng.choice(sizes))
                    if name == "echo" and rng.random() < 0.5:
                        await ws.send(payload.hex())
                        expected: bytes = payload.hex().encode()
                    else:
                        await ws.send(payload)
                        expected = payload
                    ledger.count(f"{name}.sent")
                    back = b""
                    while len(back) < len(expected):  # a tcp back end may split it
                        data = await asyncio.wait_for(ws.recv(), TIMEOUT)
                        back += data.encode() if isinstance(data, str) else data
                    ledger.count(f"{name}.echoed" if back == expected else f"{name}.corrupt")
        except WS_ERRORS as e:
            ledger.error(name, e)
        await pause(stop, pace * rng.uniform(0.5, 1.5))


# -- STOMP over WebSocket ------------------------------------------------------------------


class Stomp:
    """A STOMP 1.2 client over one WebSocket: frames out, a reader task dispatching in."""

    def __init__(self, ws: ClientConnection,
                 on_message: Callable[[stomp.utils.Frame], None] | None = None) -> None:
        self.ws = ws
        self.on_message = on_message
        self.buffer = b""
        self.receipts: set[str] = set()
        self.errors: list[str] = []
        self.closed = False
        self.changed = asyncio.Condition()
        self.connected = asyncio.get_running_loop().create_future()
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url: str,
                   on_message: Callable[[stomp.utils.Frame], None] | None = None,
                   heartbeat_ms: int = 0) -> Stomp:
        """Connect; ``heartbeat_ms`` is how often this client offers to send heart-beats
        (the caller sends them: see ``beat``), 0 for none."""
        ws = await connect(url, subprotocols=[STOMP12], max_size=None, ping_interval=None,
                           open_timeout=TIMEOUT, close_timeout=5)
        client = cls(ws, on_message)
        try:
            await client.send("CONNECT", {"accept-version": "1.2", "host": "/",
                                          "heart-beat": f"{heartbeat_ms},0"})
            await asyncio.wait_for(asyncio.shield(client.connected), TIMEOUT)
        except BaseException:
            client.ws.transport.abort()
            await client.reader
            raise
        return client

    async def beat(self, every: float, stop: asyncio.Event) -> None:
        """Send a heart-beat (an EOL) every ``every`` seconds until stop or close."""
        while True:
            await pause(stop, every)
            if stop.is_set() or self.closed:
                return
            try:
                await self.ws.send("\n")
            except websockets.ConnectionClosed:
                return

    async def send(self, command: str, headers: dict[str, str], body: str = "") -> None:
        head = "".join(f"{k}:{v}\n" for k, v in headers.items())
        await self.ws.send(f"{command}\n{head}\n{body}\0")

    async def request(self, command: str, headers: dict[str, str], body: str = "") -> bool:
        """Send a frame with a receipt; True once the RECEIPT came, False if it did not."""
        rid = mid()
        await self.send(command, {**headers, "receipt": rid}, body)
        async with self.changed:
            try:
                await asyncio.wait_for(self.changed.wait_for(
                    lambda: rid in self.receipts or self.closed or bool(self.errors)), TIMEOUT)
            except TimeoutError:
                return False
            if rid in self.receipts:
                self.receipts.discard(rid)
                return True
            return False

    async def until(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Wait for a condition the reader changes (a message counted); False at timeout."""
        async with self.changed:
            try:
                await asyncio.wait_for(self.changed.wait_for(
                    lambda: condition() or self.closed), timeout)
            except TimeoutError:
                return False
        return condition()

    async def _read(self) -> None:
        try:
            async for data in self.ws:
                self.buffer += data.encode() if isinstance(data, str) else data
                while (nul := self.buffer.find(b"\0")) >= 0:
                    raw, self.buffer = self.buffer[:nul].lstrip(b"\r\n"), self.buffer[nul + 1:]
                    if raw:
                        self._dispatch(stomp.utils.parse_frame(raw))
                async with self.changed:
                    self.changed.notify_all()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed = True
            if not self.connected.done():
                self.connected.set_exception(ConnectionError("closed before CONNECTED"))
            async with self.changed:
                self.changed.notify_all()

    def _dispatch(self, frame: stomp.utils.Frame) -> None:
        if frame.cmd == "CONNECTED" and not self.connected.done():
            self.connected.set_result(None)
        elif frame.cmd == "MESSAGE" and self.on_message:
            self.on_message(frame)
        elif frame.cmd == "RECEIPT":
            self.receipts.add(frame.headers["receipt-id"])
        elif frame.cmd == "ERROR":
            self.errors.append(frame.headers.get("message", "ERROR"))
            if not self.connected.done():
                self.connected.set_exception(ConnectionError(self.errors[-1]))

    async def leave(self, rng: random.Random, ledger: Ledger, where: str) -> None:
        """DISCONNECT with a receipt, or vanish: a closed socket with no close frame."""
        how = rng.choice(("disconnect", "disconnect", "close", "vanish"))
        ledger.count(f"{where}.leave.{how}")
        try:
            if how == "disconnect" and not self.closed:
                await self.request("DISCONNECT", {})
            if how == "vanish":
                self.ws.transport.abort()
            await self.ws.close()
        except WS_ERRORS as e:
            ledger.error(where, e)
        await self.reader


async def producer(url: str, destination: str, flow: str, ledger: Ledger,
                   stop: asyncio.Event, rng: random.Random, rate: float,
                   headers: dict[str, str] | None = None) -> None:
    """Receipted SENDs to one destination, 20-200 per connection, counted in ``flow``."""
    while not stop.is_set():
        try:
            client = await Stomp.open(url)
            for _ in range(rng.randint(20, 200)):
                if stop.is_set() or client.closed:
                    break
                m = mid()
                if await client.request("SEND", {"destination": destination,
                                                 **(headers or {})}, m):
                    ledger.confirmed(flow, m)
                else:
                    ledger.count(f"{flow}.unreceipted")
                await pause(stop, 1 / rate)
            await client.leave(rng, ledger, f"{flow}.producer")
        except WS_ERRORS as e:
            ledger.error(f"{flow}.producer", e)
            await pause(stop, 1)


async def topic_witness(url: str, topic: str, ledger: Ledger, ready: asyncio.Event,
                        done: asyncio.Event) -> None:
    """Subscribed for the whole run: must receive every receipted topic message. It sends
    heart-beats as a long-lived client must: the jms service closes a client it has not
    heard from for idle.timeout (10 min by default), heart-beat 0,0 or not."""
    every = 10.0
    client = await Stomp.open(url, lambda f: ledger.got("jms.topic", f.body.decode()),
                              heartbeat_ms=int(every * 1000))
    if not await client.request("SUBSCRIBE", {"destination": topic, "id": "w", "ack": "auto"}):
        raise RuntimeError(f"topic witness: no RECEIPT for SUBSCRIBE {client.errors}")
    ready.set()
    beating = asyncio.create_task(client.beat(every, done))
    await done.wait()
    await beating
    if client.closed:  # the gateway closed it: say why (its ERROR frame) in the report
        ledger.count("jms.topic.witness_dropped")
        ledger.error("jms.topic.witness", ConnectionError("; ".join(client.errors)
                                                          or "closed without an ERROR"))
    await client.ws.close()
    await client.reader


async def topic_subscriber(url: str, topic: str, ledger: Ledger, rng: random.Random) -> None:
    """Subscribe, publish 1-5 messages of one's own, get them all back, leave."""
    own: set[str] = set()
    got: set[str] = set()

    def on_message(frame: stomp.utils.Frame) -> None:
        body = frame.body.decode()
        got.add(body)
        ledger.count("jms.topic.subscriber_received")
        if body in own:
            ledger.got("jms.topic.own", body)

    client = await Stomp.open(url, on_message)
    ledger.count("jms.topic.subscriber_connections")
    if await client.request("SUBSCRIBE", {"destination": topic, "id": "1"}):
        for _ in range(rng.randint(1, 5)):
            m = mid()
            own.add(m)  # before the SEND: its MESSAGE may beat the RECEIPT
            if await client.request("SEND", {"destination": topic}, m):
                ledger.confirmed("jms.topic", m)
                ledger.confirmed("jms.topic.own", m)
        await client.until(lambda: own <= got, TIMEOUT)
    await client.leave(rng, ledger, "jms.topic.subscriber")


async def queue_consumer(url: str, queue: str, ledger: Ledger, rng: random.Random) -> None:
    """A client-individual consumer: take 5-40 messages (or until 2 s of silence), ACK them
    all or leave the last one unacknowledged, UNSUBSCRIBE and go (maybe without DISCONNECT);
    anything it did not ACK, ActiveMQ redelivers to another."""
    want = rng.randint(5, 40)
    ack_last = rng.random() < 0.7
    taken: list[stomp.utils.Frame] = []

    def on_message(frame: stomp.utils.Frame) -> None:
        taken.append(frame)
        ledger.got("jms.queue", frame.body.decode(), frame.headers.get("redelivered") == "true")

    client = await Stomp.open(url, on_message)
    ledger.count("jms.queue.consumer_connections")
    handled = 0

    def more() -> bool:
        return len(taken) > handled

    if await client.request("SUBSCRIBE", {"destination": queue, "id": "1",
                                          "ack": "client-individual"}):
        while handled < want and not client.closed:
            if not await client.until(more, 2.0):
                break  # silence: the queue is empty for now
            for frame in taken[handled:]:
                handled += 1
                if handled == want and not ack_last:
                    ledger.count("jms.queue.left_unacked")
                else:
                    await client.send("ACK", {"id": frame.headers["ack"]})
                    ledger.acked("jms.queue", frame.body.decode())
                if handled >= want:
                    break
        if not client.closed:
            await client.request("UNSUBSCRIBE", {"id": "1"})
    await client.leave(rng, ledger, "jms.queue.consumer")


async def churning(client: Callable[[str, str, Ledger, random.Random], Awaitable[None]],
                   where: str, url: str, destination: str, ledger: Ledger,
                   stop: asyncio.Event, rng: random.Random, pace: float) -> None:
    """One STOMP client after another (a subscriber, a consumer) until stop, ~pace s apart."""
    while not stop.is_set():
        try:
            await client(url, destination, ledger, rng)
        except WS_ERRORS as e:
            ledger.error(where, e)
        await pause(stop, pace * rng.uniform(0.5, 1.5))


# -- AMQP (pika, threads) ------------------------------------------------------------------


def amqp_parameters(port: int) -> pika.ConnectionParameters:
    return pika.ConnectionParameters("127.0.0.1", port, heartbeat=0, connection_attempts=1,
                                     socket_timeout=10, blocked_connection_timeout=TIMEOUT)


def amqp_publisher(ports: list[int], queue: str, ledger: Ledger, halt: threading.Event,
                   rng: random.Random, rate: float) -> None:
    """Confirmed publishes, 20-200 per connection, through tcp or the WebSocket path."""
    while not halt.is_set():
        try:
            conn = pika.BlockingConnection(amqp_parameters(rng.choice(ports)))
            ledger.count("amqp.publisher_connections")
            ch = conn.channel()
            ch.confirm_delivery()
            for _ in range(rng.randint(20, 200)):
                if halt.is_set():
                    break
                m = mid()
                try:
                    ch.basic_publish("", queue, m.encode(),
                                     pika.BasicProperties(message_id=m, delivery_mode=2),
                                     mandatory=True)
                    ledger.confirmed("amqp", m)
                except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as e:
                    ledger.error("amqp.publisher", e)
                conn.sleep(1 / rate)  # pacing the load, pika serving its socket meanwhile
            conn.close()
        except pika.exceptions.AMQPError as e:
            ledger.error("amqp.publisher", e)
            halt.wait(1)


def amqp_consumer(ports: list[int], queue: str, ledger: Ledger, halt: threading.Event,
                  rng: random.Random) -> None:
    """Manual-ack consumers that stay 1-6 s; a third leave their last message unacked."""
    while not halt.is_set():
        try:
            conn = pika.BlockingConnection(amqp_parameters(rng.choice(ports)))
            ledger.count("amqp.consumer_connections")
            ch = conn.channel()
            ch.basic_qos(prefetch_count=rng.choice((1, 10, 50)))
            leave_unacked = rng.random() < 0.33
            until = time.monotonic() + rng.uniform(1, 6)
            for method, _props, body in ch.consume(queue, inactivity_timeout=0.5):
                if method is not None:
                    ledger.got("amqp", body.decode(), method.redelivered)
                    last = time.monotonic() > until or halt.is_set()
                    if last and leave_unacked:
                        ledger.count("amqp.left_unacked")
                    else:
                        ch.basic_ack(method.delivery_tag)
                        ledger.acked("amqp", body.decode())
                if time.monotonic() > until or halt.is_set():
                    break
            if not leave_unacked:
                ch.cancel()
            conn.close()
        except pika.exceptions.AMQPError as e:
            ledger.error("amqp.consumer", e)
            halt.wait(1)


# -- misbehaving clients ------------------------------------------------------------------


def half_frame(size: int) -> bytes:
    frame = Frame(Opcode.BINARY, os.urandom(size)).serialize(mask=True, extensions=[])
    return frame[:len(frame) // 2]


async def misbehaving(http: int, amqp_tcp: int, ledger: Ledger, stop: asyncio.Event,
                      rng: random.Random, pace: float) -> None:
    """Clients that leave the gateway with half a frame or a socket gone without a close."""
    paths = {"echo": None, "proxy": None, "jms": STOMP12, "amqp": Subprotocol("amqp")}
    while not stop.is_set():
        kind = rng.choice(("ws-half-frame", "ws-drop-fin", "ws-drop-rst", "amqp-half-frame",
                           "http-half-upgrade"))
        path = rng.choice(list(paths))
        try:
            if kind.startswith("ws-"):
                protocol = paths[path]
                ws = await connect(f"ws://127.0.0.1:{http}/{path}", ping_interval=None,
                                   open_timeout=TIMEOUT, close_timeout=1,
                                   subprotocols=[protocol] if protocol else None)
                if kind == "ws-half-frame":
                    ws.transport.write(half_frame(rng.choice((10, 300, 5000))))
                if kind == "ws-drop-rst":
                    sock = ws.transport.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                    struct.pack("ii", 1, 0))
                ws.transport.abort()
                await ws.wait_closed()
                kind = f"{kind}.{path}"
            else:
                port = amqp_tcp if kind == "amqp-half-frame" else http
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", port), TIMEOUT)
                if kind == "amqp-half-frame":
                    writer.write(b"AMQP\x00\x00\x09\x01")
                    await asyncio.wait_for(reader.read(1), TIMEOUT)  # Connection.Start began
                    writer.write(b"\x01\x00\x00\x00\x00\x01\x00\x00\x0a")  # 9 of 7+256+1
                else:
                    writer.write(f"GET /{path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                 "Upgrade: websocket\r\n".encode())
                await writer.drain()
                writer.close()
                await writer.wait_closed()
            ledger.count(f"misbehaving.{kind}")
        except WS_ERRORS as e:
            ledger.error(f"misbehaving.{kind}", e)
        await pause(stop, pace * rng.uniform(0.5, 1.5))


# -- sampling ------------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"process {pid} has no VmRSS (it exited)")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (every thread)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def driver_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def scrape(url: str) -> dict[str, Any]:
    """The gateway's own gauges and counters, by service."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    out: dict[str, Any] = {"connections": {}, "accepted": {}, "jms_broker_subscriptions": 0,
                           "jms_client_subscriptions": 0, "log_warnings": 0, "log_errors": 0}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            service = s.labels.get("service", "")
            if s.name == "kgateway_connections":
                out["connections"][service] = int(s.value)
            elif s.name == "kgateway_connections_accepted_total":
                out["accepted"][service] = int(s.value)
            elif s.name == "kgateway_jms_broker_subscriptions":
                out["jms_broker_subscriptions"] += int(s.value)
            elif s.name == "kgateway_jms_client_subscriptions":
                out["jms_client_subscriptions"] += int(s.value)
            elif s.name == "kgateway_log_events_total":
                key = "log_warnings" if s.labels["level"] == "warn" else "log_errors"
                out[key] += int(s.value)
    return out


def rabbit_queue(queue: str) -> dict[str, int]:
    """Consumers and ready messages of the soak queue, straight from RabbitMQ."""
    conn = pika.BlockingConnection(pika.ConnectionParameters(*RABBITMQ, heartbeat=0))
    try:
        ok = conn.channel().queue_declare(queue, passive=True).method
        return {"consumers": ok.consumer_count, "messages": ok.message_count}
    finally:
        conn.close()


class Snapshots:
    """Heap statistics and tracemalloc snapshots of the gateway, asked for through
    bench/soak_site's FIFO."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.fifo = os.path.join(folder, "snapshots.fifo")
        os.mkfifo(self.fifo)

    def env(self) -> dict[str, str]:
        site = os.path.join(ROOT, "bench", "soak_site")
        path = os.pathsep.join(p for p in (site, os.environ.get("PYTHONPATH")) if p)
        return {"PYTHONPATH": path, "KGATEWAY_SOAK_SNAPSHOTS": self.fifo}

    def _ask(self, line: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:  # ENXIO until the gateway's thread has (re)opened the FIFO to read
                fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)

    def start(self, frames: int = 25) -> None:
        self._ask(f"start {frames}")

    def stats(self, collect: bool = False) -> dict[str, Any]:
        """The gateway's heap figures; after a full collection if *collect*."""
        target = os.path.join(self.folder, f"stats-{mid()}.json")
        self._ask(f"stats{'!' if collect else ''} {target}")
        self._wait(target, 30)
        with open(target) as f:
            stats: dict[str, Any] = json.load(f)
        os.unlink(target)
        return stats

    def take(self, name: str, timeout: float = 120) -> str:
        target = os.path.join(self.folder, f"{name}.tracemalloc")
        self._ask(target)
        self._wait(target, timeout)
        return target

    def _wait(self, target: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not os.path.exists(target):  # polling a real condition, with a deadline
            if time.monotonic() > deadline:
                raise TimeoutError(f"the gateway wrote no {target} in {timeout}s")
            time.sleep(0.05)


def compare_snapshots(first: str, last: str, top: int = 25) -> dict[str, Any]:
    import tracemalloc

    before = tracemalloc.Snapshot.load(first)
    after = tracemalloc.Snapshot.load(last)
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__),
              tracemalloc.Filter(False, "<frozen importlib._bootstrap*>")]
    stats = after.filter_traces(ignore).compare_to(before.filter_traces(ignore), "lineno")
    return {"traced_kib": {"warm": round(sum(s.size - s.size_diff for s in stats) / 1024, 1),
                           "end": round(sum(s.size for s in stats) / 1024, 1)},
            "top": [{"where": str(s.traceback[0]), "size_diff_kib": round(s.size_diff / 1024, 1),
                     "size_kib": round(s.size / 1024, 1), "count_diff": s.count_diff}
                    for s in stats[:top]],
            # traced since the load began and alive after it, clients gone, gc run: the
            # leak suspects (bounded caches too: tell them apart by running longer)
            "live_at_end": [{"where": str(s.traceback[0]), "size_kib": round(s.size / 1024, 1),
                             "count": s.count}
                            for s in after.filter_traces(ignore).statistics("lineno")[:top]]}


# -- the run -------------------------------------------------------------------------------


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.ledger = Ledger()
        self.samples: list[dict[str, Any]] = []
        self.rng = random.Random(args.seed)
        self.tag = uuid.uuid4().hex[:8]
        self.amqp_queue = f"kg-soak-{self.tag}"
        self.topic = f"/topic/soak.{self.tag}"
        self.jms_queue = f"/queue/soak.{self.tag}"
        self.http, self.amqp_tcp, self.front = free_port(), free_port(), free_port()
        self.folder = tempfile.mkdtemp(prefix="kg-soak-")
        self.snapshots = Snapshots(self.folder) if args.introspect or args.tracemalloc else None
        self.started = 0.0
        self.load_seconds = 0.0
        self.gateway: GatewayProcess | None = None

    def config(self, back_end: int) -> str:
        ws = f"ws://127.0.0.1:{self.http}"
        return gateway_xml([
            service_xml("echo", f"{ws}/echo", name="echo"),
            service_xml("proxy", f"{ws}/proxy", f"tcp://127.0.0.1:{back_end}", name="proxy"),
            service_xml("amqp.proxy", [f"tcp://127.0.0.1:{self.amqp_tcp}", f"{ws}/amqp"],
                        f"tcp://{RABBITMQ[0]}:{RABBITMQ[1]}", name="amqp"),
            service_xml("proxy", f"tcp://127.0.0.1:{self.front}", f"{ws}/amqp", name="front"),
            # idle.timeout a minute, not 10: a long-lived client that forgets heart-beats
            # (the witness must not) shows up in any run longer than that
            service_xml("jms", f"{ws}/jms", f"stomp://{ACTIVEMQ[0]}:{ACTIVEMQ[1]}", name="jms",
                        properties="<idle.timeout>60s</idle.timeout>"),
            service_xml("metrics", f"http://127.0.0.1:{self.http}/metrics", name="metrics"),
        ])

    def sample(self, gw: GatewayProcess, collect: bool = False) -> dict[str, Any]:
        """Blocking (run in a thread): one row of the samples table. *collect*: the heap
        figures after a gc.collect() in the gateway (first and last rows only: forcing
        collections all along would change what the soak measures)."""
        row: dict[str, Any] = {
            "t": round(time.monotonic() - self.started, 1), "rss_kib": rss_kib(gw.pid),
            "fds": fd_count(gw.pid), "gateway_cpu_s": round(cpu_seconds(gw.pid), 2),
            "driver_cpu_s": round(driver_cpu_seconds(), 2)}
        try:
            row["metrics"] = scrape(f"http://127.0.0.1:{self.http}/metrics")
        except OSError as e:
            self.ledger.error("sampler.metrics", e)
        if self.snapshots:
            try:
                row["heap"] = self.snapshots.stats(collect)
                row["heap"]["collected"] = collect
            except (OSError, TimeoutError, ValueError) as e:
                self.ledger.error("sampler.heap", e)
        try:
            row["rabbitmq"] = rabbit_queue(self.amqp_queue)
        except pika.exceptions.AMQPError as e:
            self.ledger.error("sampler.rabbitmq", e)
        totals = self.ledger.totals()
        row["messages"] = {flow: {"sent": t["confirmed_sent"], "received": t["received"]}
                           for flow, t in totals.items()}
        with self.ledger.lock:
            row["counts"] = dict(self.ledger.counts)
        return row

    async def sampler(self, gw: GatewayProcess, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await pause(stop, self.args.sample_interval)
            if not stop.is_set():
                row = await asyncio.to_thread(self.sample, gw)
                self.samples.append(row)
                print(f"t={row['t']:7.1f}s rss={row['rss_kib'] / 1024:7.1f} MiB "
                      f"fds={row['fds']:4d} conns="
                      f"{sum(row.get('metrics', {}).get('connections', {}).values()):4d} "
                      + " ".join(f"{f}={m['sent']}/{m['received']}"
                                 for f, m in row["messages"].items()), flush=True)

    async def until(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Poll a real condition until it holds or *timeout* passes."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.2)
        return True

    async def run(self) -> dict[str, Any]:
        server, back_end = await echo_back_end()
        # the shared broker may be restarting (another session's outage test): wait a while
        admin = pika.BlockingConnection(pika.ConnectionParameters(
            *RABBITMQ, heartbeat=0, connection_attempts=20, retry_delay=3))
        # durable and persistent: a confirmed message must survive a broker restart too
        admin.channel().queue_declare(self.amqp_queue, durable=True,
                                      arguments={"x-queue-type": "classic"})
        env = self.snapshots.env() if self.snapshots else None
        gw = GatewayProcess(self.config(back_end), name="soak", env=env)
        self.gateway = gw
        try:
            await asyncio.to_thread(gw.start)
            await asyncio.to_thread(gw.wait_for, r"connected to broker .*jms#1", TIMEOUT)
            return await self._load(gw, back_end)
        finally:
            gw.stop()
            server.close()
            shutil.rmtree(gw.folder, ignore_errors=True)  # its gateway.xml
            if not self.args.tracemalloc:  # the snapshots stay for a closer look
                shutil.rmtree(self.folder, ignore_errors=True)
            try:
                admin.channel().queue_delete(self.amqp_queue)
                admin.close()
            except pika.exceptions.AMQPError:  # the broker restarted meanwhile: a new one
                with pika.BlockingConnection(pika.ConnectionParameters(*RABBITMQ)) as again:
                    again.channel().queue_delete(self.amqp_queue)

    async def _load(self, gw: GatewayProcess, back_end: int) -> dict[str, Any]:
        args, ledger, rng = self.args, self.ledger, self.rng
        ws = f"ws://127.0.0.1:{self.http}"
        producing, consuming, sampling = asyncio.Event(), asyncio.Event(), asyncio.Event()
        halt_publishers, halt_consumers = threading.Event(), threading.Event()
        self.started = time.monotonic()
        first = await asyncio.to_thread(self.sample, gw, True)
        self.samples.append(first)
        if self.snapshots and args.tracemalloc:
            await asyncio.to_thread(self.snapshots.start)
        gateway_cpu0, driver_cpu0 = cpu_seconds(gw.pid), driver_cpu_seconds()
        ready = asyncio.Event()

        def seeded() -> random.Random:
            return random.Random(rng.random())

        witness = asyncio.create_task(topic_witness(f"{ws}/jms", self.topic, ledger, ready,
                                                    consuming))
        await asyncio.wait_for(ready.wait(), TIMEOUT)
        sampler = asyncio.create_task(self.sampler(gw, sampling))
        scale = args.load
        producers: list[Coroutine[Any, Any, None]] = [
            producer(f"{ws}/jms", self.topic, "jms.topic", ledger, producing, seeded(),
                     10 * scale),
            producer(f"{ws}/jms", self.jms_queue, "jms.queue", ledger, producing, seeded(),
                     10 * scale, {"persistent": "true"}),
            echo_clients("echo", f"{ws}/echo", ledger, producing, seeded(), 0.5 / scale),
            echo_clients("echo", f"{ws}/echo", ledger, producing, seeded(), 0.5 / scale),
            echo_clients("proxy", f"{ws}/proxy", ledger, producing, seeded(), 0.5 / scale),
            echo_clients("proxy", f"{ws}/proxy", ledger, producing, seeded(), 0.5 / scale),
            churning(topic_subscriber, "jms.topic.subscriber", f"{ws}/jms", self.topic,
                     ledger, producing, seeded(), 1 / scale),
            churning(topic_subscriber, "jms.topic.subscriber", f"{ws}/jms", self.topic,
                     ledger, producing, seeded(), 1 / scale),
            misbehaving(self.http, self.amqp_tcp, ledger, producing, seeded(), 0.5 / scale),
        ]
        consumers: list[Coroutine[Any, Any, None]] = [
            churning(queue_consumer, "jms.queue.consumer", f"{ws}/jms", self.jms_queue, ledger,
                     consuming, seeded(), 0.5)
            for _ in range(2)]
        ports = [self.amqp_tcp, self.front]
        threads = [threading.Thread(target=amqp_publisher, daemon=True, args=(
            ports, self.amqp_queue, ledger, halt_publishers, seeded(), 10 * scale))
            for _ in range(2)]
        threads += [threading.Thread(target=amqp_consumer, daemon=True, args=(
            ports, self.amqp_queue, ledger, halt_consumers, seeded())) for _ in range(2)]
        for t in threads:
            t.start()
        producer_tasks = [asyncio.create_task(p) for p in producers]
        consumer_tasks = [asyncio.create_task(c) for c in consumers]

        # the soak itself; with --tracemalloc, the first snapshot once the load is warm
        warm = max(5.0, min(300.0, args.duration / 10)) if args.tracemalloc else 0.0
        # Ctrl-C (or SIGTERM) ends the load early: the drain and the report still follow
        interrupted = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, interrupted.set)
        await pause(interrupted, warm)
        snapshot_start = (await asyncio.to_thread(self.snapshots.take, "warm")
                          if self.snapshots and args.tracemalloc and not interrupted.is_set()
                          else None)
        await pause(interrupted, args.duration - warm)
        for sig in (signal.SIGINT, signal.SIGTERM):  # a second one: Python's default again
            loop.remove_signal_handler(sig)
        if interrupted.is_set():
            args.duration = time.monotonic() - self.started
            args.interrupted = True
            print(f"interrupted after {args.duration:.0f} s (again to abort)", flush=True)
        print("stopping the producers, draining", flush=True)
        producing.set()
        halt_publishers.set()
        await asyncio.gather(*producer_tasks)
        for t in threads[:2]:
            await asyncio.to_thread(t.join, TIMEOUT)
        drained = await self.until(lambda: not any(ledger.missing(f) for f in FLOWS),
                                   args.drain)
        consuming.set()
        halt_consumers.set()
        await asyncio.gather(*consumer_tasks, witness)
        for t in threads[2:]:
            await asyncio.to_thread(t.join, TIMEOUT)
        sampling.set()
        await sampler
        self.load_seconds = time.monotonic() - self.started
        gateway_cpu = cpu_seconds(gw.pid) - gateway_cpu0
        driver_cpu = driver_cpu_seconds() - driver_cpu0

        def quiet() -> bool:
            try:
                gauges = scrape(f"http://127.0.0.1:{self.http}/metrics")
            except OSError:
                return False
            return sum(gauges["connections"].values()) == 0 and fd_count(gw.pid) <= first["fds"]

        settled = await self.until(quiet, 20)
        last = await asyncio.to_thread(self.sample, gw, True)
        self.samples.append(last)
        traced = None
        if self.snapshots and snapshot_start:
            end = await asyncio.to_thread(self.snapshots.take, "end")
            traced = compare_snapshots(snapshot_start, end)
            traced["snapshots"] = [snapshot_start, end]
        return self.figures(first, last, drained, settled, gateway_cpu, driver_cpu,
                            traced)

    def figures(self, first: dict[str, Any], last: dict[str, Any], drained: bool,
                settled: bool, gateway_cpu: float, driver_cpu: float,
                traced: dict[str, Any] | None) -> dict[str, Any]:
        samples = self.samples
        elapsed = last["t"]
        half = [s for s in samples if s["t"] >= elapsed / 2]
        slope = None
        if len(half) >= 3:
            slope = statistics.linear_regression(
                [s["t"] / 3600 for s in half], [s["rss_kib"] / 1024 for s in half]).slope
        metrics_end = last.get("metrics", {})
        totals = self.ledger.totals()
        load_s = max(self.load_seconds, 1e-3)
        return {
            "settings": {"seconds": self.args.duration, "load": self.args.load,
                         "sample_interval": self.args.sample_interval,
                         "tracemalloc": self.args.tracemalloc, "seed": self.args.seed,
                         "interrupted": self.args.interrupted},
            "machine": machine(),
            "gateway_pid": self.gateway.pid if self.gateway else None,
            "elapsed_s": elapsed,
            "drained": drained,
            "settled": settled,
            "messages": totals,
            "lost": sum(t["lost"] or 0 for t in totals.values()),
            "counts": dict(sorted(self.ledger.counts.items())),
            "errors": dict(self.ledger.errors),
            "error_examples": self.ledger.error_examples,
            "duplicates_not_redelivered": self.ledger.unflagged,
            "gateway_warnings": [line for line in (self.gateway.lines if self.gateway else [])
                                 if re.search(r"#(warn|error|critical)\]", line)][:30],
            "accepted_by_service": metrics_end.get("accepted", {}),
            "open_connections_end": metrics_end.get("connections", {}),
            "gateway_log_warnings": metrics_end.get("log_warnings"),
            "gateway_log_errors": metrics_end.get("log_errors"),
            "heap_change": heap_change(first.get("heap"), last.get("heap")),
            "fds": {"start": first["fds"], "peak": max(s["fds"] for s in samples),
                    "end": last["fds"]},
            "rss_mib": {"start": round(first["rss_kib"] / 1024, 1),
                        "peak": round(max(s["rss_kib"] for s in samples) / 1024, 1),
                        "end": round(last["rss_kib"] / 1024, 1),
                        "slope_second_half_mib_per_h":
                            None if slope is None else round(slope, 2)},
            "cpu_s": {"gateway": round(gateway_cpu, 2), "driver": round(driver_cpu, 2),
                      "gateway_pct_of_core": round(100 * gateway_cpu / load_s, 1),
                      "driver_pct_of_core": round(100 * driver_cpu / load_s, 1),
                      "driver_over_gateway": round(driver_cpu / gateway_cpu, 2)
                      if gateway_cpu else None},
            "rates_per_s": {flow: round((t["confirmed_sent"] or 0) / self.args.duration, 1)
                            for flow, t in totals.items()},
            "tracemalloc": traced,
            "samples": samples,
        }


def heap_change(first: dict[str, Any] | None,
                last: dict[str, Any] | None) -> dict[str, str] | None:
    """Python blocks, gc objects and glibc malloc figures, start -> end (both measured
    after a gc.collect() in the gateway)."""
    if not first or not last:
        return None
    out = {key: f"{first[key]} -> {last[key]}" for key in ("allocated_blocks", "gc_objects")}
    if first.get("malloc") and last.get("malloc"):
        for key in ("in_use", "free", "mmapped"):
            out[f"malloc_{key}_mib"] = (f"{first['malloc'][key] / 2**20:.2f} -> "
                                        f"{last['malloc'][key] / 2**20:.2f}")
    return out


def heap_cells(heap: dict[str, Any] | None) -> str:
    if not heap:
        return " | "
    malloc = heap.get("malloc") or {}
    return (f"{heap['allocated_blocks'] / 1000:.0f} | "
            + (f"{malloc['in_use'] / 2**20:.1f} / {malloc['free'] / 2**20:.1f}"
               if malloc else ""))


def table(figures: dict[str, Any]) -> list[str]:
    rows = ["| t s | RSS MiB | fds | open conns | jms broker subs | RabbitMQ consumers "
            "| gateway CPU % | driver CPU % | amqp sent/recv | jms queue sent/recv "
            "| jms topic sent/recv | Python blocks k | malloc in use / free MiB |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    prev = None
    for s in figures["samples"]:
        m = s.get("metrics", {})
        gw_pct = drv_pct = ""
        if prev is not None and s["t"] > prev["t"]:
            dt = s["t"] - prev["t"]
            gw_pct = f"{100 * (s['gateway_cpu_s'] - prev['gateway_cpu_s']) / dt:.0f}"
            drv_pct = f"{100 * (s['driver_cpu_s'] - prev['driver_cpu_s']) / dt:.0f}"
        msgs = s["messages"]
        rows.append(
            f"| {s['t']:.0f} | {s['rss_kib'] / 1024:.1f} | {s['fds']} "
            f"| {sum(m.get('connections', {}).values())} | {m.get('jms_broker_subscriptions', '')} "
            f"| {s.get('rabbitmq', {}).get('consumers', '')} | {gw_pct} | {drv_pct} "
            f"| {msgs['amqp']['sent']}/{msgs['amqp']['received']} "
            f"| {msgs['jms.queue']['sent']}/{msgs['jms.queue']['received']} "
            f"| {msgs['jms.topic']['sent']}/{msgs['jms.topic']['received']} "
            f"| {heap_cells(s.get('heap'))} |")
        prev = s
    rss, fds, cpu = figures["rss_mib"], figures["fds"], figures["cpu_s"]
    rows += ["", "| flow | confirmed/receipted sent | received | unique | duplicates "
             "| not flagged redelivered | lost |", "|---|---:|---:|---:|---:|---:|---:|"]
    for flow, t in figures["messages"].items():
        rows.append(f"| {flow} | {t['confirmed_sent']} | {t['received']} "
                    f"| {t['received_unique']} | {t['duplicates']} "
                    f"| {t['duplicates_not_redelivered']} | {t['lost']} |")
    settings = figures["settings"]
    rows += ["",
             f"- load: {settings['seconds']:.0f} s"
             + (" (interrupted: shorter than asked)" if settings.get("interrupted") else "")
             + f", scale {settings['load']}, tracemalloc {settings['tracemalloc']}",
             f"- RSS MiB start / peak / end: {rss['start']} / {rss['peak']} / {rss['end']}; "
             f"slope over the second half: {rss['slope_second_half_mib_per_h']} MiB/h",
             f"- fds start / peak / end: {fds['start']} / {fds['peak']} / {fds['end']}",
             f"- heap start -> end: {figures['heap_change'] or 'not sampled'}",
             f"- CPU s during the load: gateway {cpu['gateway']} "
             f"({cpu['gateway_pct_of_core']}% of one core), driver {cpu['driver']} "
             f"({cpu['driver_pct_of_core']}%; every client, the proxy's back end), "
             f"driver/gateway {cpu['driver_over_gateway']}",
             "- confirmed/receipted messages per second: " + ", ".join(
                 f"{flow} {rate}" for flow, rate in figures["rates_per_s"].items()),
             f"- connections accepted: {figures['accepted_by_service']}",
             f"- drained: {figures['drained']}; settled (0 open, fds back): "
             f"{figures['settled']}; gateway warnings/errors logged: "
             f"{figures['gateway_log_warnings']}/{figures['gateway_log_errors']}",
             f"- driver errors: {figures['errors'] or 'none'}",
             f"- duplicates not flagged redelivered (first 20): "
             f"{figures['duplicates_not_redelivered'] or 'none'}",
             "- gateway warnings (first 30): " + (
                 "".join(f"\n  - `{line}`" for line in figures["gateway_warnings"])
                 or "none"),
             f"- client counts: {figures['counts']}"]
    traced = figures["tracemalloc"]
    if traced:
        rows += ["", f"tracemalloc (traced from the load's start; after gc.collect()): "
                 f"{traced['traced_kib']['warm']} KiB live at the warm snapshot, "
                 f"{traced['traced_kib']['end']} KiB at the end; top by size difference:", "",
                 "| where | diff KiB | size KiB | count diff |", "|---|---:|---:|---:|"]
        rows += [f"| {t['where']} | {t['size_diff_kib']} | {t['size_kib']} "
                 f"| {t['count_diff']} |" for t in traced["top"]]
        rows += ["", "Allocated during the load and still alive at the end (every client "
                 "gone, after gc.collect()):", "", "| where | KiB | blocks |", "|---|---:|---:|"]
        rows += [f"| {t['where']} | {t['size_kib']} | {t['count']} |"
                 for t in traced["live_at_end"]]
    return rows


def plot(figures: dict[str, Any], path: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    samples = figures["samples"]
    t = [s["t"] / 60 for s in samples]
    heap = [s for s in samples if s.get("heap")]
    if heap:
        fig, (rss_axis, heap_axis) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
        th = [s["t"] / 60 for s in heap]
        heap_axis.plot(th, [s["heap"]["allocated_blocks"] / 1000 for s in heap],
                       color="tab:green")
        heap_axis.set_ylabel("Python allocated blocks (k)", color="tab:green")
        heap_axis.set_xlabel("minutes")
        if all(s["heap"].get("malloc") for s in heap):
            malloc_axis = heap_axis.twinx()
            malloc_axis.plot(th, [s["heap"]["malloc"]["in_use"] / 2**20 for s in heap],
                             color="tab:red")
            malloc_axis.set_ylabel("glibc malloc in use (MiB)", color="tab:red")
    else:
        fig, rss_axis = plt.subplots(figsize=(9, 4.5))
    rss_axis.plot(t, [s["rss_kib"] / 1024 for s in samples], color="tab:blue", label="RSS")
    if not heap:
        rss_axis.set_xlabel("minutes")
    rss_axis.set_ylabel("gateway RSS (MiB)", color="tab:blue")
    fd_axis = rss_axis.twinx()
    fd_axis.plot(t, [s["fds"] for s in samples], color="tab:orange", label="open fds")
    fd_axis.set_ylabel("gateway open fds", color="tab:orange")
    slope = figures["rss_mib"]["slope_second_half_mib_per_h"]
    rss_axis.set_title(f"kgateway soak: RSS and fds (second-half RSS slope {slope} MiB/h)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write(figures: dict[str, Any], out: str, command: str) -> None:
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "soak.json"), "w") as f:
        json.dump({"command": command, "figures": figures}, f, indent=2)
    rows = table(figures)
    plotted = plot(figures, os.path.join(out, "soak.png"))
    m = figures["machine"]
    with open(os.path.join(out, "soak.md"), "w") as f:
        f.write(f"# soak\n\nReproduce: `{command}`  \nMeasured {m['when']} on {m['cores']} "
                f"cores ({m['cpu']}), Python {m['python']}, load average {m['load_average']:.1f}."
                f"\n\n" + ("![RSS and fds](soak.png)\n\n" if plotted else
                           "(no soak.png: matplotlib is missing; `make bench` installs it)\n\n"))
        f.write("\n".join(rows) + "\n")
    print("\n".join(rows[rows.index("") + 1:]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, help="length of the load (default 10)")
    length.add_argument("--seconds", type=float, help="length of the load, for short runs")
    parser.add_argument("--sample-interval", type=float, default=10.0)
    parser.add_argument("--load", type=float, default=1.0,
                        help="scale every client's rate (1: ~60 msg/s, a few connections/s)")
    parser.add_argument("--drain", type=float, default=60.0,
                        help="seconds allowed for every confirmed message to arrive")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="trace the gateway's allocations, compare start and end")
    parser.add_argument("--introspect", action=argparse.BooleanOptionalAction, default=True,
                        help="sample the gateway's heap (Python blocks, glibc malloc) through "
                             "bench/soak_site (default: yes)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args(argv)
    args.duration = args.seconds if args.seconds is not None else 60 * (args.minutes or 10)
    args.interrupted = False
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20000), hard))
    soak = Soak(args)
    figures = asyncio.run(soak.run())
    command = " ".join([".venv/bin/python -m bench.soak", *(argv or sys.argv[1:])])
    write(figures, args.out, command)
    return 0 if figures["lost"] == 0 and figures["drained"] else 1


if __name__ == "__main__":
    sys.exit(main())
