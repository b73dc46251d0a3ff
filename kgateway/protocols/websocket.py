r"""Sans-IO RFC 6455 WebSocket data-phase codec: the fast path for relay connections.

(About 700 lines on purpose: the frame parser's hot loop, the UTF-8 and close-code rules
and the encoder are one wire format, kept and tested together like wsproto's.)

Autobahn does the opening handshake (HTTP Upgrade, subprotocols, origin checks); once a
relay connection is open, its adapter can hand every further byte to a
:class:`WebSocketCodec` instead of Autobahn's per-frame machinery::

    browser                 kgateway relay connection                        back end
       |  WS frames (masked)  |                                      |
       |--------------------->| codec.receive_data(bytes)            |
       |                      |   -> [Message | Chunk | Ping | Pong | Close]  --> TCP / WS
       |<---------------------| codec.send_data(payload)             |
       |  WS frames           |   -> [header, payload]  (writeSequence, no copy)

Nothing here touches a transport, a clock or Twisted: bytes go in, events come out, and
``send_*`` return the bytes to write.  Why by hand and not wsproto (the well-kept sans-IO
WebSocket library): wsproto, like Autobahn, costs several Python objects and a re-slice of
its buffer per frame, and its masker is a per-frame pure-Python object; a relay needs the
per-frame work cut to a handful of C calls, which is the whole point of this module.

Wire format (RFC 6455 section 5.2)::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-------+-+-------------+-------------------------------+
    |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
    |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
    |N|V|V|V|       |S|             |   (if payload len==126/127)   |
    | |1|2|3|       |K|             |                               |
    +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
    |     Extended payload length continued, if payload len == 127  |
    + - - - - - - - - - - - - - - - +-------------------------------+
    |                               | Masking-key, if MASK set to 1 |
    +-------------------------------+-------------------------------+
    | Masking-key (continued)       |          Payload Data         |
    +-------------------------------- - - - - - - - - - - - - - - - +

    opcode: 0 continuation, 1 text, 2 binary, 8 close, 9 ping, 10 pong; others reserved.
    Lengths use the fewest bytes (7 bits, else 16, else 64 with the top bit clear).
    Payload octet i is XORed with masking-key octet i % 4.

What the codec enforces, each failure a :class:`ProtocolError` carrying the close code to
send (1002 protocol error, 1007 invalid payload, 1009 too big) and a reason:

- masking by role: a server must receive masked frames, a client unmasked ones (1002);
- RSV1-3 clear (no extension is negotiated on this path), known opcodes only (1002);
- fragmentation: a continuation needs a started message, a new text/binary frame must not
  start while one is open; control frames may come between fragments (1002);
- control frames: fin set, payload at most 125 octets; a close payload of length 1 (1002);
- close codes: 1000-1003, 1007-1014 and 3000-4999, per RFC 6455 7.4 and the IANA
  registry (1002); the close reason must be UTF-8 (1007);
- text is UTF-8, validated incrementally as octets arrive, across fragments and within a
  frame that spans reads, so an invalid sequence fails at once (1007);
- ``max_message_size``: a frame header that would take a message past it fails before its
  payload is buffered (1009);
- minimal length encoding and a 64-bit length with its top bit clear (1002), as Autobahn.

Events: :class:`Message` (a complete message, fragments joined) or, in ``stream`` mode,
:class:`Chunk` (payload octets as soon as they are unmasked, with a flag on the last chunk
of each message: a relay to a TCP back end needs no message boundaries); :class:`Ping`,
:class:`Pong`, :class:`Close`.  The codec never answers by itself: the adapter sends the
pong and the closing handshake (:meth:`WebSocketCodec.send_pong`, :meth:`~WebSocketCodec.send_close`).
After a Close arrives, further octets are ignored (RFC 6455 5.5.1).

Wiring it behind Autobahn's handshake (``bench/conformance/codec_echo.py`` does, and passes
the Autobahn|Testsuite cases Autobahn passes): in ``onOpen`` take ``self.data`` (octets that
came with the handshake) and give them to the codec; send every later read to it.  On a
:class:`ProtocolError`, act on ``error.events``, write ``send_close(error.code,
error.reason)``, then half-close and wait for the peer to close: closing a socket with
unread data makes Linux send RST, and the peer never reads our Close.

Performance, and what was measured (``.venv/bin/python -m bench.ws_codec`` has the whole
parse; the per-call numbers below are best-of-5 ``timeit`` on this project's shared 2-core
machine, CPython 3.11, Autobahn 26.10 with NVX, so take them to +-20%):

- Parsing walks an offset through the buffer: every complete frame in a read is parsed in
  one call and only the incomplete tail is kept (``del buf[:pos]``, O(1) at the front of a
  bytearray).  A binary frame spanning reads waits in the buffer (appending is amortised
  O(1)) and is unmasked and copied out once, when complete; a text frame, or any frame in
  stream mode, is consumed as it arrives (text must be validated as it comes), its pieces
  joined once at the end.  So a large payload costs linear time, never quadratic.  Copies
  per masked payload octet: into the receive buffer, out of it as ``bytes`` after
  unmasking in place, and a join for a text frame or a message of several frames that
  spans reads (message mode only).
- Unmasking.  Autobahn's NVX (``autobahn.websocket.USES_NVX``) ships a C/SSE2 XOR masker,
  but its Python wrapper (``create_xor_masker(mask, n).process(p)``) builds a class
  instance with an ``ffi.gc`` finaliser per frame and copies the payload twice.  A C masker
  cannot be re-keyed through its API (``nvx_xormask_new`` takes the key), so this codec
  calls the C functions directly, ``nvx_xormask_new`` / ``process`` / ``free`` per frame (no
  Python object, no finaliser), in place in the receive buffer, through one
  ``ffi.from_buffer`` pointer per read.  The literal "one masker per connection", re-keyed
  by writing the key into its private struct (``ffi.memmove``) and ``nvx_xormask_reset``,
  measured no faster (0.83 vs 0.74 us at 256 B, interleaved runs), so the struct is left
  alone.  Per payload, unmasking and returning ``bytes``:

  ==================================  ========  ========  =========
  method                              256 B     4 KiB     64 KiB
  ==================================  ========  ========  =========
  NVX wrapper (what Autobahn does)    4.1 us    3.9 us    7.5 us
  NVX C calls on a bytearray          1.1 us    1.1 us    5.2 us
  ``int.from_bytes`` XOR              0.9 us    10 us     135 us
  ``bytes.translate``, stride 4       2.6 us    7.8 us    98 us
  ==================================  ========  ========  =========

  (the pure XOR is ``(int.from_bytes(p, "little") ^ int.from_bytes(key * n, "little"))
  .to_bytes(...)``).  So: the NVX C calls from 64 octets up; below that, where three C
  calls cost more than the XOR (0.64 vs 0.82 us at 16 B), and wherever NVX is missing or
  ``AUTOBAHN_USE_NVX=0``, the pure XOR (~400 MB/s on large payloads).
- UTF-8: Autobahn's NVX validator runs ~430 MB/s; CPython's incremental UTF-8 decoder runs
  1.2-1.7 GB/s on mixed text and ~20 GB/s on ASCII, with ``bytes.isascii`` (28 GB/s) as a
  shortcut, so the decoder is used.  It fails at the first invalid octet except for one
  case, a surrogate prefix (``ED A0``-``ED BF``) that it holds back until the third octet;
  the codec checks the held-back octets so that fails at once too.
- Events are non-frozen slotted dataclasses: a frozen one costs twice as much to build,
  and one is built per message.
"""

from __future__ import annotations

import codecs
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Any, Final, TypeAlias

__all__ = [
    "CLOSE_NO_STATUS",
    "HAS_NVX",
    "USES_NVX",
    "Chunk",
    "Close",
    "Event",
    "LocalProtocolError",
    "Message",
    "Opcode",
    "Ping",
    "Pong",
    "ProtocolError",
    "Role",
    "State",
    "WebSocketCodec",
    "close_payload",
    "encode_frame",
    "frame_header",
    "is_valid_close_code",
    "mask_payload",
]

_ffi: Any = None
_lib: Any = None
try:  # Autobahn's native XOR masker, the CFFI module that autobahn.websocket itself probes.
    from _nvx_xormasker import ffi as _ffi  # type: ignore[no-redef]
    from _nvx_xormasker import lib as _lib  # type: ignore[no-redef]
    from autobahn.websocket import USES_NVX as _AUTOBAHN_USES_NVX
except ImportError:  # pragma: no cover - an Autobahn built without NVX
    _AUTOBAHN_USES_NVX = False

#: True when Autobahn's native (C) XOR masker is importable here.
HAS_NVX: Final[bool] = _lib is not None
#: True when the codec unmasks with it by default (Autobahn's ``USES_NVX``: it has NVX and
#: ``AUTOBAHN_USE_NVX`` does not turn it off).
USES_NVX: Final[bool] = HAS_NVX and bool(_AUTOBAHN_USES_NVX)

#: The code a Close event carries when the frame had no payload (RFC 6455 7.1.5).
CLOSE_NO_STATUS: Final = 1005

MAX_CONTROL_PAYLOAD: Final = 125

# Below this many octets the big-integer XOR beats the three C calls of the native masker.
_NATIVE_MIN: Final = 64


class Opcode(IntEnum):
    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


class Role(Enum):
    """Which end this codec is: it decides who masks."""

    SERVER = "server"  # receives masked frames, sends unmasked ones
    CLIENT = "client"  # sends masked frames, receives unmasked ones


class State(Enum):
    """The connection's closing handshake, as far as the codec has seen it."""

    OPEN = "open"
    LOCAL_CLOSING = "local closing"  # we sent Close, the peer's has not arrived
    REMOTE_CLOSING = "remote closing"  # the peer's Close arrived, we have not sent ours
    CLOSED = "closed"  # both sent
    FAILED = "failed"  # the peer broke the protocol: send Close(ProtocolError.code), drop


class ProtocolError(Exception):
    """The peer broke RFC 6455: close with ``code`` (1002, 1007 or 1009) and ``reason``.

    ``events`` are the events parsed from the same :meth:`WebSocketCodec.receive_data` call
    before the fault, in order: deliver them, then fail the connection.  The codec is
    unusable afterwards (its state is :attr:`State.FAILED`).
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.events: list[Event] = []


class LocalProtocolError(Exception):
    """We asked the codec for something RFC 6455 forbids (data after Close, a bad close code)."""


# Events.  Not frozen: a frozen dataclass costs twice as much to construct, and one is
# built per message on the hot path.


@dataclass(slots=True)
class Message:
    """A complete message: every fragment's payload, joined."""

    data: bytes
    binary: bool


@dataclass(slots=True)
class Chunk:
    """Stream mode: message payload octets as they arrived; ``last`` ends the message.

    Chunks carry no frame boundaries; a text chunk may end inside a UTF-8 sequence (the
    message as a whole is still validated).  An empty chunk only ever comes with ``last``.
    """

    data: bytes
    binary: bool
    last: bool


@dataclass(slots=True)
class Ping:
    payload: bytes


@dataclass(slots=True)
class Pong:
    payload: bytes


@dataclass(slots=True)
class Close:
    """The peer's Close; ``code`` is 1005 (:data:`CLOSE_NO_STATUS`) when it had no payload."""

    code: int
    reason: str


Event: TypeAlias = Message | Chunk | Ping | Pong | Close


def is_valid_close_code(code: int) -> bool:
    """Whether ``code`` may appear in a Close frame (RFC 6455 7.4.1 and the IANA registry).

    1004 is reserved, 1005/1006/1015 must never be sent, 1016-2999 are unassigned or for
    extensions, 3000-3999 are registered for libraries and 4000-4999 are private.
    """
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


_H16: Final = struct.Struct("!BBH")
_H64: Final = struct.Struct("!BBQ")
_U16: Final = struct.Struct("!H")
_U64: Final = struct.Struct("!Q")


def frame_header(opcode: int, length: int, fin: bool = True, mask: bytes | None = None) -> bytes:
    """The header of one frame: FIN/opcode, the minimal length encoding, the masking key."""
    b0 = (0x80 | opcode) if fin else opcode
    bit = 0x80 if mask else 0
    if length < 126:
        header = bytes((b0, bit | length))
    elif length < 0x10000:
        header = _H16.pack(b0, bit | 126, length)
    elif length < 0x8000000000000000:
        header = _H64.pack(b0, bit | 127, length)
    else:
        raise LocalProtocolError(f"payload of {length} octets is longer than a frame can hold")
    return header + mask if mask else header


def _xor_pure(payload: bytes | bytearray | memoryview, key: bytes) -> bytes:
    """XOR with a 4-octet key over the whole payload at once, as one big integer."""
    n = len(payload)
    keystream = int.from_bytes((key * ((n >> 2) + 1))[:n], "little")
    return (int.from_bytes(payload, "little") ^ keystream).to_bytes(n, "little")


def mask_payload(payload: bytes, key: bytes, *, native: bool | None = None) -> bytes:
    """``payload`` masked (or unmasked: XOR is its own inverse) with the 4-octet ``key``."""
    if not payload:
        return b""
    if (USES_NVX if native is None else native) and len(payload) >= _NATIVE_MIN:
        buf = bytearray(payload)
        masker = _lib.nvx_xormask_new(key)
        _lib.nvx_xormask_process(masker, _ffi.from_buffer("uint8_t[]", buf), len(buf))
        _lib.nvx_xormask_free(masker)
        return bytes(buf)
    return _xor_pure(payload, key)


def encode_frame(opcode: int, payload: bytes, fin: bool = True,
                 mask: bytes | None = None) -> list[bytes]:
    """``[header, payload]`` for ``writeSequence``; the payload is not copied unless masked."""
    header = frame_header(opcode, len(payload), fin, mask)
    return [header, mask_payload(payload, mask) if mask else payload]


def close_payload(code: int | None = 1000, reason: str = "") -> bytes:
    """A Close frame's payload: nothing when ``code`` is None, else code + UTF-8 reason."""
    if code is None:
        if reason:
            raise LocalProtocolError("a close reason needs a close code")
        return b""
    if not is_valid_close_code(code):
        raise LocalProtocolError(f"close code {code} may not be sent")
    payload = _U16.pack(code) + reason.encode("utf-8")
    if len(payload) > MAX_CONTROL_PAYLOAD:
        raise LocalProtocolError("close reason longer than 123 octets")
    return payload


def _random_key() -> bytes:
    return os.urandom(4)


_UTF8Decoder = codecs.getincrementaldecoder("utf-8")


class WebSocketCodec:
    """One WebSocket connection's data phase, from either end.

    ``receive_data(octets)`` returns the events of every frame completed by them (raising
    :class:`ProtocolError` on a violation); ``send_*`` return what to write.  ``stream``
    delivers message payloads as :class:`Chunk` events as soon as they arrive instead of
    whole :class:`Message` events.  ``max_message_size`` (octets, None for no limit) bounds a
    message.  ``native`` forces or forbids Autobahn's C masker (default: :data:`USES_NVX`).
    ``mask_key`` makes the client's masking keys (default ``os.urandom(4)``; tests pass a
    fixed one).

    One lives as long as each fast-path connection, so it is slotted, and what only some
    messages need is made when they come: the buffer of a message in several frames
    (``_parts``) and the UTF-8 decoder (text that is not ASCII).
    """

    __slots__ = ("role", "stream", "max_message_size", "state", "_native", "_mask_key",
                 "_expect_masked", "_limit", "_buf", "_error", "_in_message", "_binary",
                 "_message_size", "_parts", "_decoder", "_utf8_pending", "_remaining",
                 "_frame_fin", "_frame_key", "_frame_offset", "_sending_fragments",
                 "_close_sent")

    def __init__(self, role: Role, *, stream: bool = False, max_message_size: int | None = None,
                 native: bool | None = None,
                 mask_key: Callable[[], bytes] = _random_key) -> None:
        self.role = role
        self.stream = stream
        self.max_message_size = max_message_size
        self.state = State.OPEN
        if native and not HAS_NVX:
            raise ValueError("Autobahn's native XOR masker is not installed")
        self._native = USES_NVX if native is None else native
        self._mask_key = mask_key
        self._expect_masked = role is Role.SERVER
        self._limit = max_message_size if max_message_size is not None else -1
        self._buf = bytearray()
        self._error: ProtocolError | None = None
        # The message being received (between its first frame and its last).
        self._in_message = False
        self._binary = False
        self._message_size = 0
        # One growing buffer, not a list of fragments: a message of a million one-octet
        # fragments would otherwise hold a million objects (~44 octets each) under a
        # limit that counts one octet each. Made by the first fragment that needs it.
        self._parts: bytearray | None = None
        # made by the first text that is not ASCII, then kept
        self._decoder: codecs.IncrementalDecoder | None = None
        self._utf8_pending = False
        # A data frame whose header arrived but not all its payload.
        self._remaining = 0
        self._frame_fin = False
        self._frame_key: bytes | None = None
        self._frame_offset = 0
        # The message being sent in fragments, if any.
        self._sending_fragments = False
        self._close_sent = False

    @property
    def buffered(self) -> int:
        """Octets held for later: a partial frame header or control frame, a binary frame
        waiting for its end, and the pieces of a message not yet complete (message mode)."""
        parts = self._parts
        return len(self._buf) + (len(parts) if parts is not None else 0)

    # -- receiving ------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Parse ``data``; return the events of every frame it completes, in order."""
        if self._error is not None:
            raise self._error
        if self.state is State.REMOTE_CLOSING or self.state is State.CLOSED:
            return []
        buf = self._buf
        buf += data
        events: list[Event] = []
        try:
            pos = self._parse(buf, events)
        except ProtocolError as error:
            error.events = events
            self._error = error
            self.state = State.FAILED
            self._buf = bytearray()
            self._parts = None
            raise
        if pos:
            del buf[:pos]
        return events

    def _parse(self, buf: bytearray, events: list[Event]) -> int:
        """Walk every complete frame in ``buf``; return the offset of the unparsed tail.

        Hot path: for a read full of small frames this loop runs once per frame, so what
        does not change during a read lives in locals and the common frame (a whole binary
        message) is handled inline.
        """
        end = len(buf)
        if not end:
            return 0
        expect_masked = self._expect_masked
        native = self._native and expect_masked
        limit = self._limit
        whole_messages = not self.stream
        append = events.append
        view = memoryview(buf)
        ptr: Any = _ffi.from_buffer("uint8_t[]", buf) if native else None
        if native:
            new, process, free = _lib.nvx_xormask_new, _lib.nvx_xormask_process, _lib.nvx_xormask_free
        else:
            new = process = free = None
        pos = 0
        try:
            while True:
                if self._remaining:
                    # The rest of a data frame that began in an earlier read.
                    n = end - pos
                    if n < self._remaining and whole_messages and self._binary:
                        # Nobody needs these octets before the frame ends (text does: it is
                        # validated as it comes), so leave them in the buffer and unmask and
                        # copy the frame once, when it is complete.
                        break
                    if not n:
                        break
                    if n > self._remaining:
                        n = self._remaining
                    key = self._frame_key
                    if key is not None:
                        shift = self._frame_offset & 3
                        if shift:
                            key = key[shift:] + key[:shift]
                    payload = self._unmask(view, ptr, pos, pos + n, key)
                    pos += n
                    self._frame_offset += n
                    self._remaining -= n
                    if self._remaining:
                        self._data(payload, False, events)
                        break
                    self._data(payload, self._frame_fin, events)
                    continue

                if end - pos < 2:
                    break
                b0 = buf[pos]
                b1 = buf[pos + 1]
                opcode = b0 & 0x0F
                # Checks that need only the first two octets come first: fail fast.
                if b0 & 0x70:
                    raise ProtocolError(1002, "reserved bits set but no extension negotiated")
                masked = b1 & 0x80 != 0
                if masked is not expect_masked:
                    raise ProtocolError(1002, "masked frame sent to a client"
                                        if masked else "unmasked frame sent to a server")
                length = b1 & 0x7F
                if opcode >= 8:
                    if opcode > 10:
                        raise ProtocolError(1002, f"reserved control opcode {opcode}")
                    if not b0 & 0x80:
                        raise ProtocolError(1002, "fragmented control frame")
                    if length > MAX_CONTROL_PAYLOAD:
                        raise ProtocolError(1002, "control frame payload longer than 125 octets")
                    if opcode == 8 and length == 1:
                        raise ProtocolError(1002, "close frame payload of one octet")
                elif opcode == 0:
                    if not self._in_message:
                        raise ProtocolError(1002, "continuation frame outside a message")
                elif opcode <= 2:
                    if self._in_message:
                        raise ProtocolError(1002, "new data frame inside a fragmented message")
                else:
                    raise ProtocolError(1002, f"reserved data opcode {opcode}")

                start = pos + 2
                if length == 126:
                    if end - start < 2:
                        break
                    length = _U16.unpack_from(buf, start)[0]
                    if length < 126:
                        raise ProtocolError(1002, "frame length not minimally encoded")
                    start += 2
                elif length == 127:
                    if end - start < 8:
                        break
                    length = _U64.unpack_from(buf, start)[0]
                    if length >= 0x8000000000000000:
                        raise ProtocolError(1002, "frame length with the top bit set")
                    if length < 0x10000:
                        raise ProtocolError(1002, "frame length not minimally encoded")
                    start += 8
                if masked:
                    if end - start < 4:
                        break
                    key = bytes(view[start:start + 4])
                    start += 4
                else:
                    key = None
                stop = start + length

                if opcode >= 8:
                    if stop > end:
                        break
                    payload = self._unmask(view, ptr, start, stop, key)
                    pos = stop
                    if opcode == 9:
                        append(Ping(payload))
                    elif opcode == 10:
                        append(Pong(payload))
                    else:
                        append(self._close(payload))
                        return end  # nothing after a Close counts
                    continue

                if opcode:  # a new message
                    self._in_message = True
                    self._binary = opcode == 2
                    self._message_size = 0
                if limit >= 0:
                    self._message_size += length
                    if self._message_size > limit:
                        raise ProtocolError(1009, f"message longer than {limit} octets")
                fin = b0 & 0x80 != 0
                if stop > end:
                    # Consume the header now; the payload is taken as it arrives.
                    self._remaining = length
                    self._frame_fin = fin
                    self._frame_key = key
                    self._frame_offset = 0
                    pos = start
                    continue
                if key is None or length < _NATIVE_MIN or ptr is None:
                    payload = self._unmask(view, None, start, stop, key)
                else:  # inline: the common case of a browser's frame
                    masker = new(key)
                    process(masker, ptr + start, length)
                    free(masker)
                    payload = bytes(view[start:stop])
                pos = stop
                if fin and whole_messages and opcode == 2:
                    # The commonest case, a whole binary message in one frame: inline.
                    self._in_message = False
                    append(Message(payload, True))
                else:
                    self._data(payload, fin, events)
        finally:
            view.release()
            if ptr is not None:
                _ffi.release(ptr)
        return pos

    @staticmethod
    def _unmask(view: memoryview, ptr: Any, start: int, stop: int, key: bytes | None) -> bytes:
        """``view[start:stop]`` unmasked with ``key`` (in place in the buffer if native)."""
        if key is None or start == stop:
            return bytes(view[start:stop])
        if ptr is not None and stop - start >= _NATIVE_MIN:
            masker = _lib.nvx_xormask_new(key)
            _lib.nvx_xormask_process(masker, ptr + start, stop - start)
            _lib.nvx_xormask_free(masker)
            return bytes(view[start:stop])
        return _xor_pure(view[start:stop], key)

    def _data(self, payload: bytes, last: bool, events: list[Event]) -> None:
        """Payload octets of the current message; ``last`` when they end it."""
        if not self._binary:
            self._validate_text(payload, last)
        if self.stream:
            if payload or last:
                events.append(Chunk(payload, self._binary, last))
        elif last:
            parts = self._parts
            if parts is not None:
                self._parts = None
                parts += payload
                payload = bytes(parts)
            events.append(Message(payload, self._binary))
        elif payload:
            if self._parts is None:
                self._parts = bytearray(payload)
            else:
                self._parts += payload
        if last:
            self._in_message = False

    def _validate_text(self, payload: bytes, last: bool) -> None:
        if not self._utf8_pending and payload.isascii():
            return
        decoder = self._decoder
        if decoder is None:
            decoder = self._decoder = _UTF8Decoder()
        try:
            decoder.decode(payload, last)
        except UnicodeDecodeError as e:
            decoder.reset()
            self._utf8_pending = False
            raise ProtocolError(1007, f"invalid UTF-8 in a text message: {e.reason}") from None
        if last:
            self._utf8_pending = False
            return
        pending = decoder.getstate()[0]
        # CPython holds back ED A0..BF (a UTF-16 surrogate, never valid) until its third
        # octet; fail now, as on every other invalid prefix.
        if len(pending) >= 2 and pending[0] == 0xED and pending[1] >= 0xA0:
            decoder.reset()
            raise ProtocolError(1007, "invalid UTF-8 in a text message: surrogate")
        self._utf8_pending = bool(pending)

    def _close(self, payload: bytes) -> Close:
        if self.state is State.LOCAL_CLOSING:
            self.state = State.CLOSED
        else:
            self.state = State.REMOTE_CLOSING
        self._buf = bytearray()
        if not payload:
            return Close(CLOSE_NO_STATUS, "")
        code = _U16.unpack_from(payload)[0]
        if not is_valid_close_code(code):
            raise ProtocolError(1002, f"invalid close code {code}")
        try:
            reason = payload[2:].decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(1007, "close reason is not UTF-8") from None
        return Close(code, reason)

    # -- sending --------------------------------------------------------------------------

    def _frame(self, opcode: int, payload: bytes, fin: bool = True) -> list[bytes]:
        if self._expect_masked:  # server: frames go out unmasked, the payload uncopied
            return [frame_header(opcode, len(payload), fin), payload]
        key = self._mask_key()
        return [frame_header(opcode, len(payload), fin, key),
                mask_payload(payload, key, native=self._native)]

    def _check_sending(self) -> None:
        if self._close_sent:
            raise LocalProtocolError("nothing may be sent after Close")

    def send_data(self, data: bytes, binary: bool = True, fin: bool = True) -> list[bytes]:
        """One data frame, ``[header, payload]``; ``fin=False`` leaves the message open.

        Frames of one fragmented message all pass the same ``binary``; the first one
        carries the text/binary opcode, the rest are continuations.
        """
        self._check_sending()
        if self._sending_fragments:
            opcode = Opcode.CONTINUATION
        else:
            opcode = Opcode.BINARY if binary else Opcode.TEXT
        self._sending_fragments = not fin
        return self._frame(opcode, data, fin)

    def send_message(self, data: bytes, binary: bool = True) -> list[bytes]:
        """A whole message in one frame, ``[header, payload]``."""
        if self._sending_fragments:
            raise LocalProtocolError("a fragmented message is still open")
        return self.send_data(data, binary, True)

    def _control(self, opcode: int, payload: bytes) -> bytes:
        if len(payload) > MAX_CONTROL_PAYLOAD:
            raise LocalProtocolError("control frame payload longer than 125 octets")
        return b"".join(self._frame(opcode, payload))

    def send_ping(self, payload: bytes = b"") -> bytes:
        self._check_sending()
        return self._control(Opcode.PING, payload)

    def send_pong(self, payload: bytes = b"") -> bytes:
        """The answer to a :class:`Ping`: pass its payload."""
        self._check_sending()
        return self._control(Opcode.PONG, payload)

    def send_close(self, code: int | None = 1000, reason: str = "") -> bytes:
        """Our Close frame (``code=None``: no status).  Nothing may be sent after it.

        After a :class:`ProtocolError`, send what its ``events`` call for, then this with the
        error's code and reason, then drop the connection.
        """
        self._check_sending()
        frame = self._control(Opcode.CLOSE, close_payload(code, reason))
        self._close_sent = True
        if self.state is State.REMOTE_CLOSING:
            self.state = State.CLOSED
        elif self.state is State.OPEN:
            self.state = State.LOCAL_CLOSING
        return frame
