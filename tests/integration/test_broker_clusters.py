"""Beyond one broker: the seed's services as pasted, fail-over over real clusters, and two
gateways behind HAProxy on an ActiveMQ network of brokers.

    seed:      stomp.py --ws /jms--> JMS Service (no <connect>: derived stomp://127.0.0.1:61613)
               pika --tcp--> proxy --ws /amqp--> AMQP Service --> tcp://127.0.0.1:5672
    rabbitmq:  pika x6 --tcp--> amqp.proxy --+--> kgw1@localhost 127.0.0.1:5701   (killed, back)
                                              +--> kgw2@localhost 127.0.0.1:5702   (then this one)
    activemq:  stomp.py x6 --ws--> jms (2 broker connections) --+--> amqA STOMP 61713 (killed, back)
                                                               +--> amqB STOMP 61723 (then this one)
    scale-out: stomp.py --> HAProxy --+--> gateway 1 -- jms --> amqA ==network== amqB
                                      +--> gateway 2 -- jms ------------------> amqB

Each fail-over test kills every node in turn under load and accounts for every message
(publisher confirms or RECEIPTs against client acknowledgements): what was confirmed and
never delivered is *lost* (the goal is none), what came twice a *duplicate*
(at-least-once). It measures the fail-over time as each client's *pause*: the longest
time between two of its successes around the kill, i.e. for a client of the killed node
from its last success before the kill to its first after it, on the other node (and, for
jms, the time from the kill until the gateway logged its connection to the other broker).
The figures are printed as JSON lines (``pytest -s``) and recorded in the test report
(``record_property``). Every killed node is started again (the last RabbitMQ one while the
next tests run, joined at the end of the module), so the clusters are whole afterwards.
"""

from __future__ import annotations

import functools
import json
import os
import queue
import signal
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pika
import pika.exceptions
import pytest
import stomp

from tests.balancers import HAProxy, haproxy_available, servers
from tests.helpers import GatewayProcess, free_port, gateway_xml, service_xml
from tests.integration.cluster_load import (
    AmqpConsumer,
    AmqpPublisher,
    Ledger,
    LoadClient,
    StompConsumer,
    StompPublisher,
    amqp_params,
    stomp_ws,
)
from tests.integration.conftest import AmqBroker, AmqNetwork, RabbitCluster, RabbitNode

pytestmark = pytest.mark.slow

TIMEOUT = 10.0
#: the system brokers are shared with other sessions, whose tests may restart them
SHARED_BROKER_TIMEOUT = 90.0
#: no drain at the end of a test: its clients have gone
QUICK_STOP = ["--drain-grace", "0", "--drain-timeout", "0"]

outage = pytest.mark.skipif(os.environ.get("KGATEWAY_SKIP_BROKER_RESTART") == "1",
                            reason="KGATEWAY_SKIP_BROKER_RESTART=1: others are using the parts")


def unique(prefix: str) -> str:
    return f"{prefix}.{uuid.uuid4().hex[:10]}"


# --- the seed's two services, exactly as printed ---------------------------------------

#: /work/shared/seeds/001_36b25a59d3992671.txt, steps 2 and 3, unchanged
SEED_PROPERTIES = """
    <properties>
    <property>
    <name>gateway.hostname</name>
    <value>20.20.20.14</value>
    </property>
    <property>
    <name>backend.hostname</name>
    <value>192.0.2.11</value>
    </property>
    <property>
    <name>gateway.extras.port</name>
    <value>8001</value>
    </property>
    </properties>
"""
SEED_SERVICES = """
<service>
  <name>JMS Service</name>
  <description>JMS Service</description>
  <accept>ws://${gateway.hostname}:${gateway.extras.port}/jms</accept>

  <type>jms</type>

  <properties>
    <connection.factory.name>ConnectionFactory</connection.factory.name>
    <context.lookup.topic.format>dynamicTopics/%s</context.lookup.topic.format>
    <context.lookup.queue.format>dynamicQueues/%s</context.lookup.queue.format>
    <env.java.naming.factory.initial>org.apache.activemq.jndi.ActiveMQInitialContextFactory</env.java.naming.factory.initial>
    <env.java.naming.provider.url>tcp://${backend.hostname}:61616</env.java.naming.provider.url>
  </properties>

  <cross-site-constraint>
    <allow-origin>http://${gateway.hostname}:${gateway.extras.port}</allow-origin>
  </cross-site-constraint>
</service>

<!-- AMQP service -->
<service>
  <name>AMQP Service</name>
  <description>AMQP Service</description>
  <accept>ws://${gateway.hostname}:${gateway.extras.port}/amqp</accept>
  <connect>tcp://${backend.hostname}:5672</connect>

  <type>amqp.proxy</type>

</service>
"""


class Stomp(stomp.ConnectionListener):
    """A stomp.py client over WebSocket with queues to wait on."""

    def __init__(self, port: int, timeout: float = TIMEOUT) -> None:
        self.timeout = timeout
        self.messages: queue.Queue[Any] = queue.Queue()
        self.receipts: queue.Queue[str] = queue.Queue()
        self.conn = stomp_ws(port, self)

    def on_message(self, frame: Any) -> None:
        self.messages.put(frame)

    def on_receipt(self, frame: Any) -> None:
        self.receipts.put(frame.headers["receipt-id"])

    def on_error(self, frame: Any) -> None:
        self.messages.put(frame)

    def receipt(self, rid: str) -> None:
        try:
            assert self.receipts.get(timeout=self.timeout) == rid
        except queue.Empty:
            raise AssertionError(f"no RECEIPT {rid} within {self.timeout}s") from None

    def subscribe(self, destination: str, sid: str, **headers: str) -> None:
        self.conn.subscribe(destination, id=sid, ack="auto", headers={"receipt": sid, **headers})
        self.receipt(sid)

    def send(self, destination: str, body: str) -> None:
        rid = unique("send")
        self.conn.send(destination, body, headers={"receipt": rid, "persistent": "true"})
        self.receipt(rid)

    def get(self) -> Any:
        try:
            frame = self.messages.get(timeout=self.timeout)
        except queue.Empty:
            raise AssertionError(f"no MESSAGE within {self.timeout}s") from None
        assert frame.cmd == "MESSAGE", (frame.cmd, frame.headers, frame.body)
        return frame

    def close(self) -> None:
        if self.conn.is_connected():
            try:
                self.conn.disconnect()
            except OSError:
                pass  # clean-up only: the socket went while stomp.py still thought it open


def test_the_seed_services_as_printed_serve_stomp_and_amqp_clients(
        activemq: tuple[str, int], rabbitmq: tuple[str, int]) -> None:
    """The seed's JMS service has no <connect>, only the OpenWire provider URL: the gateway
    derives the broker's STOMP connector, says so at start, and serves stomp.py over
    WebSocket; its AMQP service serves pika (over WebSocket, through a proxy service)."""
    port, pika_port = free_port(), free_port()
    # The harness's own service: pika speaks AMQP over TCP only, so a proxy service turns
    # its connection into a WebSocket to the seed's /amqp.
    harness = service_xml("proxy", f"tcp://127.0.0.1:{pika_port}",
                          f"ws://127.0.0.1:{port}/amqp", name="pika over WebSocket")
    xml = gateway_xml([SEED_SERVICES, harness], properties=SEED_PROPERTIES)
    defines = ["gateway.hostname=127.0.0.1", "backend.hostname=127.0.0.1",
               f"gateway.extras.port={port}"]
    with GatewayProcess(xml, defines=defines, name="seed") as gw:
        gw.wait_for(r"jms service JMS Service: broker\(s\) stomp://127\.0\.0\.1:61613 \(STOMP "
                    r"connector\(s\) derived from env\.java\.naming\.provider\.url "
                    r"tcp://127\.0\.0\.1:61616\)", TIMEOUT)
        gw.wait_for(r"connected to broker stomp://127\.0\.0\.1:61613 \(JMS Service#1\)",
                    SHARED_BROKER_TIMEOUT)
        # JMS: a topic and a queue through the gateway, JNDI names as in the seed. The
        # system broker is shared with other test sessions, which may restart it: the
        # gateway rides that out (re-subscription, replayed SENDs), so wait long enough.
        subscriber, sender = Stomp(port, SHARED_BROKER_TIMEOUT), Stomp(port, SHARED_BROKER_TIMEOUT)
        try:
            topic, queue_name = f"/topic/{unique('seed.t')}", f"/queue/{unique('seed.q')}"
            subscriber.subscribe(topic, "t")
            subscriber.subscribe(queue_name, "q")
            sender.send(topic, "to the topic")
            sender.send(queue_name, "to the queue")
            got = {subscriber.get().body for _ in range(2)}
            assert got == {"to the topic", "to the queue"}
        finally:
            subscriber.close()
            sender.close()
        # AMQP: a confirmed publish and a get, through the seed's AMQP service.
        assert amqp_round_trip(pika_port) == b"through the seed"


def amqp_round_trip(port: int) -> bytes | None:
    """Publish with a confirm and get it back, through the gateway. The system RabbitMQ is
    shared with other sessions, whose tests restart it: an attempt that meets the restart
    is made again (after a client's usual 0.2 s back-off) until SHARED_BROKER_TIMEOUT."""
    deadline = time.monotonic() + SHARED_BROKER_TIMEOUT
    while True:
        try:
            conn = pika.BlockingConnection(amqp_params(port))
            try:
                channel = conn.channel()
                name = unique("seed.amqp")
                channel.queue_declare(name, exclusive=True)
                channel.confirm_delivery()
                channel.basic_publish("", name, b"through the seed", mandatory=True)
                _, _, body = channel.basic_get(name, auto_ack=True)
                return body
            finally:
                if conn.is_open:
                    conn.close()
        except (pika.exceptions.AMQPError, OSError):
            if time.monotonic() > deadline:
                raise
            threading.Event().wait(0.2)


# --- scale-out: two gateways behind HAProxy ----------------------------------------------


def topic_consumers(broker: AmqBroker, topic: str) -> int:
    """The broker's consumer count of *topic*, from its statistics plugin."""
    replies: queue.Queue[Any] = queue.Queue()

    class Listener(stomp.ConnectionListener):
        def on_message(self, frame: Any) -> None:
            replies.put(frame)

    conn = stomp.Connection12([(broker.host, broker.stomp_port)])
    conn.set_listener("stats", Listener())
    conn.connect(wait=True)
    try:
        reply_to = f"/temp-queue/{unique('stats')}"
        conn.subscribe(reply_to, id="1", headers={"transformation": "jms-map-json"})
        conn.send(f"/topic/ActiveMQ.Statistics.Destination.{topic}", "",
                  headers={"reply-to": reply_to})
        entries = json.loads(replies.get(timeout=TIMEOUT).body)["map"]["entry"]
        return next(int(e["long"]) for e in entries if e.get("string") == "consumerCount")
    finally:
        conn.disconnect()


class Advisories(stomp.ConnectionListener):
    """A broker's consumer advisories for one topic: the consumer count, as it changes."""

    def __init__(self, broker: AmqBroker, topic: str) -> None:
        self.counts: list[int] = []
        self.changed = threading.Condition()
        self.conn = stomp.Connection12([(broker.host, broker.stomp_port)])
        self.conn.set_listener("advisories", self)
        self.conn.connect(wait=True)
        self.conn.subscribe(f"/topic/ActiveMQ.Advisory.Consumer.Topic.{topic}", id="1")

    def on_message(self, frame: Any) -> None:
        with self.changed:
            self.counts.append(int(frame.headers.get("consumerCount", "0")))
            self.changed.notify_all()

    def wait_for(self, count: int) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: count in self.counts, TIMEOUT), self.counts

    def close(self) -> None:
        self.conn.disconnect()


def health(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=TIMEOUT) as r:
        return dict(json.loads(r.read()))


@pytest.mark.skipif(not haproxy_available(), reason="haproxy missing: apt-get install haproxy")
def test_two_gateways_behind_haproxy_on_two_brokers_of_the_network(
        activemq_network: AmqNetwork) -> None:
    """Stateless gateways behind a balancer, each on its own broker; the brokers' network
    carries the messages. A publisher reaches the subscribers of both gateways, and each
    gateway holds one broker subscription for the topic however many clients share it."""
    ports = [free_port(), free_port()]
    gateways = []
    for i, (port, broker) in enumerate(zip(ports, (activemq_network.a, activemq_network.b),
                                           strict=True), 1):
        xml = gateway_xml([
            service_xml("jms", f"ws://127.0.0.1:{port}/jms",
                        f"stomp://{broker.host}:{broker.stomp_port}", name="jms"),
            service_xml("health", f"http://127.0.0.1:{port}/health", name="health")])
        gateways.append(GatewayProcess(xml, name=f"scale{i}", args=QUICK_STOP).start())
    front = free_port()
    topic = unique("kgw.scale")
    watch = [Advisories(activemq_network.a, topic), Advisories(activemq_network.b, topic)]
    clients: list[Stomp] = []
    try:
        with HAProxy("pool.cfg.in", bind=f"127.0.0.1:{front}", check_inter="200ms",
                     servers=servers(ports), extra=""):
            try:
                subscribers = []
                for i in range(4):
                    client = Stomp(front)
                    clients.append(client)
                    subscribers.append(client)
                    client.subscribe(f"/topic/{topic}", f"s{i}")
                # Round robin: two subscribers on each gateway, each on its own broker.
                reports = [health(p) for p in ports]
                assert [r["services"]["jms"]["connections"] for r in reports] == [2, 2]
                assert [{uri: (state["up"], state["active"]) for uri, state
                         in r["backends"]["jms"].items()} for r in reports] == [
                    {f"stomp://127.0.0.1:{b.stomp_port}": (True, 1)}
                    for b in (activemq_network.a, activemq_network.b)]
                # Each broker: its gateway's one subscription + the network bridge's one
                # for the other broker's demand. Wait for both before publishing (a topic
                # message is forwarded only to demand that has crossed the bridge).
                for advisories in watch:
                    advisories.wait_for(2)
                publisher = Stomp(front)
                clients.append(publisher)
                for n in range(20):
                    publisher.send(f"/topic/{topic}", f"m{n}")
                for client in subscribers:
                    assert [client.get().body for _ in range(20)] == [f"m{n}" for n in
                                                                      range(20)]
                assert topic_consumers(activemq_network.a, topic) == 2
                assert topic_consumers(activemq_network.b, topic) == 2
            finally:
                # While HAProxy still relays their DISCONNECTs.
                for client in clients:
                    client.close()
    finally:
        for advisories in watch:
            advisories.close()
        for gw in gateways:
            gw.stop(signal.SIGTERM)


# --- fail-over under load ---------------------------------------------------------------


def run_outage(name: str, ledger: Ledger, clients: Sequence[LoadClient],
               kill: Callable[[], None], restart: Callable[[], None], *,
               after_kill: Callable[[float], float | None] = lambda t_kill: None,
               drain_before_restart: bool) -> dict[str, Any]:
    """Clients under load; kill; every client served again; stop the publishers; drain;
    restart. Returns the figures."""
    for client in clients:
        client.start()
    try:
        for client in clients:
            assert client.ready.wait(20), f"{client.name} never connected"
        ledger.wait_sent(100)
        t_kill = time.monotonic()
        kill()  # returns once the node's process is gone
        t_dead = time.monotonic()
        gateway_seconds = after_kill(t_kill)
        sent_at_kill = len(ledger.sent)
        # Service resumes for everyone: 100 more confirmed, and every client succeeded
        # again after the kill.
        ledger.wait_sent(sent_at_kill + 100)
        ledger.wait(lambda: all(c.tally.served_after(t_dead) for c in clients), 30,
                    "every client served again after the kill")
        for client in clients:
            if isinstance(client, AmqpPublisher | StompPublisher):
                client.stop()
        if drain_before_restart:
            ledger.wait_drained()
            restart()
        else:
            restart()
            ledger.wait_drained()
    finally:
        for client in clients:
            client.stop()
    errors = [(c.name, c.tally.error) for c in clients if c.tally.error is not None]
    assert not errors, errors
    pauses = {c.name: c.tally.longest_pause(t_kill, t_dead) for c in clients}
    affected = [c.name for c in clients if c.tally.broke_after(t_kill)]
    figures = {
        "outage": name, "sent": len(ledger.sent), "received": len(ledger.received),
        "lost": len(ledger.lost()), "duplicates": ledger.duplicates(),
        "clients": len(clients), "clients_reconnected": len(affected),
        "kill_command_s": round(t_dead - t_kill, 3),
        "longest_client_pause_s": round(max(pauses.values()), 3),
        "pauses_s": {k: round(v, 3) for k, v in pauses.items()},
    }
    if gateway_seconds is not None:
        figures["gateway_failover_s"] = round(gateway_seconds, 3)
    print(json.dumps(figures))
    return figures


def declare_classic(node: RabbitNode, name: str) -> None:
    """A durable classic queue homed on *node* (declared through it)."""
    conn = pika.BlockingConnection(pika.ConnectionParameters(
        node.host, node.port, credentials=pika.PlainCredentials("guest", "guest")))
    try:
        conn.channel().queue_declare(name, durable=True)
    finally:
        conn.close()


def delete_queue(node: RabbitNode, name: str) -> None:
    conn = pika.BlockingConnection(pika.ConnectionParameters(
        node.host, node.port, credentials=pika.PlainCredentials("guest", "guest")))
    try:
        conn.channel().queue_delete(name)
    finally:
        conn.close()


@pytest.fixture(scope="module")
def background() -> Iterator[list[threading.Thread]]:
    """Slow clean-ups (a node's restart) run while the next tests do; joined at the end of
    the module, so the clusters are whole for the modules after."""
    threads: list[threading.Thread] = []
    yield threads
    for thread in threads:
        thread.join(180)
        assert not thread.is_alive(), f"{thread.name} still running"


def in_background(threads: list[threading.Thread], name: str, work: Callable[[], None]
                  ) -> Callable[[], None]:
    def start() -> None:
        thread = threading.Thread(target=work, name=name, daemon=True)
        thread.start()
        threads.append(thread)
    return start


@pytest.fixture(scope="module")
def amqp_gateway(rabbitmq_cluster: RabbitCluster) -> Iterator[int]:
    port = free_port()
    connects = [f"tcp://{n.host}:{n.port}" for n in rabbitmq_cluster.nodes]
    xml = gateway_xml([service_xml(
        "amqp.proxy", f"tcp://127.0.0.1:{port}", connects, name="amqp",
        properties="<connect.probe.interval>200ms</connect.probe.interval>")])
    with GatewayProcess(xml, name="amqp-cluster", args=QUICK_STOP):
        yield port


@outage
def test_amqp_clients_fail_over_to_the_other_rabbitmq_node_and_lose_nothing(
        rabbitmq_cluster: RabbitCluster, amqp_gateway: int,
        background: list[threading.Thread],
        record_property: Callable[[str, object], None]) -> None:
    """Each node killed in turn under load (3 publishers with confirms, 3 consumers with
    manual acks, spread over both nodes by the gateway): the killed node's clients are
    closed, reconnect through the gateway to the other node, and every confirmed message
    is delivered. The queue of each round is a classic queue homed on the node that stays
    (two nodes cannot keep a quorum queue available)."""
    results = []
    for victim, survivor in (("kgw1", "kgw2"), ("kgw2", "kgw1")):
        queue_name = unique(f"kgw.failover.{victim}")
        declare_classic(rabbitmq_cluster.node(survivor), queue_name)
        ledger = Ledger()
        clients: list[LoadClient] = []
        for i in range(3):
            clients.append(AmqpPublisher(f"pub{i}", ledger, amqp_gateway, queue_name))
            clients.append(AmqpConsumer(f"con{i}", ledger, amqp_gateway, queue_name))
        restart = functools.partial(rabbitmq_cluster.restart, victim)
        if victim == "kgw2":
            restart = in_background(background, "restart kgw2", restart)
        figures = run_outage(f"RabbitMQ {victim} killed", ledger, clients,
                             functools.partial(rabbitmq_cluster.kill, victim), restart,
                             drain_before_restart=True)
        delete_queue(rabbitmq_cluster.node(survivor), queue_name)
        results.append(figures)
        assert figures["lost"] == 0, figures
        assert figures["clients_reconnected"] >= 1, figures  # the kill did hit clients
    record_property("rabbitmq_failover", json.dumps(results))


@pytest.fixture(scope="module")
def jms_gateway(activemq_network: AmqNetwork) -> Iterator[tuple[GatewayProcess, int]]:
    port = free_port()
    brokers = [f"stomp://{b.host}:{b.stomp_port}" for b in (activemq_network.a,
                                                             activemq_network.b)]
    props = ("<connection.count>2</connection.count>"
             "<reconnect.delay>100ms</reconnect.delay>"
             "<reconnect.delay.maximum>500ms</reconnect.delay.maximum>"
             "<queue.prefetch>20</queue.prefetch>")
    xml = gateway_xml([service_xml("jms", f"ws://127.0.0.1:{port}/jms", brokers, name="jms",
                                   properties=props)])
    with GatewayProcess(xml, name="jms-network", args=QUICK_STOP) as gw:
        gw.wait_for(r"connected to broker stomp://127\.0\.0\.1:61713 \(jms#1\)", TIMEOUT)
        gw.wait_for(r"connected to broker stomp://127\.0\.0\.1:61723 \(jms#2\)", TIMEOUT)
        yield gw, port


@outage
def test_jms_broker_connections_fail_over_in_the_network_and_lose_nothing(
        activemq_network: AmqNetwork, jms_gateway: tuple[GatewayProcess, int],
        record_property: Callable[[str, object], None]) -> None:
    """Each broker killed in turn under load (3 publishers of persistent messages waiting
    for RECEIPTs, 3 client-individual consumers; the gateway's two broker connections start
    on A and on B): the killed broker's connection moves to the other broker and subscribes
    again there, clients keep their WebSocket, and every receipted message is delivered
    once the killed broker is back and the network forwards what it held."""
    gw, port = jms_gateway
    results = []
    for victim, survivor in (("A", activemq_network.b), ("B", activemq_network.a)):
        destination = f"/queue/{unique(f'kgw.failover.{victim}')}"
        ledger = Ledger()
        clients: list[LoadClient] = []
        for i in range(3):
            clients.append(StompPublisher(f"pub{i}", ledger, port, destination))
            clients.append(StompConsumer(f"con{i}", ledger, port, destination))
        mark = gw.mark()

        def gateway_moved(t_kill: float, survivor: AmqBroker = survivor,
                          mark: int = mark) -> float:
            gw.wait_for(rf"connected to broker stomp://127\.0\.0\.1:{survivor.stomp_port} ",
                        20, start=mark)
            return time.monotonic() - t_kill

        figures = run_outage(f"ActiveMQ {victim} killed", ledger, clients,
                             functools.partial(activemq_network.kill, victim),
                             functools.partial(activemq_network.restart, victim),
                             after_kill=gateway_moved, drain_before_restart=False)
        results.append(figures)
        assert figures["lost"] == 0, figures
        assert figures["clients_reconnected"] == 0, figures  # nobody lost the WebSocket
    record_property("activemq_failover", json.dumps(results))
