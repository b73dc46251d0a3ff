"""Sans-IO AMQP 0-9-1 codec for the ``amqp.proxy`` service.

The proxy only *understands* the connection handshake on channel 0; every other frame
(channel, basic, tx ... methods, content headers, bodies, heartbeats) is checked for
framing only and then relayed as the very bytes that arrived::

    WebSocket/TCP client             kgateway amqp.proxy                  RabbitMQ
         | "AMQP\\0\\0\\x09\\x01" ---->| ProtocolHeaderReader ------------------->|
         |<---------------------------|<----------------------- Start (ch 0) ----|
         | Start-Ok ----------------->| + client's real address in            |
         |                            |   client-properties ------------------->|
         |<--- Secure / Secure-Ok (0..n round trips) ---------------------------->|
         |<---------------------------|<------------------------------ Tune -----|
         | Tune-Ok ------------------>| FrameReader.frame_max = negotiated ---->|
         | Open --------------------->| virtual-host inspected ---------------->|
         |<---------------------------|<--------------------------- Open-Ok -----|
         | frames ------------------->| FrameReader.feed_chunk (checks only) -->|
         |<--- whole frames per WS message ---- FrameReader.feed_chunk <---------|
         | Close / Close-Ok <-------------------------------------------------->|

Nothing here touches a transport, a reactor or a clock: bytes go into
:class:`ProtocolHeaderReader` and :class:`FrameReader`, which return :class:`Frame` objects
(or whole-frame byte chunks); :func:`decode_method` turns a method payload into a
``Connection*`` dataclass or a generic :class:`Method`, and ``encode()`` /
:func:`method_frame` / :func:`encode_frame` produce bytes.

Wire format
===========

Protocol header, sent once by the client before any frame::

    +-----+-----+-----+-----+------+------+------+------+
    | 'A' | 'M' | 'Q' | 'P' | 0x00 | 0x00 | 0x09 | 0x01 |
    +-----+-----+-----+-----+------+------+------+------+

A server that does not accept it writes its own header and closes the socket.

Frame (both directions, all integers big-endian)::

    0        1           3                  7                  7+size     8+size
    +--------+-----------+------------------+------------------+----------+
    |  type  |  channel  |   size (uint32)  |  payload octets  |   0xCE   |
    +--------+-----------+------------------+------------------+----------+
      uint8     uint16     payload length                        frame-end

``type`` is 1 method, 2 content header, 3 content body or 8 heartbeat (channel 0, empty
payload).  frame-max bounds the *whole* frame, ``size + 8``.  Until Tune-Ok has
negotiated it, both peers must accept frames of up to frame-min-size = 4096 octets
and no more; a negotiated 0 means "no limit".  Any other type, a wrong frame-end
octet or an oversize frame is a connection error 501 (frame-error).

Method frame payload::

    +------------+-------------+--------------------------------+
    |  class-id  |  method-id  |  arguments, in spec order      |
    +------------+-------------+--------------------------------+
       uint16        uint16

Argument types: octet (uint8), short (uint16), long (uint32), longlong (uint64),
shortstr (uint8 length + at most 255 octets of UTF-8), longstr (uint32 length +
octets), bits (consecutive bit arguments packed into one octet, lowest bit first),
table.

Field table (a ``table`` argument or an ``F`` value)::

    +----------------+-----------------------------------------------------------+
    |  size (uint32) |  size octets of:  name (shortstr) | tag (1 octet) | value |
    +----------------+-----------------------------------------------------------+
                        ... repeated until size octets are consumed

The value tags are RabbitMQ's (the 0-9-1 errata), which differ from the 0-9-1 PDF in
``s`` and the unsigned letters.  Decoded Python types are on the right; the marker
subclasses (``Int8`` ...) remember the tag so that decode -> encode is byte-exact::

    t  bool      1 octet, non-zero = true          -> bool
    b  int8      B  uint8                          -> Int8, UInt8
    s  int16     u  uint16                         -> Int16, UInt16
    I  int32     i  uint32                         -> int, UInt32
    l  int64                                       -> Int64
    f  float32   d  float64                        -> Float32, float
    D  decimal   scale (uint8) + value (int32)     -> decimal.Decimal (value * 10**-scale)
                 (the spec says unsigned; pika and the Java client send two's complement)
    S  longstr   uint32 length + octets            -> str (LongStr if not UTF-8)
    x  bytes     uint32 length + octets            -> bytes
    T  timestamp uint64 seconds since the epoch    -> Timestamp
    A  array     uint32 size + (tag | value)*      -> list
    F  table     as above                          -> dict
    V  void      nothing                           -> None

Plain Python values encode as: bool ``t``, int ``I`` when it fits in int32 else ``l``,
float ``d``, Decimal ``D``, str ``S``, bytes/bytearray/memoryview ``x``, datetime ``T``,
list/tuple ``A``, mapping ``F``, None ``V`` (pika and the Java client agree).

Error reporting: everything that comes from the network raises :class:`FrameError`
(or :class:`ProtocolHeaderError` for the header), never ``IndexError``/``struct.error``;
malformed structure is 501 frame-error, illegal values (bad UTF-8, unknown tag,
excessive nesting) 502 syntax-error.  Encoding bad *local* values raises ``ValueError``
or ``TypeError``: those are programming errors.
"""


from __future__ import annotations

from kgateway.protocols.amqp.fields import (
    FieldTable,
    FieldValue,
    Float32,
    Int8,
    Int16,
    Int64,
    LongStr,
    Timestamp,
    UInt8,
    UInt16,
    UInt32,
    decode_longstr,
    decode_shortstr,
    decode_table,
    encode_field_value,
    encode_longstr,
    encode_shortstr,
    encode_table,
)
from kgateway.protocols.amqp.frames import (
    ACCESS_REFUSED,
    CHANNEL_ERROR,
    COMMAND_INVALID,
    CONNECTION_CLASS_ID,
    CONNECTION_FORCED,
    CONTENT_TOO_LARGE,
    FRAME_BODY,
    FRAME_END,
    FRAME_ERROR,
    FRAME_HEADER,
    FRAME_HEADER_SIZE,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    FRAME_MIN_SIZE,
    FRAME_OVERHEAD,
    HEARTBEAT_FRAME,
    INTERNAL_ERROR,
    INVALID_PATH,
    MAX_FIELD_NESTING,
    NO_CONSUMERS,
    NO_ROUTE,
    NOT_ALLOWED,
    NOT_FOUND,
    NOT_IMPLEMENTED,
    PRECONDITION_FAILED,
    PROTOCOL_HEADER,
    REPLY_NAMES,
    REPLY_SUCCESS,
    RESOURCE_ERROR,
    RESOURCE_LOCKED,
    SYNTAX_ERROR,
    UNEXPECTED_FRAME,
    BytesLike,
    Frame,
    FrameError,
    FrameReader,
    ProtocolHeaderError,
    ProtocolHeaderReader,
    check_protocol_header,
    describe_protocol_header,
    encode_frame,
    truncated,
)
from kgateway.protocols.amqp.methods import (
    AnyMethod,
    ConnectionBlocked,
    ConnectionClose,
    ConnectionCloseOk,
    ConnectionMethod,
    ConnectionOpen,
    ConnectionOpenOk,
    ConnectionSecure,
    ConnectionSecureOk,
    ConnectionStart,
    ConnectionStartOk,
    ConnectionTune,
    ConnectionTuneOk,
    ConnectionUnblocked,
    ConnectionUpdateSecret,
    ConnectionUpdateSecretOk,
    Method,
    close_for,
    decode_method,
    method_frame,
    negotiate_frame_max,
    plain_response,
    sasl_credentials,
)

__all__ = [
    "ACCESS_REFUSED",
    "AnyMethod",
    "BytesLike",
    "CHANNEL_ERROR",
    "COMMAND_INVALID",
    "CONNECTION_CLASS_ID",
    "CONNECTION_FORCED",
    "CONTENT_TOO_LARGE",
    "ConnectionBlocked",
    "ConnectionClose",
    "ConnectionCloseOk",
    "ConnectionMethod",
    "ConnectionOpen",
    "ConnectionOpenOk",
    "ConnectionSecure",
    "ConnectionSecureOk",
    "ConnectionStart",
    "ConnectionStartOk",
    "ConnectionTune",
    "ConnectionTuneOk",
    "ConnectionUnblocked",
    "ConnectionUpdateSecret",
    "ConnectionUpdateSecretOk",
    "FRAME_BODY",
    "FRAME_END",
    "FRAME_ERROR",
    "FRAME_HEADER",
    "FRAME_HEADER_SIZE",
    "FRAME_HEARTBEAT",
    "FRAME_METHOD",
    "FRAME_MIN_SIZE",
    "FRAME_OVERHEAD",
    "FieldTable",
    "FieldValue",
    "Float32",
    "Frame",
    "FrameError",
    "FrameReader",
    "HEARTBEAT_FRAME",
    "INTERNAL_ERROR",
    "INVALID_PATH",
    "Int16",
    "Int64",
    "Int8",
    "LongStr",
    "MAX_FIELD_NESTING",
    "Method",
    "NOT_ALLOWED",
    "NOT_FOUND",
    "NOT_IMPLEMENTED",
    "NO_CONSUMERS",
    "NO_ROUTE",
    "PRECONDITION_FAILED",
    "PROTOCOL_HEADER",
    "ProtocolHeaderError",
    "ProtocolHeaderReader",
    "REPLY_NAMES",
    "REPLY_SUCCESS",
    "RESOURCE_ERROR",
    "RESOURCE_LOCKED",
    "SYNTAX_ERROR",
    "Timestamp",
    "UInt16",
    "UInt32",
    "UInt8",
    "UNEXPECTED_FRAME",
    "check_protocol_header",
    "close_for",
    "decode_longstr",
    "decode_method",
    "decode_shortstr",
    "decode_table",
    "describe_protocol_header",
    "encode_field_value",
    "encode_frame",
    "encode_longstr",
    "encode_shortstr",
    "encode_table",
    "method_frame",
    "negotiate_frame_max",
    "plain_response",
    "sasl_credentials",
    "truncated",
]
