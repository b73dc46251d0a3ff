"""AMQP 0-9-1 framing: constants, reply codes, errors, the protocol header, Frame and
FrameReader (the hot path). See the package docstring for the wire format."""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, TypeAlias

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
    frame-end); for the others a Connection.Close (``methods.close_for``) may be sent first.
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


def truncated(what: str) -> FrameError:
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


