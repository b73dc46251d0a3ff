"""jms sessions and broker connections in memory: FakeLink clients, a fake broker link, Clock.

    FakeLink clients --bytes--> JmsSession --> BrokerConnection --FakeLink--> (test plays broker)

The test reads what the gateway wrote to the broker with the codec's own FrameParser and
answers with encoded frames, so every step is deterministic and instant.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.internet.task import Clock
from zope.interface import implementer
from zope.interface.verify import verifyObject

from kgateway.auth.principal import Principal
from kgateway.interfaces import ConnectError, IConnector, IGatewayService, ILink, ISession
from kgateway.jms.session import CLOSE_GRACE
from kgateway.protocols.stomp import Frame, FrameParser, encode
from kgateway.services import load_config
from kgateway.services.jms import JmsService
from tests.unit.fakes import FakeLink, build, load, memory_gate


@implementer(IConnector)
class Broker:
    """Plays ActiveMQ on the far side of each BrokerConnection (the Connector it is given)."""

    def __init__(self) -> None:
        self.dials: list[tuple[Any, defer.Deferred[ILink]]] = []
        self.links: list[FakeLink] = []
        self.read = 0

    def connect(self, uri: Any, options: Any, receiver: Any, *, protocols: Any = (),
                client: str = "") -> defer.Deferred[ILink]:
        d: defer.Deferred[ILink] = defer.Deferred()
        self.dials.append((receiver, d))
        return d

    def accept(self, index: int = -1) -> tuple[Any, FakeLink]:
        peer, d = self.dials[index]
        link = FakeLink(websocket=False, remote="broker:61613")
        self.links.append(link)
        d.callback(link)
        frames = self.frames(link)
        assert frames[-1].command == "CONNECT"
        peer.received(encode(Frame("CONNECTED", [("version", "1.2")])), True)
        return peer, link

    @staticmethod
    def frames(link: FakeLink) -> list[Frame]:
        return [f for f in FrameParser().feed(link.data) if isinstance(f, Frame)]

    @staticmethod
    def sent(link: FakeLink, command: str) -> list[Frame]:
        return [f for f in Broker.frames(link) if f.command == command]


@pytest.fixture
def setup(tmp_path):  # type: ignore[no-untyped-def]
    path = tmp_path / "g.xml"
    path.write_text(
        "<gateway-config><service><name>jms</name><accept>ws://h:1/jms</accept>"
        "<connect>stomp://mq:61613</connect><type>jms</type><properties>"
        "<maximum.pending.bytes>1000</maximum.pending.bytes>"
        "<reconnect.delay>1sec</reconnect.delay><reconnect.delay.maximum>4sec"
        "</reconnect.delay.maximum><heartbeat.interval>5sec</heartbeat.interval>"
        "<topic><name>lvc</name><cache.size>2</cache.size></topic>"
        "</properties></service></gateway-config>")
    cfg = load_config(str(path), {}, {})
    clock = Clock()
    broker = Broker()
    service = build(cfg, reactor=clock, connector=broker)
    assert isinstance(service, JmsService)
    service.start()
    peer, link = broker.accept()
    return service, clock, broker, peer, link


def client(service: JmsService, version: str = "1.2", heartbeat: str = "0,0",
           extra: str = "") -> tuple[ISession, FakeLink]:
    link = FakeLink(protocol="v12.stomp")
    session = service.session(link)
    assert session.negotiate(["v10.stomp", "v12.stomp"]) == "v12.stomp"
    session.opened()
    session.received(f"CONNECT\naccept-version:{version}\nheart-beat:{heartbeat}\n{extra}\n\0"
                     .encode(), False)
    return session, link


def client_frames(link: FakeLink, version: str = "1.2") -> list[Frame]:
    return [f for f in FrameParser(version).feed(link.data) if isinstance(f, Frame)]


def receipt_for(peer: Any, frame: Frame) -> None:
    peer.received(encode(Frame("RECEIPT", [("receipt-id", frame.get("receipt") or "")])), True)


def broker_message(peer: Any, sub: str, body: bytes, dest: str, mid: str = "ID:1",
                   **headers: str) -> None:
    h = [("subscription", sub), ("destination", dest), ("message-id", mid), ("ack", mid)]
    peer.received(encode(Frame("MESSAGE", h + list(headers.items()), body)), True)


def test_interfaces(setup) -> None:  # type: ignore[no-untyped-def]
    service = setup[0]
    assert verifyObject(IGatewayService, service)
    assert verifyObject(ISession, service.session(FakeLink()))


def test_connect_negotiates_version_and_heartbeats(setup) -> None:  # type: ignore[no-untyped-def]
    service, clock, *_ = setup
    _, link = client(service, "1.0,1.1", heartbeat="1000,2000")
    [connected] = client_frames(link)
    assert connected.command == "CONNECTED"
    assert connected.get("version") == "1.1" and connected.get("heart-beat") == "5000,5000"
    before = len(link.messages)
    clock.advance(5)  # the gateway sends every max(5000, 2000) ms
    assert link.messages[before:] == [(b"\n", False)]
    clock.advance(5)  # and expects the client every max(1000, 5000) ms, x2 slack
    assert link.closes == []
    clock.advance(10)
    assert link.closes and "heart-beat timeout" in link.data.decode()


def test_one_broker_subscription_for_many_clients_each_with_its_own_id(setup) -> None:  # type: ignore[no-untyped-def]
    service, clock, broker, peer, blink = setup
    links = []
    for i in range(50):
        session, link = client(service, version="1.2" if i % 2 else "1.0")
        session.received(f"SUBSCRIBE\ndestination:/topic/t\nid:c{i}\nreceipt:r{i}\n\n\0"
                         .encode(), False)
        links.append(link)
    subscribes = [f for f in broker.sent(blink, "SUBSCRIBE") if f.get("destination") == "/topic/t"]
    assert len(subscribes) == 1
    assert not any(f.command == "RECEIPT" for f in client_frames(links[0], "1.0"))
    receipt_for(peer, subscribes[0])  # every client's receipt waits for the broker's
    broker_message(peer, subscribes[0].get("id") or "", b"hi", "/topic/t")
    for i, link in enumerate(links):
        frames = client_frames(link, "1.2" if i % 2 else "1.0")
        assert [f.command for f in frames] == ["CONNECTED", "RECEIPT", "MESSAGE"]
        message = frames[-1]
        assert message.get("subscription") == f"c{i}" and message.body == b"hi"
        assert message.get("destination") == "/topic/t"
    # The last member leaving ends the broker subscription.
    for session in list(service.sessions):
        session.closed(1000, "")
    assert len(broker.sent(blink, "UNSUBSCRIBE")) == 1


def test_selectors_get_their_own_shared_subscription(setup) -> None:  # type: ignore[no-untyped-def]
    service, _, broker, _, blink = setup
    for i, selector in enumerate(["a = 1", "a = 1", "a = 2", None]):
        session, _ = client(service)
        header = f"selector:{selector}\n" if selector else ""
        session.received(f"SUBSCRIBE\ndestination:/topic/s\nid:{i}\n{header}\n\0".encode(),
                         False)
    subs = [f for f in broker.sent(blink, "SUBSCRIBE") if f.get("destination") == "/topic/s"]
    assert sorted(str(f.get("selector")) for f in subs) == ["None", "a = 1", "a = 2"]


def test_queue_client_ack_is_cumulative_and_mapped_to_broker_acks(setup) -> None:  # type: ignore[no-untyped-def]
    service, _, broker, peer, blink = setup
    session, link = client(service)
    session.received(b"SUBSCRIBE\ndestination:/queue/q\nid:mine\nack:client\n\n\0", False)
    [sub] = [f for f in broker.sent(blink, "SUBSCRIBE") if f.get("destination") == "/queue/q"]
    assert sub.get("ack") == "client-individual" and sub.get("activemq.prefetchSize") == "100"
    for n in range(1, 4):
        broker_message(peer, sub.get("id") or "", b"m", "/queue/q", mid=f"ID:{n}")
    messages = [f for f in client_frames(link) if f.command == "MESSAGE"]
    assert [m.get("ack") for m in messages] == ["ID:1", "ID:2", "ID:3"]
    assert all(m.get("subscription") == "mine" for m in messages)
    session.received(b"ACK\nid:ID:2\n\n\0", False)
    assert [f.get("id") for f in broker.sent(blink, "ACK")] == ["ID:1", "ID:2"]
    # Leaving with ID:3 unacked: the broker subscription ends, so the broker redelivers it.
    session.closed(1000, "")
    assert [f.get("id") for f in broker.sent(blink, "UNSUBSCRIBE")] == [sub.get("id")]


def test_auto_ack_queue_waits_while_the_client_is_slow(setup) -> None:  # type: ignore[no-untyped-def]
    service, _, broker, peer, blink = setup
    session, link = client(service)
    session.received(b"SUBSCRIBE\ndestination:/queue/q\nid:1\n\n\0", False)
    [sub] = [f for f in broker.sent(blink, "SUBSCRIBE") if f.get("destination") == "/queue/q"]
    link.producer.pauseProducing()
    broker_message(peer, sub.get("id") or "", b"x" * 5000, "/queue/q", mid="ID:9")
    assert broker.sent(blink, "ACK") == [] and link.closes == []
    link.producer.resumeProducing()
    assert [f.get("id") for f in broker.sent(blink, "ACK")] == ["ID:9"]


def test_slow_topic_consumer_gets_error_and_close_others_unaffected(setup) -> None:  # type: ignore[no-untyped-def]
    service, _, broker, peer, blink = setup
    slow, slow_link = client(service)
    fast, fast_link = client(service)
    for s in (slow, fast):
        s.received(b"SUBSCRIBE\ndestination:/topic/t\nid:1\n\n\0", False)
    [sub] = [f for f in broker.sent(blink, "SUBSCRIBE") if f.get("destination") == "/topic/t"]
    slow_link.producer.pauseProducing()
    for n in range(3):
        broker_message(peer, sub.get("id") or "", b"y" * 600, "/topic/t", mid=f"ID:{n}")
    assert client_frames(slow_link)[-1].get("message") == "slow consumer"
    slow_link.producer.resumeProducing()  # the close frame follows once the link drained
    assert slow_link.closes and slow_link.closes[0][1] == "slow consumer"
    assert len([f for f in client_frames(fast_link) if f.command == "MESSAGE"]) == 3
    assert slow not in service.sessions and fast in service.sessions


def test_transactions_map_ids_and_abort_on_disconnect(setup) -> None:  # type: ignore[no-untyped-def]
    service, _, broker, _, blink = setup
    a, _ = client(service)
    b, _ = client(service)
    for s in (a, b):
        s.received(b"BEGIN\ntransaction:tx1\n\n\0SEND\ndestination:/queue/q\ntransaction:tx1"
                   b"\n\nx\0", False)
    begins = broker.sent(blink, "BEGIN")
    sends = broker.sent(blink, "SEND")
    assert len({f.get("transaction") for f in begins}) == 2  # unique per client
    assert [f.get("transaction") for f in sends] == [f.get("transaction") for f in begins]
    a.received(b"COMMIT\ntransaction:tx1\n\n\0", False)
    b.closed(1006, "gone")
    assert [f.get("transaction") for f in broker.sent(blink, "COMMIT")] == [begins[0].get(
        "transaction")]
    assert [f.get("transaction") for f in broker.sent(blink, "ABORT")] == [begins[1].get(
        "transaction")]


def test_send_receipt_only_after_the_broker_and_replayed_after_an_outage(setup) -> None:  # type: ignore[no-untyped-def]
    service, clock, broker, peer, blink = setup
    session, link = client(service)
    session.received(b"SEND\ndestination:/queue/q\nreceipt:mine\n\nbody\0", False)
    [send] = broker.sent(blink, "SEND")
    assert send.get("receipt") != "mine"
    assert [f.command for f in client_frames(link)] == ["CONNECTED"]
    peer.closed(None, "connection reset")  # the broker goes away before its RECEIPT
    clock.advance(1)
    peer2, blink2 = broker.accept()
    [again] = broker.sent(blink2, "SEND")
    assert again.body == b"body"
    receipt_for(peer2, again)
    assert client_frames(link)[-1].get("receipt-id") == "mine"
    assert link.closes == []


def test_reconnect_backs_off_and_resubscribes(setup) -> None:  # type: ignore[no-untyped-def]
    service, clock, broker, peer, blink = setup
    session, link = client(service)
    session.received(b"SUBSCRIBE\ndestination:/topic/t\nid:1\n\n\0", False)
    peer.closed(None, "gone")
    for delay in (1, 2, 4, 4):
        clock.advance(delay - 0.01)
        dials = len(broker.dials)
        clock.advance(0.01)
        assert len(broker.dials) == dials + 1
        broker.dials[-1][1].errback(ConnectError("refused"))
    clock.advance(4)
    peer2, blink2 = broker.accept()
    assert {f.get("destination") for f in broker.sent(blink2, "SUBSCRIBE")} >= {"/topic/t",
                                                                                "/topic/lvc"}
    sub = [f for f in broker.sent(blink2, "SUBSCRIBE") if f.get("destination") == "/topic/t"][0]
    broker_message(peer2, sub.get("id") or "", b"after", "/topic/t")
    assert client_frames(link)[-1].body == b"after" and link.closes == []


def test_transaction_lost_in_an_outage_is_reported(setup) -> None:  # type: ignore[no-untyped-def]
    service, clock, broker, peer, _ = setup
    session, link = client(service)
    session.received(b"BEGIN\ntransaction:t\n\n\0", False)
    peer.closed(None, "gone")
    clock.advance(1)
    broker.accept()
    session.received(b"COMMIT\ntransaction:t\nreceipt:c\n\n\0", False)
    error = client_frames(link)[-1]
    assert error.command == "ERROR" and error.get("message") == "transaction lost"
    assert error.get("receipt-id") == "c" and link.closes


def test_last_value_cache(setup) -> None:  # type: ignore[no-untyped-def]
    service, _, broker, peer, blink = setup
    [sub] = [f for f in broker.sent(blink, "SUBSCRIBE") if f.get("destination") == "/topic/lvc"]
    receipt_for(peer, sub)
    for n in range(4):
        broker_message(peer, sub.get("id") or "", f"v{n}".encode(), "/topic/lvc", mid=f"ID:{n}")
    session, link = client(service)
    session.received(b"SUBSCRIBE\ndestination:/topic/lvc\nid:late\nreceipt:r\n\n\0", False)
    frames = client_frames(link)
    assert [(f.command, f.body) for f in frames[1:]] == [("RECEIPT", b""), ("MESSAGE", b"v2"),
                                                          ("MESSAGE", b"v3")]


def test_temp_queue_names_are_per_client_and_reply_to_is_rewritten(setup) -> None:  # type: ignore[no-untyped-def]
    service, _, broker, peer, blink = setup
    a, a_link = client(service)
    b, _ = client(service)
    for s in (a, b):
        s.received(b"SUBSCRIBE\ndestination:/temp-queue/r\nid:1\n\n\0", False)
    names = [f.get("destination") for f in broker.sent(blink, "SUBSCRIBE")
             if "kgw.tmp" in (f.get("destination") or "")]
    assert len(set(names)) == 2
    a.received(b"SEND\ndestination:/queue/svc\nreply-to:/temp-queue/r\n\nq\0", False)
    assert broker.sent(blink, "SEND")[-1].get("reply-to") == names[0]
    sub = [f for f in broker.sent(blink, "SUBSCRIBE") if f.get("destination") == names[0]][0]
    broker_message(peer, sub.get("id") or "", b"answer", names[0] or "")
    assert client_frames(a_link)[-1].get("destination") == "/temp-queue/r"


@pytest.mark.parametrize("data, message", [
    (b"SEND\n\nx\0", "missing destination header"),
    (b"SEND\ndestination:/nowhere/x\n\n\0", "bad destination"),
    (b"SUBSCRIBE\ndestination:/queue/q\n\n\0", "missing id header"),
    (b"SUBSCRIBE\ndestination:/queue/q\nid:1\nack:sometimes\n\n\0", "bad ack mode"),
    (b"COMMIT\ntransaction:none\n\n\0", "unknown transaction"),
    (b"CONNECT\naccept-version:1.2\n\n\0", "already connected"),
    (b"SEND\ndestination:/queue/q\n\n" + b"z" * 5_000_000 + b"\0", "frame too large"),
    (b"SEND\nbad header\n\n\0", "malformed header"),
    (b"HELLO\n\n\0", "unknown command"),
])
def test_bad_input_gets_error_then_close(setup, data: bytes, message: str) -> None:  # type: ignore[no-untyped-def]
    service = setup[0]
    session, link = client(service)
    for i in range(0, len(data), 4096):  # split like WebSocket messages would be
        session.received(data[i:i + 4096], True)
    error = client_frames(link)[-1]
    assert (error.command, error.get("message")) == ("ERROR", message)
    assert link.closes == [(1000, message)]


def test_going_away_sends_an_error_and_leaves_the_1001_close_to_the_adapter(setup) -> None:  # type: ignore[no-untyped-def]
    service, _, broker, _, blink = setup
    session, link = client(service)
    session.received(b"SUBSCRIBE\ndestination:/queue/work\nid:1\nack:client\n\n\0", False)
    assert broker.sent(blink, "SUBSCRIBE")
    session.going_away()
    error = client_frames(link)[-1]
    assert (error.command, error.get("message")) == ("ERROR", "gateway shutting down")
    assert link.closes == []
    # Its queue subscription is given back, so the broker redelivers what it had not acked.
    assert broker.sent(blink, "UNSUBSCRIBE")
    session.going_away()
    assert [f.command for f in client_frames(link)].count("ERROR") == 1


def test_durable_needs_client_id_and_gets_a_dedicated_connection(setup) -> None:  # type: ignore[no-untyped-def]
    service, _, broker, _, _ = setup
    session, link = client(service)
    session.received(b"SUBSCRIBE\ndestination:/topic/d\nid:1\nactivemq.subscriptionName:n\n\n\0",
                     False)
    assert "client-id" in (client_frames(link)[-1].get("message") or "")
    session, link = client(service, extra="client-id:app1\n")
    assert [f.command for f in client_frames(link)] == []  # CONNECTED waits for the broker
    peer, dlink = broker.accept()
    connect = broker.sent(dlink, "CONNECT")[0]
    assert connect.get("client-id") == "app1"
    assert client_frames(link)[0].command == "CONNECTED"
    session.received(b"SUBSCRIBE\ndestination:/topic/d\nid:1\nactivemq.subscriptionName:n\n\n\0",
                     False)
    [sub] = broker.sent(dlink, "SUBSCRIBE")
    assert sub.get("activemq.subscriptionName") == "n" and sub.get("destination") == "/topic/d"
    session.closed(1000, "")
    assert broker.sent(dlink, "DISCONNECT")


def test_connection_count_spreads_topics_and_sessions(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "g.xml"
    path.write_text("<gateway-config><service><accept>ws://h:1/jms</accept>"
                    "<connect>stomp://mq:61613</connect><type>jms</type><properties>"
                    "<connection.count>2</connection.count></properties></service>"
                    "</gateway-config>")
    cfg = load_config(str(path), {}, {})
    broker = Broker()
    service = build(cfg, reactor=Clock(), connector=broker)
    assert isinstance(service, JmsService)
    service.start()
    (_, link1), (_, link2) = broker.accept(0), broker.accept(1)
    sessions = [client(service)[0] for _ in range(4)]
    assert {id(s.connection) for s in sessions} == {id(c) for c in service.connections}  # type: ignore[attr-defined]
    for n, s in enumerate(sessions):
        s.received(f"SUBSCRIBE\ndestination:/topic/t{n}\nid:1\n\n\0".encode(), False)
    assert broker.sent(link1, "SUBSCRIBE") and broker.sent(link2, "SUBSCRIBE")
    assert len(broker.sent(link1, "SUBSCRIBE")) + len(broker.sent(link2, "SUBSCRIBE")) == 4


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(min_value=1, max_value=400), max_size=12),
       binary=st.booleans())
def test_frames_split_and_merged_anyhow_reach_the_broker_the_same(setup, cuts, binary) -> None:  # type: ignore[no-untyped-def]
    service, _, broker, _, blink = setup
    stream = (b"CONNECT\naccept-version:1.2\n\n\0"
              b"SUBSCRIBE\ndestination:/queue/h\nid:1\nack:client\n\n\0\n\n"
              b"SEND\ndestination:/queue/h\ncontent-length:5\nk:a\\cb\n\nx\0y\0z\0"
              b"BEGIN\ntransaction:t\n\n\0SEND\ndestination:/topic/h\ntransaction:t\n\nq\0"
              b"COMMIT\ntransaction:t\n\n\0")
    points = sorted({c % len(stream) for c in cuts} | {0, len(stream)})
    link = FakeLink()
    session = service.session(link)
    session.opened()
    before = len(blink.messages)
    for a, b in zip(points, points[1:], strict=False):
        session.received(stream[a:b], binary)
    sent = [f for f in FrameParser().feed(b"".join(m for m, _ in blink.messages[before:]))
            if isinstance(f, Frame)]
    assert [f.command for f in sent] == ["SUBSCRIBE", "SEND", "BEGIN", "SEND", "COMMIT"]
    assert sent[1].body == b"x\0y\0z" and sent[1].get("k") == "a:b"
    assert link.closes == []
    session.closed(1000, "")


def test_a_backed_up_broker_link_pauses_reading_from_its_clients(setup) -> None:  # type: ignore[no-untyped-def]
    service, _, _, peer, blink = setup
    _, link = client(service)
    assert blink.producer is peer and blink.write_limit == 1024 * 1024
    blink.producer.pauseProducing()
    assert link.paused
    _, late = client(service)
    assert late.paused  # a client arriving meanwhile waits too
    blink.producer.resumeProducing()
    assert not link.paused and not late.paused


def test_broker_heartbeats_are_sent_and_a_silent_broker_is_dropped(setup) -> None:  # type: ignore[no-untyped-def]
    service, clock, broker, peer, blink = setup
    assert broker.sent(blink, "CONNECT")[0].get("heart-beat") == "10000,10000"
    # The fixture's broker answered CONNECTED without heart-beat: none either way.
    clock.advance(60)
    assert b"\n" not in [m for m, _ in blink.messages] and blink.closes == []
    peer.closed(None, "gone")
    clock.advance(1)
    peer_, dials_before = broker.dials[-1][0], len(broker.links)
    link = FakeLink(websocket=False)
    broker.dials[-1][1].callback(link)
    peer_.received(encode(Frame("CONNECTED", [("version", "1.2"), ("heart-beat", "5000,20000")])),
                   True)
    assert len(broker.links) == dials_before
    clock.advance(20)  # the gateway beats every max(10000, 20000) ms
    assert (b"\n", True) in link.messages
    assert link.closes == []  # expects the broker every max(5000, 10000) ms, x2 slack
    clock.advance(20)  # ...and has heard nothing since CONNECTED
    assert link.closes, "a broker silent for 2x its heart-beat interval is dropped"


@pytest.fixture
def gated(tmp_path):  # type: ignore[no-untyped-def]
    """A jms service with a realm requiring role ops (alice has it, bob does not)."""
    cfg = load(tmp_path, "<service><name>jms</name><accept>ws://h:1/jms</accept>"
                         "<connect>stomp://mq:61613</connect><type>jms</type></service>")
    broker = Broker()
    service = build(cfg, reactor=Clock(), connector=broker, gate=memory_gate({"ops"}))
    assert isinstance(service, JmsService)
    service.start()
    peer, link = broker.accept()
    return service, broker, peer, link


@pytest.mark.parametrize("credentials, error", [
    ("", "authentication required"),
    ("login:alice\npasscode:wrong\n", "authentication failed"),
    ("login:bob\npasscode:hunter2\n", "access denied"),
])
def test_connect_credentials_are_checked(gated, credentials: str, error: str) -> None:  # type: ignore[no-untyped-def]
    service = gated[0]
    _, link = client(service, extra=credentials)
    [frame] = client_frames(link)
    assert frame.command == "ERROR" and frame.get("message") == error
    assert link.closes


def test_an_authenticated_client_is_named_on_every_send_and_cannot_claim_another(gated) -> None:  # type: ignore[no-untyped-def]
    service, broker, _, blink = gated
    session, link = client(service, extra="login:alice\npasscode:secret\n")
    assert client_frames(link)[0].command == "CONNECTED"
    session.received(b"SEND\ndestination:/queue/q\nkgateway_user:mallory\n\nhi\0", False)
    [send] = broker.sent(blink, "SEND")
    assert send.get_all("kgateway_user") == ["alice"]


def test_a_principal_from_the_handshake_needs_no_connect_credentials(gated) -> None:  # type: ignore[no-untyped-def]
    service = gated[0]
    link = FakeLink(protocol="v12.stomp")
    link.principal = Principal("carol", frozenset({"ops"}))
    session = service.session(link)
    session.opened()
    session.received(b"CONNECT\naccept-version:1.2\n\n\0", False)
    assert client_frames(link)[0].command == "CONNECTED"


def test_connected_says_whether_the_broker_is_there_and_health_sees_the_outage(setup) -> None:  # type: ignore[no-untyped-def]
    service, clock, broker, peer, blink = setup
    _, link = client(service)
    assert client_frames(link)[0].get("kgateway-broker") == "connected"
    assert service.backend_status()["stomp://mq:61613"]["up"] is True
    peer.closed(None, "connection reset")  # the broker goes away
    late, late_link = client(service)
    assert client_frames(late_link)[0].get("kgateway-broker") == "unavailable"
    late.received(b"SEND\ndestination:/queue/q\n\nwaits\0", False)  # kept for the broker
    state = service.backend_status()["stomp://mq:61613"]
    assert state["up"] is False and state["buffered"] > 0 and state["clients"] == 2
    assert service.backend_reachable() is False
    clock.advance(1)  # the first retry
    broker.dials[-1][1].errback(ConnectError("Connection refused"))
    state = service.backend_status()["stomp://mq:61613"]
    assert state["connect_failures"] == 1 and state["error"] == "Connection refused"
    clock.advance(2)  # the next, after a doubled delay
    broker.accept()
    state = service.backend_status()["stomp://mq:61613"]
    assert state["up"] is True and state["buffered"] == 0 and "error" not in state


def test_deliveries_and_slow_consumers_are_counted(setup) -> None:  # type: ignore[no-untyped-def]
    service, _, broker, peer, blink = setup
    slow, slow_link = client(service)
    fast, _ = client(service)
    for s in (slow, fast):
        s.received(b"SUBSCRIBE\ndestination:/topic/t\nid:1\n\n\0", False)
    stats = service.message_stats()
    assert stats["broker_subscriptions"] == 2  # /topic/t, and the cached topic kept for good
    assert stats["topic_client_subscriptions"] == stats["client_subscriptions"] == 2
    [sub] = [f for f in broker.sent(blink, "SUBSCRIBE") if f.get("destination") == "/topic/t"]
    slow_link.producer.pauseProducing()
    for n in range(3):
        broker_message(peer, sub.get("id") or "", b"y" * 600, "/topic/t", mid=f"ID:{n}")
    stats = service.message_stats()
    assert stats["slow_consumers"] == 1
    assert stats["messages_delivered"] == 5  # 3 to the fast client, 2 before the slow one went


def test_an_authenticated_clients_client_id_is_its_own(gated) -> None:  # type: ignore[no-untyped-def]
    """Another user sending alice's client-id must not reach her durable subscriptions."""
    service, broker, _, _ = gated
    ids = []
    for user in ("alice", "bob"):
        link = FakeLink(protocol="v12.stomp")
        link.principal = Principal(user, frozenset({"ops"}))
        session = service.session(link)
        session.opened()
        session.received(b"CONNECT\naccept-version:1.2\nclient-id:app1\n\n\0", False)
        _, dlink = broker.accept()
        ids.append(broker.sent(dlink, "CONNECT")[0].get("client-id"))
    assert ids == ["alice/app1", "bob/app1"]


def test_a_user_name_is_encoded_into_the_brokers_client_id() -> None:
    from kgateway.jms.session import broker_client_id

    assert broker_client_id("app1", None) == "app1"  # no realm: the broker's namespace
    assert broker_client_id("app1", Principal("a/b:c\nd", frozenset())) == "a%2Fb%3Ac%0Ad/app1"


# -- destination rules and limits (docs/jms.md "Destination rules", "Limits") -------------------


def limited(tmp_path: Any, props: str, service_extra: str = "") -> tuple[JmsService, Clock,
                                                                         Broker, Any, FakeLink]:
    path = tmp_path / "limits.xml"
    users = tmp_path / "users"
    users.write_text("# nobody\n")
    realm = ("<security><realm><name>demo</name><authentication><login-modules><login-module>"
             f"<type>file</type><options><file>{users}</file></options></login-module>"
             "</login-modules></authentication></realm></security>")
    path.write_text(
        f"<gateway-config>{realm}<service><name>jms</name><accept>ws://h:1/jms</accept>"
        "<connect>stomp://mq:61613</connect><type>jms</type><properties>"
        f"{props}</properties>{service_extra}</service></gateway-config>")
    clock = Clock()
    broker = Broker()
    service = build(load_config(str(path), {}, {}), reactor=clock, connector=broker)
    assert isinstance(service, JmsService)
    service.start()
    peer, link = broker.accept()
    return service, clock, broker, peer, link


def error_of(link: FakeLink) -> Frame:
    error = client_frames(link)[-1]
    assert error.command == "ERROR", client_frames(link)
    return error


@pytest.mark.parametrize("frame, rule", [
    (b"SUBSCRIBE\ndestination:/queue/>\nid:1\nreceipt:r\n\n\0", "wildcard"),
    (b"SUBSCRIBE\ndestination:/topic/ActiveMQ.Advisory.>\nid:1\nreceipt:r\n\n\0", "wildcard"),
    (b"SUBSCRIBE\ndestination:/topic/ActiveMQ.Advisory.Connection\nid:1\nreceipt:r\n\n\0",
     "internal"),
    (b"SUBSCRIBE\ndestination:/queue/ActiveMQ.DLQ\nid:1\nreceipt:r\n\n\0", "internal"),
    (b"SUBSCRIBE\ndestination:/queue/kgw.tmp.other-1.r\nid:1\nreceipt:r\n\n\0", "temporary"),
    (b"SEND\ndestination:/queue/kgw.tmp.other-1.r\nreceipt:r\n\nfake reply\0", "temporary"),
    (b"SEND\ndestination:/queue/q?consumer.exclusive=true\nreceipt:r\n\nx\0", "not-plain"),
    (b"SEND\ndestination:/queue/q\nreply-to:/queue/ActiveMQ.DLQ\nreceipt:r\n\nx\0",
     "internal"),
])
def test_refused_destinations_get_an_error_naming_the_rule_and_never_reach_the_broker(
        setup, frame: bytes, rule: str) -> None:  # type: ignore[no-untyped-def]
    service, _, broker, _, blink = setup
    before = len(blink.messages)
    session, link = client(service)
    session.received(frame, False)
    error = error_of(link)
    assert error.get("message") == f"destination not allowed ({rule})"
    assert error.get("receipt-id") == "r" and "docs/jms.md" in error.body.decode()
    assert link.closes == [(1008, f"destination not allowed ({rule})")]
    sent = [f for f in FrameParser().feed(b"".join(m for m, _ in blink.messages[before:]))
            if isinstance(f, Frame)]
    assert not [f for f in sent if f.command in ("SEND", "SUBSCRIBE")]
    other, other_link = client(service)  # the gateway goes on serving everyone else
    other.received(b"SEND\ndestination:/queue/q\n\nfine\0", False)
    assert broker.sent(blink, "SEND")[-1].body == b"fine" and other_link.closes == []


def test_a_reply_to_shown_to_a_client_may_be_answered_by_it_only(setup) -> None:  # type: ignore[no-untyped-def]
    service, _, broker, peer, blink = setup
    requester, _ = client(service)
    server, server_link = client(service)
    stranger, stranger_link = client(service)
    server.received(b"SUBSCRIBE\ndestination:/queue/svc\nid:s\n\n\0", False)
    requester.received(b"SEND\ndestination:/queue/svc\nreply-to:/temp-queue/r\n\nq\0", False)
    reply_to = broker.sent(blink, "SEND")[-1].get("reply-to") or ""
    [sub] = [f for f in broker.sent(blink, "SUBSCRIBE") if f.get("destination") == "/queue/svc"]
    broker_message(peer, sub.get("id") or "", b"q", "/queue/svc", **{"reply-to": reply_to})
    shown = [f for f in client_frames(server_link) if f.command == "MESSAGE"][0].get("reply-to")
    assert shown == reply_to  # /queue/kgw.tmp.<requester's tag>.r
    server.received(f"SEND\ndestination:{shown}\n\nanswer\0".encode(), False)
    assert broker.sent(blink, "SEND")[-1].body == b"answer" and server_link.closes == []
    stranger.received(f"SEND\ndestination:{shown}\n\nforged\0".encode(), False)
    assert error_of(stranger_link).get("message") == "destination not allowed (temporary)"
    assert broker.sent(blink, "SEND")[-1].body == b"answer"


def test_role_rules_open_destinations_to_sessions_with_the_role(tmp_path) -> None:  # type: ignore[no-untyped-def]
    service, _, broker, _, blink = limited(
        tmp_path, "<destination-rule><role>ops</role>"
                  "<subscribe>/topic/ActiveMQ.Advisory.Connection</subscribe>"
                  "</destination-rule>", "<realm-name>demo</realm-name>")
    ops, ops_link = client(service)
    ops.principal = Principal("olga", frozenset({"ops"}))  # as the realm would have it
    ops.received(b"SUBSCRIBE\ndestination:/topic/ActiveMQ.Advisory.Connection\nid:1\n\n\0",
                 False)
    assert ops_link.closes == []
    assert broker.sent(blink, "SUBSCRIBE")[-1].get("destination") == \
        "/topic/ActiveMQ.Advisory.Connection"
    user, user_link = client(service)
    user.received(b"SUBSCRIBE\ndestination:/topic/ActiveMQ.Advisory.Connection\nid:1\n\n\0",
                  False)
    assert error_of(user_link).get("message") == "destination not allowed (internal)"


def test_subscriptions_per_connection_are_capped(tmp_path) -> None:  # type: ignore[no-untyped-def]
    service, _, _, _, _ = limited(tmp_path, "<maximum.subscriptions>3</maximum.subscriptions>")
    session, link = client(service)
    for n in range(3):
        session.received(f"SUBSCRIBE\ndestination:/topic/t{n}\nid:{n}\n\n\0".encode(), False)
    assert link.closes == []
    session.received(b"SUBSCRIBE\ndestination:/topic/t9\nid:9\nreceipt:r\n\n\0", False)
    error = error_of(link)
    assert error.get("message") == "too many subscriptions"
    assert "maximum.subscriptions" in error.body.decode() and error.get("receipt-id") == "r"
    assert link.closes == [(1008, "too many subscriptions")]
    assert session not in service.sessions


def test_broker_subscriptions_of_the_service_are_capped(tmp_path) -> None:  # type: ignore[no-untyped-def]
    service, _, broker, _, blink = limited(
        tmp_path, "<maximum.broker.subscriptions>3</maximum.broker.subscriptions>")
    a, a_link = client(service)
    a.received(b"SUBSCRIBE\ndestination:/topic/t0\nid:0\n\n\0"
               b"SUBSCRIBE\ndestination:/queue/q\nid:1\n\n\0"
               b"SUBSCRIBE\ndestination:/topic/t2\nid:2\n\n\0", False)
    assert service.broker_subscriptions() == 3
    b, b_link = client(service)
    b.received(b"SUBSCRIBE\ndestination:/topic/t0\nid:0\n\n\0", False)  # shared: no new one
    assert b_link.closes == []
    c, c_link = client(service)
    c.received(b"SUBSCRIBE\ndestination:/topic/new\nid:0\n\n\0", False)
    assert error_of(c_link).get("message") == "broker subscription limit"
    d, d_link = client(service)
    d.received(b"SUBSCRIBE\ndestination:/queue/q\nid:0\n\n\0", False)  # a consumer of its own
    assert error_of(d_link).get("message") == "broker subscription limit"
    assert len(broker.sent(blink, "SUBSCRIBE")) == 3
    a.closed(1000, "")  # gives back what only it held
    assert service.broker_subscriptions() == 1
    d, d_link = client(service)
    d.received(b"SUBSCRIBE\ndestination:/topic/new\nid:0\n\n\0", False)
    assert d_link.closes == [] and b_link.closes == []


def test_a_socket_without_connect_is_closed_after_the_connect_timeout(tmp_path) -> None:  # type: ignore[no-untyped-def]
    service, clock, _, _, _ = limited(tmp_path, "<connect.timeout>5sec</connect.timeout>")
    silent = FakeLink()
    service.session(silent).opened()
    dribble = FakeLink()
    slow = service.session(dribble)
    slow.opened()
    prompt, prompt_link = client(service)
    for piece in (b"CONN", b"ECT\naccept-", b"version:1.2\n"):  # never the whole frame
        clock.advance(1)
        slow.received(piece, False)
    clock.advance(2)
    for link in (silent, dribble):
        error = error_of(link)
        assert error.get("message") == "connect timeout" and "5s" in error.body.decode()
        assert link.closes == [(1008, "connect timeout")]
    assert prompt_link.closes == []
    clock.advance(60)
    assert prompt_link.closes == []


def test_an_idle_client_is_closed_even_without_heartbeats(tmp_path) -> None:  # type: ignore[no-untyped-def]
    service, clock, _, _, _ = limited(tmp_path, "<idle.timeout>60sec</idle.timeout>")
    idle, idle_link = client(service, heartbeat="0,0")
    busy, busy_link = client(service, heartbeat="0,0")
    for _ in range(3):
        clock.advance(30)
        busy.received(b"\n", False)  # a heart-beat is enough
    assert error_of(idle_link).get("message") == "idle timeout"
    assert "heart-beat" in error_of(idle_link).body.decode()
    assert idle_link.closes == [(1008, "idle timeout")] and busy_link.closes == []


def test_idle_timeout_zero_is_no_limit(tmp_path) -> None:  # type: ignore[no-untyped-def]
    service, clock, _, _, _ = limited(tmp_path, "<idle.timeout>0</idle.timeout>")
    _, link = client(service)
    clock.advance(86400)
    assert link.closes == []


def test_a_client_over_its_inflight_frames_pauses_alone(tmp_path) -> None:  # type: ignore[no-untyped-def]
    service, _, broker, peer, blink = limited(
        tmp_path, "<maximum.inflight.frames>3</maximum.inflight.frames>")
    flood, flood_link = client(service)
    calm, calm_link = client(service)
    flood.received(b"".join(f"SUBSCRIBE\ndestination:/topic/f{n}\nid:{n}\n\n\0".encode()
                            for n in range(8)), False)
    subscribes = broker.sent(blink, "SUBSCRIBE")
    assert len(subscribes) == 3 and flood_link.paused and not calm_link.paused
    calm.received(b"SEND\ndestination:/queue/q\n\nstill served\0", False)
    assert broker.sent(blink, "SEND")[-1].body == b"still served"
    for frame in subscribes:
        receipt_for(peer, frame)  # the broker confirms: the rest follow
    assert len(broker.sent(blink, "SUBSCRIBE")) == 6
    for frame in broker.sent(blink, "SUBSCRIBE")[3:]:
        receipt_for(peer, frame)
    assert len(broker.sent(blink, "SUBSCRIBE")) == 8 and flood_link.closes == []
    for frame in broker.sent(blink, "SUBSCRIBE")[6:]:
        receipt_for(peer, frame)
    assert not flood_link.paused


def test_unsubscribing_before_the_receipt_gives_the_budget_back(tmp_path) -> None:  # type: ignore[no-untyped-def]
    service, _, _, _, _ = limited(tmp_path, "<maximum.inflight.frames>2</maximum.inflight.frames>")
    session, link = client(service)
    for n in range(10):  # the broker never answers; the client churns one subscription
        session.received(f"SUBSCRIBE\ndestination:/queue/q{n}\nid:x\n\n\0"
                         "UNSUBSCRIBE\nid:x\n\n\0".encode(), False)
    assert not link.paused and link.closes == []


def test_a_client_sending_without_receipts_is_paced_by_gateway_receipts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    service, _, broker, peer, blink = limited(
        tmp_path, "<maximum.inflight.bytes>4k</maximum.inflight.bytes>")
    session, link = client(service)
    session.received(b"".join(b"SEND\ndestination:/queue/q\n\n" + b"x" * 500 + b"\0"
                              for _ in range(20)), False)
    sends = broker.sent(blink, "SEND")
    assert 8 <= len(sends) < 20 and link.paused  # a little over 4 KiB unconfirmed
    checkpoints = [f for f in sends if f.get("receipt")]
    assert checkpoints  # asked by the gateway, every quarter of the budget
    for frame in checkpoints:
        receipt_for(peer, frame)
    while len(broker.sent(blink, "SEND")) < 20:
        pending = [f for f in broker.sent(blink, "SEND") if f.get("receipt")]
        receipt_for(peer, pending[-1])
    assert [f.command for f in client_frames(link)] == ["CONNECTED"]  # no receipts it did not
    assert link.closes == []                                          # ask for


def test_slow_consumer_error_is_not_queued_behind_the_backlog(setup) -> None:  # type: ignore[no-untyped-def]
    service, clock, broker, peer, blink = setup  # maximum.pending.bytes 1000
    session, link = client(service)
    session.received(b"SUBSCRIBE\ndestination:/topic/t\nid:1\n\n\0"
                     b"SUBSCRIBE\ndestination:/queue/w\nid:2\n\n\0", False)
    topic = [f for f in broker.sent(blink, "SUBSCRIBE") if f.get("destination") == "/topic/t"]
    queue_ = [f for f in broker.sent(blink, "SUBSCRIBE") if f.get("destination") == "/queue/w"]
    link.producer.pauseProducing()
    written = len(link.messages)
    broker_message(peer, queue_[0].get("id") or "", b"q" * 300, "/queue/w", mid="ID:q")
    for n in range(3):
        broker_message(peer, topic[0].get("id") or "", b"y" * 400, "/topic/t", mid=f"ID:{n}")
    # Nothing more reached the link but the ERROR: the backlog was dropped, not sent ahead.
    [(data, _)] = link.messages[written:]
    assert data.startswith(b"ERROR\n") and b"message:slow consumer" in data
    # The close frame waits until the link drained (its handshake timeout would otherwise run
    # while the client still reads), for CLOSE_GRACE at most.
    assert link.closes == []
    clock.advance(CLOSE_GRACE)
    assert link.closes == [(1008, "slow consumer")]
    # The queue message was never handed over, so never acked: the broker redelivers it.
    assert broker.sent(blink, "ACK") == [] and broker.sent(blink, "UNSUBSCRIBE")


def test_disconnect_while_backed_up_delivers_the_backlog_then_the_receipt(setup) -> None:  # type: ignore[no-untyped-def]
    service, _, broker, peer, blink = setup
    session, link = client(service)
    session.received(b"SUBSCRIBE\ndestination:/queue/w\nid:2\n\n\0", False)
    [sub] = [f for f in broker.sent(blink, "SUBSCRIBE") if f.get("destination") == "/queue/w"]
    link.producer.pauseProducing()
    broker_message(peer, sub.get("id") or "", b"owed", "/queue/w", mid="ID:q")
    session.received(b"DISCONNECT\nreceipt:bye\n\n\0", False)
    frames = client_frames(link)
    assert [f.command for f in frames[-2:]] == ["MESSAGE", "RECEIPT"]
    assert [f.get("id") for f in broker.sent(blink, "ACK")] == ["ID:q"]


def test_new_broker_subscriptions_wait_their_turn_service_wide(tmp_path) -> None:  # type: ignore[no-untyped-def]
    service, _, broker, peer, blink = limited(
        tmp_path, "<maximum.pending.subscribes>2</maximum.pending.subscribes>")
    a, a_link = client(service)
    b, b_link = client(service)
    leaver, _ = client(service)
    for name, s in (("a", a), ("b", b), ("l", leaver)):
        s.received(b"".join(f"SUBSCRIBE\ndestination:/topic/{name}{n}\nid:{n}\nreceipt:{n}\n\n\0"
                            .encode() for n in range(3)), False)
    assert [f.get("destination") for f in broker.sent(blink, "SUBSCRIBE")] == ["/topic/a0",
                                                                              "/topic/a1"]
    assert a_link.paused and b_link.paused  # each waits with its reads paused
    calm, calm_link = client(service)  # frames that need no new broker subscription go on
    calm.received(b"SUBSCRIBE\ndestination:/topic/a0\nid:1\n\n\0SEND\ndestination:/queue/q\n\nhi\0",
                  False)
    assert broker.sent(blink, "SEND")[-1].body == b"hi" and not calm_link.paused
    leaver.closed(1006, "gone")  # a waiting client that leaves takes no place with it
    answered = 0
    while answered < len(broker.sent(blink, "SUBSCRIBE")):
        pending = broker.sent(blink, "SUBSCRIBE")[answered:]
        assert len(pending) <= 2
        for frame in pending:
            receipt_for(peer, frame)
        answered += len(pending)
    assert sorted(str(f.get("destination")) for f in broker.sent(blink, "SUBSCRIBE")) == sorted(
        f"/topic/{x}{n}" for x in "ab" for n in range(3))
    for link in (a_link, b_link):
        assert [f.get("receipt-id") for f in client_frames(link)
                if f.command == "RECEIPT"] == ["0", "1", "2"]
        assert not link.paused and link.closes == []
    assert service.admission.pending == 0 and not service.admission.waiting


def test_a_client_cut_off_while_paused_is_read_again_to_finish_the_close(tmp_path) -> None:  # type: ignore[no-untyped-def]
    service, _, _, _, _ = limited(tmp_path, "<maximum.inflight.frames>2</maximum.inflight.frames>"
                                            "<maximum.subscriptions>3</maximum.subscriptions>")
    session, link = client(service)
    session.received(b"".join(f"SUBSCRIBE\ndestination:/queue/q{n}\nid:{n}\n\n\0".encode()
                              for n in range(2)), False)
    assert link.paused  # over its in-flight budget: the broker never answers here
    session.going_away()
    assert not link.paused  # the client's close frame can be read
