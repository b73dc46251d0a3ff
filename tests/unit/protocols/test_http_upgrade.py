"""sniff: which first bytes of a connection are a plain WebSocket upgrade (pure: bytes in).

Whether twisted.web would have handed the same request to Autobahn unchanged is checked
against twisted.web itself in tests/unit/transport/test_handshake.py.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kgateway.protocols.http_upgrade import MAX_HEAD, MORE, OTHER, Sniffed, Verdict, sniff

PATHS = frozenset({b"/echo", b"/amqp"})
UPGRADE = (b"GET /echo?token=1 HTTP/1.1\r\nHost: gw.test:8000\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           b"Sec-WebSocket-Version: 13\r\n\r\n")


def test_an_upgrade_is_told_at_its_blank_line_one_byte_at_a_time() -> None:
    assert [sniff(UPGRADE[:n], PATHS) for n in range(len(UPGRADE))] == [MORE] * len(UPGRADE)
    assert sniff(UPGRADE, PATHS) == Sniffed(Verdict.UPGRADE, b"/echo", len(UPGRADE))


def test_bytes_after_the_head_are_not_part_of_it() -> None:
    frame = b"\x81\x82\x00\x00\x00\x00hi"  # a client that did not wait for the 101
    assert sniff(UPGRADE + frame, PATHS) == Sniffed(Verdict.UPGRADE, b"/echo", len(UPGRADE))


@pytest.mark.parametrize("value", [b"websocket", b"WebSocket", b"  websocket\t", b"WEBSOCKET"])
def test_the_upgrade_value_is_compared_as_the_router_does(value: bytes) -> None:
    head = UPGRADE.replace(b"Upgrade: websocket", b"upgrade:" + value)
    assert sniff(head, PATHS).verdict is Verdict.UPGRADE


@pytest.mark.parametrize("first", [b"P", b"GEX", b"HEAD /echo", b"\r\n",
                                   b"GET /index.html HTTP/1.1\r\n",
                                   b"GET /echo HTTP/1.0\r\n", b"GET /echo  HTTP/1.1\r\n"])
def test_anything_else_is_told_as_soon_as_it_can_be(first: bytes) -> None:
    # A plain request waits for nothing: twisted.web reads it as it comes.
    assert sniff(first, PATHS) == OTHER


@pytest.mark.parametrize("old, new", [
    (b"GET /echo?", b"POST /echo?"),
    (b"GET /echo?", b"HEAD /echo?"),  # the Router's GET-without-a-body rendering
    (b"HTTP/1.1\r\n", b"HTTP/1.0\r\n"),
    (b"GET /echo?", b"GET /other?"),  # a 404
    (b"GET /echo?", b"GET /echo/?"),
    (b"GET /echo?", b"GET http://gw.test/echo?"),  # absolute form: another path to the Router
    (b"Upgrade: websocket\r\n", b""),  # a 426
    (b"Upgrade: websocket", b"Upgrade: h2c"),
    (b"Upgrade: websocket", b"Upgrade: websocket, h2c"),
    (b"Upgrade: websocket", b"Upgrade: websocket\r\nUpgrade: websocket"),
    (b"Host: gw.test:8000", b"Host: gw.test:8000\r\nhost: other"),  # repeated: joined
    (b"Connection: Upgrade", b"Connection: Upgrade\r\nContent-Length: 0"),  # a body
    (b"Connection: Upgrade", b"Connection: Upgrade\r\nTransfer-Encoding: chunked"),
    (b"Connection: Upgrade", b"Connection: Upgrade\r\nExpect: 100-continue"),  # a 100
    (b"Connection: Upgrade", b"Connection:\r\n Upgrade"),  # folded
    (b"Connection: Upgrade", b"Connection Upgrade"),  # no colon: twisted.web's 400
    (b"Connection: Upgrade", b"Connection : Upgrade"),
    (b"Connection: Upgrade", b"Connection: Up\x00grade"),
    (b"Connection: Upgrade", b"Connection: Up\rgrade"),
    (b"Connection: Upgrade", b"Connection: Up\ngrade"),
    (b"?token=1", b"?token=\x7f"),
])
def test_every_other_request_stays_twisted_webs(old: bytes, new: bytes) -> None:
    assert old in UPGRADE
    assert sniff(UPGRADE.replace(old, new, 1), PATHS) == OTHER


def test_a_head_past_twisted_webs_limit_is_not_waited_for() -> None:
    start = UPGRADE[:-2]
    padded = start + b"X-Pad: " + b"a" * MAX_HEAD + b"\r\n"
    assert sniff(padded, PATHS) == OTHER
    assert sniff(padded + b"\r\n", PATHS) == OTHER
    many = start + b"".join(b"X-%d: 1\r\n" % i for i in range(501)) + b"\r\n"
    assert len(many) < MAX_HEAD and sniff(many, PATHS) == OTHER


_REQUEST_LINES = st.sampled_from([b"GET /echo HTTP/1.1", b"GET /amqp?x=%20 HTTP/1.1",
                                  b"GET /other HTTP/1.1", b"HEAD /echo HTTP/1.1", b"bad"])
_USUAL = [b"Host: gw.test", b"Upgrade: websocket", b"Connection: Upgrade"]
_UNUSUAL = st.sampled_from([b"upgrade: WebSocket ", b"Upgrade: h2c", b"Content-Length: 0",
                            b" folded", b"bad", b"X-\x00: 1", b"Origin: http://gw.test"])


@given(_REQUEST_LINES, st.lists(_UNUSUAL, max_size=2), st.booleans(), st.binary(max_size=20),
       st.data())
def test_a_verdict_once_given_stands_whatever_follows(request_line: bytes, unusual: list[bytes],
                                                      ended: bool, tail: bytes,
                                                      data: st.DataObject) -> None:
    # The channel stops looking at the first verdict that is not MORE: it must be final.
    headers = data.draw(st.permutations(_USUAL + unusual))
    whole = b"\r\n".join([request_line, *headers, *([b""] if ended else [])]) + b"\r\n" + tail
    cut = data.draw(st.integers(0, len(whole)))
    early, late = sniff(whole[:cut], PATHS), sniff(whole, PATHS)
    if early.verdict is not Verdict.MORE:
        assert late == early
    if late.verdict is Verdict.UPGRADE:
        assert late.length == whole.index(b"\r\n\r\n") + 4
        if cut < late.length:
            assert early == MORE
