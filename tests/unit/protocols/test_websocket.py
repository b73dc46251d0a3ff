"""Pure tests for the sans-IO WebSocket data-phase codec in kgateway.protocols.websocket.

Frames are built by hand from RFC 6455 section 5.2 (:func:`raw_frame`, with a byte-by-byte
XOR as the reference masker) or by Autobahn itself, never by the encoder under test alone;
they are fed whole, one octet at a time and at Hypothesis-chosen splits, because TCP reads
carry no meaning for WebSocket framing.  Every test runs with Autobahn's native masker and
with the pure one, where the native one is installed.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Iterable, Sequence

import pytest
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.protocol import WebSocketProtocol
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from kgateway.protocols.websocket import (
    CLOSE_NO_STATUS,
    HAS_NVX,
    Chunk,
    Close,
    Event,
    LocalProtocolError,
    Message,
    Opcode,
    Ping,
    Pong,
    ProtocolError,
    Role,
    State,
    WebSocketCodec,
    close_payload,
    encode_frame,
    frame_header,
    is_valid_close_code,
    mask_payload,
)

KEY = b"\x37\xfa\x21\x3d"
NATIVE = [pytest.param(True, id="nvx", marks=pytest.mark.skipif(not HAS_NVX, reason="no NVX")),
          pytest.param(False, id="pure")]


# -- reference encoding, straight from RFC 6455 5.2 ------------------------------------------


def xor(payload: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def raw_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, key: bytes | None = KEY,
              rsv: int = 0, length: int | None = None, width: int | None = None) -> bytes:
    """One frame; ``length``/``width`` (7, 16, 64) force a header for malformed-frame tests."""
    n = len(payload) if length is None else length
    if width is None:
        width = 7 if n < 126 else 16 if n < 65536 else 64
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    bit = 0x80 if key is not None else 0
    if width == 7:
        header = bytes((b0, bit | n))
    elif width == 16:
        header = bytes((b0, bit | 126)) + struct.pack("!H", n)
    else:
        header = bytes((b0, bit | 127)) + struct.pack("!Q", n)
    if key is None:
        return header + payload
    return header + key + xor(payload, key)


def client_frame(opcode: int, payload: bytes = b"", **kw: object) -> bytes:
    return raw_frame(opcode, payload, **kw)  # type: ignore[arg-type]


def server_frame(opcode: int, payload: bytes = b"", **kw: object) -> bytes:
    return raw_frame(opcode, payload, key=None, **kw)  # type: ignore[arg-type]


def feed(codec: WebSocketCodec, chunks: Iterable[bytes]) -> list[Event]:
    events: list[Event] = []
    for chunk in chunks:
        events += codec.receive_data(chunk)
    return events


def bytewise(data: bytes) -> list[bytes]:
    return [data[i:i + 1] for i in range(len(data))]


def split_at(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    points = [0, *sorted(set(cuts)), len(data)]
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


def as_messages(events: Sequence[Event]) -> list[Event]:
    """Stream-mode events with each message's chunks joined into one Message."""
    out: list[Event] = []
    parts: list[bytes] = []
    for event in events:
        if isinstance(event, Chunk):
            parts.append(event.data)
            if event.last:
                out.append(Message(b"".join(parts), event.binary))
                parts = []
        else:
            out.append(event)
    assert not parts
    return out


def server(native: bool, **kw: object) -> WebSocketCodec:
    return WebSocketCodec(Role.SERVER, native=native, **kw)  # type: ignore[arg-type]


def fail(codec: WebSocketCodec, chunks: Iterable[bytes]) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        feed(codec, chunks)
    assert codec.state is State.FAILED
    return info.value


# -- parsing ----------------------------------------------------------------------------------

TEXT = "κόσμε, 世界 🌍".encode()  # 2-, 3- and 4-octet sequences

STREAM = (client_frame(Opcode.BINARY, b"\x00\x01\x02" * 50)
          + client_frame(Opcode.TEXT, TEXT[:5], fin=False)  # cuts inside "ό"
          + client_frame(Opcode.PING, b"are you there")
          + client_frame(Opcode.CONTINUATION, TEXT[5:17], fin=False)
          + client_frame(Opcode.PONG, b"")
          + client_frame(Opcode.CONTINUATION, TEXT[17:])
          + client_frame(Opcode.BINARY, b"")
          + client_frame(Opcode.TEXT, b"x" * 300)
          + client_frame(Opcode.CLOSE, struct.pack("!H", 1000) + "bye ✓".encode()))

STREAM_EVENTS: list[Event] = [
    Message(b"\x00\x01\x02" * 50, True), Ping(b"are you there"), Pong(b""),
    Message(TEXT, False), Message(b"", True), Message(b"x" * 300, False), Close(1000, "bye ✓")]


@pytest.mark.parametrize("native", NATIVE)
def test_a_whole_stream_in_one_read(native: bool) -> None:
    codec = server(native)
    assert codec.receive_data(STREAM) == STREAM_EVENTS
    assert codec.state is State.REMOTE_CLOSING


@pytest.mark.parametrize("native", NATIVE)
def test_one_octet_at_a_time(native: bool) -> None:
    assert feed(server(native), bytewise(STREAM)) == STREAM_EVENTS


@pytest.mark.parametrize("native", NATIVE)
def test_stream_mode_one_octet_at_a_time(native: bool) -> None:
    events = feed(server(native, stream=True), bytewise(STREAM))
    assert as_messages(events) == STREAM_EVENTS
    # Payload arrives as it is unmasked: a chunk per octet, never an empty one but the last.
    chunks = [e for e in events if isinstance(e, Chunk)]
    assert all(len(c.data) == 1 for c in chunks if not c.last or c.data)
    assert Chunk(b"", True, True) in chunks


@pytest.mark.parametrize("native", NATIVE)
def test_every_split_point(native: bool) -> None:
    for cut in range(len(STREAM) + 1):
        assert feed(server(native), [STREAM[:cut], STREAM[cut:]]) == STREAM_EVENTS, cut


def test_client_role_reads_unmasked_frames() -> None:
    data = (server_frame(Opcode.BINARY, b"abc") + server_frame(Opcode.PING, b"p")
            + server_frame(Opcode.TEXT, TEXT))
    codec = WebSocketCodec(Role.CLIENT)
    assert feed(codec, bytewise(data)) == [Message(b"abc", True), Ping(b"p"),
                                           Message(TEXT, False)]


# Hypothesis: random multi-frame streams, random reads.

payloads = st.binary(max_size=300)
# Octets that may or may not be UTF-8: text with lone surrogates encoded anyway, or noise.
texts = st.one_of(st.text(max_size=100).map(lambda s: s.encode("utf-8", "surrogatepass")),
                  st.binary(max_size=60))
valid_texts = st.text(alphabet=st.characters(exclude_categories=["Cs"]),
                      max_size=100).map(str.encode)


@st.composite
def conversations(draw: st.DrawFn) -> tuple[bytes, list[Event]]:
    """Messages, some fragmented with pings and pongs between fragments; the expected events."""
    wire = b""
    expected: list[Event] = []
    for _ in range(draw(st.integers(1, 6))):
        binary = draw(st.booleans())
        data = draw(payloads if binary else valid_texts)
        cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=4)))
        pieces = split_at(data, cuts) if cuts else [data]
        for i, piece in enumerate(pieces):
            opcode = (Opcode.BINARY if binary else Opcode.TEXT) if i == 0 else Opcode.CONTINUATION
            key = draw(st.binary(min_size=4, max_size=4))
            wire += raw_frame(opcode, piece, fin=i == len(pieces) - 1, key=key)
            if i < len(pieces) - 1 and draw(st.booleans()):
                control = draw(st.binary(max_size=125))
                if draw(st.booleans()):
                    wire += raw_frame(Opcode.PING, control, key=key)
                    expected.append(Ping(control))
                else:
                    wire += raw_frame(Opcode.PONG, control, key=key)
                    expected.append(Pong(control))
        expected.append(Message(data, binary))
    return wire, expected


@pytest.mark.parametrize("native", NATIVE)
@settings(max_examples=150, deadline=None)
@given(conversation=conversations(), data=st.data())
def test_random_streams_at_random_splits(native: bool, conversation: tuple[bytes, list[Event]],
                                         data: st.DataObject) -> None:
    wire, expected = conversation
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=12))
    chunks = split_at(wire, cuts)
    assert feed(server(native), chunks) == expected
    assert as_messages(feed(server(native, stream=True), chunks)) == expected


@settings(max_examples=100, deadline=None)
@given(conversation=conversations(), data=st.data())
def test_random_streams_through_the_client_role(conversation: tuple[bytes, list[Event]],
                                                data: st.DataObject) -> None:
    wire, expected = conversation
    # Re-frame the same conversation unmasked, through our own encoder this time.
    codec = server(False)
    frames = b""
    for event in feed(codec, [wire]):
        if isinstance(event, Message):
            frames += b"".join(encode_frame(Opcode.BINARY if event.binary else Opcode.TEXT,
                                            event.data))
        elif isinstance(event, Ping):
            frames += b"".join(encode_frame(Opcode.PING, event.payload))
        elif isinstance(event, Pong):
            frames += b"".join(encode_frame(Opcode.PONG, event.payload))
    cuts = data.draw(st.lists(st.integers(0, len(frames)), max_size=12))
    # Each event re-encoded in the order it came out, so it comes out in that order again.
    assert feed(WebSocketCodec(Role.CLIENT), split_at(frames, cuts)) == expected


# Lengths: the 7-, 16- and 64-bit encodings and their edges.


@pytest.mark.parametrize("native", NATIVE)
@pytest.mark.parametrize("size", [0, 1, 63, 64, 125, 126, 127, 65535, 65536, 200_001])
def test_length_encodings(native: bool, size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    frame = client_frame(Opcode.BINARY, payload)
    assert len(frame) - size - 4 == (2 if size < 126 else 4 if size < 65536 else 10)
    assert server(native).receive_data(frame) == [Message(payload, True)]
    assert feed(server(native), split_at(frame, [1, 2, 3, 5, 9, 13, 14])) == [
        Message(payload, True)]


@pytest.mark.parametrize("native", NATIVE)
def test_a_large_message_across_many_reads_is_never_buffered_whole(native: bool) -> None:
    """4 MiB in 16 fragments of 256 KiB, fed in 64 KiB reads."""
    payload = bytes(range(256)) * (16 * 1024)
    wire = b"".join(client_frame(Opcode.BINARY if i == 0 else Opcode.CONTINUATION,
                                 payload[i * 262144:(i + 1) * 262144], fin=i == 15)
                    for i in range(16))
    reads = [wire[i:i + 65536] for i in range(0, len(wire), 65536)]
    codec = server(native, stream=True)
    events: list[Event] = []
    for read in reads:
        events += codec.receive_data(read)
        assert codec.buffered < 16  # at most a partial frame header
    assert b"".join(e.data for e in events if isinstance(e, Chunk)) == payload
    assert len(events) >= len(reads)  # delivered as it came, not at the end

    codec = server(native)
    assert feed(codec, reads) == [Message(payload, True)]
    assert codec.buffered == 0


@pytest.mark.parametrize("native", NATIVE)
def test_an_idle_codec_holds_no_message_buffer_and_no_decoder(native: bool) -> None:
    """One codec lives as long as each fast-path connection: slotted, and the buffer of a
    fragmented message and the UTF-8 decoder exist only once a message needs them."""
    codec = server(native)
    assert not hasattr(codec, "__dict__")
    assert (codec._parts, codec._decoder) == (None, None)
    ascii_text = client_frame(Opcode.TEXT, b"he", fin=False) + client_frame(
        Opcode.CONTINUATION, b"llo")
    assert codec.receive_data(ascii_text[:8]) == []
    assert codec.buffered == 2  # the first fragment's payload
    assert codec.receive_data(ascii_text[8:]) == [Message(b"hello", False)]
    assert (codec._parts, codec._decoder, codec.buffered) == (None, None, 0)  # ASCII: no decoder
    assert codec.receive_data(client_frame(Opcode.TEXT, TEXT[:5], fin=False)
                              + client_frame(Opcode.CONTINUATION, TEXT[5:])) == [
        Message(TEXT, False)]
    assert codec._parts is None and codec._decoder is not None  # kept for the next text
    # the kept decoder starts each message afresh
    assert codec.receive_data(client_frame(Opcode.TEXT, TEXT)) == [Message(TEXT, False)]
    error = fail(codec, [client_frame(Opcode.TEXT, b"a", fin=False),
                         client_frame(Opcode.CONTINUATION, b"\xff")])
    assert error.code == 1007 and codec.buffered == 0


# UTF-8


@pytest.mark.parametrize("native", NATIVE)
@pytest.mark.parametrize("cut", range(1, 4))
def test_a_four_octet_character_split_across_fragments(native: bool, cut: int) -> None:
    text = "a🌍b".encode()
    wire = (client_frame(Opcode.TEXT, text[:1 + cut], fin=False)
            + client_frame(Opcode.CONTINUATION, text[1 + cut:]))
    assert server(native).receive_data(wire) == [Message(text, False)]
    assert feed(server(native), bytewise(wire)) == [Message(text, False)]


INVALID_UTF8 = [b"\xff", b"\xc0\xaf", b"\xe0\x80\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
                b"\xf8\x88\x80\x80\x80", b"\x80", b"\xce\xba\xe1\x80\x80\x80"]


@pytest.mark.parametrize("native", NATIVE)
@pytest.mark.parametrize("bad", INVALID_UTF8, ids=lambda b: b.hex())
def test_invalid_utf8_fails_fast_mid_message(native: bool, bad: bytes) -> None:
    """1007 as soon as the invalid octet arrives: the message's end never has to come."""
    start = client_frame(Opcode.TEXT, "κόσμε".encode(), fin=False)
    codec = server(native)
    assert codec.receive_data(start) == []
    bad_frame = client_frame(Opcode.CONTINUATION, bad, fin=False)
    with pytest.raises(ProtocolError) as info:
        feed(codec, bytewise(bad_frame))
    assert info.value.code == 1007


@pytest.mark.parametrize("native", NATIVE)
@pytest.mark.parametrize("bad", [b"\xf4\x90", b"\xed\xa0", b"\xe0\x80", b"\xc0"],
                         ids=lambda b: b.hex())
def test_invalid_utf8_fails_inside_a_frame_before_its_end(native: bool, bad: bytes) -> None:
    """Autobahn's case 6.4.3/6.4.4: the frame arrives in chops; the bad chop fails at once."""
    payload = "κόσμε".encode() + bad + b"\x80\x80" + b"edited"
    frame = client_frame(Opcode.TEXT, payload)
    header = 6
    codec = server(native)
    assert codec.receive_data(frame[:header + 10]) == []  # κόσμε: valid so far
    with pytest.raises(ProtocolError) as info:
        codec.receive_data(frame[header + 10:header + 10 + len(bad)])
    assert info.value.code == 1007


@pytest.mark.parametrize("native", NATIVE)
def test_text_ending_inside_a_character_is_invalid(native: bool) -> None:
    wire = (client_frame(Opcode.TEXT, "aκ".encode()[:2], fin=False)
            + client_frame(Opcode.CONTINUATION, b""))
    assert fail(server(native), [wire]).code == 1007
    assert fail(server(native, stream=True), [wire]).code == 1007


@settings(max_examples=200, deadline=None)
@given(text=texts, cut=st.integers(0, 400))
def test_utf8_verdict_matches_python(text: bytes, cut: int) -> None:
    try:
        text.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        valid = False
    cut = min(cut, len(text))
    wire = (client_frame(Opcode.TEXT, text[:cut], fin=False)
            + client_frame(Opcode.CONTINUATION, text[cut:]))
    codec = server(False)
    if valid:
        assert feed(codec, bytewise(wire)) == [Message(text, False)]
    else:
        assert fail(codec, bytewise(wire)).code == 1007


# Protocol errors: every one is a ProtocolError with its close code.

ERRORS: list[tuple[str, bytes, int]] = [
    ("unmasked frame to a server", server_frame(Opcode.BINARY, b"x"), 1002),
    ("rsv1", client_frame(Opcode.BINARY, b"x", rsv=4), 1002),
    ("rsv2", client_frame(Opcode.TEXT, b"x", rsv=2), 1002),
    ("rsv3 on a ping", client_frame(Opcode.PING, b"", rsv=1), 1002),
    *[(f"reserved data opcode {op}", client_frame(op, b"x"), 1002) for op in range(3, 8)],
    *[(f"reserved control opcode {op}", client_frame(op, b""), 1002) for op in range(11, 16)],
    ("continuation without a start", client_frame(Opcode.CONTINUATION, b"x"), 1002),
    ("text inside a fragmented message",
     client_frame(Opcode.BINARY, b"a", fin=False) + client_frame(Opcode.TEXT, b"b"), 1002),
    ("binary inside a fragmented message",
     client_frame(Opcode.TEXT, b"a", fin=False) + client_frame(Opcode.BINARY, b"b"), 1002),
    ("fragmented ping", client_frame(Opcode.PING, b"x", fin=False), 1002),
    ("fragmented close", client_frame(Opcode.CLOSE, b"", fin=False), 1002),
    ("ping longer than 125", client_frame(Opcode.PING, b"x" * 126), 1002),
    ("pong longer than 125", client_frame(Opcode.PONG, b"x" * 300), 1002),
    ("close payload of one octet", client_frame(Opcode.CLOSE, b"\x03"), 1002),
    ("close reason not UTF-8", client_frame(Opcode.CLOSE, b"\x03\xe8\xce"), 1007),
    ("close reason a surrogate", client_frame(Opcode.CLOSE, b"\x03\xe8\xed\xa0\x80"), 1007),
    ("16-bit length below 126", client_frame(Opcode.BINARY, b"x" * 125, width=16), 1002),
    ("64-bit length below 65536", client_frame(Opcode.BINARY, b"x" * 200, width=64), 1002),
    ("64-bit length with the top bit", client_frame(Opcode.BINARY, length=1 << 63,
                                                    width=64), 1002),
    ("invalid text", client_frame(Opcode.TEXT, b"\xce\xba\xff"), 1007),
]


@pytest.mark.parametrize("native", NATIVE)
@pytest.mark.parametrize(("wire", "code"), [pytest.param(w, c, id=name) for name, w, c in ERRORS])
def test_protocol_errors(native: bool, wire: bytes, code: int) -> None:
    for chunks in ([wire], bytewise(wire)):
        error = fail(server(native), chunks)
        assert error.code == code and error.reason
        error = fail(server(native, stream=True), chunks)
        assert error.code == code


def test_a_masked_frame_to_a_client() -> None:
    error = fail(WebSocketCodec(Role.CLIENT), [client_frame(Opcode.BINARY, b"x")])
    assert (error.code, error.reason) == (1002, "masked frame sent to a client")


def test_errors_are_found_from_the_first_two_octets() -> None:
    """No need to wait for a bad frame's length, key or payload."""
    for name, wire, _ in ERRORS:
        if name.startswith(("rsv", "reserved", "continuation", "fragmented", "unmasked",
                            "ping longer", "pong longer", "close payload of one")):
            if "inside" not in name:
                with pytest.raises(ProtocolError):
                    server(False).receive_data(wire[:2])


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012,
                                  1013, 1014, 3000, 3999, 4000, 4999])
def test_valid_close_codes(code: int) -> None:
    codec = server(False)
    assert codec.receive_data(client_frame(Opcode.CLOSE, struct.pack("!H", code))) == [
        Close(code, "")]


@pytest.mark.parametrize("code", [0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999,
                                  5000, 65535])
def test_invalid_close_codes(code: int) -> None:
    error = fail(server(False), [client_frame(Opcode.CLOSE, struct.pack("!H", code) + b"x")])
    assert error.code == 1002


def test_close_code_table() -> None:
    valid = {c for c in range(65536) if is_valid_close_code(c)}
    assert valid == ({1000, 1001, 1002, 1003} | set(range(1007, 1015)) | set(range(3000, 5000)))


def test_close_without_payload_reports_1005() -> None:
    assert server(False).receive_data(client_frame(Opcode.CLOSE)) == [Close(CLOSE_NO_STATUS, "")]


@pytest.mark.parametrize("native", NATIVE)
def test_max_message_size_fails_at_the_header(native: bool) -> None:
    codec = server(native, max_message_size=100)
    assert codec.receive_data(client_frame(Opcode.BINARY, b"x" * 100)) == [Message(b"x" * 100,
                                                                                   True)]
    frame = client_frame(Opcode.BINARY, b"x" * 101)
    assert fail(codec, [frame[:6]]).code == 1009  # header only: the payload never buffered
    # Across fragments, and with text too.
    codec = server(native, max_message_size=100)
    wire = client_frame(Opcode.TEXT, b"a" * 60, fin=False) + client_frame(Opcode.CONTINUATION,
                                                                          b"b" * 41)
    error = fail(codec, [wire])
    assert error.code == 1009 and error.events == []


def test_events_before_an_error_travel_with_it() -> None:
    codec = server(False)
    wire = (client_frame(Opcode.BINARY, b"ok") + client_frame(Opcode.PING, b"p")
            + client_frame(3, b"bad") + client_frame(Opcode.BINARY, b"never"))
    error = fail(codec, [wire])
    assert error.events == [Message(b"ok", True), Ping(b"p")]
    with pytest.raises(ProtocolError) as again:
        codec.receive_data(client_frame(Opcode.BINARY, b"more"))
    assert again.value is error
    # What is left to do: answer the events that came before the fault (here, echo), send
    # the error's Close, and nothing after it.
    assert codec.send_message(b"ok") == [server_frame(Opcode.BINARY)[:1] + b"\x02", b"ok"]
    assert codec.send_close(error.code, error.reason) == server_frame(
        Opcode.CLOSE, close_payload(error.code, error.reason))
    assert codec.state is State.FAILED
    with pytest.raises(LocalProtocolError):
        codec.send_message(b"no")
    with pytest.raises(LocalProtocolError):
        codec.send_close()


def test_nothing_counts_after_a_close() -> None:
    codec = server(False)
    wire = client_frame(Opcode.CLOSE, b"\x03\xe8") + client_frame(Opcode.BINARY, b"late")
    assert codec.receive_data(wire) == [Close(1000, "")]
    assert codec.receive_data(client_frame(3, b"even garbage")) == []
    assert codec.state is State.REMOTE_CLOSING
    codec.send_close(1000)
    assert codec.state is State.CLOSED


# -- encoding ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 1 << 32])
def test_frame_header_matches_the_rfc(size: int) -> None:
    expected = raw_frame(Opcode.BINARY, key=None, length=size)
    assert frame_header(Opcode.BINARY, size) == expected
    masked = raw_frame(Opcode.TEXT, fin=False, key=KEY, length=size)
    assert frame_header(Opcode.TEXT, size, fin=False, mask=KEY) == masked


def test_frame_header_refuses_a_length_past_63_bits() -> None:
    with pytest.raises(LocalProtocolError):
        frame_header(Opcode.BINARY, 1 << 63)


@pytest.mark.parametrize("native", NATIVE)
@pytest.mark.parametrize("size", [0, 1, 3, 63, 64, 65, 1000, 70000])
def test_mask_payload_is_the_rfc_xor(native: bool, size: int) -> None:
    payload = bytes(i * 7 % 256 for i in range(size))
    assert mask_payload(payload, KEY, native=native) == xor(payload, KEY)


def test_a_server_sends_the_payload_object_itself() -> None:
    payload = b"p" * 5000
    header, body = WebSocketCodec(Role.SERVER).send_message(payload)
    assert body is payload  # writeSequence([header, body]): no copy
    assert header + body == server_frame(Opcode.BINARY, payload)


@pytest.mark.parametrize("native", NATIVE)
def test_a_client_masks_with_its_key_source(native: bool) -> None:
    codec = WebSocketCodec(Role.CLIENT, native=native, mask_key=lambda: KEY)
    assert b"".join(codec.send_message(TEXT, binary=False)) == client_frame(Opcode.TEXT, TEXT)
    assert codec.send_ping(b"hi") == client_frame(Opcode.PING, b"hi")
    assert codec.send_close(1001, "away") == client_frame(Opcode.CLOSE, b"\x03\xe9away")


def test_fragments_go_out_as_start_then_continuations() -> None:
    codec = WebSocketCodec(Role.SERVER)
    wire = b"".join([*codec.send_data(b"a", binary=False, fin=False),
                     *codec.send_data(b"b", binary=False, fin=False),
                     codec.send_pong(b"between"),
                     *codec.send_data(b"c", binary=False)])
    assert wire == (server_frame(Opcode.TEXT, b"a", fin=False)
                    + server_frame(Opcode.CONTINUATION, b"b", fin=False)
                    + server_frame(Opcode.PONG, b"between")
                    + server_frame(Opcode.CONTINUATION, b"c"))
    codec.send_data(b"x", fin=False)
    with pytest.raises(LocalProtocolError):
        codec.send_message(b"y")


def test_control_frame_rules_when_sending() -> None:
    codec = WebSocketCodec(Role.SERVER)
    with pytest.raises(LocalProtocolError):
        codec.send_ping(b"x" * 126)
    for code in (999, 1004, 1005, 1006, 1015, 2000, 5000):
        with pytest.raises(LocalProtocolError):
            codec.send_close(code)
    with pytest.raises(LocalProtocolError):
        close_payload(1000, "r" * 124)
    assert close_payload(1000, "r" * 123) == b"\x03\xe8" + b"r" * 123
    assert close_payload(None) == b""
    assert codec.send_close(None) == server_frame(Opcode.CLOSE)
    assert codec.state is State.LOCAL_CLOSING
    with pytest.raises(LocalProtocolError):
        codec.send_message(b"after close")
    # The peer may still send until its own Close arrives.
    assert codec.receive_data(client_frame(Opcode.BINARY, b"late")) == [Message(b"late", True)]
    codec.receive_data(client_frame(Opcode.CLOSE, b"\x03\xe8"))
    assert codec.state is State.CLOSED


@pytest.mark.parametrize("native", NATIVE)
def test_our_client_talks_to_our_server(native: bool) -> None:
    client = WebSocketCodec(Role.CLIENT, native=native)
    frames = b"".join([*client.send_message(b"\x00" * 70000), client.send_ping(b"?"),
                       *client.send_data(TEXT[:3], binary=False, fin=False),
                       *client.send_data(TEXT[3:], binary=False),
                       client.send_close(4000, "done")])
    assert feed(server(native), bytewise(frames[:200]) + [frames[200:]]) == [
        Message(b"\x00" * 70000, True), Ping(b"?"), Message(TEXT, False), Close(4000, "done")]


# -- round trips with Autobahn's own framing --------------------------------------------------


class _Recorder(WebSocketServerProtocol):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[tuple[bytes, bool]] = []

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.messages.append((payload, isBinary))


class _Transport(StringTransport):
    """Autobahn unregisters a producer it never registered when it closes; a real TCP
    transport shrugs that off, StringTransport raises."""

    def unregisterProducer(self) -> None:
        self.producer = None


def autobahn_server(**options: object) -> tuple[_Recorder, StringTransport]:
    """An Autobahn server protocol in the OPEN state after a real handshake, in memory."""
    factory = WebSocketServerFactory("ws://127.0.0.1:8000", reactor=Clock())
    factory.protocol = _Recorder
    factory.setProtocolOptions(openHandshakeTimeout=0, autoPingInterval=0, **options)
    proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
    assert isinstance(proto, _Recorder)
    transport = _Transport()
    proto.makeConnection(transport)
    key = base64.b64encode(b"0123456789abcdef")
    proto.dataReceived(b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUpgrade: websocket\r\n"
                       b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\n"
                       b"Sec-WebSocket-Version: 13\r\n\r\n")
    response = transport.value()
    accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
                              .digest())
    assert response.startswith(b"HTTP/1.1 101") and accept in response
    assert proto.state == WebSocketProtocol.STATE_OPEN
    transport.clear()
    return proto, transport


MESSAGES = [(b"", True), (b"bin\x00ary", True), (TEXT, False), (b"x" * 125, True),
            (b"y" * 126, True), (bytes(range(256)) * 300, True), ("é".encode() * 40000, False)]


@pytest.mark.parametrize("native", NATIVE)
@pytest.mark.parametrize("fragment", [0, 7, 1000])
def test_autobahn_masked_frames_into_our_server(native: bool, fragment: int) -> None:
    """Autobahn as a masking sender (maskServerFrames), fragmenting when asked."""
    proto, transport = autobahn_server(maskServerFrames=True)
    for payload, binary in MESSAGES:
        proto.sendMessage(payload, binary, fragmentSize=fragment or None)
    proto.sendPing(b"ping!")
    proto.sendClose(3001, "over")
    wire = transport.value()
    expected: list[Event] = [Message(p, b) for p, b in MESSAGES]
    expected += [Ping(b"ping!"), Close(3001, "over")]
    assert feed(server(native), [wire]) == expected
    assert feed(server(native), split_at(wire, range(0, len(wire), 999))) == expected
    assert as_messages(feed(server(native, stream=True), [wire])) == expected


def test_autobahn_unmasked_frames_into_our_client() -> None:
    proto, transport = autobahn_server()
    for payload, binary in MESSAGES:
        proto.sendMessage(payload, binary, fragmentSize=500)
    proto.sendClose(1000)
    expected = [Message(p, b) for p, b in MESSAGES] + [Close(1000, "")]
    assert feed(WebSocketCodec(Role.CLIENT), [transport.value()]) == expected


@pytest.mark.parametrize("native", NATIVE)
def test_our_client_frames_into_autobahn(native: bool) -> None:
    proto, transport = autobahn_server()
    client = WebSocketCodec(Role.CLIENT, native=native)
    for payload, binary in MESSAGES:
        proto.dataReceived(b"".join(client.send_message(payload, binary)))
    proto.dataReceived(b"".join([*client.send_data(TEXT[:1], False, fin=False),
                                 client.send_ping(b"x"), *client.send_data(TEXT[1:], False)]))
    assert proto.messages == [*MESSAGES, (TEXT, False)]
    # Autobahn answered the ping; our client reads that pong.
    assert WebSocketCodec(Role.CLIENT).receive_data(transport.value()) == [Pong(b"x")]
    proto.dataReceived(client.send_close(1000, "bye"))
    assert WebSocketCodec(Role.CLIENT).receive_data(transport.value()) == [
        Pong(b"x"), Close(1000, "")]  # Autobahn echoes the code, not the reason


def test_our_server_frames_into_autobahn() -> None:
    """Our unmasked frames, as a client would see them: Autobahn told not to insist on masks."""
    proto, _ = autobahn_server(requireMaskedClientFrames=False)
    codec = WebSocketCodec(Role.SERVER)
    for payload, binary in MESSAGES:
        proto.dataReceived(b"".join(codec.send_message(payload, binary)))
    assert proto.messages == MESSAGES


# -- robustness -------------------------------------------------------------------------------


@pytest.mark.parametrize("native", NATIVE)
@settings(max_examples=300, deadline=None)
@given(prefix=conversations(), noise=st.binary(max_size=200), data=st.data(),
       role=st.sampled_from(Role), stream=st.booleans())
def test_garbage_gives_events_or_a_protocol_error_and_nothing_else(
        native: bool, prefix: tuple[bytes, list[Event]], noise: bytes, data: st.DataObject,
        role: Role, stream: bool) -> None:
    """Valid frames then noise, at random splits: no IndexError, struct.error, ...; and the
    valid frames' events come out whether or not the noise is an error."""
    wire = prefix[0] + noise if role is Role.SERVER else noise
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=8))
    codec = WebSocketCodec(role, stream=stream, native=native and role is Role.SERVER,
                           max_message_size=1000)
    events: list[Event] = []
    try:
        for chunk in split_at(wire, cuts):
            events += codec.receive_data(chunk)
    except ProtocolError as error:
        assert error.code in (1002, 1007, 1009)
        events += error.events
        assert codec.state is State.FAILED
    if role is Role.SERVER and not stream:
        assert events[:len(prefix[1])] == prefix[1]


def test_a_message_of_one_octet_fragments_costs_its_octets_not_an_object_each() -> None:
    import tracemalloc

    codec = WebSocketCodec(Role.SERVER, max_message_size=1 << 20)
    fragments = 100_000
    data = client_frame(Opcode.BINARY, b"a", fin=False) + client_frame(
        Opcode.CONTINUATION, b"a", fin=False) * (fragments - 1)
    tracemalloc.start()
    try:
        events = codec.receive_data(data)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # a list of one-octet bytes objects held ~4.4 MB for these 100000 octets
    assert held < 1_000_000, held
    assert events == [] and codec.buffered == fragments
    assert codec.receive_data(client_frame(Opcode.CONTINUATION, b"z")) == [
        Message(b"a" * fragments + b"z", True)]
