"""The HTTP CONNECT codec: the request bytes, and the proxy's answer fed in any split."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kgateway.protocols.http_connect import (
    MAX_HEAD,
    ConnectResponseParser,
    Established,
    TunnelRefused,
    connect_request,
)

OK = b"HTTP/1.0 200 Connection established\r\nProxy-agent: tinyproxy/1.11.1\r\n\r\n"


def test_the_request_names_the_target_and_carries_basic_credentials() -> None:
    request = connect_request("db.example", 5432, ("kgw", "s3cr:et"))
    token = base64.b64encode(b"kgw:s3cr:et")
    assert request == (b"CONNECT db.example:5432 HTTP/1.1\r\nHost: db.example:5432\r\n"
                       b"Proxy-Authorization: Basic " + token + b"\r\n\r\n")
    assert b"Proxy-Authorization" not in connect_request("::1", 443)
    assert connect_request("::1", 443).startswith(b"CONNECT [::1]:443 HTTP/1.1\r\n")


def test_a_host_name_cannot_smuggle_headers() -> None:
    with pytest.raises(ValueError):
        connect_request("evil\r\nX-Injected: 1", 80)


def feed_in_pieces(parser: ConnectResponseParser, data: bytes,
                   cuts: list[int]) -> Established | None:
    pieces, last = [], 0
    for cut in sorted(set(c % (len(data) + 1) for c in cuts)):
        pieces.append(data[last:cut])
        last = cut
    pieces.append(data[last:])
    result = None
    for piece in pieces:
        if parser.done:
            break
        result = parser.feed(piece)
    return result


@given(st.lists(st.integers(min_value=0, max_value=200), max_size=8), st.binary(max_size=50))
def test_any_split_gives_the_tunnel_and_the_bytes_after_the_head(cuts: list[int],
                                                                  tail: bytes) -> None:
    parser = ConnectResponseParser("db:5432", False)
    result = feed_in_pieces(parser, OK + tail, cuts)
    assert result is not None and result.status == 200
    # Bytes fed after the head are the tunnel's; those in the completing piece come as rest.
    assert tail.startswith(result.rest)


def test_one_byte_at_a_time() -> None:
    parser = ConnectResponseParser("db:5432", False)
    results = [parser.feed(OK[i:i + 1]) for i in range(len(OK))]
    assert results[:-1] == [None] * (len(OK) - 1)
    assert results[-1] == Established(200, b"")


@pytest.mark.parametrize("status_line, sent, words", [
    (b"HTTP/1.1 407 Proxy Authentication Required", False, "proxy authentication required"),
    (b"HTTP/1.1 407 Proxy Authentication Required", True, "credentials refused"),
    (b"HTTP/1.0 401 Unauthorized", True, "proxy authentication failed"),
    (b"HTTP/1.1 403 Forbidden", False, "proxy refused to connect to db:5432"),
    (b"HTTP/1.1 502 Bad Gateway", False, "proxy cannot reach db:5432 (502 Bad Gateway)"),
    (b"HTTP/1.1 500 Unable to connect", False, "proxy refused the tunnel to db:5432"),
])
def test_refusals_say_what_went_wrong(status_line: bytes, sent: bool, words: str) -> None:
    parser = ConnectResponseParser("db:5432", sent)
    with pytest.raises(TunnelRefused) as e:
        parser.feed(status_line + b"\r\nContent-Length: 5\r\n\r\nsorry")
    assert words in str(e.value)
    assert e.value.status == int(status_line.split()[1])


def test_not_an_http_proxy() -> None:
    with pytest.raises(TunnelRefused, match="not an HTTP proxy"):
        ConnectResponseParser("db:5432", False).feed(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")


def test_a_head_that_never_ends_is_bounded() -> None:
    parser = ConnectResponseParser("db:5432", False)
    parser.feed(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(TunnelRefused, match="too long"):
        for _ in range(MAX_HEAD // 64 + 2):
            parser.feed(b"X-Filler: " + b"a" * 52 + b"\r\n")


def test_a_proxy_that_hangs_up_before_answering() -> None:
    parser = ConnectResponseParser("db:5432", False)
    parser.feed(b"HTTP/1.1 20")
    with pytest.raises(TunnelRefused, match="closed the connection"):
        parser.eof()


def test_eof_after_the_tunnel_opened_is_not_a_refusal() -> None:
    parser = ConnectResponseParser("db:5432", False)
    assert parser.feed(OK) is not None
    parser.eof()
