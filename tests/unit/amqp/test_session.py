"""The amqp.proxy service driven in memory: FakeLinks for client and broker, a fake
connector, MemoryReactorClock for the timers. Every byte either side receives is checked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from autobahn.websocket.types import ConnectionDeny
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.testing import MemoryReactorClock
from zope.interface.verify import verifyObject

from kgateway.amqp.relay import CLIENT_KEY, FORWARDED_FOR, Phase
from kgateway.amqp.session import AmqpSession
from kgateway.config import ConfigError
from kgateway.interfaces import ConnectError, ILinkReceiver, ISession
from kgateway.protocols import amqp as A
from kgateway.services import SERVICE_TYPES
from kgateway.services.amqp import AmqpService
from tests.unit.fakes import FakeConnector, FakeLink, build, load

START = A.method_frame(0, A.ConnectionStart(0, 9, {"product": "RabbitMQ"}, b"PLAIN AMQPLAIN",
                                            b"en_US"))
START_OK = A.method_frame(0, A.ConnectionStartOk({"product": "test", "x-forwarded-for": "spoof"},
                                                 "PLAIN", b"\0guest\0guest", "en_US"))
TUNE = A.method_frame(0, A.ConnectionTune(2047, 131072, 60))
TUNE_OK = A.method_frame(0, A.ConnectionTuneOk(2047, 131072, 60))
OPEN = A.method_frame(0, A.ConnectionOpen("/"))
OPEN_OK = A.method_frame(0, A.ConnectionOpenOk())
CLOSE_OK = A.method_frame(0, A.ConnectionCloseOk())
# channel.open on channel 1, and a publish: method, content header, body
CHANNEL_OPEN = A.encode_frame(A.FRAME_METHOD, 1, b"\x00\x14\x00\x0a\x00")
PUBLISH = (A.encode_frame(A.FRAME_METHOD, 1, b"\x00\x3c\x00\x28\x00\x00\x00\x01q\x00")
           + A.encode_frame(A.FRAME_HEADER, 1, b"\x00\x3c\x00\x00" + (5).to_bytes(8, "big")
                            + b"\x00\x00")
           + A.encode_frame(A.FRAME_BODY, 1, b"hello"))


def make_service(tmp_path: Path, properties: str = "",
                 target: str = "tcp://broker:5672") -> tuple[AmqpService, FakeConnector,
                                                             MemoryReactorClock]:
    props = f"<properties>{properties}</properties>" if properties else ""
    cfg = load(tmp_path, f"<service><name>amqp</name><accept>ws://h:1/amqp</accept>"
                         f"<connect>{target}</connect><type>amqp.proxy</type>{props}</service>")
    reactor = MemoryReactorClock()
    connector = FakeConnector()
    service = build(cfg, reactor=reactor, connector=connector)
    assert isinstance(service, AmqpService)
    return service, connector, reactor


class Harness:
    """A session with a client link and, once connected, a broker link."""

    def __init__(self, tmp_path: Path, properties: str = "", websocket: bool = True) -> None:
        self.service, self.connector, self.reactor = make_service(tmp_path, properties)
        self.client = FakeLink(websocket=websocket)
        self.broker = FakeLink(websocket=False, remote="127.0.0.1:5672")
        self.session: AmqpSession = self.service.session(self.client)
        assert self.session.negotiate([]) is None
        self.session.opened()

    @property
    def peer(self) -> ILinkReceiver:
        return self.connector.calls[0].receiver

    def connect(self) -> None:
        self.connector.calls[0].d.callback(self.broker)

    def from_client(self, data: bytes) -> None:
        self.session.received(data, True)

    def from_broker(self, data: bytes) -> None:
        self.peer.received(data, True)

    def handshake(self) -> None:
        self.from_client(A.PROTOCOL_HEADER)
        self.connect()
        self.from_broker(START)
        self.from_client(START_OK)
        self.from_broker(TUNE)
        self.from_client(TUNE_OK + OPEN)
        self.from_broker(OPEN_OK)
        self.client.messages.clear()
        self.broker.messages.clear()

    def client_methods(self) -> list[Any]:
        frames = A.FrameReader(0xFFFFFFFF).feed(self.client.data)
        return [A.decode_method(f.payload) for f in frames if f.type == A.FRAME_METHOD]

    def broker_methods(self) -> list[Any]:
        data = self.broker.data
        data = data[len(A.PROTOCOL_HEADER):] if data.startswith(A.PROTOCOL_HEADER) else data
        frames = A.FrameReader(0xFFFFFFFF).feed(data)
        return [A.decode_method(f.payload) for f in frames if f.type == A.FRAME_METHOD]


def test_session_and_service_provide_their_interfaces(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    assert verifyObject(ISession, h.session)
    assert SERVICE_TYPES["amqp.proxy"].build is AmqpService


def test_subprotocol_none_when_none_offered_amqp_when_offered(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    assert h.session.negotiate([]) is None
    assert h.session.negotiate(["x-other", "amqp"]) == "amqp"
    with pytest.raises(ConnectionDeny) as info:
        h.session.negotiate(["mqtt"])
    assert info.value.code == 400 and "'amqp'" in str(info.value.reason)


def test_header_byte_by_byte_then_the_broker_is_connected_and_sees_it(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    for byte in A.PROTOCOL_HEADER:
        assert h.connector.calls == []
        h.from_client(bytes([byte]))
    (call,) = h.connector.calls
    assert str(call.uri) == "tcp://broker:5672"
    assert h.client.paused  # nothing more is read until the broker is there
    h.connect()
    assert not h.client.paused
    assert h.broker.messages == [(A.PROTOCOL_HEADER, True)]
    # back-pressure both ways
    assert h.client.producer.link is h.broker and h.broker.producer.link is h.client
    h.client.producer.pauseProducing()
    assert h.broker.paused
    h.client.producer.resumeProducing()
    h.client.producer.stopProducing()  # a side that goes never closes the other by itself
    assert not h.broker.paused and h.broker.closes == []
    assert h.client.write_limit == h.broker.write_limit == 64 * 1024


@pytest.mark.parametrize("garbage", [b"GET / HTTP/1.1\r\n", b"AMQP\x00\x00\x09\x00", b"\x16\x03"])
def test_a_wrong_header_gets_the_supported_one_and_a_close_and_no_broker(tmp_path: Path, garbage: bytes) -> None:
    h = Harness(tmp_path)
    h.from_client(garbage)
    assert h.client.messages == [(A.PROTOCOL_HEADER, True)]
    ((code, reason),) = h.client.closes
    assert code == 1002 and "unsupported protocol header" in reason and "0-9-1" in reason
    assert h.connector.calls == []
    h.session.closed(1002, "")


def test_handshake_adds_the_client_address_and_relays_everything_else_unchanged(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.from_client(A.PROTOCOL_HEADER)
    h.connect()
    h.from_broker(START)
    assert h.client.messages == [(START, True)]
    h.from_client(START_OK)
    (start_ok,) = h.broker_methods()
    assert isinstance(start_ok, A.ConnectionStartOk)
    assert start_ok.client_properties == {"product": "test", FORWARDED_FOR: "192.0.2.7",
                                          CLIENT_KEY: "192.0.2.7:5555", "capabilities": {
                                              "authentication_failure_close": True}}
    assert start_ok.response == b"\0guest\0guest" and start_ok.mechanism == "PLAIN"
    h.from_broker(TUNE)
    h.from_client(TUNE_OK)
    h.from_client(OPEN)
    h.from_broker(OPEN_OK + A.HEARTBEAT_FRAME)
    assert h.session.relay.frame_max == 131072
    assert h.client.data == START + TUNE + OPEN_OK + A.HEARTBEAT_FRAME
    h.client.messages.clear()
    h.broker.messages.clear()
    h.from_client(CHANNEL_OPEN + PUBLISH)
    assert h.broker.messages == [(CHANNEL_OPEN + PUBLISH, True)]
    # the handshake clock stopped at Open-Ok
    assert not h.reactor.getDelayedCalls()


def test_ipv6_client_address(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.client.remote = "[2001:db8::1]:4000"
    h.session = h.service.session(h.client)
    h.session.opened()
    h.from_client(A.PROTOCOL_HEADER)
    h.connect()
    h.from_broker(START)
    h.from_client(START_OK)
    (start_ok,) = h.broker_methods()
    assert start_ok.client_properties[FORWARDED_FOR] == "2001:db8::1"
    assert start_ok.client_properties[CLIENT_KEY] == "[2001:db8::1]:4000"


def test_the_tune_frame_max_is_capped(tmp_path: Path) -> None:
    h = Harness(tmp_path, "<maximum.frame.size>64k</maximum.frame.size>")
    h.from_client(A.PROTOCOL_HEADER)
    h.connect()
    h.from_broker(START + A.method_frame(0, A.ConnectionTune(2047, 0, 60)))
    tune = h.client_methods()[1]
    assert tune == A.ConnectionTune(2047, 65536, 60)


def test_vhost_not_allowed_gets_close_530_and_the_broker_connection_is_dropped(tmp_path: Path) -> None:
    h = Harness(tmp_path, "<virtual.host>/</virtual.host>")
    h.from_client(A.PROTOCOL_HEADER)
    h.connect()
    h.from_broker(START)
    h.from_client(START_OK)
    h.from_broker(TUNE)
    h.client.messages.clear()
    h.broker.messages.clear()
    h.from_client(TUNE_OK + A.method_frame(0, A.ConnectionOpen("other")))
    # Tune-Ok went through, the Open did not; RabbitMQ takes no Close before Open-Ok.
    assert h.broker.messages == [(TUNE_OK, True)]
    assert len(h.broker.closes) == 1
    (close,) = h.client_methods()
    assert close.reply_code == A.NOT_ALLOWED and (close.class_id, close.method_id) == (10, 40)
    assert close.reply_text.startswith("NOT_ALLOWED - access to vhost 'other' refused")
    assert h.client.closes == []  # waiting for Close-Ok
    h.from_client(CLOSE_OK)
    ((code, reason),) = h.client.closes
    assert code == 1008 and "vhost 'other'" in reason


def test_the_allowed_vhost_passes(tmp_path: Path) -> None:
    h = Harness(tmp_path, "<virtual.host>/</virtual.host>")
    h.handshake()
    assert h.session.relay.virtual_host == "/" and h.client.closes == []


def test_close_ok_never_comes_then_the_close_timeout_closes(tmp_path: Path) -> None:
    h = Harness(tmp_path, "<virtual.host>/</virtual.host><close.timeout>2s</close.timeout>")
    h.from_client(A.PROTOCOL_HEADER)
    h.connect()
    h.from_broker(START)
    h.from_client(START_OK)
    h.from_broker(TUNE)
    h.from_client(TUNE_OK + A.method_frame(0, A.ConnectionOpen("other")))
    h.reactor.advance(1.9)
    assert h.client.closes == []
    h.from_client(CHANNEL_OPEN)  # ignored while closing
    h.reactor.advance(0.2)
    assert [c for c, _ in h.client.closes] == [1008]


def _oversize(frame_max: int) -> bytes:
    return A.encode_frame(A.FRAME_BODY, 1, b"x" * (frame_max - 8 + 8 + 1))  # beyond the slack


def test_an_oversize_frame_after_open_gets_close_501_and_the_broker_a_proper_close(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.handshake()
    h.from_client(CHANNEL_OPEN + _oversize(131072)[:100])
    # frames before the bad one still reach the broker, in order
    assert h.broker.data.startswith(CHANNEL_OPEN)
    (close,) = h.client_methods()
    assert close.reply_code == A.FRAME_ERROR and "exceeds frame_max 131072" in close.reply_text
    to_broker = h.broker_methods()[-1]
    assert to_broker.reply_code == A.CONNECTION_FORCED and "FRAME_ERROR" in to_broker.reply_text
    assert "192.0.2.7:5555" in to_broker.reply_text
    assert h.broker.closes == []
    h.from_broker(A.encode_frame(A.FRAME_BODY, 1, b"late delivery") + CLOSE_OK)
    assert len(h.broker.closes) == 1
    assert b"late delivery" not in h.client.data  # nothing but the Close after it
    h.from_client(CLOSE_OK)
    ((code, reason),) = h.client.closes
    assert code == 1002 and reason.startswith("FRAME_ERROR")


def test_a_wrong_frame_end_is_fatal_close_then_immediate_close(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.handshake()
    bad = CHANNEL_OPEN[:-1] + b"\x00"
    h.from_client(bad)
    assert h.broker.data.count(b"\x00\x14\x00\x0a") == 0  # the bad frame never went through
    (close,) = h.client_methods()
    assert close.reply_code == A.FRAME_ERROR and "frame-end octet 0x00" in close.reply_text
    ((code, reason),) = h.client.closes
    assert code == 1002 and "frame-end" in reason
    (to_broker,) = h.broker_methods()
    assert isinstance(to_broker, A.ConnectionClose)


def test_garbage_after_the_handshake_unknown_frame_type(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.handshake()
    h.from_client(b"\xff\xfe garbage")
    (close,) = h.client_methods()
    assert close.reply_code == A.FRAME_ERROR and "unknown frame type 255" in close.reply_text
    assert len(h.client.closes) == 1


def test_frame_max_is_enforced_during_the_handshake_too(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.from_client(A.PROTOCOL_HEADER)
    h.connect()
    h.from_broker(START)
    h.client.messages.clear()
    h.from_client(A.encode_frame(A.FRAME_METHOD, 0, b"\x00\x0a\x00\x0b" + b"x" * 5000))
    (close,) = h.client_methods()
    assert close.reply_code == A.FRAME_ERROR
    assert len(h.broker.closes) == 1  # before Open-Ok: dropped, not Close'd


def test_tune_ok_above_the_proposal_is_refused_530(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.from_client(A.PROTOCOL_HEADER)
    h.connect()
    h.from_broker(START)
    h.from_client(START_OK)
    h.from_broker(TUNE)
    h.client.messages.clear()
    h.from_client(A.method_frame(0, A.ConnectionTuneOk(2047, 1 << 20, 60)))
    (close,) = h.client_methods()
    assert close.reply_code == A.NOT_ALLOWED and "frame_max=1048576 > 131072" in close.reply_text


@pytest.mark.parametrize("frame, code, text", [
    (OPEN, A.COMMAND_INVALID, "expected connection.start-ok, got connection.open"),
    (CHANNEL_OPEN, A.UNEXPECTED_FRAME, "frame type 1 on channel 1 before connection.open"),
    (A.method_frame(0, A.Method(20, 10, b"\x00")), A.COMMAND_INVALID, "got method 20.10"),
])
def test_the_handshake_order_is_followed(tmp_path: Path, frame: bytes, code: int, text: str) -> None:
    h = Harness(tmp_path)
    h.from_client(A.PROTOCOL_HEADER)
    h.connect()
    h.from_broker(START)
    h.client.messages.clear()
    h.from_client(frame)
    (close,) = h.client_methods()
    assert close.reply_code == code and text in close.reply_text
    assert h.broker.messages == [(A.PROTOCOL_HEADER, True)]


def test_a_broker_refusal_is_relayed_and_the_client_closed_when_the_broker_goes(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.from_client(A.PROTOCOL_HEADER)
    h.connect()
    h.from_broker(START)
    # a client that asks for the broker's reason (pika, amqp-client do)
    h.from_client(A.method_frame(0, A.ConnectionStartOk(
        {"capabilities": {"authentication_failure_close": True}}, "PLAIN",
        b"\0guest\0wrong", "en_US")))
    refusal = A.method_frame(0, A.ConnectionClose(403, "ACCESS_REFUSED - Login was refused", 0, 0))
    h.from_broker(refusal)
    assert h.client.messages[-1] == (refusal, True)
    h.from_client(CLOSE_OK)
    assert h.broker.messages[-1] == (CLOSE_OK, True)
    h.peer.closed(None, "Connection was closed cleanly.")
    # the close reason (and the gateway's log) say why the broker refused
    assert h.client.closes == [(1000, "broker refused: 403 ACCESS_REFUSED - Login was refused")]


def test_the_gateway_asks_for_the_broker_s_reason_but_a_client_that_did_not_never_sees_it(
        tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.from_client(A.PROTOCOL_HEADER)
    h.connect()
    h.from_broker(START)
    h.client.messages.clear()
    h.from_client(START_OK)  # no capabilities
    (start_ok,) = h.broker_methods()
    assert start_ok.client_properties["capabilities"] == {"authentication_failure_close": True}
    h.broker.messages.clear()
    h.from_broker(A.method_frame(0, A.ConnectionClose(403, "ACCESS_REFUSED - Login was refused",
                                                      0, 0)))
    assert h.client.messages == []  # closed as the broker would have closed it
    assert h.client.closes == [(1000, "broker refused: 403 ACCESS_REFUSED - Login was refused")]
    assert h.broker.messages[0] == (CLOSE_OK, True)


@pytest.mark.parametrize("websocket", [True, False])
def test_broker_unreachable_is_a_clear_close(tmp_path: Path, websocket: bool) -> None:
    h = Harness(tmp_path, websocket=websocket)
    h.from_client(A.PROTOCOL_HEADER)
    h.connector.calls[0].d.errback(ConnectError("Connection refused"))
    assert h.client.closes == [(1014, "cannot connect to tcp://broker:5672: Connection refused")]
    assert h.client.messages == []


def test_broker_lost_mid_session_closes_the_client_promptly(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.handshake()
    h.peer.closed(None, "Connection lost.")
    assert h.client.closes == [(1014, "broker connection lost: Connection lost.")]
    h.session.closed(1014, "")
    assert h.broker.closes == []


def test_client_gone_closes_the_broker_and_before_connect_too(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.handshake()
    h.session.closed(1006, "")
    assert len(h.broker.closes) == 1
    h2 = Harness(tmp_path)
    h2.from_client(A.PROTOCOL_HEADER)
    h2.session.closed(1006, "")
    h2.connect()
    assert len(h2.broker.closes) == 1 and h2.broker.messages == []


def test_handshake_timeout(tmp_path: Path) -> None:
    h = Harness(tmp_path, "<handshake.timeout>3s</handshake.timeout>")
    h.from_client(A.PROTOCOL_HEADER)
    h.connect()
    h.from_broker(START)
    h.reactor.advance(3)
    assert h.client.closes == [(1002, "AMQP handshake not completed within 3s")]
    assert len(h.broker.closes) == 1


def test_client_close_is_relayed_transparently(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.handshake()
    close = A.method_frame(0, A.ConnectionClose(200, "bye", 0, 0))
    h.from_client(close)
    h.from_broker(CLOSE_OK)
    assert h.broker.messages == [(close, True)] and h.client.messages == [(CLOSE_OK, True)]
    h.peer.closed(None, "Connection was closed cleanly.")
    assert h.client.closes == [(1000, "broker closed the connection")]


def _frames() -> bytes:
    payloads = [b"", b"a", b"x" * 5000, b"y" * 70000, b"z" * 3]
    return b"".join(A.encode_frame(A.FRAME_BODY, 1, p) for p in payloads) + A.HEARTBEAT_FRAME


def _splits(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0), max_size=12), st.booleans())
def test_frames_split_and_merged_anyhow_arrive_intact(
        tmp_path_factory: pytest.TempPathFactory, cuts: list[int], websocket: bool) -> None:
    h = Harness(tmp_path_factory.mktemp("s"), websocket=websocket)
    h.handshake()
    data = _frames()
    for piece in _splits(data, cuts):
        h.from_client(piece)
        h.from_broker(piece)
    assert h.broker.data == data
    assert h.client.data == data
    if websocket:
        # towards WebSocket clients every message is whole frames only
        for message, binary in h.client.messages:
            assert binary and message
            A.FrameReader(0xFFFFFFFF).feed(message)  # raises if a frame were cut
            reader = A.FrameReader(0xFFFFFFFF)
            reader.feed(message)
            assert reader.buffered == 0
    assert h.client.closes == [] and h.broker.closes == []


def test_one_byte_at_a_time_through_the_whole_connection(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    for b in A.PROTOCOL_HEADER:
        h.from_client(bytes([b]))
    h.connect()
    for b in START:
        h.from_broker(bytes([b]))
    for b in START_OK:
        h.from_client(bytes([b]))
    h.from_broker(TUNE)
    for b in TUNE_OK + OPEN:
        h.from_client(bytes([b]))
    h.from_broker(OPEN_OK)
    for b in CHANNEL_OPEN + PUBLISH:
        h.from_client(bytes([b]))
    assert h.broker.data.endswith(TUNE_OK + OPEN + CHANNEL_OPEN + PUBLISH)
    assert [m for m, _ in h.client.messages] == [START, TUNE, OPEN_OK]
    assert h.session.relay.client_phase is Phase.OPEN


def test_properties_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        make_service(tmp_path, "<maximum.frame.size>100</maximum.frame.size><virtual.hst>/"
                     "</virtual.hst>")
    text = str(info.value)
    assert "maximum.frame.size" in text and "at least 4096" in text and "virtual.hst" in text
    with pytest.raises(ConfigError) as info:
        make_service(tmp_path, target="ws://broker:80/x")
    assert "ws" in str(info.value)


def test_an_injected_close_never_lands_inside_a_frame_for_stream_clients(tmp_path: Path) -> None:
    h = Harness(tmp_path, websocket=False)
    h.handshake()
    body = A.encode_frame(A.FRAME_BODY, 1, b"b" * 1000)
    h.from_broker(body + body[:500])  # the second frame is incomplete
    h.from_client(b"\xff garbage")
    frames = A.FrameReader(0xFFFFFFFF).feed(h.client.data)
    assert [f.raw for f in frames][0] == body
    close = A.decode_method(frames[1].payload)
    assert isinstance(close, A.ConnectionClose) and close.reply_code == A.FRAME_ERROR


def test_going_away_closes_both_sides_with_connection_forced(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.handshake()
    h.session.going_away()
    (to_client,) = h.client_methods()
    assert to_client.reply_code == A.CONNECTION_FORCED and "shutting down" in to_client.reply_text
    (to_broker,) = h.broker_methods()
    assert to_broker.reply_code == A.CONNECTION_FORCED
    h.from_broker(CLOSE_OK)
    assert len(h.broker.closes) == 1


def test_a_tune_ok_without_limit_is_relayed_with_the_gateways_cap(tmp_path: Path) -> None:
    h = Harness(tmp_path, "<maximum.frame.size>64k</maximum.frame.size>")
    h.from_client(A.PROTOCOL_HEADER)
    h.connect()
    h.from_broker(START + TUNE)
    h.from_client(START_OK + A.method_frame(0, A.ConnectionTuneOk(2047, 0, 60)))
    assert h.broker_methods()[-1] == A.ConnectionTuneOk(2047, 65536, 60)
    assert h.session.relay.frame_max == 65536


def test_connect_outcomes_say_whether_the_broker_is_up(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.from_client(A.PROTOCOL_HEADER)
    h.connector.calls[0].d.errback(ConnectError("Connection refused"))
    state = h.service.backend_status()["tcp://broker:5672"]
    assert state["up"] is False and state["connect_failures"] == 1
    assert state["error"] == "Connection refused" and not h.service.backend_reachable()
    # a second client of the same service gets through: the broker is up again
    client, broker = FakeLink(websocket=True), FakeLink(websocket=False)
    session = h.service.session(client)
    session.opened()
    session.received(A.PROTOCOL_HEADER, True)
    h.connector.calls[1].d.callback(broker)
    state = h.service.backend_status()["tcp://broker:5672"]
    assert state["up"] is True and state["active"] == 1
    h.connector.calls[1].receiver.closed(None, "gone")
    assert h.service.backend_status()["tcp://broker:5672"]["active"] == 0
