"""Load clients with message accounting, for the broker-cluster tests.

    AmqpPublisher (pika, confirms) --tcp--> gateway amqp.proxy --> RabbitMQ node kgw1 | kgw2
    AmqpConsumer  (pika, manual ack) -/
    StompPublisher (stomp.py over WebSocket, persistent SEND + RECEIPT) --> gateway jms --> amqA | amqB
    StompConsumer  (client-individual ACK) ---------------------------------/

Every client runs in its own thread until told to stop, records each success (a publisher
confirm or RECEIPT, a delivery) with its time in a shared :class:`Ledger`, and reconnects
through the gateway when its connection breaks, publishing again what was not confirmed
(at-least-once). A message counts as *sent* once confirmed by the broker, as *received* once
delivered to a consumer; *lost* = sent and never received. Waits are on a Condition that
every record notifies, with timeouts; nothing sleeps to synchronise (a client reconnecting
to a gateway that refused it waits 50 ms first, as any client's back-off would).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pika
import pika.exceptions
import stomp


@dataclass
class Tally:
    """What one client saw: times of its successes and of its broken connections."""

    name: str
    ok: list[float] = field(default_factory=list)
    broken: list[float] = field(default_factory=list)
    error: BaseException | None = None

    def served_after(self, t: float) -> bool:
        return any(x > t for x in self.ok)

    def longest_pause(self, start: float, end: float) -> float:
        """The longest time between two successes that spans part of [start, end]: for a
        client of a killed node, its last success before the kill to its first after."""
        pauses = [b - a for a, b in zip(self.ok, self.ok[1:], strict=False) if b > start and a < end]
        return max(pauses, default=0.0)

    def broke_after(self, t: float) -> bool:
        return any(x >= t for x in self.broken)


class Ledger:
    """Sent (confirmed) and received message ids of one run, shared by its clients."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.received: list[str] = []
        self.changed = threading.Condition()

    def confirmed(self, tally: Tally, body: str) -> None:
        with self.changed:
            self.sent.append(body)
            tally.ok.append(time.monotonic())
            self.changed.notify_all()

    def delivered(self, tally: Tally, body: str) -> None:
        with self.changed:
            self.received.append(body)
            tally.ok.append(time.monotonic())
            self.changed.notify_all()

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        with self.changed:
            if not self.changed.wait_for(predicate, timeout):
                raise AssertionError(f"{what} not within {timeout}s: {self.summary()}")

    def wait_sent(self, count: int, timeout: float = 30) -> None:
        self.wait(lambda: len(self.sent) >= count, timeout, f"{count} messages confirmed")

    def wait_drained(self, timeout: float = 30) -> None:
        self.wait(lambda: not self.lost(), timeout, "every confirmed message received")

    def lost(self) -> set[str]:
        return set(self.sent) - set(self.received)

    def duplicates(self) -> int:
        return len(self.received) - len(set(self.received))

    def summary(self) -> str:
        return (f"sent {len(self.sent)}, received {len(self.received)} "
                f"({len(set(self.received))} distinct), lost {len(self.lost())}")


class LoadClient(threading.Thread):
    def __init__(self, name: str, ledger: Ledger) -> None:
        super().__init__(daemon=True, name=name)
        self.tally = Tally(name)
        self.ledger = ledger
        self.stopping = threading.Event()
        self.wake = threading.Event()  # stopping, or the connection was lost
        self.ready = threading.Event()  # connected (and subscribed) once

    def stop(self, timeout: float = 15) -> None:
        self.stopping.set()
        self.wake.set()
        self.join(timeout)
        assert not self.is_alive(), f"{self.name} did not stop"

    def run(self) -> None:
        try:
            self.loop()
        except BaseException as e:  # reported by the test
            self.tally.error = e

    def loop(self) -> None:
        raise NotImplementedError


# --- AMQP (pika) ----------------------------------------------------------------------

_AMQP_ERRORS = (pika.exceptions.AMQPError, OSError)


def amqp_params(port: int) -> pika.ConnectionParameters:
    return pika.ConnectionParameters(
        "127.0.0.1", port, credentials=pika.PlainCredentials("guest", "guest"),
        connection_attempts=1, socket_timeout=5, blocked_connection_timeout=10, heartbeat=0)


class AmqpPublisher(LoadClient):
    """Persistent messages with publisher confirms, mandatory; republished until confirmed."""

    def __init__(self, name: str, ledger: Ledger, port: int, queue: str) -> None:
        super().__init__(name, ledger)
        self.port, self.queue = port, queue

    def loop(self) -> None:
        seq = 0
        pending: str | None = None
        while not self.stopping.is_set():
            conn = None
            try:
                conn = pika.BlockingConnection(amqp_params(self.port))
                channel = conn.channel()
                channel.confirm_delivery()
                self.ready.set()
                while not self.stopping.is_set():
                    if pending is None:
                        seq += 1
                        pending = f"{self.name}-{seq}"
                    channel.basic_publish("", self.queue, pending.encode(),
                                          pika.BasicProperties(delivery_mode=2), mandatory=True)
                    self.ledger.confirmed(self.tally, pending)  # basic_publish waited for it
                    pending = None
            except _AMQP_ERRORS:
                self.tally.broken.append(time.monotonic())
                self.stopping.wait(0.05)
            finally:
                _close_quietly(conn)


class AmqpConsumer(LoadClient):
    """Manual acks after recording; a message whose ack was lost comes again (a duplicate)."""

    def __init__(self, name: str, ledger: Ledger, port: int, queue: str) -> None:
        super().__init__(name, ledger)
        self.port, self.queue = port, queue

    def loop(self) -> None:
        while not self.stopping.is_set():
            conn = None
            try:
                conn = pika.BlockingConnection(amqp_params(self.port))
                channel = conn.channel()
                channel.basic_qos(prefetch_count=20)
                self.ready.set()
                for method, _, body in channel.consume(self.queue, inactivity_timeout=0.1):
                    if self.stopping.is_set():
                        break
                    if method is None:
                        continue
                    self.ledger.delivered(self.tally, body.decode())
                    channel.basic_ack(method.delivery_tag)
            except _AMQP_ERRORS:
                self.tally.broken.append(time.monotonic())
                self.stopping.wait(0.05)
            finally:
                _close_quietly(conn)


def _close_quietly(conn: Any) -> None:
    if conn is not None and conn.is_open:
        try:
            conn.close()
        except _AMQP_ERRORS:
            pass


# --- STOMP over WebSocket (stomp.py) ----------------------------------------------------


def stomp_ws(port: int, listener: stomp.ConnectionListener) -> stomp.WSStompConnection:
    conn = stomp.WSStompConnection([("127.0.0.1", port)], ws_path="/jms", vhost="/",
                                   header={"Sec-WebSocket-Protocol": "v12.stomp"},
                                   reconnect_attempts_max=1)
    conn.set_listener("load", listener)
    conn.connect(wait=True)
    return conn


class _Receipts(stomp.ConnectionListener):
    def __init__(self) -> None:
        self.receipts: set[str] = set()
        self.changed = threading.Condition()
        self.lost = threading.Event()

    def on_receipt(self, frame: Any) -> None:
        with self.changed:
            self.receipts.add(frame.headers["receipt-id"])
            self.changed.notify_all()

    def on_disconnected(self) -> None:
        self.lost.set()
        with self.changed:
            self.changed.notify_all()

    def wait(self, rid: str, timeout: float) -> bool:
        """True once RECEIPT *rid* came; False if the connection was lost or it is late."""
        with self.changed:
            self.changed.wait_for(lambda: rid in self.receipts or self.lost.is_set(), timeout)
            return rid in self.receipts


class StompPublisher(LoadClient):
    """Persistent SENDs to a queue, each waiting for its RECEIPT (which the gateway gives
    only after the broker's); one not receipted is sent again on a new connection."""

    def __init__(self, name: str, ledger: Ledger, port: int, destination: str,
                 receipt_timeout: float = 30) -> None:
        super().__init__(name, ledger)
        self.port, self.destination = port, destination
        self.receipt_timeout = receipt_timeout

    def loop(self) -> None:
        seq = 0
        pending: str | None = None
        while not self.stopping.is_set():
            listener = _Receipts()
            try:
                conn = stomp_ws(self.port, listener)
            except stomp.exception.StompException:
                self.tally.broken.append(time.monotonic())
                self.stopping.wait(0.05)
                continue
            self.ready.set()
            while not self.stopping.is_set() and not listener.lost.is_set():
                if pending is None:
                    seq += 1
                    pending = f"{self.name}-{seq}"
                rid = f"r-{pending}"
                conn.send(self.destination, pending,
                          headers={"receipt": rid, "persistent": "true"})
                got = listener.wait(rid, self.receipt_timeout)
                if not got:
                    break
                self.ledger.confirmed(self.tally, pending)
                pending = None
            if listener.lost.is_set():
                self.tally.broken.append(time.monotonic())
            elif conn.is_connected():
                conn.disconnect()


class StompConsumer(LoadClient):
    """A queue subscriber with client-individual acks, each after recording the message."""

    def __init__(self, name: str, ledger: Ledger, port: int, destination: str,
                 prefetch: int = 20) -> None:
        super().__init__(name, ledger)
        self.port, self.destination, self.prefetch = port, destination, prefetch

    def loop(self) -> None:
        outer = self

        class Listener(_Receipts):
            conn: Any = None

            def on_message(self, frame: Any) -> None:
                outer.ledger.delivered(outer.tally, frame.body)
                self.conn.ack(frame.headers["ack"])

            def on_disconnected(self) -> None:
                super().on_disconnected()
                outer.wake.set()

        while not self.stopping.is_set():
            listener = Listener()
            try:
                listener.conn = conn = stomp_ws(self.port, listener)
            except stomp.exception.StompException:
                self.tally.broken.append(time.monotonic())
                self.stopping.wait(0.05)
                continue
            conn.subscribe(self.destination, id="1", ack="client-individual",
                           headers={"receipt": "sub", "activemq.prefetchSize": str(self.prefetch)})
            listener.wait("sub", 10)
            self.ready.set()
            self.wake.wait()
            self.wake.clear()
            if listener.lost.is_set():
                self.tally.broken.append(time.monotonic())
            elif conn.is_connected():
                conn.disconnect()
