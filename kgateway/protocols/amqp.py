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

import datetime
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar, Final, Self, TypeAlias, cast

__all__ = [
    "ACCESS_REFUSED",
    "CHANNEL_ERROR",
    "COMMAND_INVALID",
    "CONNECTION_CLASS_ID",
    "CONNECTION_FORCED",
    "CONTENT_TOO_LARGE",
    "FRAME_BODY",
    "FRAME_END",
    "FRAME_ERROR",
    "FRAME_HEADER",
    "FRAME_HEADER_SIZE",
    "FRAME_HEARTBEAT",
    "FRAME_METHOD",
    "FRAME_MIN_SIZE",
    "FRAME_OVERHEAD",
    "HEARTBEAT_FRAME",
    "INTERNAL_ERROR",
    "INVALID_PATH",
    "MAX_FIELD_NESTING",
    "NOT_ALLOWED",
    "NOT_FOUND",
    "NOT_IMPLEMENTED",
    "NO_CONSUMERS",
    "NO_ROUTE",
    "PRECONDITION_FAILED",
    "PROTOCOL_HEADER",
    "REPLY_NAMES",
    "REPLY_SUCCESS",
    "RESOURCE_ERROR",
    "RESOURCE_LOCKED",
    "SYNTAX_ERROR",
    "UNEXPECTED_FRAME",
    "AnyMethod",
    "BytesLike",
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
    "FieldTable",
    "FieldValue",
    "Float32",
    "Frame",
    "FrameError",
    "FrameReader",
    "Int8",
    "Int16",
    "Int64",
    "LongStr",
    "Method",
    "ProtocolHeaderError",
    "ProtocolHeaderReader",
    "Timestamp",
    "UInt8",
    "UInt16",
    "UInt32",
    "check_protocol_header",
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
]

BytesLike: TypeAlias = bytes | bytearray | memoryview

# --------------------------------------------------------------------------- constants

PROTOCOL_HEADER: Final = b"AMQP\x00\x00\x09\x01"

FRAME_METHOD: Final = 1
FRAME_HEADER: Final = 2
FRAME_BODY: Final = 3
FRAME_HEARTBEAT: Final = 8
FRAME_END: Final = 0xCE

FRAME_HEADER_SIZE: Final = 7
FRAME_OVERHEAD: Final = 8  # header + frame-end: what frame-max counts beyond the payload
FRAME_MIN_SIZE: Final = 4096

CONNECTION_CLASS_ID: Final = 10

# Bounds the recursion in decode_table: a 128 KiB frame could otherwise nest ~18000
# tables (7 octets each) and blow Python's stack; no real client nests beyond a few.
MAX_FIELD_NESTING: Final = 64

REPLY_SUCCESS: Final = 200
CONTENT_TOO_LARGE: Final = 311
NO_ROUTE: Final = 312
NO_CONSUMERS: Final = 313
CONNECTION_FORCED: Final = 320
INVALID_PATH: Final = 402
ACCESS_REFUSED: Final = 403
NOT_FOUND: Final = 404
RESOURCE_LOCKED: Final = 405
PRECONDITION_FAILED: Final = 406
FRAME_ERROR: Final = 501
SYNTAX_ERROR: Final = 502
COMMAND_INVALID: Final = 503
CHANNEL_ERROR: Final = 504
UNEXPECTED_FRAME: Final = 505
RESOURCE_ERROR: Final = 506
NOT_ALLOWED: Final = 530
NOT_IMPLEMENTED: Final = 540
INTERNAL_ERROR: Final = 541

REPLY_NAMES: Final[Mapping[int, str]] = {
    REPLY_SUCCESS: "REPLY_SUCCESS",
    CONTENT_TOO_LARGE: "CONTENT_TOO_LARGE",
    NO_ROUTE: "NO_ROUTE",
    NO_CONSUMERS: "NO_CONSUMERS",
    CONNECTION_FORCED: "CONNECTION_FORCED",
    INVALID_PATH: "INVALID_PATH",
    ACCESS_REFUSED: "ACCESS_REFUSED",
    NOT_FOUND: "NOT_FOUND",
    RESOURCE_LOCKED: "RESOURCE_LOCKED",
    PRECONDITION_FAILED: "PRECONDITION_FAILED",
    FRAME_ERROR: "FRAME_ERROR",
    SYNTAX_ERROR: "SYNTAX_ERROR",
    COMMAND_INVALID: "COMMAND_INVALID",
    CHANNEL_ERROR: "CHANNEL_ERROR",
    UNEXPECTED_FRAME: "UNEXPECTED_FRAME",
    RESOURCE_ERROR: "RESOURCE_ERROR",
    NOT_ALLOWED: "NOT_ALLOWED",
    NOT_IMPLEMENTED: "NOT_IMPLEMENTED",
    INTERNAL_ERROR: "INTERNAL_ERROR",
}

_FRAME_HEAD = struct.Struct(">BHI")
_IDS = struct.Struct(">HH")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_HEAD_OCTETS = struct.Struct(">HHBB")  # class-id, method-id, two octet arguments
_TUNE = struct.Struct(">HHHIH")
_CLOSE_HEAD = struct.Struct(">HHH")

# Indexed by the first octet of a frame: a 256-entry table is the cheapest membership
# test on the hot path, and lets a bad type be reported from the very first byte.
_FRAME_TYPE_OK: Final = bytes(
    1 if t in (FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT) else 0
    for t in range(256)
)

_NO_LIMIT: Final = 0xFFFFFFFF + FRAME_OVERHEAD  # the largest frame the size field allows


# --------------------------------------------------------------------------- errors


class ProtocolHeaderError(Exception):
    """The client's first octets are not :data:`PROTOCOL_HEADER`.

    The caller answers with :data:`PROTOCOL_HEADER` and closes the connection.
    ``received`` holds the (at most 8) octets examined.
    """

    def __init__(self, received: bytes) -> None:
        self.received = received
        super().__init__(
            f"unsupported protocol header {received!r} ({describe_protocol_header(received)})"
        )


class FrameError(Exception):
    """A connection-level protocol error, with the AMQP reply code to report.

    ``class_id``/``method_id`` name the offending method when there is one (0 otherwise),
    as Connection.Close wants them.  ``fatal`` is true for the errors after which the
    spec says to close *without sending anything further* (unknown frame type, bad
    frame-end); for the others a Connection.Close (:meth:`to_close`) may be sent first.
    ``preceding`` holds the raw bytes of the complete, valid frames that arrived in the
    same :meth:`FrameReader.feed` call before the fault, so a relay may still forward
    them in order.
    """

    def __init__(
        self,
        reply_code: int,
        reply_text: str,
        *,
        class_id: int = 0,
        method_id: int = 0,
        fatal: bool = False,
    ) -> None:
        super().__init__(reply_code, reply_text)
        self.reply_code = reply_code
        self.reply_text = reply_text
        self.class_id = class_id
        self.method_id = method_id
        self.fatal = fatal
        self.preceding = b""

    def __str__(self) -> str:
        return f"{REPLY_NAMES.get(self.reply_code, self.reply_code)} - {self.reply_text}"

    def to_close(self) -> ConnectionClose:
        """The Connection.Close that reports this error, in RabbitMQ's text style."""
        # reply-text is a shortstr: cut at 255 octets without splitting a character.
        text = str(self).encode("utf-8")[:255].decode("utf-8", "ignore")
        return ConnectionClose(self.reply_code, text, self.class_id, self.method_id)


def _truncated(what: str) -> FrameError:
    return FrameError(FRAME_ERROR, f"truncated {what}")


# --------------------------------------------------------------------------- header

_KNOWN_HEADERS: Final[Mapping[bytes, str]] = {
    PROTOCOL_HEADER: "AMQP 0-9-1",
    b"AMQP\x01\x01\x00\x09": "AMQP 0-9",
    b"AMQP\x01\x01\x08\x00": "AMQP 0-8",
    b"AMQP\x01\x01\x09\x01": "AMQP 0-8 as sent by some old clients",
    b"AMQP\x00\x01\x00\x00": "AMQP 1.0",
    b"AMQP\x02\x01\x00\x00": "AMQP 1.0 TLS",
    b"AMQP\x03\x01\x00\x00": "AMQP 1.0 SASL",
}


def describe_protocol_header(data: BytesLike) -> str:
    """A human-readable guess at what a client's first octets are, for logs."""
    head = bytes(data[:8])
    if head in _KNOWN_HEADERS:
        return _KNOWN_HEADERS[head]
    if head.startswith(b"AMQP") or b"AMQP".startswith(head):
        return "unknown AMQP version" if len(head) == 8 else "incomplete AMQP header"
    if head[:4] in (b"GET ", b"POST", b"HEAD", b"PUT ", b"OPTI"):
        return "HTTP request"
    if head[:1] == b"\x16":
        return "TLS handshake"
    return "not AMQP"


def check_protocol_header(data: BytesLike) -> None:
    """Raise :class:`ProtocolHeaderError` unless ``data`` can start :data:`PROTOCOL_HEADER`.

    ``data`` is everything received so far, of any length; only its first 8 octets
    matter.  A prefix passes, so a wrong header is rejected at the first octet that
    differs (``b"G"`` of an HTTP request) rather than after 8 octets.
    """
    head = bytes(data[:8])
    if head != PROTOCOL_HEADER[: len(head)]:
        raise ProtocolHeaderError(head)


class ProtocolHeaderReader:
    """Incremental :func:`check_protocol_header` for a byte stream.

    :meth:`feed` returns ``None`` while the header is incomplete, then the octets that
    followed it (possibly ``b""``), which belong to the frame stream; after that it
    returns its input unchanged.
    """

    __slots__ = ("_done", "_seen")

    def __init__(self) -> None:
        self._seen = b""
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    def feed(self, data: BytesLike) -> bytes | None:
        if self._done:
            return bytes(data)
        missing = len(PROTOCOL_HEADER) - len(self._seen)
        seen = self._seen + bytes(data[:missing])
        check_protocol_header(seen)
        if len(seen) < len(PROTOCOL_HEADER):
            self._seen = seen
            return None
        self._done = True
        self._seen = b""
        return bytes(data[missing:])


# --------------------------------------------------------------------------- frames


def encode_frame(type: int, channel: int, payload: BytesLike) -> bytes:
    """One complete frame: header, ``payload`` and the frame-end octet."""
    if not 0 <= type <= 0xFF:
        raise ValueError(f"frame type {type} out of range")
    if not 0 <= channel <= 0xFFFF:
        raise ValueError(f"channel {channel} out of range")
    if len(payload) > 0xFFFFFFFF:
        raise ValueError("payload too large for one frame")
    return b"".join((_FRAME_HEAD.pack(type, channel, len(payload)), payload, b"\xce"))


HEARTBEAT_FRAME: Final = encode_frame(FRAME_HEARTBEAT, 0, b"")


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame as it was on the wire.

    ``raw`` is the complete frame (header, payload, frame-end) exactly as received, so a
    relay forwards it without re-encoding.  ``payload`` is a zero-copy view into it.
    """

    type: int
    channel: int
    raw: bytes

    @property
    def payload(self) -> memoryview:
        return memoryview(self.raw)[FRAME_HEADER_SIZE:-1]

    @property
    def size(self) -> int:
        """The payload size, as carried in the frame header."""
        return len(self.raw) - FRAME_OVERHEAD

    @classmethod
    def build(cls, type: int, channel: int, payload: BytesLike) -> Frame:
        return cls(type, channel, encode_frame(type, channel, payload))


class FrameReader:
    """Splits a byte stream into frames, enforcing frame type, frame-end and frame-max.

    Bytes of an incomplete frame are kept between calls, bounded by the frame limit:
    a header announcing an oversize frame is rejected as soon as its 7 octets arrive,
    before any of its payload is buffered.

    Frame limit: ``FrameReader()`` (``frame_max`` 0, not negotiated) enforces
    frame-min-size, 4096 octets per frame, as the spec requires before Tune-Ok.  Setting
    :attr:`frame_max` (the value of Tune-Ok, see :func:`negotiate_frame_max`) switches to
    that limit; a negotiated 0 means no limit beyond the 32-bit size field, so up to
    4 GiB could be buffered for one frame: a relay that must bound its memory should
    not let 0 be negotiated (cap frame-max in the Tune it relays).  A non-zero
    ``frame_max`` passed to the constructor counts as already negotiated.  ``slack``
    tolerates frames that much larger than the limit: RabbitMQ accepts 8 extra octets
    ("FRAME_SIZE_FUDGE") because some clients compare the payload, not the frame, with
    frame-max.

    After a :class:`FrameError` the reader is dead: its buffer is dropped and every later
    call raises the same error, so a caller cannot resynchronise into garbage.
    """

    __slots__ = ("_buf", "_error", "_frame_max", "_limit", "_need", "_negotiated", "_slack")

    def __init__(self, frame_max: int = 0, *, slack: int = 0) -> None:
        if slack < 0:
            raise ValueError("slack must not be negative")
        self._slack = slack
        self._buf = bytearray()
        # While _buf holds part of a frame, the length it must reach before parsing can
        # make progress: most feeds of a large frame then cost one append, no re-scan.
        self._need = 0
        self._error: FrameError | None = None
        self._frame_max = 0
        self._negotiated = False
        self._limit = FRAME_MIN_SIZE + slack
        if frame_max:
            self.frame_max = frame_max

    @property
    def frame_max(self) -> int:
        """The negotiated frame-max, 0 if unlimited or not negotiated yet."""
        return self._frame_max

    @frame_max.setter
    def frame_max(self, value: int) -> None:
        if value != 0 and not FRAME_MIN_SIZE <= value <= 0xFFFFFFFF:
            raise ValueError(f"frame_max must be 0 or in [{FRAME_MIN_SIZE}, 2**32-1]: {value}")
        self._frame_max = value
        self._negotiated = True
        self._limit = (value + self._slack) if value else _NO_LIMIT
        # A header already buffered was checked against the old limit: re-check it.
        self._need = 0

    @property
    def negotiated(self) -> bool:
        return self._negotiated

    @property
    def limit(self) -> int | None:
        """The largest whole frame (octets, incl. header and end) accepted; None = any."""
        return None if self._limit == _NO_LIMIT else self._limit

    @property
    def buffered(self) -> int:
        """Octets of an incomplete frame held until more data arrives."""
        return len(self._buf)

    @property
    def error(self) -> FrameError | None:
        return self._error

    def feed(self, data: BytesLike) -> list[Frame]:
        """Add received bytes; return every frame completed by them, in order."""
        stream = self._take(data)
        if stream is None:
            return []
        frames: list[Frame] = []
        self._parse(stream, frames)
        return frames

    def feed_chunk(self, data: BytesLike) -> bytes:
        """Add received bytes; return the raw bytes of every frame they complete.

        The result is a concatenation of whole, checked frames (``b""`` if none), ready
        to be sent as one WebSocket message.  No :class:`Frame` objects are built, and
        when ``data`` ends on a frame boundary with nothing buffered, the result *is*
        ``data`` (bytes), not a copy: this is the relay's hot path.
        """
        stream = self._take(data)
        if stream is None:
            return b""
        end = self._parse(stream, None)
        return stream[:end]

    def _take(self, data: BytesLike) -> bytes | None:
        if self._error is not None:
            raise self._error
        if self._buf:
            self._buf += data
            if len(self._buf) < self._need:
                return None
            stream = bytes(self._buf)
            self._buf = bytearray()
            return stream
        return data if type(data) is bytes else bytes(data)

    def _parse(self, stream: bytes, frames: list[Frame] | None) -> int:
        """Consume whole frames from ``stream``; buffer the tail; return the end offset."""
        pos = 0
        n = len(stream)
        limit = self._limit
        unpack = _FRAME_HEAD.unpack_from
        type_ok = _FRAME_TYPE_OK
        need = 0
        try:
            while True:
                avail = n - pos
                if avail < FRAME_HEADER_SIZE:
                    if avail:
                        if not type_ok[stream[pos]]:
                            raise _bad_type(stream[pos])
                        need = FRAME_HEADER_SIZE
                    break
                ftype, channel, size = unpack(stream, pos)
                if not type_ok[ftype]:
                    raise _bad_type(ftype)
                total = size + FRAME_OVERHEAD
                if total > limit:
                    raise FrameError(
                        FRAME_ERROR,
                        f"frame of {total} octets (type {ftype}, channel {channel}) exceeds "
                        f"frame_max {limit - self._slack}",
                    )
                end = pos + total
                if end > n:
                    need = total
                    break
                if stream[end - 1] != FRAME_END:
                    raise FrameError(
                        FRAME_ERROR,
                        f"frame-end octet 0x{stream[end - 1]:02x} instead of 0xce "
                        f"(type {ftype}, channel {channel}, size {size})",
                        fatal=True,
                    )
                if frames is not None:
                    frames.append(Frame(ftype, channel, stream[pos:end]))
                pos = end
        except FrameError as exc:
            exc.preceding = stream[:pos]
            self._error = exc
            self._buf = bytearray()
            self._need = 0
            raise
        if pos < n:
            self._buf = bytearray(memoryview(stream)[pos:])
        self._need = need
        return pos


def _bad_type(ftype: int) -> FrameError:
    return FrameError(FRAME_ERROR, f"unknown frame type {ftype}", fatal=True)


# --------------------------------------------------------------------------- field values


class _TaggedInt(int):
    """An int that remembers its field-table tag, so re-encoding is byte-exact."""

    __slots__ = ()
    _min: ClassVar[int]
    _max: ClassVar[int]

    def __new__(cls, value: int = 0) -> Self:
        self = super().__new__(cls, value)
        if not cls._min <= self <= cls._max:
            raise ValueError(f"{cls.__name__} out of range: {value}")
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({int(self)})"


class Int8(_TaggedInt):
    """Field value with tag ``b``."""

    __slots__ = ()
    _min, _max = -(1 << 7), (1 << 7) - 1


class UInt8(_TaggedInt):
    """Field value with tag ``B``."""

    __slots__ = ()
    _min, _max = 0, (1 << 8) - 1


class Int16(_TaggedInt):
    """Field value with tag ``s`` (RabbitMQ's meaning, not the 0-9-1 PDF's shortstr)."""

    __slots__ = ()
    _min, _max = -(1 << 15), (1 << 15) - 1


class UInt16(_TaggedInt):
    """Field value with tag ``u``."""

    __slots__ = ()
    _min, _max = 0, (1 << 16) - 1


class UInt32(_TaggedInt):
    """Field value with tag ``i``."""

    __slots__ = ()
    _min, _max = 0, (1 << 32) - 1


class Int64(_TaggedInt):
    """Field value with tag ``l``."""

    __slots__ = ()
    _min, _max = -(1 << 63), (1 << 63) - 1


class Timestamp(_TaggedInt):
    """Field value with tag ``T``: seconds since the Unix epoch."""

    __slots__ = ()
    _min, _max = 0, (1 << 64) - 1

    def to_datetime(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(int(self), datetime.UTC)


class Float32(float):
    """Field value with tag ``f`` (single precision)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Float32({float(self)!r})"


class LongStr(bytes):
    """Field value with tag ``S`` whose octets are not UTF-8 (plain bytes encode as ``x``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"LongStr({bytes(self)!r})"


FieldValue: TypeAlias = (
    None | bool | int | float | Decimal | str | bytes | datetime.datetime
    | list["FieldValue"] | dict[str, "FieldValue"]
)
FieldTable: TypeAlias = dict[str, FieldValue]

_Encoder = Callable[[object, bytearray, int], None]


def _fixed_encoder(tag: bytes, fmt: str) -> _Encoder:
    st = struct.Struct(">c" + fmt)

    def encode(value: object, out: bytearray, depth: int) -> None:
        try:
            out += st.pack(tag, value)
        except (struct.error, OverflowError) as exc:
            raise ValueError(f"field value {value!r} does not fit tag {tag!r}: {exc}") from None

    return encode


def _encode_int(value: object, out: bytearray, depth: int) -> None:
    assert isinstance(value, int)
    if -(1 << 31) <= value < (1 << 31):
        out += b"I" + value.to_bytes(4, "big", signed=True)
    elif -(1 << 63) <= value < (1 << 63):
        out += b"l" + value.to_bytes(8, "big", signed=True)
    else:
        raise ValueError(f"int field value out of int64 range: {value}")


def _encode_decimal(value: object, out: bytearray, depth: int) -> None:
    assert isinstance(value, Decimal)
    if not value.is_finite():
        raise ValueError(f"decimal field value must be finite: {value}")
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite, so not 'n', 'N' or 'F'
    if exponent > 0:
        scale, unscaled = 0, int(value)
    else:
        scale = -exponent
        unscaled = int("".join(map(str, digits)) or "0") * (-1 if sign else 1)
    if scale > 0xFF or not -(1 << 31) <= unscaled < (1 << 31):
        raise ValueError(f"decimal field value needs scale <= 255 and an int32: {value}")
    out += b"D" + struct.pack(">Bi", scale, unscaled)


def _encode_longstr_value(tag: bytes) -> _Encoder:
    def encode(value: object, out: bytearray, depth: int) -> None:
        octets = value.encode("utf-8") if isinstance(value, str) else value
        assert isinstance(octets, (bytes, bytearray, memoryview))
        if len(octets) > 0xFFFFFFFF:
            raise ValueError("string field value longer than 2**32-1 octets")
        out += tag
        out += _U32.pack(len(octets))
        out += octets

    return encode


def _encode_datetime(value: object, out: bytearray, depth: int) -> None:
    assert isinstance(value, datetime.datetime)
    # Naive datetimes are taken as UTC, the only reading that does not depend on the
    # machine's time zone.
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    seconds = int(value.timestamp() // 1)
    if seconds < 0:
        raise ValueError(f"timestamp field value before 1970: {value}")
    out += b"T" + _U64.pack(seconds)


def _encode_array(value: object, out: bytearray, depth: int) -> None:
    assert isinstance(value, (list, tuple))
    if depth >= MAX_FIELD_NESTING:
        raise ValueError("field array nested too deeply")
    out += b"A"
    start = len(out)
    out += b"\0\0\0\0"
    for item in value:
        _encode_value(item, out, depth + 1)
    _U32.pack_into(out, start, len(out) - start - 4)


def _encode_table_value(value: object, out: bytearray, depth: int) -> None:
    assert isinstance(value, Mapping)
    out += b"F"
    _encode_fields(value, out, depth + 1)


def _encode_void(value: object, out: bytearray, depth: int) -> None:
    out += b"V"


_ENCODERS: Final[dict[type, _Encoder]] = {
    bool: _fixed_encoder(b"t", "?"),
    Int8: _fixed_encoder(b"b", "b"),
    UInt8: _fixed_encoder(b"B", "B"),
    Int16: _fixed_encoder(b"s", "h"),
    UInt16: _fixed_encoder(b"u", "H"),
    UInt32: _fixed_encoder(b"i", "I"),
    Int64: _fixed_encoder(b"l", "q"),
    Timestamp: _fixed_encoder(b"T", "Q"),
    int: _encode_int,
    Float32: _fixed_encoder(b"f", "f"),
    float: _fixed_encoder(b"d", "d"),
    Decimal: _encode_decimal,
    str: _encode_longstr_value(b"S"),
    LongStr: _encode_longstr_value(b"S"),
    bytes: _encode_longstr_value(b"x"),
    bytearray: _encode_longstr_value(b"x"),
    memoryview: _encode_longstr_value(b"x"),
    datetime.datetime: _encode_datetime,
    list: _encode_array,
    tuple: _encode_array,
    dict: _encode_table_value,
    type(None): _encode_void,
}


def _encoder_for(value: object) -> _Encoder:
    # Exact type first (the common case); then the MRO, so subclasses such as
    # IntEnum or OrderedDict encode like their base; then any other Mapping.
    for klass in type(value).__mro__:
        encoder = _ENCODERS.get(klass)
        if encoder is not None:
            return encoder
    if isinstance(value, Mapping):
        return _encode_table_value
    raise TypeError(f"cannot encode {type(value).__name__} as an AMQP field value")


def _encode_value(value: object, out: bytearray, depth: int) -> None:
    _encoder_for(value)(value, out, depth)


def _encode_fields(table: Mapping[str, object], out: bytearray, depth: int) -> None:
    if depth > MAX_FIELD_NESTING:
        raise ValueError("field table nested too deeply")
    start = len(out)
    out += b"\0\0\0\0"
    for key, value in table.items():
        if not isinstance(key, str):
            raise TypeError(f"field table key must be str, not {type(key).__name__}")
        name = key.encode("utf-8")
        if len(name) > 0xFF:
            raise ValueError(f"field name longer than 255 octets: {key[:40]!r}...")
        out.append(len(name))
        out += name
        _encode_value(value, out, depth)
    _U32.pack_into(out, start, len(out) - start - 4)


def encode_table(table: Mapping[str, object] | None) -> bytes:
    """A field table (size prefix included); ``None`` encodes as the empty table."""
    out = bytearray()
    _encode_fields(table or {}, out, 1)
    return bytes(out)


def encode_field_value(value: object) -> bytes:
    """One tagged field value (tag octet + value), as found in tables and arrays."""
    out = bytearray()
    _encode_value(value, out, 1)
    return bytes(out)


def encode_shortstr(value: str | bytes) -> bytes:
    octets = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    if len(octets) > 0xFF:
        raise ValueError(f"shortstr longer than 255 octets: {octets[:40]!r}...")
    return bytes((len(octets),)) + octets


def encode_longstr(value: bytes | str) -> bytes:
    octets = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    if len(octets) > 0xFFFFFFFF:
        raise ValueError("longstr longer than 2**32-1 octets")
    return _U32.pack(len(octets)) + octets


def _utf8(view: memoryview, what: str) -> str:
    try:
        return str(view, "utf-8")
    except UnicodeDecodeError as exc:
        raise FrameError(SYNTAX_ERROR, f"{what} is not valid UTF-8: {exc.reason}") from None


def decode_shortstr(buf: BytesLike, offset: int = 0) -> tuple[str, int]:
    """Decode a shortstr at ``offset``; return it and the offset after it."""
    view = memoryview(buf)
    if offset >= len(view):
        raise _truncated("shortstr length")
    end = offset + 1 + view[offset]
    if end > len(view):
        raise _truncated("shortstr")
    return _utf8(view[offset + 1 : end], "shortstr"), end


def decode_longstr(buf: BytesLike, offset: int = 0) -> tuple[bytes, int]:
    """Decode a longstr at ``offset``; return its octets and the offset after it."""
    view = memoryview(buf)
    if offset + 4 > len(view):
        raise _truncated("longstr length")
    end = offset + 4 + _U32.unpack_from(view, offset)[0]
    if end > len(view):
        raise _truncated("longstr")
    return bytes(view[offset + 4 : end]), end


# tag -> (struct, wrapper applied to the unpacked value or None to keep it as is)
_FIXED_VALUES: Final[dict[int, tuple[struct.Struct, Callable[[Any], FieldValue] | None]]] = {
    ord("t"): (struct.Struct(">B"), bool),
    ord("b"): (struct.Struct(">b"), Int8),
    ord("B"): (struct.Struct(">B"), UInt8),
    ord("s"): (struct.Struct(">h"), Int16),
    ord("u"): (struct.Struct(">H"), UInt16),
    ord("I"): (struct.Struct(">i"), None),
    ord("i"): (struct.Struct(">I"), UInt32),
    ord("l"): (struct.Struct(">q"), Int64),
    ord("f"): (struct.Struct(">f"), Float32),
    ord("d"): (struct.Struct(">d"), None),
    ord("T"): (struct.Struct(">Q"), Timestamp),
}
_DECIMAL = struct.Struct(">Bi")


def _sized(view: memoryview, offset: int, what: str) -> tuple[memoryview, int]:
    """The ``uint32 size + octets`` block at ``offset`` and the offset after it."""
    if offset + 4 > len(view):
        raise _truncated(f"{what} size")
    end = offset + 4 + _U32.unpack_from(view, offset)[0]
    if end > len(view):
        raise _truncated(what)
    return view[offset + 4 : end], end


def _decode_value(view: memoryview, offset: int, depth: int) -> tuple[FieldValue, int]:
    if offset >= len(view):
        raise _truncated("field value type")
    tag = view[offset]
    offset += 1
    fixed = _FIXED_VALUES.get(tag)
    if fixed is not None:
        st, wrap = fixed
        end = offset + st.size
        if end > len(view):
            raise _truncated(f"field value of type {chr(tag)!r}")
        value = cast(FieldValue, st.unpack_from(view, offset)[0])
        return (value if wrap is None else wrap(value)), end
    if tag == 0x53:  # S
        octets, end = _sized(view, offset, "longstr field value")
        try:
            return str(octets, "utf-8"), end
        except UnicodeDecodeError:
            # Binary data in an S value is legal; keep it as bytes, but remember the tag.
            return LongStr(octets), end
    if tag == 0x78:  # x
        octets, end = _sized(view, offset, "byte-array field value")
        return bytes(octets), end
    if tag == 0x46:  # F
        body, end = _sized(view, offset, "nested field table")
        return _decode_fields(body, depth + 1), end
    if tag == 0x41:  # A
        body, end = _sized(view, offset, "field array")
        return _decode_array(body, depth + 1), end
    if tag == 0x44:  # D
        end = offset + _DECIMAL.size
        if end > len(view):
            raise _truncated("decimal field value")
        scale, unscaled = _DECIMAL.unpack_from(view, offset)
        return Decimal(unscaled).scaleb(-scale), end
    if tag == 0x56:  # V
        return None, offset
    raise FrameError(SYNTAX_ERROR, f"unknown field value type {bytes((tag,))!r}")


def _decode_array(view: memoryview, depth: int) -> list[FieldValue]:
    if depth > MAX_FIELD_NESTING:
        raise FrameError(SYNTAX_ERROR, "field array nested too deeply")
    items: list[FieldValue] = []
    offset = 0
    while offset < len(view):
        value, offset = _decode_value(view, offset, depth)
        items.append(value)
    return items


def _decode_fields(view: memoryview, depth: int) -> FieldTable:
    if depth > MAX_FIELD_NESTING:
        raise FrameError(SYNTAX_ERROR, "field table nested too deeply")
    table: FieldTable = {}
    offset = 0
    n = len(view)
    while offset < n:
        start = offset + 1
        end = start + view[offset]
        if end > n:
            raise _truncated("field name")
        name = _utf8(view[start:end], "field name")
        table[name], offset = _decode_value(view, end, depth)
    return table


def decode_table(buf: BytesLike, offset: int = 0) -> tuple[FieldTable, int]:
    """Decode the field table at ``offset``; return it and the offset after it.

    Values never run past the table's own size, even when ``buf`` continues.
    """
    view = memoryview(buf)
    try:
        body, end = _sized(view, offset, "field table")
        return _decode_fields(body, 1), end
    except (struct.error, IndexError) as exc:  # unreachable by design; never leak them
        raise FrameError(FRAME_ERROR, f"malformed field table: {exc}") from None


# --------------------------------------------------------------------------- methods


class _Args:
    """Reads a method's arguments; every error names the method and the argument."""

    __slots__ = ("_class_id", "_method_id", "_name", "_pos", "_view")

    def __init__(self, view: memoryview, name: str, class_id: int, method_id: int) -> None:
        self._view = view
        self._pos = 4
        self._name = name
        self._class_id = class_id
        self._method_id = method_id

    def error(self, code: int, text: str) -> FrameError:
        return FrameError(
            code, f"{self._name}: {text}", class_id=self._class_id, method_id=self._method_id
        )

    def _take(self, n: int, what: str) -> int:
        start = self._pos
        if start + n > len(self._view):
            raise self.error(FRAME_ERROR, f"truncated {what}")
        self._pos = start + n
        return start

    def octet(self, what: str) -> int:
        return self._view[self._take(1, what)]

    def short(self, what: str) -> int:
        return int(_U16.unpack_from(self._view, self._take(2, what))[0])

    def long(self, what: str) -> int:
        return int(_U32.unpack_from(self._view, self._take(4, what))[0])

    def shortstr(self, what: str) -> str:
        n = self.octet(f"{what} length")
        start = self._take(n, what)
        try:
            return str(self._view[start : start + n], "utf-8")
        except UnicodeDecodeError:
            raise self.error(SYNTAX_ERROR, f"{what} is not valid UTF-8") from None

    def longstr(self, what: str) -> bytes:
        n = self.long(f"{what} length")
        start = self._take(n, what)
        return bytes(self._view[start : start + n])

    def table(self, what: str) -> FieldTable:
        try:
            table, self._pos = decode_table(self._view, self._pos)
        except FrameError as exc:
            raise self.error(exc.reply_code, f"{what}: {exc.reply_text}") from None
        return table

    def end(self) -> None:
        extra = len(self._view) - self._pos
        if extra:
            raise self.error(FRAME_ERROR, f"{extra} unexpected octets after the arguments")


def _pack(fmt: struct.Struct, *values: int) -> bytes:
    try:
        return fmt.pack(*values)
    except struct.error as exc:
        raise ValueError(f"method argument out of range: {exc}") from None


@dataclass(frozen=True, slots=True)
class ConnectionStart:
    """Server -> client: protocol version, server properties, offered SASL mechanisms."""

    CLASS_ID: ClassVar[int] = CONNECTION_CLASS_ID
    METHOD_ID: ClassVar[int] = 10
    NAME: ClassVar[str] = "connection.start"

    version_major: int = 0
    version_minor: int = 9
    server_properties: FieldTable = field(default_factory=dict)
    mechanisms: bytes = b"PLAIN"  # longstr: space-separated names
    locales: bytes = b"en_US"  # longstr: space-separated names

    def encode(self) -> bytes:
        return b"".join((
            _pack(_HEAD_OCTETS, self.CLASS_ID, self.METHOD_ID,
                  self.version_major, self.version_minor),
            encode_table(self.server_properties),
            encode_longstr(self.mechanisms),
            encode_longstr(self.locales),
        ))

    @classmethod
    def _decode(cls, a: _Args) -> ConnectionStart:
        return cls(
            a.octet("version-major"),
            a.octet("version-minor"),
            a.table("server-properties"),
            a.longstr("mechanisms"),
            a.longstr("locales"),
        )


@dataclass(frozen=True, slots=True)
class ConnectionStartOk:
    """Client -> server: client properties, chosen mechanism and its first response."""

    CLASS_ID: ClassVar[int] = CONNECTION_CLASS_ID
    METHOD_ID: ClassVar[int] = 11
    NAME: ClassVar[str] = "connection.start-ok"

    client_properties: FieldTable = field(default_factory=dict)
    mechanism: str = "PLAIN"
    response: bytes = b""  # credentials: never log this
    locale: str = "en_US"

    def __repr__(self) -> str:
        # Keep the SASL response (PLAIN: "\0user\0password") out of logs and tracebacks.
        return (
            f"ConnectionStartOk(client_properties={self.client_properties!r}, "
            f"mechanism={self.mechanism!r}, response=<{len(self.response)} octets>, "
            f"locale={self.locale!r})"
        )

    def encode(self) -> bytes:
        return b"".join((
            _IDS.pack(self.CLASS_ID, self.METHOD_ID),
            encode_table(self.client_properties),
            encode_shortstr(self.mechanism),
            encode_longstr(self.response),
            encode_shortstr(self.locale),
        ))

    @classmethod
    def _decode(cls, a: _Args) -> ConnectionStartOk:
        return cls(
            a.table("client-properties"),
            a.shortstr("mechanism"),
            a.longstr("response"),
            a.shortstr("locale"),
        )


@dataclass(frozen=True, slots=True)
class ConnectionSecure:
    """Server -> client: a SASL challenge."""

    CLASS_ID: ClassVar[int] = CONNECTION_CLASS_ID
    METHOD_ID: ClassVar[int] = 20
    NAME: ClassVar[str] = "connection.secure"

    challenge: bytes = b""

    def encode(self) -> bytes:
        return _IDS.pack(self.CLASS_ID, self.METHOD_ID) + encode_longstr(self.challenge)

    @classmethod
    def _decode(cls, a: _Args) -> ConnectionSecure:
        return cls(a.longstr("challenge"))


@dataclass(frozen=True, slots=True)
class ConnectionSecureOk:
    """Client -> server: a SASL response."""

    CLASS_ID: ClassVar[int] = CONNECTION_CLASS_ID
    METHOD_ID: ClassVar[int] = 21
    NAME: ClassVar[str] = "connection.secure-ok"

    response: bytes = b""  # credentials: never log this

    def __repr__(self) -> str:
        return f"ConnectionSecureOk(response=<{len(self.response)} octets>)"

    def encode(self) -> bytes:
        return _IDS.pack(self.CLASS_ID, self.METHOD_ID) + encode_longstr(self.response)

    @classmethod
    def _decode(cls, a: _Args) -> ConnectionSecureOk:
        return cls(a.longstr("response"))


@dataclass(frozen=True, slots=True)
class ConnectionTune:
    """Server -> client: proposed channel-max, frame-max and heartbeat (0 = no limit)."""

    CLASS_ID: ClassVar[int] = CONNECTION_CLASS_ID
    METHOD_ID: ClassVar[int] = 30
    NAME: ClassVar[str] = "connection.tune"

    channel_max: int = 0
    frame_max: int = 0
    heartbeat: int = 0

    def encode(self) -> bytes:
        return _pack(
            _TUNE, self.CLASS_ID, self.METHOD_ID, self.channel_max, self.frame_max, self.heartbeat
        )

    @classmethod
    def _decode(cls, a: _Args) -> ConnectionTune:
        return cls(a.short("channel-max"), a.long("frame-max"), a.short("heartbeat"))


@dataclass(frozen=True, slots=True)
class ConnectionTuneOk:
    """Client -> server: the channel-max, frame-max and heartbeat the client will use."""

    CLASS_ID: ClassVar[int] = CONNECTION_CLASS_ID
    METHOD_ID: ClassVar[int] = 31
    NAME: ClassVar[str] = "connection.tune-ok"

    channel_max: int = 0
    frame_max: int = 0
    heartbeat: int = 0

    def encode(self) -> bytes:
        return _pack(
            _TUNE, self.CLASS_ID, self.METHOD_ID, self.channel_max, self.frame_max, self.heartbeat
        )

    @classmethod
    def _decode(cls, a: _Args) -> ConnectionTuneOk:
        return cls(a.short("channel-max"), a.long("frame-max"), a.short("heartbeat"))


@dataclass(frozen=True, slots=True)
class ConnectionOpen:
    """Client -> server: open a virtual host.

    ``reserved1`` was "capabilities" (shortstr) and ``reserved2`` "insist" (bit) in 0-8;
    0-9-1 requires them empty/false but they are kept so re-encoding is faithful.
    """

    CLASS_ID: ClassVar[int] = CONNECTION_CLASS_ID
    METHOD_ID: ClassVar[int] = 40
    NAME: ClassVar[str] = "connection.open"

    virtual_host: str = "/"
    reserved1: str = ""
    reserved2: bool = False

    def encode(self) -> bytes:
        return b"".join((
            _IDS.pack(self.CLASS_ID, self.METHOD_ID),
            encode_shortstr(self.virtual_host),
            encode_shortstr(self.reserved1),
            b"\x01" if self.reserved2 else b"\x00",
        ))

    @classmethod
    def _decode(cls, a: _Args) -> ConnectionOpen:
        return cls(
            a.shortstr("virtual-host"),
            a.shortstr("reserved-1"),
            bool(a.octet("reserved-2") & 1),  # the only bit in its octet
        )


@dataclass(frozen=True, slots=True)
class ConnectionOpenOk:
    """Server -> client: the virtual host is open (``reserved`` was "known-hosts")."""

    CLASS_ID: ClassVar[int] = CONNECTION_CLASS_ID
    METHOD_ID: ClassVar[int] = 41
    NAME: ClassVar[str] = "connection.open-ok"

    reserved: str = ""

    def encode(self) -> bytes:
        return _IDS.pack(self.CLASS_ID, self.METHOD_ID) + encode_shortstr(self.reserved)

    @classmethod
    def _decode(cls, a: _Args) -> ConnectionOpenOk:
        return cls(a.shortstr("reserved-1"))


@dataclass(frozen=True, slots=True)
class ConnectionClose:
    """Either side: close the connection, reporting why and which method failed."""

    CLASS_ID: ClassVar[int] = CONNECTION_CLASS_ID
    METHOD_ID: ClassVar[int] = 50
    NAME: ClassVar[str] = "connection.close"

    reply_code: int = REPLY_SUCCESS
    reply_text: str = ""
    class_id: int = 0  # the failing method's class, 0 if none
    method_id: int = 0

    def encode(self) -> bytes:
        return b"".join((
            _pack(_CLOSE_HEAD, self.CLASS_ID, self.METHOD_ID, self.reply_code),
            encode_shortstr(self.reply_text),
            _pack(_IDS, self.class_id, self.method_id),
        ))

    @classmethod
    def _decode(cls, a: _Args) -> ConnectionClose:
        return cls(
            a.short("reply-code"), a.shortstr("reply-text"), a.short("class-id"),
            a.short("method-id"),
        )


@dataclass(frozen=True, slots=True)
class ConnectionCloseOk:
    """Either side: answer to Connection.Close; the socket may then be closed."""

    CLASS_ID: ClassVar[int] = CONNECTION_CLASS_ID
    METHOD_ID: ClassVar[int] = 51
    NAME: ClassVar[str] = "connection.close-ok"

    def encode(self) -> bytes:
        return _IDS.pack(self.CLASS_ID, self.METHOD_ID)

    @classmethod
    def _decode(cls, a: _Args) -> ConnectionCloseOk:
        return cls()


# RabbitMQ extensions of the connection class (advertised through capabilities): they
# are decoded too so the proxy can recognise every channel-0 method it might see.


@dataclass(frozen=True, slots=True)
class ConnectionBlocked:
    """Server -> client (RabbitMQ): publishing is blocked by a resource alarm."""

    CLASS_ID: ClassVar[int] = CONNECTION_CLASS_ID
    METHOD_ID: ClassVar[int] = 60
    NAME: ClassVar[str] = "connection.blocked"

    reason: str = ""

    def encode(self) -> bytes:
        return _IDS.pack(self.CLASS_ID, self.METHOD_ID) + encode_shortstr(self.reason)

    @classmethod
    def _decode(cls, a: _Args) -> ConnectionBlocked:
        return cls(a.shortstr("reason"))


@dataclass(frozen=True, slots=True)
class ConnectionUnblocked:
    """Server -> client (RabbitMQ): the alarm is over."""

    CLASS_ID: ClassVar[int] = CONNECTION_CLASS_ID
    METHOD_ID: ClassVar[int] = 61
    NAME: ClassVar[str] = "connection.unblocked"

    def encode(self) -> bytes:
        return _IDS.pack(self.CLASS_ID, self.METHOD_ID)

    @classmethod
    def _decode(cls, a: _Args) -> ConnectionUnblocked:
        return cls()


@dataclass(frozen=True, slots=True)
class ConnectionUpdateSecret:
    """Client -> server (RabbitMQ): replace the credentials (e.g. a refreshed token)."""

    CLASS_ID: ClassVar[int] = CONNECTION_CLASS_ID
    METHOD_ID: ClassVar[int] = 70
    NAME: ClassVar[str] = "connection.update-secret"

    new_secret: bytes = b""  # credentials: never log this
    reason: str = ""

    def __repr__(self) -> str:
        return (
            f"ConnectionUpdateSecret(new_secret=<{len(self.new_secret)} octets>, "
            f"reason={self.reason!r})"
        )

    def encode(self) -> bytes:
        return b"".join((
            _IDS.pack(self.CLASS_ID, self.METHOD_ID),
            encode_longstr(self.new_secret),
            encode_shortstr(self.reason),
        ))

    @classmethod
    def _decode(cls, a: _Args) -> ConnectionUpdateSecret:
        return cls(a.longstr("new-secret"), a.shortstr("reason"))


@dataclass(frozen=True, slots=True)
class ConnectionUpdateSecretOk:
    """Server -> client (RabbitMQ): the new secret is accepted."""

    CLASS_ID: ClassVar[int] = CONNECTION_CLASS_ID
    METHOD_ID: ClassVar[int] = 71
    NAME: ClassVar[str] = "connection.update-secret-ok"

    def encode(self) -> bytes:
        return _IDS.pack(self.CLASS_ID, self.METHOD_ID)

    @classmethod
    def _decode(cls, a: _Args) -> ConnectionUpdateSecretOk:
        return cls()


@dataclass(frozen=True, slots=True)
class Method:
    """Any method this codec does not model: ids plus the undecoded argument octets."""

    class_id: int
    method_id: int
    args: bytes = b""

    def encode(self) -> bytes:
        return _pack(_IDS, self.class_id, self.method_id) + self.args


ConnectionMethod: TypeAlias = (
    ConnectionStart | ConnectionStartOk | ConnectionSecure | ConnectionSecureOk
    | ConnectionTune | ConnectionTuneOk | ConnectionOpen | ConnectionOpenOk
    | ConnectionClose | ConnectionCloseOk | ConnectionBlocked | ConnectionUnblocked
    | ConnectionUpdateSecret | ConnectionUpdateSecretOk
)
AnyMethod: TypeAlias = ConnectionMethod | Method

_CONNECTION_METHOD_CLASSES: Final = (
    ConnectionStart, ConnectionStartOk, ConnectionSecure, ConnectionSecureOk,
    ConnectionTune, ConnectionTuneOk, ConnectionOpen, ConnectionOpenOk,
    ConnectionClose, ConnectionCloseOk, ConnectionBlocked, ConnectionUnblocked,
    ConnectionUpdateSecret, ConnectionUpdateSecretOk,
)
_CONNECTION_METHODS: Final[dict[int, Callable[[_Args], ConnectionMethod]]] = {
    cls.METHOD_ID: cls._decode for cls in _CONNECTION_METHOD_CLASSES
}
_METHOD_NAMES: Final[dict[int, str]] = {
    cls.METHOD_ID: cls.NAME for cls in _CONNECTION_METHOD_CLASSES
}


def decode_method(payload: BytesLike) -> AnyMethod:
    """Decode a method frame's payload.

    Connection-class methods become ``Connection*`` instances (strictly: truncation or
    trailing octets raise :class:`FrameError`); anything else becomes a :class:`Method`
    holding a copy of the argument octets, which are not checked.
    """
    view = memoryview(payload)
    if len(view) < 4:
        raise FrameError(FRAME_ERROR, f"method frame payload of {len(view)} octets is too short")
    class_id, method_id = _IDS.unpack_from(view, 0)
    decoder = _CONNECTION_METHODS.get(method_id) if class_id == CONNECTION_CLASS_ID else None
    if decoder is None:
        return Method(class_id, method_id, bytes(view[4:]))
    args = _Args(view, _METHOD_NAMES[method_id], class_id, method_id)
    try:
        method = decoder(args)
    except (struct.error, IndexError) as exc:  # unreachable by design; never leak them
        raise args.error(FRAME_ERROR, f"malformed arguments: {exc}") from None
    args.end()
    return method


def method_frame(channel: int, method: AnyMethod) -> bytes:
    """A complete method frame carrying ``method`` on ``channel``."""
    return encode_frame(FRAME_METHOD, channel, method.encode())


def negotiate_frame_max(tune: ConnectionTune, tune_ok: ConnectionTuneOk) -> int:
    """The frame-max to set on both directions' :class:`FrameReader` after Tune-Ok.

    Raises :class:`FrameError` (530 not-allowed, as RabbitMQ does) when the client
    picked a value below frame-min-size or above the server's proposal.  When one side
    says 0 ("no limit") the other side's limit still holds, so the result is the smaller
    non-zero value, or 0 if both are 0.
    """
    proposed, chosen = tune.frame_max, tune_ok.frame_max
    if chosen and chosen < FRAME_MIN_SIZE:
        problem = f"frame_max={chosen} < {FRAME_MIN_SIZE} min size"
    elif proposed and chosen > proposed:
        problem = f"frame_max={chosen} > {proposed} max size"
    else:
        problem = ""
    if problem:
        raise FrameError(
            NOT_ALLOWED, problem, class_id=tune_ok.CLASS_ID, method_id=tune_ok.METHOD_ID
        )
    if not proposed or not chosen:
        return proposed or chosen
    return min(proposed, chosen)
