"""The Enterprise Shield control-message codec: exact bytes, one byte at a time, Hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kgateway.protocols import shield_control as shield
from kgateway.protocols.shield_control import (
    Decoder,
    Hello,
    Open,
    Opened,
    Ping,
    Pong,
    Refused,
    ShieldProtocolError,
    Welcome,
    encode,
)


def test_exact_bytes() -> None:
    assert encode(Hello(30000, "echo")) == b"\x01\x00\x00\x00\x09\x01\x00\x00\x75\x30echo"
    assert encode(Welcome()) == b"\x02\x00\x00\x00\x00"
    assert encode(Ping(7)) == b"\x03\x00\x00\x00\x08" + (7).to_bytes(8, "big")
    assert encode(Open("1.2.3.4:5", ("amqp",))) == (
        b"\x05\x00\x00\x00\x11\x00\x01\x00\x04amqp1.2.3.4:5")
    assert encode(Opened(None)) == b"\x06\x00\x00\x00\x01\x00"
    assert encode(Opened("v12.stomp")) == b"\x06\x00\x00\x00\x0a\x01v12.stomp"
    assert encode(Refused("no")) == b"\x07\x00\x00\x00\x02no"


MESSAGES = [Hello(1000, "svc"), Welcome(), Ping(1), Pong(2 ** 64 - 1),
            Open("[::1]:80", ("a", "b", "")), Open("x"), Opened(""), Opened(None),
            Refused("back end down: é")]


def test_one_byte_at_a_time() -> None:
    data = b"".join(encode(m) for m in MESSAGES)
    decoder = Decoder()
    out = []
    for i in range(len(data)):
        out += decoder.feed(data[i:i + 1])
    assert out == MESSAGES and decoder.pending == 0


@pytest.mark.parametrize("data, error", [
    (b"\x09\x00\x00\x00\x00", "unknown message type 9"),
    (b"\x01\x00\x01\x00\x00", "exceeds"),
    (b"\x02\x00\x00\x00\x01x", "WELCOME has no body"),
    (b"\x03\x00\x00\x00\x01x", "8 bytes"),
    (b"\x05\x00\x00\x00\x04\x00\x01\x00\x09", "runs past"),
    (b"\x06\x00\x00\x00\x02\x00x", "bad OPENED"),
    (b"\x07\x00\x00\x00\x01\xff", "UTF-8"),
    (b"\x01\x00\x00\x00\x02\x01\x00", "truncated"),
])
def test_bad_input_is_a_protocol_error(data: bytes, error: str) -> None:
    with pytest.raises(ShieldProtocolError, match=error):
        Decoder().feed(data)


def test_oversize_body_cannot_be_encoded() -> None:
    with pytest.raises(ValueError):
        encode(Refused("x" * (shield.MAX_BODY + 1)))


text = st.text(max_size=40)
messages = st.one_of(
    st.builds(Hello, st.integers(0, 2**32 - 1), text, st.integers(0, 255)),
    st.just(Welcome()),
    st.builds(Ping, st.integers(0, 2**64 - 1)),
    st.builds(Pong, st.integers(0, 2**64 - 1)),
    st.builds(Open, text, st.lists(text, max_size=5).map(tuple)),
    st.builds(Opened, st.none() | text),
    st.builds(Refused, text),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(messages, max_size=10), st.data())
def test_round_trip_with_random_splits(items: list[shield.Message], data: st.DataObject) -> None:
    stream = b"".join(encode(m) for m in items)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    decoder = Decoder()
    out: list[shield.Message] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        out += decoder.feed(stream[start:cut])
        start = cut
    assert out == items and decoder.pending == 0


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_garbage_never_crashes_with_anything_but_a_protocol_error(data: bytes) -> None:
    try:
        Decoder().feed(data)
    except ShieldProtocolError:
        pass
