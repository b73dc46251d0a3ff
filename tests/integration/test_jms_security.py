"""The jms attacks of the security review, replayed against a real twistd gateway and real
ActiveMQ: each must now end in a STOMP ERROR naming the rule, and the gateway must go on
serving everyone else.

    attacker (websocket-client) --+
    victims (stomp.py)          --+--ws--> twistd -n kgateway (jms) --STOMP--> ActiveMQ
    witness (direct STOMP)      --------------------------------------------> ActiveMQ

Two gateways: ``limits`` with small limits so floods and timeouts are quick, ``defaults``
with the shipped defaults (one 5,000-SUBSCRIBE flood against maximum.subscriptions 1000).
Every wait is on an event (a frame, a close, a log line) with a timeout.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import stomp
import websocket

from tests.helpers import GatewayProcess, free_port, gateway_xml, service_xml
from tests.integration.test_jms import TIMEOUT, Client, Raw, broker_consumer_count, unique

pytestmark = pytest.mark.slow


def start_gateway(activemq: tuple[str, int], name: str, props: str) -> GatewayProcess:
    port = free_port()
    xml = gateway_xml([service_xml("jms", f"ws://localhost:{port}/jms",
                                   f"stomp://{activemq[0]}:{activemq[1]}", name="jms",
                                   properties=props)])
    gw = GatewayProcess(xml, name=name).start()
    gw.wait_for(r"connected to broker .*jms#1", TIMEOUT)
    gw.port = port  # type: ignore[attr-defined]
    return gw


@pytest.fixture(scope="module")
def limits(activemq: tuple[str, int]) -> Iterator[GatewayProcess]:
    gw = start_gateway(activemq, "jmslimits",
                       "<connect.timeout>1sec</connect.timeout>"
                       "<maximum.subscriptions>50</maximum.subscriptions>"
                       "<maximum.broker.subscriptions>300</maximum.broker.subscriptions>"
                       "<maximum.pending.bytes>256k</maximum.pending.bytes>")
    yield gw
    gw.stop()


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for c in made:
        try:
            c.close()
        except Exception:
            pass


def new(clients: list[Client], gw: GatewayProcess) -> Client:
    c = Client(gw.port)  # type: ignore[attr-defined]
    clients.append(c)
    return c


def stomp_frames(data: bytes) -> list[tuple[str, dict[str, str], bytes]]:
    """The frames in one WebSocket message (no content-length bodies with NULs here)."""
    frames = []
    for chunk in data.split(b"\0"):
        chunk = chunk.lstrip(b"\r\n")
        if not chunk:
            continue
        head, _, body = chunk.partition(b"\n\n")
        lines = head.decode().split("\n")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.setdefault(k, v)
        frames.append((lines[0], headers, body))
    return frames


def read_to_close(ws: websocket.WebSocket) -> tuple[list[tuple[str, dict[str, str], bytes]],
                                                    int | None, str, int]:
    """Every STOMP frame until the WebSocket close: (frames, close code, reason, bytes)."""
    frames = []
    total = 0
    while True:
        try:
            opcode, data = ws.recv_data(control_frame=True)
        except websocket.WebSocketConnectionClosedException:
            return frames, None, "closed without a close frame", total
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
            return frames, code, data[2:].decode("utf-8", "replace"), total
        if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
            total += len(data)
            frames += stomp_frames(data if isinstance(data, bytes) else data.encode())


def refused(gw: GatewayProcess, frame: str) -> tuple[dict[str, str], int | None, str]:
    raw = Raw(gw.port)  # type: ignore[attr-defined]
    raw.connect()
    raw.send(frame)
    frames, code, reason, _ = read_to_close(raw.ws)
    [(command, headers, body)] = frames
    assert command == "ERROR", frames
    headers["body"] = body.decode()
    return headers, code, reason


# -- 1. destinations --------------------------------------------------------------------------


@pytest.mark.parametrize("destination, rule", [
    ("/queue/>", "wildcard"),
    ("/queue/*", "wildcard"),
    ("/topic/ActiveMQ.Advisory.>", "wildcard"),
    ("/topic/ActiveMQ.Advisory.Connection", "internal"),
    ("/queue/ActiveMQ.DLQ", "internal"),
    ("/topic/ActiveMQ.Statistics.Broker", "internal"),
    ("/queue/kgw.tmp.>", "temporary"),
    ("/queue/x?consumer.exclusive=true", "not-plain"),
])
def test_reaching_past_a_plain_name_is_refused(limits, destination: str, rule: str) -> None:
    headers, code, reason = refused(
        limits, f"SUBSCRIBE\ndestination:{destination}\nid:1\nreceipt:r\n\n\0")
    assert headers["message"] == f"destination not allowed ({rule})"
    assert headers["receipt-id"] == "r" and destination in headers["body"]
    assert (code, reason) == (1008, f"destination not allowed ({rule})")


def test_a_queue_wildcard_steals_nothing_from_the_real_consumer(limits, clients) -> None:
    q = f"/queue/{unique('victim')}"
    producer = new(clients, limits)
    producer.send(q, "for the real consumer")
    headers, _, _ = refused(limits, "SUBSCRIBE\ndestination:/queue/>\nid:1\n\n\0")
    assert headers["message"] == "destination not allowed (wildcard)"
    consumer = new(clients, limits)
    consumer.subscribe(q, "c")
    assert consumer.get().body == "for the real consumer"


def test_other_clients_temporaries_are_out_of_reach_and_request_reply_works(limits,
                                                                           clients) -> None:
    service_q = f"/queue/{unique('rpc')}"
    server, requester = new(clients, limits), new(clients, limits)
    server.subscribe(service_q, "srv")
    requester.subscribe("/temp-queue/replies", "rep")
    requester.send(service_q, "ping", **{"reply-to": "/temp-queue/replies"})
    reply_to = server.get().headers["reply-to"]
    assert reply_to.startswith("/queue/kgw.tmp.")
    # An eavesdropper who learnt the name can neither read the replies nor forge one.
    for frame in (f"SUBSCRIBE\ndestination:{reply_to}\nid:1\n\n\0",
                  f"SEND\ndestination:{reply_to}\n\nforged\0"):
        assert refused(limits, frame)[0]["message"] == "destination not allowed (temporary)"
    server.send(reply_to, "pong")  # the server it was shown to answers
    reply = requester.get()
    assert reply.body == "pong" and reply.headers["destination"] == "/temp-queue/replies"
    requester.nothing_more()


# -- 2. subscription floods ---------------------------------------------------------------------


class Witness:
    """A client publishing to itself in a loop on a thread, timing each round trip."""

    def __init__(self, gw: GatewayProcess, clients: list[Client]) -> None:
        self.client = new(clients, gw)
        self.topic = f"/topic/{unique('witness')}"
        self.client.subscribe(self.topic, "w")
        self.rounds: list[float] = []
        self.stop = threading.Event()
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            n = 0
            while not self.stop.is_set() or n < 3:
                started = time.monotonic()
                self.client.send(self.topic, str(n))
                assert self.client.get().body == str(n)
                self.rounds.append(time.monotonic() - started)
                n += 1
        except BaseException as e:  # reported by finish()
            self.failure = e

    def finish(self) -> list[float]:
        self.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive() and self.failure is None, self.failure
        return self.rounds


def flood(gw: GatewayProcess, count: int, prefix: str,
          per_message: int = 250) -> tuple[list[tuple[str, dict[str, str], bytes]],
                                           int | None, str]:
    """One WebSocket sends *count* SUBSCRIBEs to distinct topics; what it got back."""
    raw = Raw(gw.port)  # type: ignore[attr-defined]
    raw.connect()
    try:
        for start in range(0, count, per_message):
            raw.send("".join(f"SUBSCRIBE\ndestination:/topic/{prefix}.{n}\nid:{n}\n\n\0"
                             for n in range(start, min(count, start + per_message))))
    except (OSError, websocket.WebSocketException):
        pass  # the gateway closed it mid-flood: what it said is read below
    frames, code, reason, _ = read_to_close(raw.ws)
    return frames, code, reason


def test_subscription_flood_is_cut_at_the_limit_while_others_are_served(limits,
                                                                        clients) -> None:
    witness = Witness(limits, clients)
    prefix = unique("flood")
    frames, code, reason = flood(limits, 2000, prefix)
    rounds = witness.finish()
    [(command, headers, body)] = frames
    assert (command, headers["message"]) == ("ERROR", "too many subscriptions")
    assert "50" in body.decode() and "maximum.subscriptions" in body.decode()
    assert (code, reason) == (1008, "too many subscriptions")
    assert max(rounds) < 5, rounds
    # The broker is up, and the gateway gave back what the attacker held.
    assert broker_consumer_count(f"{prefix}.0") == 0
    print(f"witness: {len(rounds)} round trips during the flood, worst {max(rounds):.3f}s")


def test_broker_subscriptions_of_the_gateway_are_capped(limits, clients) -> None:
    prefix = unique("cap")
    holders = []
    accepted = 0
    message = None
    for h in range(10):  # 50 each, until the gateway's 300 are used up
        raw = Raw(limits.port)  # type: ignore[attr-defined]
        raw.connect()
        holders.append(raw)
        raw.send("".join(f"SUBSCRIBE\ndestination:/topic/{prefix}.{h}.{n}\nid:{n}\n"
                         f"receipt:{n}\n\n\0" for n in range(50)))
        for _ in range(50):
            command, headers, _ = raw.frame()
            if command == "ERROR":
                message = headers["message"]
                break
            accepted += 1
        if message:
            break
    assert message == "broker subscription limit"
    assert 250 <= accepted <= 300, accepted
    # A topic the gateway already holds is shared, so still open to everyone...
    shared = new(clients, limits)
    shared.subscribe(f"/topic/{prefix}.0.0", "s")
    for raw in holders:
        raw.ws.close()
    # ...and once the holders leave, new topics are too.
    fresh = new(clients, limits)
    fresh.subscribe(f"/topic/{unique('fresh')}", "f")


def test_default_limit_cuts_a_5000_subscribe_flood_at_1000(activemq, clients) -> None:
    gw = start_gateway(activemq, "jmsdefaults", "")
    try:
        witness = Witness(gw, clients)
        started = time.monotonic()
        frames, code, reason = flood(gw, 5000, unique("flood5k"), per_message=500)
        took = time.monotonic() - started
        rounds = witness.finish()
        rss = gw.rss_kib()
        assert [(c, h["message"]) for c, h, _ in frames] == [("ERROR", "too many subscriptions")]
        assert "1000" in frames[0][2].decode()
        assert (code, reason) == (1008, "too many subscriptions")
        assert max(rounds) < 5, rounds
        print(f"5000-SUBSCRIBE flood cut at 1000 in {took:.1f}s; witness worst round trip "
              f"{max(rounds):.3f}s over {len(rounds)}; gateway RSS {rss / 1024:.0f} MiB")
    finally:
        for c in clients:
            c.close()
        clients.clear()
        gw.stop()


# -- 4. timeouts ------------------------------------------------------------------------------------


def test_sockets_that_never_connect_are_closed_after_the_connect_timeout(limits) -> None:
    started = time.monotonic()
    silent = [websocket.create_connection(f"ws://127.0.0.1:{limits.port}/jms",  # type: ignore[attr-defined]
                                          timeout=TIMEOUT, subprotocols=["v12.stomp"])
              for _ in range(100)]
    silent[0].send("CONNECT\naccept-version:1.2\n")  # a CONNECT that never ends
    for ws in silent:
        frames, code, reason, _ = read_to_close(ws)
        assert [(c, h["message"]) for c, h, _ in frames] == [("ERROR", "connect timeout")]
        assert (code, reason) == (1008, "connect timeout")
    assert time.monotonic() - started < TIMEOUT


def test_an_idle_client_is_closed_and_a_heart_beating_one_is_not(activemq) -> None:
    gw = start_gateway(activemq, "jmsidle", "<idle.timeout>1sec</idle.timeout>"
                                            "<heartbeat.interval>200ms</heartbeat.interval>")
    try:
        beating = stomp.WSStompConnection([("127.0.0.1", gw.port)], ws_path="/jms",  # type: ignore[attr-defined]
                                          vhost="/", heartbeats=(200, 200),
                                          header={"Sec-WebSocket-Protocol": "v12.stomp"})
        listener = Client.__new__(Client)
        Client.__init__(listener, gw.port, connect=False)  # type: ignore[attr-defined]
        beating.set_listener("test", listener)
        beating.connect(wait=True)
        started = time.monotonic()
        for _ in range(2):  # two idle clients in turn: more than twice idle.timeout in all
            raw = Raw(gw.port)  # type: ignore[attr-defined]
            raw.send("CONNECT\naccept-version:1.2\nhost:/\nheart-beat:0,0\n\n\0")
            frames, code, reason, _ = read_to_close(raw.ws)
            assert [c for c, _, _ in frames] == ["CONNECTED", "ERROR"]
            assert frames[1][1]["message"] == "idle timeout"
            assert (code, reason) == (1008, "idle timeout")
        assert time.monotonic() - started > 2
        topic = f"/topic/{unique('alive')}"
        rid = unique("r")
        beating.subscribe(topic, id="1", headers={"receipt": rid})
        listener.wait_receipt(rid)
        beating.send(topic, "still here")
        assert listener.get().body == "still here"
        beating.disconnect()
    finally:
        gw.stop()


# -- 7. slow consumers ------------------------------------------------------------------------------


def test_a_slow_consumer_gets_the_error_and_a_1008_close_not_a_reset(limits, clients) -> None:
    topic = f"/topic/{unique('slow')}"
    # A client with a small receive buffer that stops reading (set before connecting, as a
    # real one would have it; shrunk afterwards, loopback TCP crawls at the persist timer's
    # pace, slower than any close handshake waits).
    slow = Raw.__new__(Raw)
    slow.buffer = b""
    slow.ws = websocket.create_connection(
        f"ws://127.0.0.1:{limits.port}/jms", timeout=TIMEOUT,  # type: ignore[attr-defined]
        subprotocols=["v12.stomp"], sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),))
    slow.connect()
    slow.send(f"SUBSCRIBE\ndestination:{topic}\nid:s\nreceipt:r\n\n\0")
    slow.frame()
    fast = new(clients, limits)
    fast.subscribe(topic, "f")
    pub = new(clients, limits)
    mark = limits.mark()
    body = "x" * 60_000
    n = 0
    while not any("ERROR slow consumer" in line for line in limits.lines[mark:]):
        assert n < 400, "the slow consumer was never cut"
        for j in range(n, n + 4):
            pub.conn.send(topic, body, headers={"n": str(j)})
        for j in range(n, n + 4):
            assert fast.get().headers["n"] == str(j)
        n += 4
    frames, code, reason, backlog = read_to_close(slow.ws)
    commands = [c for c, _, _ in frames]
    assert commands[-1] == "ERROR" and set(commands[:-1]) <= {"MESSAGE"}, commands
    assert frames[-1][1]["message"] == "slow consumer"
    assert (code, reason) == (1008, "slow consumer")
    pub.send(topic, "the others go on")
    assert fast.get().body == "the others go on"
    print(f"slow consumer: cut after {n} messages published; read {backlog} bytes "
          f"({len(frames) - 1} messages) before its ERROR")


def test_activemq_is_still_up(activemq: Any) -> None:
    """Run after the floods: the broker answers a direct STOMP client."""
    c = stomp.Connection([activemq])
    c.connect(wait=True)
    assert c.is_connected()
    c.disconnect()
