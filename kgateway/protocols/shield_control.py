"""Enterprise Shield control messages between an internal gateway and a DMZ gateway (sans-IO).

A reverse connection is a ``wss://`` WebSocket (subprotocol ``kgateway-shield.v1``) that the
INTERNAL gateway opens to the DMZ gateway's backplane, over mutually authenticated TLS.
Until it is paired with a public client it carries these control messages, one per binary
WebSocket message (the decoder also accepts them split or concatenated: it is a byte-stream
decoder):

    internal                                   DMZ
       | -- HELLO(version, keepalive ms, name) --> |   prepared: waits in the DMZ's pool
       | <------------- WELCOME ------------------ |
       | -- PING(n) --> / <-- PONG(n) --           |   every keepalive interval (firewalls)
       | <-- OPEN(client address, subprotocols) -- |   a public client arrived
       | --- OPENED(subprotocol) ----------------> |   the internal service took it, or
       | --- REFUSED(reason) --------------------> |   it could not (then the socket closes)
       |  ... from OPENED on every WebSocket message is the client's data, unchanged,   |
       |  and a WebSocket close frame is the client's close                             |

Wire format of one control message (all integers big-endian):

    +--------+-----------------+------------------+
    | type:1 | length:4 (u32)  | body: length     |
    +--------+-----------------+------------------+
    HELLO    0x01  version:1  keepalive_ms:4  name: utf-8 (rest)
    WELCOME  0x02  (empty)
    PING     0x03  n:8
    PONG     0x04  n:8
    OPEN     0x05  count:2, then count x (len:2 utf-8) subprotocols; client: utf-8 (rest)
    OPENED   0x06  flag:1 (1 = a subprotocol follows), subprotocol: utf-8 (rest)
    REFUSED  0x07  reason: utf-8

A body is at most MAX_BODY bytes; anything else is a ShieldProtocolError.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

SUBPROTOCOL = "kgateway-shield.v1"
VERSION = 1
MAX_BODY = 16 * 1024
_HEADER = struct.Struct(">BI")


class ShieldProtocolError(Exception):
    """Bytes that are not a valid control message."""


@dataclass(frozen=True)
class Hello:
    keepalive_ms: int
    name: str
    version: int = VERSION


@dataclass(frozen=True)
class Welcome:
    pass


@dataclass(frozen=True)
class Ping:
    n: int


@dataclass(frozen=True)
class Pong:
    n: int


@dataclass(frozen=True)
class Open:
    client: str
    protocols: tuple[str, ...] = ()


@dataclass(frozen=True)
class Opened:
    protocol: str | None = None


@dataclass(frozen=True)
class Refused:
    reason: str


Message = Hello | Welcome | Ping | Pong | Open | Opened | Refused

HELLO, WELCOME, PING, PONG, OPEN, OPENED, REFUSED = range(1, 8)


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ShieldProtocolError("text field is not UTF-8") from None


def _short_strings(items: Sequence[str]) -> bytes:
    out = [struct.pack(">H", len(items))]
    for item in items:
        raw = item.encode()
        out.append(struct.pack(">H", len(raw)) + raw)
    return b"".join(out)


def encode(message: Message) -> bytes:
    """The bytes of one control message."""
    body: bytes
    if isinstance(message, Hello):
        kind, body = HELLO, struct.pack(">BI", message.version, message.keepalive_ms) \
            + message.name.encode()
    elif isinstance(message, Welcome):
        kind, body = WELCOME, b""
    elif isinstance(message, Ping):
        kind, body = PING, struct.pack(">Q", message.n)
    elif isinstance(message, Pong):
        kind, body = PONG, struct.pack(">Q", message.n)
    elif isinstance(message, Open):
        kind, body = OPEN, _short_strings(message.protocols) + message.client.encode()
    elif isinstance(message, Opened):
        kind = OPENED
        body = b"\x00" if message.protocol is None else b"\x01" + message.protocol.encode()
    elif isinstance(message, Refused):
        kind, body = REFUSED, message.reason.encode()
    else:  # pragma: no cover - the union is closed
        raise TypeError(f"not a shield message: {message!r}")
    if len(body) > MAX_BODY:
        raise ValueError(f"control message body of {len(body)} bytes exceeds {MAX_BODY}")
    return _HEADER.pack(kind, len(body)) + body


def _decode_body(kind: int, body: bytes) -> Message:
    try:
        if kind == HELLO:
            version, keepalive = struct.unpack_from(">BI", body)
            return Hello(keepalive, _text(body[5:]), version)
        if kind == WELCOME:
            if body:
                raise ShieldProtocolError("WELCOME has no body")
            return Welcome()
        if kind in (PING, PONG):
            if len(body) != 8:
                raise ShieldProtocolError("PING/PONG body is 8 bytes")
            (n,) = struct.unpack(">Q", body)
            return Ping(n) if kind == PING else Pong(n)
        if kind == OPEN:
            (count,) = struct.unpack_from(">H", body)
            offset, protocols = 2, []
            for _ in range(count):
                (length,) = struct.unpack_from(">H", body, offset)
                offset += 2
                if offset + length > len(body):
                    raise ShieldProtocolError("OPEN subprotocol runs past the body")
                protocols.append(_text(body[offset:offset + length]))
                offset += length
            return Open(_text(body[offset:]), tuple(protocols))
        if kind == OPENED:
            if not body or body[0] not in (0, 1) or (body[0] == 0 and len(body) != 1):
                raise ShieldProtocolError("bad OPENED body")
            return Opened(_text(body[1:]) if body[0] else None)
        if kind == REFUSED:
            return Refused(_text(body))
    except struct.error:
        raise ShieldProtocolError(f"truncated body for message type {kind}") from None
    raise ShieldProtocolError(f"unknown message type {kind}")


class Decoder:
    """Feed bytes, get whole control messages; keeps any partial message for the next feed."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        self._buffer += data
        messages: list[Message] = []
        while len(self._buffer) >= _HEADER.size:
            kind, length = _HEADER.unpack_from(self._buffer)
            if not HELLO <= kind <= REFUSED:
                raise ShieldProtocolError(f"unknown message type {kind}")
            if length > MAX_BODY:
                raise ShieldProtocolError(f"control message body of {length} bytes exceeds "
                                          f"{MAX_BODY}")
            end = _HEADER.size + length
            if len(self._buffer) < end:
                break
            body = bytes(self._buffer[_HEADER.size:end])
            del self._buffer[:end]
            messages.append(_decode_body(kind, body))
        return messages

    @property
    def pending(self) -> int:
        """Bytes of an incomplete message held back."""
        return len(self._buffer)
