"""Tests for the sans-IO AMQP 0-9-1 codec (kgateway.protocols.amqp).

Byte vectors are written out by hand from the 0-9-1 spec; pika (an independent
implementation) cross-checks interoperability in both directions.
"""

from __future__ import annotations

import dataclasses
import datetime
import struct
from decimal import Decimal

import pika.data
import pika.frame
import pika.spec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kgateway.protocols import amqp
from kgateway.protocols.amqp import (
    FRAME_BODY,
    FRAME_ERROR,
    FRAME_HEADER,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    FRAME_MIN_SIZE,
    HEARTBEAT_FRAME,
    NOT_ALLOWED,
    PROTOCOL_HEADER,
    SYNTAX_ERROR,
    ConnectionClose,
    ConnectionCloseOk,
    ConnectionOpen,
    ConnectionOpenOk,
    ConnectionSecure,
    ConnectionSecureOk,
    ConnectionStart,
    ConnectionStartOk,
    ConnectionTune,
    ConnectionTuneOk,
    Float32,
    Frame,
    FrameError,
    FrameReader,
    Int8,
    Int16,
    Int64,
    LongStr,
    Method,
    ProtocolHeaderError,
    ProtocolHeaderReader,
    Timestamp,
    UInt8,
    UInt16,
    UInt32,
    check_protocol_header,
    decode_longstr,
    decode_method,
    decode_shortstr,
    decode_table,
    encode_field_value,
    encode_frame,
    encode_longstr,
    encode_shortstr,
    encode_table,
    method_frame,
    negotiate_frame_max,
)


def h(text: str) -> bytes:
    """Hex with spaces and '|' separators allowed, so vectors can show their fields."""
    return bytes.fromhex(text.replace("|", " "))


# --------------------------------------------------------------------------- vectors

# (method, its payload written field by field, the equivalent pika method)
VECTORS = [
    pytest.param(
        ConnectionStart(0, 9, {"product": "RabbitMQ"}, b"PLAIN AMQPLAIN", b"en_US"),
        h(
            "000a 000a | 00 | 09"  # class 10 method 10, version 0-9
            "| 00000015 | 07 70726f64756374 53 00000008 5261626269744d51"  # product: S
            "| 0000000e 504c41494e20414d51504c41494e"  # longstr "PLAIN AMQPLAIN"
            "| 00000005 656e5f5553"  # longstr "en_US"
        ),
        pika.spec.Connection.Start(0, 9, {"product": "RabbitMQ"}, "PLAIN AMQPLAIN", "en_US"),
        id="start",
    ),
    pytest.param(
        ConnectionStartOk({"product": "x"}, "PLAIN", b"\x00guest\x00guest", "en_US"),
        h(
            "000a 000b"
            "| 0000000e | 07 70726f64756374 53 00000001 78"  # {"product": "x"}
            "| 05 504c41494e"  # shortstr "PLAIN"
            "| 0000000c 00 6775657374 00 6775657374"  # longstr "\0guest\0guest"
            "| 05 656e5f5553"  # shortstr "en_US"
        ),
        pika.spec.Connection.StartOk({"product": "x"}, "PLAIN", b"\x00guest\x00guest", "en_US"),
        id="start-ok",
    ),
    pytest.param(
        ConnectionSecure(b"chal"),
        h("000a 0014 | 00000004 6368616c"),
        pika.spec.Connection.Secure(b"chal"),
        id="secure",
    ),
    pytest.param(
        ConnectionSecureOk(b"resp"),
        h("000a 0015 | 00000004 72657370"),
        pika.spec.Connection.SecureOk(b"resp"),
        id="secure-ok",
    ),
    pytest.param(
        ConnectionTune(2047, 131072, 60),
        h("000a 001e | 07ff | 00020000 | 003c"),
        pika.spec.Connection.Tune(2047, 131072, 60),
        id="tune",
    ),
    pytest.param(
        ConnectionTuneOk(2047, 131072, 60),
        h("000a 001f | 07ff | 00020000 | 003c"),
        pika.spec.Connection.TuneOk(2047, 131072, 60),
        id="tune-ok",
    ),
    pytest.param(
        ConnectionOpen("/prod", "", False),
        h("000a 0028 | 05 2f70726f64 | 00 | 00"),
        pika.spec.Connection.Open("/prod", "", False),
        id="open",
    ),
    pytest.param(
        ConnectionOpen("/", "caps", True),
        h("000a 0028 | 01 2f | 04 63617073 | 01"),
        pika.spec.Connection.Open("/", "caps", True),
        id="open-reserved",
    ),
    pytest.param(
        ConnectionOpenOk(""),
        h("000a 0029 | 00"),
        pika.spec.Connection.OpenOk(""),
        id="open-ok",
    ),
    pytest.param(
        ConnectionClose(320, "CONNECTION_FORCED - bye", 0, 0),
        h("000a 0032 | 0140 | 17 434f4e4e454354494f4e5f464f52434544202d20627965 | 0000 | 0000"),
        pika.spec.Connection.Close(320, "CONNECTION_FORCED - bye", 0, 0),
        id="close",
    ),
    pytest.param(
        ConnectionClose(504, "x", 20, 40),
        h("000a 0032 | 01f8 | 01 78 | 0014 | 0028"),
        pika.spec.Connection.Close(504, "x", 20, 40),
        id="close-method",
    ),
    pytest.param(
        ConnectionCloseOk(),
        h("000a 0033"),
        pika.spec.Connection.CloseOk(),
        id="close-ok",
    ),
]


def frame_of(payload: bytes, channel: int = 0, ftype: int = FRAME_METHOD) -> bytes:
    return struct.pack(">BHI", ftype, channel, len(payload)) + payload + b"\xce"


@pytest.mark.parametrize(("method", "payload", "pika_method"), VECTORS)
def test_method_vectors(method: amqp.AnyMethod, payload: bytes, pika_method: object) -> None:
    assert method.encode() == payload
    assert decode_method(payload) == method
    assert method_frame(0, method) == frame_of(payload)


@pytest.mark.parametrize(("method", "payload", "pika_method"), VECTORS)
def test_pika_interop(method: amqp.AnyMethod, payload: bytes, pika_method: object) -> None:
    # pika -> us: pika's marshalled frame parses to the same frame and method.
    pika_bytes = pika.frame.Method(0, pika_method).marshal()
    assert pika_bytes == method_frame(0, method)
    (frame,) = FrameReader().feed(pika_bytes)
    assert decode_method(frame.payload) == method
    # us -> pika: pika decodes our frame to the same field values.
    consumed, decoded = pika.frame.decode_frame(method_frame(7, method))
    assert consumed == len(pika_bytes)
    assert isinstance(decoded, pika.frame.Method)
    assert decoded.channel_number == 7
    assert type(decoded.method) is type(pika_method)
    assert vars(decoded.method) == pika_view(method)


# Our field names where pika keeps the pre-0-9-1 names of the reserved arguments.
PIKA_NAMES = {"reserved1": "capabilities", "reserved2": "insist", "reserved": "known_hosts"}


def pika_view(method: amqp.AnyMethod) -> dict[str, object]:
    return {
        PIKA_NAMES.get(f.name, f.name): getattr(method, f.name)
        for f in dataclasses.fields(method)
    }


def test_decode_other_class_is_generic_method() -> None:
    # basic.publish(reserved-1=0, exchange="ex", routing-key="rk", mandatory=1)
    payload = h("003c 0028 | 0000 | 02 6578 | 02 726b | 01")
    method = decode_method(payload)
    assert method == Method(60, 40, h("0000 02 6578 02 726b 01"))
    assert method.encode() == payload
    assert pika.frame.decode_frame(method_frame(1, method))[1].method.exchange == "ex"


def test_decode_unknown_connection_method_is_generic() -> None:
    assert decode_method(h("000a 00ff 01 02")) == Method(10, 255, b"\x01\x02")


def test_rabbitmq_connection_extensions_round_trip() -> None:
    for method in (
        amqp.ConnectionBlocked("low on memory"),
        amqp.ConnectionUnblocked(),
        amqp.ConnectionUpdateSecret(b"token", "refresh"),
        amqp.ConnectionUpdateSecretOk(),
    ):
        assert decode_method(method.encode()) == method
    assert amqp.ConnectionBlocked("r").encode() == h("000a 003c 01 72")


@pytest.mark.parametrize(("method", "payload", "pika_method"), VECTORS)
def test_truncated_method_payloads(
    method: amqp.ConnectionMethod, payload: bytes, pika_method: object
) -> None:
    for cut in range(len(payload)):
        with pytest.raises(FrameError) as info:
            decode_method(payload[:cut])
        assert info.value.reply_code == FRAME_ERROR
        assert "truncated" in info.value.reply_text or "too short" in info.value.reply_text
        if cut >= 4:
            assert (info.value.class_id, info.value.method_id) == (10, method.METHOD_ID)


@pytest.mark.parametrize(("method", "payload", "pika_method"), VECTORS)
def test_trailing_octets_after_method_arguments(
    method: amqp.AnyMethod, payload: bytes, pika_method: object
) -> None:
    with pytest.raises(FrameError, match="unexpected octets") as info:
        decode_method(payload + b"\x00")
    assert info.value.reply_code == FRAME_ERROR


def test_invalid_utf8_shortstr_is_syntax_error() -> None:
    with pytest.raises(FrameError, match="virtual-host is not valid UTF-8") as info:
        decode_method(h("000a 0028 | 02 ff2f | 00 | 00"))
    assert info.value.reply_code == SYNTAX_ERROR
    assert (info.value.class_id, info.value.method_id) == (10, 40)


def test_bad_client_properties_name_the_argument() -> None:
    payload = h("000a 000b | 00000002 | 01 61") + b"\x05PLAIN\x00\x00\x00\x00\x05en_US"
    with pytest.raises(FrameError, match="connection.start-ok: client-properties") as info:
        decode_method(payload)
    assert info.value.reply_code == FRAME_ERROR


def test_start_ok_rewrite_keeps_everything_else() -> None:
    # What amqp.proxy does: add the client's address, re-encode, forward.
    client = pika.frame.Method(
        0,
        pika.spec.Connection.StartOk(
            {"product": "pika", "capabilities": {"publisher_confirms": True}},
            "PLAIN",
            b"\x00u\x00p",
            "en_US",
        ),
    ).marshal()
    (frame,) = FrameReader().feed(client)
    start_ok = decode_method(frame.payload)
    assert isinstance(start_ok, ConnectionStartOk)
    rewritten = dataclasses.replace(
        start_ok,
        client_properties={**start_ok.client_properties, "x-forwarded-for": "192.0.2.7:5555"},
    )
    out = method_frame(0, rewritten)
    assert len(out) <= FRAME_MIN_SIZE
    _, decoded = pika.frame.decode_frame(out)
    assert decoded.method.client_properties == {
        "product": "pika",
        "capabilities": {"publisher_confirms": True},
        "x-forwarded-for": "192.0.2.7:5555",
    }
    assert decoded.method.response == b"\x00u\x00p"


def test_credentials_stay_out_of_repr() -> None:
    assert "hunter2" not in repr(ConnectionStartOk(response=b"\x00u\x00hunter2"))
    assert "hunter2" not in repr(ConnectionSecureOk(b"hunter2"))
    assert "hunter2" not in repr(amqp.ConnectionUpdateSecret(b"hunter2", "r"))


def test_encode_rejects_out_of_range_arguments() -> None:
    with pytest.raises(ValueError, match="shortstr longer than 255"):
        ConnectionOpen("v" * 256).encode()
    with pytest.raises(ValueError, match="out of range"):
        ConnectionTune(70000, 0, 0).encode()
    with pytest.raises(ValueError, match="out of range"):
        encode_frame(FRAME_METHOD, 65536, b"")


# --------------------------------------------------------------------------- frames

STREAM_FRAMES = [
    (FRAME_METHOD, 1, h("003c 0028 0000 02 6578 02 726b 00")),
    (FRAME_HEADER, 1, h("003c 0000 0000000000000005 0000")),
    (FRAME_BODY, 1, b"hello"),
    (FRAME_HEARTBEAT, 0, b""),
    (FRAME_BODY, 65535, b"\xce" * 10),  # frame-end octets inside a payload are data
]
STREAM = b"".join(encode_frame(*f) for f in STREAM_FRAMES)


def summary(frames: list[Frame]) -> list[tuple[int, int, bytes]]:
    return [(f.type, f.channel, bytes(f.payload)) for f in frames]


def test_encode_frame_vector() -> None:
    assert encode_frame(FRAME_BODY, 258, b"ab") == h("03 | 0102 | 00000002 | 6162 | ce")
    assert HEARTBEAT_FRAME == h("08 0000 00000000 ce") == pika.frame.Heartbeat().marshal()


def test_frame_fields() -> None:
    frame = Frame.build(FRAME_BODY, 3, b"xyz")
    assert frame.raw == encode_frame(FRAME_BODY, 3, b"xyz")
    assert bytes(frame.payload) == b"xyz"
    assert frame.size == 3
    assert frame == Frame(FRAME_BODY, 3, frame.raw)


def test_pika_content_frames_parse() -> None:
    props = pika.spec.BasicProperties(content_type="text/plain", delivery_mode=2)
    wire = (
        pika.frame.Header(1, 5, props).marshal()
        + pika.frame.Body(1, b"hello").marshal()
    )
    frames = FrameReader().feed(wire)
    assert [(f.type, f.channel) for f in frames] == [(FRAME_HEADER, 1), (FRAME_BODY, 1)]
    assert b"".join(f.raw for f in frames) == wire
    assert bytes(frames[1].payload) == b"hello"


def test_many_frames_in_one_feed() -> None:
    reader = FrameReader()
    frames = reader.feed(STREAM)
    assert summary(frames) == STREAM_FRAMES
    assert b"".join(f.raw for f in frames) == STREAM
    assert reader.buffered == 0


def test_feed_chunk_passes_whole_stream_without_copy() -> None:
    reader = FrameReader()
    assert reader.feed_chunk(STREAM) is STREAM
    assert reader.feed_chunk(b"") == b""


def test_one_byte_at_a_time() -> None:
    reader = FrameReader()
    frames: list[Frame] = []
    for i in range(len(STREAM)):
        frames += reader.feed(STREAM[i : i + 1])
    assert summary(frames) == STREAM_FRAMES
    assert reader.buffered == 0

    chunker = FrameReader()
    chunks = [chunker.feed_chunk(STREAM[i : i + 1]) for i in range(len(STREAM))]
    assert [c for c in chunks if c] == [encode_frame(*f) for f in STREAM_FRAMES]


def test_split_at_every_position() -> None:
    for cut in range(len(STREAM) + 1):
        reader = FrameReader()
        frames = reader.feed(STREAM[:cut]) + reader.feed(STREAM[cut:])
        assert summary(frames) == STREAM_FRAMES, cut
        chunker = FrameReader()
        first, second = chunker.feed_chunk(STREAM[:cut]), chunker.feed_chunk(STREAM[cut:])
        assert first + second == STREAM
        checker = FrameReader()
        assert b"".join(f.raw for f in checker.feed(first)) == first  # whole frames only
        assert checker.buffered == 0
        assert chunker.buffered == 0


def test_bytearray_and_memoryview_input() -> None:
    reader = FrameReader()
    frames = reader.feed(bytearray(STREAM[:10])) + reader.feed(memoryview(STREAM)[10:])
    assert summary(frames) == STREAM_FRAMES
    assert all(type(f.raw) is bytes for f in frames)


def test_large_frame_in_small_pieces() -> None:
    body = bytes(range(256)) * 4096  # 1 MiB
    wire = encode_frame(FRAME_BODY, 1, body)
    reader = FrameReader()
    reader.frame_max = 0  # negotiated: no limit
    frames: list[Frame] = []
    for i in range(0, len(wire), 1000):
        frames += reader.feed(wire[i : i + 1000])
    assert len(frames) == 1
    assert frames[0].raw == wire
    assert frames[0].payload == body


def test_wrong_frame_end() -> None:
    good = encode_frame(FRAME_BODY, 1, b"ok")
    bad = encode_frame(FRAME_BODY, 1, b"xx")[:-1] + b"\x00"
    reader = FrameReader()
    with pytest.raises(FrameError, match="frame-end octet 0x00") as info:
        reader.feed(good + bad + good)
    assert info.value.reply_code == FRAME_ERROR
    assert info.value.fatal
    assert info.value.preceding == good
    # The reader stays dead: no resynchronising on garbage.
    assert reader.error is info.value
    with pytest.raises(FrameError):
        reader.feed(good)
    with pytest.raises(FrameError):
        reader.feed_chunk(good)


def test_wrong_frame_end_in_feed_chunk() -> None:
    good = encode_frame(FRAME_BODY, 1, b"ok")
    reader = FrameReader()
    assert reader.feed_chunk(good + good[:-1]) == good
    with pytest.raises(FrameError) as info:
        reader.feed_chunk(b"A")
    assert info.value.preceding == b""
    assert info.value.reply_code == FRAME_ERROR


def test_frame_min_size_before_tune() -> None:
    reader = FrameReader()
    assert not reader.negotiated
    assert reader.limit == FRAME_MIN_SIZE
    largest = encode_frame(FRAME_BODY, 1, bytes(FRAME_MIN_SIZE - 8))
    assert len(largest) == 4096
    assert reader.feed(largest)[0].raw == largest
    # One octet more is refused from its 7-octet header alone, before buffering it.
    too_big = encode_frame(FRAME_BODY, 1, bytes(FRAME_MIN_SIZE - 7))
    with pytest.raises(FrameError, match="frame of 4097 octets .* exceeds frame_max 4096") as e:
        reader.feed(too_big[:7])
    assert e.value.reply_code == FRAME_ERROR
    assert not e.value.fatal


def test_oversize_frame_vs_negotiated_frame_max() -> None:
    reader = FrameReader()
    reader.frame_max = 8192
    assert reader.negotiated
    assert reader.limit == 8192
    assert len(reader.feed(encode_frame(FRAME_BODY, 1, bytes(8192 - 8)))) == 1
    with pytest.raises(FrameError, match="exceeds frame_max 8192"):
        reader.feed(encode_frame(FRAME_BODY, 1, bytes(8192 - 7)))


def test_constructor_frame_max_counts_as_negotiated() -> None:
    reader = FrameReader(131072)
    assert reader.negotiated
    assert reader.frame_max == 131072
    assert len(reader.feed(encode_frame(FRAME_BODY, 1, bytes(131072 - 8)))) == 1


def test_negotiated_zero_means_unlimited() -> None:
    reader = FrameReader()
    reader.frame_max = 0
    assert reader.limit is None
    assert len(reader.feed(encode_frame(FRAME_BODY, 1, bytes(200_000)))) == 1


def test_slack_tolerates_rabbitmq_overshoot() -> None:
    reader = FrameReader(slack=8)
    assert len(reader.feed(encode_frame(FRAME_BODY, 1, bytes(FRAME_MIN_SIZE)))) == 1
    with pytest.raises(FrameError, match="exceeds frame_max 4096"):
        reader.feed(encode_frame(FRAME_BODY, 1, bytes(FRAME_MIN_SIZE + 1)))


def test_lowering_frame_max_rechecks_buffered_header() -> None:
    reader = FrameReader(131072)
    wire = encode_frame(FRAME_BODY, 1, bytes(10_000))
    assert reader.feed(wire[:100]) == []
    reader.frame_max = 4096
    with pytest.raises(FrameError, match="exceeds frame_max 4096"):
        reader.feed(b"\x00")


@pytest.mark.parametrize("bad", [1, 100, 4095, 2**32])
def test_frame_max_setter_validates(bad: int) -> None:
    with pytest.raises(ValueError, match="frame_max"):
        FrameReader().frame_max = bad


@pytest.mark.parametrize("ftype", [0, 4, 9, 0x41, 0x47, 0xCE, 0xFF])
def test_unknown_frame_type_detected_from_first_octet(ftype: int) -> None:
    good = encode_frame(FRAME_HEARTBEAT, 0, b"")
    reader = FrameReader()
    with pytest.raises(FrameError, match=f"unknown frame type {ftype}") as info:
        reader.feed(good + bytes((ftype,)))
    assert info.value.reply_code == FRAME_ERROR
    assert info.value.fatal
    assert info.value.preceding == good


def test_frame_error_to_close() -> None:
    close = amqp.close_for(FrameError(FRAME_ERROR, "é" * 300, class_id=10, method_id=11))
    assert close.reply_code == FRAME_ERROR
    assert close.reply_text.startswith("FRAME_ERROR - éé")
    assert len(close.reply_text.encode()) <= 255
    assert (close.class_id, close.method_id) == (10, 11)
    assert decode_method(close.encode()) == close


# --------------------------------------------------------------------------- handshake


@pytest.mark.parametrize(
    ("bad", "rejected_at"),
    [
        (b"GET / HTTP/1.1\r\n", 1),  # HTTP is refused at its first octet
        (b"AMQP\x00\x00\x09\x00", 8),  # wrong revision: only the last octet differs
        (b"AMQP\x01\x01\x00\x09", 5),  # AMQP 0-9
        (b"AMQP\x01\x01\x08\x00", 5),  # AMQP 0-8
        (b"AMQP\x00\x01\x00\x00", 6),  # AMQP 1.0
        (b"\x16\x03\x01\x02\x00\x01\x00\x01", 1),  # a TLS ClientHello on a plain port
        (b"amqp\x00\x00\x09\x01", 1),
    ],
)
def test_bad_protocol_headers(bad: bytes, rejected_at: int) -> None:
    for n in range(rejected_at):
        check_protocol_header(bad[:n])  # a prefix that may still become valid passes
    with pytest.raises(ProtocolHeaderError) as info:
        check_protocol_header(bad[:rejected_at])
    assert info.value.received == bad[:rejected_at]

    reader = ProtocolHeaderReader()
    for i in range(rejected_at - 1):
        assert reader.feed(bad[i : i + 1]) is None
    with pytest.raises(ProtocolHeaderError):
        reader.feed(bad[rejected_at - 1 :])


def test_protocol_header_descriptions() -> None:
    assert "AMQP 0-9)" in str(ProtocolHeaderError(b"AMQP\x01\x01\x00\x09"))
    assert "HTTP" in str(ProtocolHeaderError(b"GET / HT"))
    assert "AMQP 1.0" in amqp.describe_protocol_header(b"AMQP\x00\x01\x00\x00")
    assert "TLS" in amqp.describe_protocol_header(b"\x16\x03\x01")


def test_good_protocol_header() -> None:
    check_protocol_header(PROTOCOL_HEADER)
    check_protocol_header(PROTOCOL_HEADER + b"anything after the header is not checked")
    reader = ProtocolHeaderReader()
    for octet in PROTOCOL_HEADER[:-1]:
        assert reader.feed(bytes((octet,))) is None
    assert not reader.done
    assert reader.feed(PROTOCOL_HEADER[-1:] + b"rest") == b"rest"
    assert reader.done
    assert reader.feed(b"more") == b"more"
    assert ProtocolHeaderReader().feed(PROTOCOL_HEADER) == b""
    assert pika.frame.ProtocolHeader().marshal() == PROTOCOL_HEADER


@pytest.mark.parametrize(
    ("proposed", "chosen", "expected"),
    [(131072, 131072, 131072), (131072, 4096, 4096), (131072, 0, 131072), (0, 0, 0),
     (0, 65536, 65536)],
)
def test_negotiate_frame_max(proposed: int, chosen: int, expected: int) -> None:
    assert negotiate_frame_max(ConnectionTune(0, proposed, 0), ConnectionTuneOk(0, chosen, 0)) == (
        expected
    )


@pytest.mark.parametrize(("proposed", "chosen"), [(131072, 131073), (131072, 4095), (0, 1)])
def test_negotiate_frame_max_refuses(proposed: int, chosen: int) -> None:
    with pytest.raises(FrameError, match="frame_max=") as info:
        negotiate_frame_max(ConnectionTune(0, proposed, 0), ConnectionTuneOk(0, chosen, 0))
    assert info.value.reply_code == NOT_ALLOWED
    assert (info.value.class_id, info.value.method_id) == (10, 31)


# --------------------------------------------------------------------------- field tables

def test_table_vector_every_type() -> None:
    table = {
        "t": True,
        "b": Int8(-2),
        "B": UInt8(200),
        "s": Int16(-300),
        "u": UInt16(65000),
        "I": -5,
        "i": UInt32(4_000_000_000),
        "l": Int64(7),
        "f": Float32(1.5),
        "d": 0.25,
        "D": Decimal("-1.25"),
        "S": "é",
        "x": b"\x00\xff",
        "T": Timestamp(1_577_934_245),
        "A": [1, "a"],
        "F": {"k": None},
        "V": None,
    }
    body = h(
        "01 74 74 01"
        "| 01 62 62 fe"
        "| 01 42 42 c8"
        "| 01 73 73 fed4"
        "| 01 75 75 fde8"
        "| 01 49 49 fffffffb"
        "| 01 69 69 ee6b2800"
        "| 01 6c 6c 0000000000000007"
        "| 01 66 66 3fc00000"
        "| 01 64 64 3fd0000000000000"
        "| 01 44 44 02 ffffff83"
        "| 01 53 53 00000002 c3a9"
        "| 01 78 78 00000002 00ff"
        "| 01 54 54 000000005e0d5da5"
        "| 01 41 41 0000000b 49 00000001 53 00000001 61"
        "| 01 46 46 00000003 01 6b 56"
        "| 01 56 56"
    )
    encoded = encode_table(table)
    assert encoded == struct.pack(">I", len(body)) + body
    decoded, end = decode_table(b"junk" + encoded + b"tail", 4)
    assert end == 4 + len(encoded)
    assert typed(decoded) == typed(table)


def test_plain_python_values_match_pika() -> None:
    when = datetime.datetime(2020, 1, 2, 3, 4, 5)  # naive: read as UTC by both
    table = {
        "str": "text",
        "int": 42,
        "neg": -(2**31),
        "big": 2**40,
        "bool": False,
        "dec": Decimal("3.14"),
        "none": None,
        "bytes": b"\xff\x00",
        "list": [1, "two", [3], {"four": 4}],
        "dict": {"nested": {"deeper": True}},
        "when": when,
    }
    pieces: list[bytes] = []
    pika.data.encode_table(pieces, table)
    pika_bytes = b"".join(pieces)
    assert encode_table(table) == pika_bytes
    decoded, _ = decode_table(pika_bytes)
    assert decoded == {**table, "when": Timestamp(1_577_934_245)}
    stamp = decoded["when"]
    assert isinstance(stamp, Timestamp)
    assert stamp.to_datetime() == when.replace(tzinfo=datetime.UTC)
    assert pika.data.decode_table(encode_table(decoded), 0)[0] == {
        **table,
        "when": when.replace(tzinfo=datetime.UTC),
    }


def test_binary_longstr_value_round_trips() -> None:
    encoded = h("0000000b | 01 6b 53 00000004 ff00fe01")
    decoded, _ = decode_table(encoded)
    assert decoded == {"k": LongStr(b"\xff\x00\xfe\x01")}
    assert isinstance(decoded["k"], LongStr)
    assert encode_table(decoded) == encoded


def test_value_encoding_choices() -> None:
    assert encode_field_value(True) == b"t\x01"
    assert encode_field_value(2**31 - 1) == b"I\x7f\xff\xff\xff"
    assert encode_field_value(2**31) == b"l" + (2**31).to_bytes(8, "big")
    assert encode_field_value(Decimal("1E+2")) == b"D\x00\x00\x00\x00\x64"
    assert encode_field_value(Decimal("0.000")) == b"D\x03\x00\x00\x00\x00"
    assert encode_field_value((1,)) == encode_field_value([1])
    assert encode_field_value(bytearray(b"a")) == b"x\x00\x00\x00\x01a"
    assert encode_table(None) == encode_table({}) == b"\x00\x00\x00\x00"


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (2**63, ValueError),
        (Decimal("NaN"), ValueError),
        (Decimal("1.5E-300"), ValueError),
        (Decimal(2**31), ValueError),
        (Float32(1e300), ValueError),
        (datetime.datetime(1960, 1, 1), ValueError),
        (object(), TypeError),
        ({1: "non-str key"}, TypeError),
        ({"k" * 256: 1}, ValueError),
    ],
)
def test_value_encoding_errors(value: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        encode_field_value(value)


def test_tagged_ints_check_their_range() -> None:
    with pytest.raises(ValueError, match="Int8 out of range"):
        Int8(128)
    with pytest.raises(ValueError, match="UInt16 out of range"):
        UInt16(-1)
    assert repr(Int8(-1)) == "Int8(-1)"
    assert Int8(5) == 5


def test_nesting_limits() -> None:
    deep: dict[str, object] = {}
    for _ in range(amqp.MAX_FIELD_NESTING + 1):
        deep = {"n": deep}
    with pytest.raises(ValueError, match="nested too deeply"):
        encode_table(deep)
    # Hand-build a table nested 100 levels deep: each level is F + size + "n".
    inner = b"\x00\x00\x00\x00"
    for _ in range(100):
        entry = b"\x01nF" + inner
        inner = struct.pack(">I", len(entry)) + entry
    with pytest.raises(FrameError, match="nested too deeply") as info:
        decode_table(inner)
    assert info.value.reply_code == SYNTAX_ERROR


@pytest.mark.parametrize(
    ("encoded", "code", "text"),
    [
        (h("000000"), FRAME_ERROR, "truncated field table size"),
        (h("00000005 01 61 49 00"), FRAME_ERROR, "truncated field table$"),
        (h("00000001 05"), FRAME_ERROR, "truncated field name"),
        (h("00000002 01 61"), FRAME_ERROR, "truncated field value type"),
        (h("00000004 01 61 49 00"), FRAME_ERROR, "truncated field value of type 'I'"),
        (h("00000007 01 61 53 00000009"), FRAME_ERROR, "truncated longstr field value"),
        (h("00000008 01 61 46 00000009 00"), FRAME_ERROR, "truncated nested field table"),
        (h("00000004 01 61 44 00"), FRAME_ERROR, "truncated decimal"),
        (h("00000003 01 61 4c"), SYNTAX_ERROR, "unknown field value type b'L'"),
        (h("00000003 01 ff 56"), SYNTAX_ERROR, "field name is not valid UTF-8"),
    ],
)
def test_malformed_tables(encoded: bytes, code: int, text: str) -> None:
    with pytest.raises(FrameError, match=text) as info:
        decode_table(encoded)
    assert info.value.reply_code == code
    if len(encoded) > 4 and int.from_bytes(encoded[:4], "big") <= len(encoded) - 4:
        # Octets after the table's declared end never complete a value inside it.
        with pytest.raises(FrameError, match=text):
            decode_table(encoded + bytes(16))


def test_string_helpers() -> None:
    assert encode_shortstr("é") == b"\x02\xc3\xa9"
    assert decode_shortstr(b"x\x02\xc3\xa9y", 1) == ("é", 4)
    assert encode_longstr(b"ab") == b"\x00\x00\x00\x02ab"
    assert encode_longstr("é") == b"\x00\x00\x00\x02\xc3\xa9"
    assert decode_longstr(b"\x00\x00\x00\x02abc") == (b"ab", 6)
    with pytest.raises(FrameError, match="truncated shortstr"):
        decode_shortstr(b"\x05abc")
    with pytest.raises(FrameError, match="truncated longstr"):
        decode_longstr(b"\x00\x00\x01\x00abc")


# --------------------------------------------------------------------------- hypothesis


def typed(value: object) -> object:
    """A structure that compares equal only if types (Int8 vs int ...) match too."""
    if isinstance(value, dict):
        return ("dict", [(k, typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [typed(v) for v in value])
    return (type(value).__name__, repr(value))


names = st.text(max_size=8)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**31), 2**31 - 1),
    st.integers(-(2**63), 2**63 - 1).map(Int64),
    st.integers(-128, 127).map(Int8),
    st.integers(0, 255).map(UInt8),
    st.integers(-(2**15), 2**15 - 1).map(Int16),
    st.integers(0, 2**16 - 1).map(UInt16),
    st.integers(0, 2**32 - 1).map(UInt32),
    st.integers(0, 2**64 - 1).map(Timestamp),
    st.floats(allow_nan=False),
    st.floats(width=32, allow_nan=False).map(Float32),
    st.builds(
        lambda unscaled, scale: Decimal(unscaled).scaleb(-scale),
        st.integers(-(2**31), 2**31 - 1),
        st.integers(0, 255),
    ),
    st.text(max_size=12),
    st.binary(max_size=12),
    st.binary(max_size=6).map(lambda b: LongStr(b"\xff" + b)),  # 0xff is never UTF-8
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(names, children, max_size=4),
    max_leaves=12,
)
tables = st.dictionaries(names, values, max_size=6)


@settings(max_examples=75)
@given(tables)
def test_table_round_trip(table: dict[str, object]) -> None:
    encoded = encode_table(table)
    decoded, end = decode_table(encoded)
    assert end == len(encoded)
    assert typed(decoded) == typed(table)
    assert encode_table(decoded) == encoded


@settings(max_examples=25)
@given(tables)
def test_start_ok_round_trip(table: dict[str, object]) -> None:
    method = ConnectionStartOk(table, "AMQPLAIN", b"\x00resp", "en_US")  # type: ignore[arg-type]
    decoded = decode_method(method.encode())
    assert isinstance(decoded, ConnectionStartOk)
    assert typed(decoded.client_properties) == typed(table)


@given(st.binary(max_size=64))
def test_decode_table_never_leaks_other_errors(data: bytes) -> None:
    try:
        decode_table(data)
    except FrameError as exc:
        assert exc.reply_code in (FRAME_ERROR, SYNTAX_ERROR)


@given(st.sampled_from([10, 11, 20, 21, 30, 31, 40, 41, 50, 51, 60, 61, 70, 71]),
       st.binary(max_size=40))
def test_decode_method_never_leaks_other_errors(method_id: int, args: bytes) -> None:
    try:
        method = decode_method(struct.pack(">HH", 10, method_id) + args)
    except FrameError as exc:
        assert exc.reply_code in (FRAME_ERROR, SYNTAX_ERROR)
    else:
        assert method.METHOD_ID == method_id  # type: ignore[union-attr]


frame_specs = st.lists(
    st.tuples(
        st.sampled_from([FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT]),
        st.integers(0, 65535),
        st.binary(max_size=300),
    ),
    max_size=8,
)


def split(stream: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(stream)]
    return [stream[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


@given(frame_specs, st.data())
def test_frames_with_random_splits(
    specs: list[tuple[int, int, bytes]], data: st.DataObject
) -> None:
    stream = b"".join(encode_frame(*spec) for spec in specs)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=10))
    pieces = split(stream, cuts)
    wrap = data.draw(st.sampled_from([bytes, bytearray, memoryview]))

    reader = FrameReader()
    frames: list[Frame] = []
    for piece in pieces:
        frames += reader.feed(wrap(piece))
    assert summary(frames) == specs
    assert [f.raw for f in frames] == [encode_frame(*spec) for spec in specs]
    assert reader.buffered == 0

    chunker = FrameReader()
    chunks = [chunker.feed_chunk(wrap(piece)) for piece in pieces]
    assert b"".join(chunks) == stream
    for chunk in chunks:  # every chunk holds whole frames only
        checker = FrameReader()
        checker.feed(chunk)
        assert checker.buffered == 0
    assert chunker.buffered == 0


@given(st.integers(0, 9000), st.sampled_from([0, 4096, 5000, 8192]))
def test_frame_max_boundary(size: int, frame_max: int) -> None:
    reader = FrameReader()
    if frame_max:
        reader.frame_max = frame_max
    wire = encode_frame(FRAME_BODY, 1, bytes(size))
    limit = frame_max or FRAME_MIN_SIZE
    if size + 8 > limit:
        with pytest.raises(FrameError):
            reader.feed(wire)
    else:
        assert reader.feed(wire)[0].raw == wire
