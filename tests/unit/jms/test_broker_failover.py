"""A BrokerConnection over several brokers: fail-over on loss and on refusal, back-off only
after every broker failed in a row, and the same re-subscription and replay as a reconnect.
The test plays the brokers through a FakeConnector on a fake clock."""

from __future__ import annotations

from twisted.internet.task import Clock

from kgateway.config import Options, parse_uri
from kgateway.interfaces import ConnectError
from kgateway.jms.broker import BrokerConnection, BrokerSettings
from kgateway.protocols.stomp import Frame
from tests.unit.fakes import FakeConnector, FakeLink

A, B, C = (parse_uri(f"stomp://amq{n}:61613") for n in "abc")
CONNECTED = b"CONNECTED\nversion:1.2\nheart-beat:0,0\n\n\x00"


def make(brokers: tuple[object, ...] = (A, B, C), first: int = 0
         ) -> tuple[BrokerConnection, FakeConnector, Clock]:
    clock, connector = Clock(), FakeConnector()
    settings = BrokerSettings(uri=A, options=Options({}, {}), reconnect_delay=0.5,
                              reconnect_delay_maximum=4.0, heartbeat=0,
                              brokers=brokers)  # type: ignore[arg-type]
    conn = BrokerConnection(clock, settings, "jms#1", connector, first=first)
    return conn, connector, clock


def up(conn: BrokerConnection, connector: FakeConnector) -> FakeLink:
    """Complete the last dial and answer CONNECT."""
    link = FakeLink(websocket=False)
    connector.calls[-1].d.callback(link)
    assert link.data.startswith(b"CONNECT\n")
    conn.received(CONNECTED, True)
    assert conn.connected
    return link


def refuse(connector: FakeConnector) -> None:
    connector.calls[-1].d.errback(ConnectError("Connection refused"))


def dialled(connector: FakeConnector) -> list[str]:
    return [call.uri.host for call in connector.calls]


def test_a_lost_broker_is_replaced_by_the_next_at_once() -> None:
    conn, connector, clock = make()
    conn.start()
    link_a = up(conn, connector)
    conn.closed(None, "Connection lost")
    clock.advance(0)  # no back-off: another broker is waiting
    assert dialled(connector) == ["amqa", "amqb"]
    link_b = up(conn, connector)
    assert b"host:amqb" in link_b.data and conn.uri == B
    assert conn.epoch == 1 and not link_a.closes


def test_refusals_go_round_the_list_then_back_off() -> None:
    conn, connector, clock = make(first=1)
    conn.start()
    refuse(connector)  # B
    clock.advance(0)
    refuse(connector)  # C
    clock.advance(0)
    refuse(connector)  # A: every broker failed in a row
    clock.advance(0)
    assert dialled(connector) == ["amqb", "amqc", "amqa"]
    clock.advance(0.49)
    assert len(connector.calls) == 3
    clock.advance(0.01)
    refuse(connector)  # B again, after 0.5 s
    clock.advance(0.99)
    assert len(connector.calls) == 4
    clock.advance(0.01)  # then 1 s
    assert dialled(connector) == ["amqb", "amqc", "amqa", "amqb", "amqc"]
    up(conn, connector)
    # A CONNECTED starts a fresh round: the next loss fails over at once again.
    conn.closed(None, "Connection lost")
    clock.advance(0)
    assert dialled(connector)[-1] == "amqa"


def test_subscriptions_and_unconfirmed_sends_move_to_the_new_broker() -> None:
    conn, connector, clock = make((A, B))
    conn.start()
    up(conn, connector)
    got: list[str] = []
    conn.subscribe([("destination", "/queue/orders"), ("ack", "client-individual")],
                   lambda frame, epoch: got.append(frame.body.decode()))
    confirmed: list[bool] = []
    conn.send(Frame("SEND", [("destination", "/queue/orders")], b"persistent"),
              on_receipt=lambda: confirmed.append(True), replayable=True)
    conn.closed(None, "Connection lost")  # A dies before its RECEIPT
    clock.advance(0)
    link_b = up(conn, connector)
    frames = link_b.data.split(b"\x00")
    assert frames[1].startswith(b"SUBSCRIBE\n") and b"destination:/queue/orders" in frames[1]
    assert frames[2].startswith(b"SEND\n") and frames[2].endswith(b"persistent")
    rid = next(line.split(b":")[1] for line in frames[2].split(b"\n")
               if line.startswith(b"receipt:"))
    conn.received(b"RECEIPT\nreceipt-id:" + rid + b"\n\n\x00", True)
    assert confirmed == [True]
    sid = next(line.split(b":")[1] for line in frames[1].split(b"\n") if line.startswith(b"id:"))
    conn.received(b"MESSAGE\nsubscription:" + sid + b"\nmessage-id:m1\nack:x\n"
                  b"destination:/queue/orders\n\nhello\x00", True)
    assert got == ["hello"]


def test_one_broker_keeps_the_old_back_off() -> None:
    conn, connector, clock = make((A,))
    conn.start()
    up(conn, connector)
    conn.closed(None, "Connection lost")
    clock.advance(0.49)
    assert len(connector.calls) == 1
    clock.advance(0.01)
    assert dialled(connector) == ["amqa", "amqa"]


def test_a_broker_dropping_us_before_connected_counts_as_a_failure() -> None:
    conn, connector, clock = make((A, B))
    conn.start()
    link = FakeLink(websocket=False)
    connector.calls[-1].d.callback(link)  # TCP up, then the broker hangs up
    conn.closed(None, "Connection lost")
    clock.advance(0)
    refuse(connector)  # B refused too: now the back-off
    clock.advance(0)
    assert dialled(connector) == ["amqa", "amqb"]
    clock.advance(0.5)
    assert dialled(connector) == ["amqa", "amqb", "amqa"]
