"""The PROXY protocol codec: whole headers, one byte at a time, random splits (Hypothesis)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kgateway.protocols.proxy_protocol import (
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderParser,
    ProxyProtocolError,
    build_v1,
    build_v2,
    parse_v1,
    signature_match,
)


def test_v1_tcp4() -> None:
    parser = ProxyHeaderParser("v1")
    header = parser.feed(b"PROXY TCP4 198.51.100.7 10.0.0.5 40000 8000\r\nGET / HTTP/1.1\r\n")
    assert header == ProxyHeader(1, True, "TCP4", ("198.51.100.7", 40000), ("10.0.0.5", 8000))
    assert parser.remainder == b"GET / HTTP/1.1\r\n"


def test_v1_tcp6_and_unknown() -> None:
    header = parse_v1(b"PROXY TCP6 2001:db8::1 ::1 1 65535\r\n")
    assert header.source == ("2001:db8::1", 1) and header.destination == ("::1", 65535)
    unknown = parse_v1(b"PROXY UNKNOWN ffff:f...f:ffff 1.2.3.4 1 2\r\n")
    assert unknown == ProxyHeader(1, False, "UNKNOWN")
    assert parse_v1(b"PROXY UNKNOWN\r\n").has_address is False


@pytest.mark.parametrize("line", [
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",            # LF only
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",            # a field missing
    b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",         # leading zero
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",      # port out of range
    b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",              # v6 address in TCP4
    b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",          # unknown protocol
    b"PROXY TCP4 1.2.3.400 5.6.7.8 1 2\r\n",        # bad address
    b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",         # two spaces
])
def test_v1_malformed_is_refused(line: bytes) -> None:
    with pytest.raises(ProxyProtocolError):
        ProxyHeaderParser("v1").feed(line)


def test_v1_too_long_is_refused_without_waiting_for_more() -> None:
    parser = ProxyHeaderParser("v1")
    with pytest.raises(ProxyProtocolError, match="longer than 107"):
        parser.feed(b"PROXY UNKNOWN " + b"x" * 100)


def test_v2_tcp4_with_tlvs_and_trailing_data() -> None:
    tlv = b"\x04" + struct.pack("!H", 3) + b"abc"  # PP2_TYPE_NOOP-ish: skipped
    data = build_v2(("192.0.2.1", 5000), ("192.0.2.2", 443), tlvs=tlv) + b"\x16\x03\x01"
    parser = ProxyHeaderParser("v2")
    header = parser.feed(data)
    assert header == ProxyHeader(2, True, "TCP4", ("192.0.2.1", 5000), ("192.0.2.2", 443))
    assert parser.remainder == b"\x16\x03\x01"


def test_v2_tcp6_and_local() -> None:
    header = ProxyHeaderParser("v2").feed(build_v2(("2001:db8::7", 1234), ("2001:db8::1", 80)))
    assert header is not None and header.source == ("2001:db8::7", 1234)
    assert header.family == "TCP6"
    local = ProxyHeaderParser("any").feed(build_v2(None))
    assert local == ProxyHeader(2, False, "UNKNOWN")


@pytest.mark.parametrize("data, why", [
    (V2_SIGNATURE + b"\x31\x11\x00\x0c" + bytes(12), "version"),     # version 3
    (V2_SIGNATURE + b"\x22\x11\x00\x0c" + bytes(12), "command"),     # command 2
    (V2_SIGNATURE + b"\x21\x41\x00\x0c" + bytes(12), "family"),      # family 4
    (V2_SIGNATURE + b"\x21\x21\x00\x0c" + bytes(12), "needs 36"),    # TCP6 with 12 bytes
])
def test_v2_malformed_is_refused(data: bytes, why: str) -> None:
    with pytest.raises(ProxyProtocolError, match=why):
        ProxyHeaderParser("v2").feed(data)


def test_mode_restricts_the_version() -> None:
    with pytest.raises(ProxyProtocolError):
        ProxyHeaderParser("v1").feed(build_v2(("1.2.3.4", 1)))
    with pytest.raises(ProxyProtocolError):
        ProxyHeaderParser("v2").feed(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n")


def test_a_plain_client_is_refused_at_its_first_byte() -> None:
    with pytest.raises(ProxyProtocolError):
        ProxyHeaderParser("any").feed(b"G")


def test_signature_match_for_forged_headers() -> None:
    assert signature_match(b"PROXY TCP4") is True
    assert signature_match(V2_SIGNATURE) is True
    assert signature_match(b"PRO") is None
    assert signature_match(b"\r\n\r\n") is None
    assert signature_match(b"GET / HTTP/1.1\r\n") is False
    assert signature_match(b"PROXIES") is False
    assert signature_match(b"\r\n\r\nX") is False


addresses4 = st.ip_addresses(v=4).map(str)
addresses6 = st.ip_addresses(v=6).map(str)
ports = st.integers(0, 65535)


@given(src=st.one_of(addresses4, addresses6), sport=ports, dport=ports, version=st.sampled_from(
    [1, 2]), tail=st.binary(max_size=64), cuts=st.lists(st.integers(0, 200), max_size=8))
def test_any_split_gives_the_same_header_and_remainder(src: str, sport: int, dport: int,
                                                       version: int, tail: bytes,
                                                       cuts: list[int]) -> None:
    dst = "::1" if ":" in src else "127.0.0.1"
    data = (build_v1((src, sport), (dst, dport)) if version == 1
            else build_v2((src, sport), (dst, dport))) + tail
    parser = ProxyHeaderParser("any")
    header = None
    received = b""
    previous = 0
    for cut in sorted({min(c, len(data)) for c in cuts} | {len(data)}):
        chunk = data[previous:cut]
        previous = cut
        if header is None:
            header = parser.feed(chunk)
            if header is not None:
                received = parser.remainder
        else:
            received += chunk
    assert header is not None
    assert header.version == version and header.source == (src, sport)
    assert header.destination == (dst, dport)
    assert received == tail


@given(version=st.sampled_from([1, 2]))
def test_one_byte_at_a_time(version: int) -> None:
    data = (build_v1(("203.0.113.9", 1), ("10.1.1.1", 2)) if version == 1
            else build_v2(("203.0.113.9", 1), ("10.1.1.1", 2)))
    parser = ProxyHeaderParser("any")
    results = [parser.feed(data[i:i + 1]) for i in range(len(data))]
    assert all(r is None for r in results[:-1])
    assert results[-1] is not None and results[-1].source == ("203.0.113.9", 1)
    assert parser.remainder == b""


@given(st.binary(min_size=1, max_size=200))
def test_garbage_never_crashes(data: bytes) -> None:
    parser = ProxyHeaderParser("any")
    try:
        for i in range(len(data)):
            if parser.feed(data[i:i + 1]) is not None:
                break
    except ProxyProtocolError:
        pass
