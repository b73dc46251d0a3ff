"""The x-kaazing-handshake wire format: the request a Kaazing client sends in its first
message, the embedded response, the balancer message."""

from __future__ import annotations

import pytest

from kgateway.protocols.kaazing import (
    BALANCER_NONE,
    KAAZING_HANDSHAKE,
    MAX_REQUEST,
    BadExtendedRequest,
    application_protocols,
    encode_response,
    parse_request,
)

#: what Kaazing's JavaScript client sends (headers in its order; WebSocket-Protocol empty)
JS_REQUEST = (b"GET /amqp HTTP/1.1\r\nWebSocket-Protocol: \r\n"
              b"Sec-WebSocket-Protocol: amqp0-9-1\r\n"
              b"Sec-WebSocket-Extensions: x-kaazing-idle-timeout,x-kaazing-ping-pong\r\n\r\n")


def test_the_javascript_clients_request() -> None:
    request = parse_request(JS_REQUEST)
    assert request.path == "/amqp"
    assert request.protocols == ["amqp0-9-1"]
    assert request.extensions == ["x-kaazing-idle-timeout", "x-kaazing-ping-pong"]
    assert request.authorization is None


def test_no_protocols_credentials_and_bare_newlines() -> None:
    request = parse_request(b"GET /echo?x=1 HTTP/1.1\nSec-WebSocket-Protocol: \n"
                            b"Authorization: Basic a2d3OnB3\n\n")
    assert request.path == "/echo?x=1" and request.protocols == []
    assert request.authorization == "Basic a2d3OnB3"


def test_the_handshake_protocol_itself_is_never_an_application_protocol() -> None:
    request = parse_request(b"GET / HTTP/1.1\r\nSec-WebSocket-Protocol: "
                            b"x-kaazing-handshake, v12.stomp\r\n\r\n")
    assert request.protocols == ["v12.stomp"]
    assert application_protocols([KAAZING_HANDSHAKE, "amqp0-9-1", KAAZING_HANDSHAKE]) == [
        "amqp0-9-1"]


@pytest.mark.parametrize("payload", [
    b"hello",  # an application message where the request should be
    b"POST / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/2\r\n\r\n",
    b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
    b"\xff\xfe",
    b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_REQUEST + b"\r\n\r\n",
])
def test_anything_else_is_a_bad_request(payload: bytes) -> None:
    with pytest.raises(BadExtendedRequest):
        parse_request(payload)


def test_the_101_names_the_chosen_protocol_and_no_extension() -> None:
    response = encode_response(101, "amqp0-9-1")
    assert response.startswith(b"HTTP/1.1 101 Web Socket Protocol Handshake\r\n")
    assert b"\r\nSec-WebSocket-Protocol: amqp0-9-1\r\n" in response
    assert b"Extensions" not in response and response.endswith(b"\r\n\r\n")
    assert b"Sec-WebSocket-Protocol" not in encode_response(101, None)
    assert encode_response(400) == b"HTTP/1.1 400 Bad Request\r\n\r\n"


def test_the_balancer_message_is_u_f0ff_then_n() -> None:
    assert BALANCER_NONE == b"\xef\x83\xbfN"
    assert BALANCER_NONE.decode()[0] == "\uf0ff"
