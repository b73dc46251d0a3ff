"""The fast data path in memory (twisted.test.iosim): a real Autobahn client against
GatewayWebSocketProtocol and a real proxy session, whose tcp back end is a FakeLink."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from autobahn.twisted.testing import MemoryReactorClock
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.logger import capturedLogs
from twisted.test import iosim

from kgateway.config import parse_uri
from kgateway.protocols.websocket import (
    Close,
    Message,
    Opcode,
    Role,
    WebSocketCodec,
    close_payload,
    encode_frame,
)
from kgateway.transport.accept import GatewayWebSocketFactory, GatewayWebSocketProtocol
from kgateway.transport.fastws import AUTOBAHN_ONLY
from kgateway.transport.tracker import ConnectionTracker
from tests.unit.fakes import FakeConnector, FakeLink, build, load

KEY = b"\x01\x02\x03\x04"


class Client(WebSocketClientProtocol):
    def onOpen(self) -> None:
        self.factory.events.append(("open",))

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.events.append(("message", payload, isBinary))

    def onPing(self, payload: bytes) -> None:
        self.factory.events.append(("ping", payload))
        super().onPing(payload)

    def onPong(self, payload: bytes) -> None:
        self.factory.events.append(("pong", payload))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.events.append(("close", code, reason))


class PausableTransport(iosim.FakeTransport):
    """iosim's transport with Twisted's flow control: reads stop while paused, and a write
    buffer past ``bufferSize`` pauses the registered producer until it drains."""

    bufferSize = 1 << 20

    def __init__(self, protocol: Any, isServer: bool) -> None:
        super().__init__(protocol, isServer)
        self.paused = False
        self.held: list[bytes] = []
        self.producer_paused = False

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        held, self.held = self.held, []
        for data in held:
            self.protocol.dataReceived(data)

    def bufferReceived(self, buf: Any) -> None:
        if self.paused:
            self.held.append(buf)
        else:
            super().bufferReceived(buf)

    def write(self, data: bytes) -> None:
        super().write(data)
        if self.producer is not None and not self.producer_paused \
                and sum(map(len, self.stream)) > self.bufferSize:
            self.producer_paused = True
            self.producer.pauseProducing()

    def getOutBuffer(self) -> Any:
        out = super().getOutBuffer()
        if self.producer_paused and self.producer is not None:
            self.producer_paused = False
            self.producer.resumeProducing()
        return out


class Setup:
    def __init__(self, tmp_path: Path, options: str = "", target: str = "tcp://backend:9000",
                 backend: FakeLink | None = None) -> None:
        cfg = load(tmp_path, "<service><name>px</name><accept>ws://gw.test:8000/p</accept>"
                             f"<connect>{target}</connect><type>proxy</type>"
                             f"<accept-options>{options}</accept-options>"
                             "<properties><maximum.pending.bytes>16k</maximum.pending.bytes>"
                             "</properties></service>")
        self.connector = FakeConnector()
        self.clock = MemoryReactorClock()
        self.tracker = ConnectionTracker()
        self.factory = GatewayWebSocketFactory(build(cfg, connector=self.connector),
                                               parse_uri("ws://gw.test:8000/p"), self.clock,
                                               self.tracker)
        client_factory = WebSocketClientFactory("ws://gw.test:8000/p", reactor=self.clock)
        client_factory.protocol = Client
        client_factory.events = []  # type: ignore[attr-defined]
        self.events: list[tuple[Any, ...]] = client_factory.events  # type: ignore[attr-defined]
        self.client, self.server, self.pump = iosim.connectedServerAndClient(
            lambda: self.factory.buildProtocol(None), lambda: client_factory.buildProtocol(None),
            serverTransportFactory=lambda p: PausableTransport(p, True),
            greet=False, clock=self.clock)
        self.pump.flush()
        self.backend = backend if backend is not None else FakeLink(websocket=False)
        self.connector.calls[0].d.callback(self.backend)
        self.pump.flush()
        assert self.events == [("open",)]
        self.proto: GatewayWebSocketProtocol = self.server

    @property
    def backend_got(self) -> bytes:
        """What reached the back end: by writeSequence (fast path) or write (Autobahn)."""
        return self.backend.transport.value() + self.backend.data  # type: ignore[no-any-return]

    def from_backend(self, data: bytes) -> None:
        self.connector.calls[0].receiver.received(data, True)

    def raw(self, *frames: bytes) -> None:
        """Frames written by hand, in one read."""
        self.client.transport.write(b"".join(frames))
        self.pump.flush()


def masked(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    return b"".join(encode_frame(opcode, payload, fin, KEY))


@pytest.mark.parametrize("fast", [True, False])
def test_data_both_ways_and_the_same_byte_counts_as_autobahn(tmp_path: Path, fast: bool) -> None:
    s = Setup(tmp_path, "" if fast else "<ws.fast.path>false</ws.fast.path>")
    assert (s.proto.fast is not None) is fast
    with capturedLogs() as logs:
        s.client.sendMessage(b"hello", isBinary=True)
        s.client.sendMessage("héllo".encode(), isBinary=False)
        s.pump.flush()
        assert s.backend_got == b"hello" + "héllo".encode()
        s.from_backend(b"reply")
        s.pump.flush()
        assert s.events[-1] == ("message", b"reply", True)
        s.client.sendClose(1000)
        s.pump.flush()
    assert s.events[-1][:2] == ("close", 1000)
    assert s.backend.closes == [(1000, "")]
    (access,) = [e for e in logs if e.get("log_format", "").startswith("access:")]
    # client: 2 + 4 + 5, 2 + 4 + 6, close 2 + 4 + 2; gateway: 2 + 5, close 2 + 2
    assert (access["received"], access["sent"], access["end"]) == (31, 11, "close=1000")
    assert s.tracker.total() == 0


def test_a_fragmented_text_message_with_a_ping_between_its_fragments(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    s.raw(masked(Opcode.TEXT, "hé".encode()[:2], fin=False), masked(Opcode.PING, b"p"))
    assert s.events[-1] == ("pong", b"p")
    assert s.backend_got == b""  # text waits for the end of its message
    s.raw(masked(Opcode.CONTINUATION, "hé".encode()[2:] + b"llo"))
    assert s.backend_got == "héllo".encode()
    s.client.sendMessage(b"z" * 1000, isBinary=True, fragmentSize=64)
    s.pump.flush()
    assert s.backend_got == "héllo".encode() + b"z" * 1000


def test_a_frame_split_across_reads_reaches_the_back_end_as_it_arrives(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    frame = masked(Opcode.BINARY, b"0123456789" * 20)
    s.raw(frame[:50])
    s.raw(frame[50:])
    assert s.backend_got == b"0123456789" * 20


def test_pings_are_answered(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    s.client.sendPing(b"abc")
    s.pump.flush()
    assert s.events[-1] == ("pong", b"abc")


def test_the_clients_close_code_and_reason_reach_the_session(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    s.client.sendClose(4000, "bye")
    s.pump.flush()
    assert s.backend.closes == [(4000, "bye")]
    assert s.events[-1][:2] == ("close", 1000)  # the answer is 1000, as Autobahn's


@pytest.mark.parametrize("code", [1014, 1011, 1001, 4001])
def test_the_gateways_close_codes_reach_the_client(tmp_path: Path, code: int) -> None:
    s = Setup(tmp_path)
    s.from_backend(b"last")
    s.proto.link.close(code, "why " + "x" * 200)  # type: ignore[union-attr]
    s.from_backend(b"dropped")  # nothing after Close
    # Read what the gateway wrote with a client codec: Autobahn's client refuses 1014.
    wire = b"".join(s.proto.transport.stream)
    events = WebSocketCodec(Role.CLIENT, stream=False).receive_data(wire)
    assert events[0] == Message(b"last", True)
    (close,) = events[1:]
    assert isinstance(close, Close) and close.code == code
    assert close.reason.startswith("why xx") and len(close.reason.encode()) == 123
    s.pump.flush()
    assert s.tracker.total() == 0


def test_the_back_end_closing_closes_the_client_with_1000(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    s.connector.calls[0].receiver.closed(None, "connection done")
    s.pump.flush()
    assert s.events[-1][:2] == ("close", 1000)
    assert s.tracker.total() == 0


def test_an_unanswered_close_drops_the_connection_after_the_timeout(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    s.proto.link.close(1001, "going")  # type: ignore[union-attr]
    # The client never reads it: nothing is pumped until the close-handshake timeout.
    s.clock.advance(5)
    assert s.proto.transport.disconnecting
    s.pump.flush()
    assert s.tracker.total() == 0


def test_a_protocol_error_closes_with_1002_and_the_client_reads_it(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    # Data before the fault in the same read is still delivered; an unmasked frame is not.
    s.raw(masked(Opcode.BINARY, b"ok"), b"".join(encode_frame(Opcode.BINARY, b"no")))
    assert s.backend_got == b"ok"
    assert s.client.remoteCloseCode == 1002  # the client read our Close
    assert s.backend.closes == [] and s.tracker.total() == 1  # waits for the peer
    s.raw(masked(Opcode.BINARY, b"more"))
    assert s.backend_got == b"ok"  # discarded while failing
    s.clock.advance(5)
    s.pump.flush()
    assert s.tracker.total() == 0
    assert s.backend.closes and s.backend.closes[0][0] == 1002


def test_invalid_utf8_text_closes_with_1007(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    s.raw(masked(Opcode.TEXT, b"ok\xff"))
    assert s.client.remoteCloseCode == 1007


def test_no_octet_of_a_text_message_that_proves_invalid_reaches_the_back_end(
        tmp_path: Path) -> None:
    s = Setup(tmp_path)
    s.raw(masked(Opcode.BINARY, b"bin", fin=False))
    assert s.backend_got == b"bin"  # binary goes as it comes
    s.raw(masked(Opcode.CONTINUATION, b"ary"))
    s.raw(masked(Opcode.TEXT, "κόσμε".encode(), fin=False))
    s.raw(masked(Opcode.CONTINUATION, b"\xf4\x90\x80\x80", fin=False))
    assert s.client.remoteCloseCode == 1007
    assert s.backend_got == b"binary"


def test_an_oversize_message_closes_with_1009(tmp_path: Path) -> None:
    s = Setup(tmp_path, "<ws.maximum.message.size>1k</ws.maximum.message.size>")
    s.client.sendMessage(b"a" * 1024, isBinary=True)
    s.client.sendMessage(b"b" * 1025, isBinary=True)
    s.pump.flush()
    assert s.backend_got == b"a" * 1024
    assert s.client.remoteCloseCode == 1009


def test_a_close_frame_from_the_client_ends_any_later_data(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    s.raw(masked(Opcode.CLOSE, close_payload(1000, "")), masked(Opcode.BINARY, b"late"))
    assert s.backend_got == b""
    assert s.backend.closes == [(1000, "")]


def test_a_full_back_end_stops_reads_from_the_client(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    assert s.backend.producer is s.proto.transport
    s.backend.producer.pauseProducing()  # the back end's write buffer is full
    s.client.sendMessage(b"held", isBinary=True)
    s.pump.flush()
    assert s.backend_got == b""
    s.backend.producer.resumeProducing()
    assert s.backend_got == b"held"


def test_a_slow_client_stops_reads_from_the_back_end(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    transport = s.proto.transport
    assert transport.producer is s.backend.transport and transport.bufferSize == 16 * 1024
    s.from_backend(b"x" * 10_000)
    assert s.backend.transport.producerState == "producing"
    s.from_backend(b"y" * 10_000)
    assert s.backend.transport.producerState == "paused"
    s.pump.flush()
    assert s.backend.transport.producerState == "producing"
    assert [e[1] for e in s.events if e[0] == "message"] == [b"x" * 10_000, b"y" * 10_000]


def test_the_inactivity_timeout_pings_and_drops_a_silent_client(tmp_path: Path) -> None:
    s = Setup(tmp_path, "<ws.inactivity.timeout>10sec</ws.inactivity.timeout>")
    s.clock.advance(5)
    s.pump.flush()
    assert ("ping", b"") in s.events  # the client answers: it stays
    for _ in range(4):
        s.clock.advance(5)
        s.pump.flush()
    assert s.tracker.total() == 1
    # Now the client goes silent (nothing is pumped): it is dropped.
    for _ in range(5):
        s.clock.advance(5)
    assert s.proto.transport.disconnecting
    with capturedLogs() as logs:
        s.pump.flush()
    (access,) = [e for e in logs if e.get("log_format", "").startswith("access:")]
    assert access["end"] == "close=1006"


def test_a_websocket_back_end_keeps_autobahn_messages(tmp_path: Path) -> None:
    s = Setup(tmp_path, target="ws://backend:9000/x", backend=FakeLink())
    assert s.proto.fast is None
    s.client.sendMessage(b"text", isBinary=False)
    s.pump.flush()
    assert s.backend.messages == [(b"text", False)]


def test_the_takeover_lets_go_of_what_only_autobahn_used(tmp_path: Path) -> None:
    """An idle client holds no request, headers, send queue or validator of Autobahn's, no
    text buffer, and a slotted link; data, the access line and a drain work as before."""
    s = Setup(tmp_path)
    link = s.proto.fast
    assert link is not None and not hasattr(link, "__dict__")
    assert all(getattr(s.proto, name) is None for name in AUTOBAHN_ONLY)
    assert link._text is None
    s.raw(masked(Opcode.TEXT, "hé".encode()[:2], fin=False))
    assert link._text == b"h\xc3"  # a text message under way
    s.raw(masked(Opcode.CONTINUATION, "hé".encode()[2:]), masked(Opcode.BINARY, b"!"))
    assert s.backend_got == "hé".encode() + b"!" and link._text is None
    s.from_backend(b"reply")
    s.pump.flush()
    assert s.events[-1] == ("message", b"reply", True)
    with capturedLogs() as logs:
        s.proto.abort()  # as a drain ends what is left: Autobahn's dropConnection
        s.pump.flush()
    (access,) = [e for e in logs if e.get("log_format", "").startswith("access:")]
    assert access["end"] == "close=1006" and s.events[-1][:2] == ("close", 1006)
    assert s.tracker.total() == 0 and [code for code, _ in s.backend.closes] == [1006]


def test_data_sent_with_the_handshake_is_not_lost(tmp_path: Path) -> None:
    """Octets Autobahn buffered past the handshake go to the codec, after opened()."""
    cfg = load(tmp_path, "<service><name>px</name><accept>ws://gw.test:8000/p</accept>"
                         "<connect>tcp://backend:9000</connect><type>proxy</type></service>")
    connector = FakeConnector()
    factory = GatewayWebSocketFactory(build(cfg, connector=connector),
                                      parse_uri("ws://gw.test:8000/p"), MemoryReactorClock(),
                                      ConnectionTracker())
    proto = factory.buildProtocol(None)
    transport = iosim.FakeTransport(proto, isServer=True)
    proto.makeConnection(transport)
    proto.dataReceived(b"GET /p HTTP/1.1\r\nHost: gw.test:8000\r\nUpgrade: websocket\r\n"
                       b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       b"Sec-WebSocket-Version: 13\r\n\r\n" + masked(Opcode.BINARY, b"early"))
    backend = FakeLink(websocket=False)
    connector.calls[0].d.callback(backend)
    assert proto.fast is not None
    assert backend.transport.value() == b"early"


def test_echo_takes_the_fast_path_in_messages_mode(tmp_path: Path) -> None:
    """Whole messages, their kind kept, fragments joined: what echo needs."""
    cfg = load(tmp_path, "<service><name>echo</name><accept>ws://gw.test:8000/echo</accept>"
                         "<type>echo</type></service>")
    clock = MemoryReactorClock()
    factory = GatewayWebSocketFactory(build(cfg), parse_uri("ws://gw.test:8000/echo"), clock,
                                      ConnectionTracker())
    client_factory = WebSocketClientFactory("ws://gw.test:8000/echo", reactor=clock)
    client_factory.protocol = Client
    events: list[tuple[Any, ...]] = []
    client_factory.events = events  # type: ignore[attr-defined]
    client, server, pump = iosim.connectedServerAndClient(
        lambda: factory.buildProtocol(None), lambda: client_factory.buildProtocol(None),
        greet=False, clock=clock)
    pump.flush()
    assert server.fast is not None
    client.sendMessage("héllo".encode(), isBinary=False)
    client.sendMessage(b"\x00" * 300, isBinary=True, fragmentSize=100)
    pump.flush()
    assert events[1:] == [("message", "héllo".encode(), False), ("message", b"\x00" * 300, True)]
    client.sendClose(1000)
    pump.flush()
    assert events[-1][:2] == ("close", 1000) and factory.tracker.total() == 0
