"""Kaazing's extended WebSocket handshake (the ``x-kaazing-handshake`` subprotocol), sans-IO.

Kaazing's client libraries (JavaScript, Java, .NET, iOS) offer ``x-kaazing-handshake`` first
on every native WebSocket. A server that selects it owes the client a second, "extended"
handshake inside the WebSocket before the application may use it; a server that selects it
and stays silent leaves the client waiting until its 5-second timer fails the connection.
This module is the wire format; ``kgateway.transport.kaazing`` plays it for every accept.

    client                                           gateway
      opening handshake, Sec-WebSocket-Protocol: x-kaazing-handshake, amqp0-9-1
                                                <--  101, Sec-WebSocket-Protocol: x-kaazing-handshake
                                                <--  binary  EF 83 BF 'N'   (BALANCER_NONE: no
                                                             balancer redirect; the client goes on)
      text  "GET /path HTTP/1.1\\r\\n                 -->
             Sec-WebSocket-Protocol: amqp0-9-1\\r\\n       (the application's protocols, if any)
             Sec-WebSocket-Extensions: x-kaazing-idle-timeout,x-kaazing-ping-pong\\r\\n
             [Authorization: ...\\r\\n]\\r\\n"
                                                <--  text  "HTTP/1.1 101 Web Socket Protocol
                                                            Handshake\\r\\n...\\r\\n
                                                            Sec-WebSocket-Protocol: amqp0-9-1\\r\\n\\r\\n"
                                                <--  text  ""           (end of the response)
                                                <--  binary EF 83 BF 'N' (the client is now open)
      application messages, unchanged, both ways

Sources, read not copied: the public protocol description "WebSocket Protocol:
x-kaazing-handshake" (Kaazing's specification repository: the request and response are HTTP
messages in WebSocket messages; 101 completes it; 401 asks for credentials; the response's
Sec-WebSocket-Extensions, if any, must be a subset of the requested ones); the Apache-2.0
Kaazing gateway and JavaScript client for what the description leaves out: the balancer
message (U+F0FF then ``N``, sent as a binary message before the extended handshake and again
after it) and the empty message that ends the response. No Kaazing extension
(``x-kaazing-idle-timeout``, ``x-kaazing-ping-pong``) is accepted: the response names none,
which the description defines as "none negotiated".
"""

from __future__ import annotations

from dataclasses import dataclass

#: the subprotocol Kaazing clients offer first
KAAZING_HANDSHAKE = "x-kaazing-handshake"

#: "no balancer took part": U+F0FF (a prefix no other server sends) then N, in UTF-8
BALANCER_NONE = "\uf0ffN".encode()

#: the most bytes an extended handshake request may have
MAX_REQUEST = 16 * 1024

_REASONS = {101: "Web Socket Protocol Handshake", 400: "Bad Request", 401: "Unauthorized",
            403: "Forbidden", 404: "Not Found", 500: "Internal Server Error",
            502: "Bad Gateway", 503: "Service Unavailable"}


def application_protocols(offered: list[str]) -> list[str]:
    """The offered subprotocols a service may choose from: never ``x-kaazing-handshake``,
    which only the extended handshake (``kgateway.transport.kaazing``) may select."""
    return [p for p in offered if p != KAAZING_HANDSHAKE]


class BadExtendedRequest(ValueError):
    """The first message was not an extended handshake request (answer 400)."""


@dataclass(frozen=True)
class ExtendedRequest:
    path: str
    #: the application subprotocols, in the client's order of preference
    protocols: list[str]
    #: Kaazing extensions the client asked for (none is accepted)
    extensions: list[str]
    #: header names lower-cased; the last value of a repeated header wins
    headers: dict[str, str]

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")


def _split_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def parse_request(payload: bytes) -> ExtendedRequest:
    """The extended handshake request in a WebSocket message (text or binary)."""
    if len(payload) > MAX_REQUEST:
        raise BadExtendedRequest(f"extended handshake request over {MAX_REQUEST} bytes")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise BadExtendedRequest("extended handshake request is not UTF-8") from None
    head = text.split("\r\n\r\n", 1)[0] if "\r\n\r\n" in text else text.split("\n\n", 1)[0]
    lines = [line.rstrip("\r") for line in head.split("\n")]
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[0] != "GET" or not parts[2].startswith("HTTP/1."):
        raise BadExtendedRequest(
            f"expected an extended handshake request (GET path HTTP/1.1), got {lines[0][:40]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip() or name != name.strip():
            raise BadExtendedRequest(f"malformed header line {line[:40]!r}")
        headers[name.lower()] = value.strip()
    protocols = _split_list(headers.get("sec-websocket-protocol", ""))
    extensions = [e.split(";", 1)[0].strip()
                  for e in _split_list(headers.get("sec-websocket-extensions", ""))]
    return ExtendedRequest(parts[1], application_protocols(protocols), extensions, headers)


def encode_response(status: int, protocol: str | None = None,
                    headers: list[tuple[str, str]] | None = None) -> bytes:
    """The extended handshake response: 101 with the chosen protocol, or a refusal."""
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}"]
    if status == 101:
        lines += ["Connection: Upgrade", "Upgrade: WebSocket"]
        if protocol:
            lines.append(f"Sec-WebSocket-Protocol: {protocol}")
    for name, value in headers or []:
        if any(c in name + value for c in "\r\n"):
            raise ValueError(f"header {name!r} has a line break")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
