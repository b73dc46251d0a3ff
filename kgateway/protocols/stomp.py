r"""Sans-IO STOMP 1.0/1.1/1.2 frame codec for the ``jms`` service.

The same codec serves both sides of the gateway::

    browser / stomp.py             kgateway jms service                  ActiveMQ
    (STOMP over WebSocket)                                               (STOMP over TCP)
         |  WS text/binary messages  |                          |  TCP byte stream  |
         |-------------------------->| FrameParser(CLIENT_...)  |                   |
         |                           |      ... service ...     | encode() -------->|
         |<--------------------------| encode()/PreparedFrame   |                   |
         |                           |  FrameParser(SERVER_...) |<------------------|

Nothing here touches a transport or a clock: bytes go into :class:`FrameParser`, which
returns :class:`Frame` and :class:`Heartbeat` events, and :func:`encode` turns frames back
into bytes.  WebSocket message boundaries carry no meaning: a frame may be split across
messages and one message may hold several frames, so the parser is a byte-stream parser.

This module is longer than the house's ~500 lines on purpose: the wire format below, the
escaping tables, the encoder and the hot parser (whose states are int constants for speed)
describe one format and change together; splitting them would scatter that description.

Wire format
===========

A frame is UTF-8 text up to the blank line, then opaque body octets::

    +-------------+  COMMAND EOL           SEND, MESSAGE, ... (case-sensitive)
    | SEND        |
    | name:value  |  *( header EOL )       split at the FIRST raw ':'; no trimming
    | name:value  |
    |             |  EOL                   blank line ends the headers
    | body ...    |  *OCTET                see "Body" below
    | NUL         |  0x00                  ends the frame
    +-------------+  *( EOL )              optional; between frames these are heart-beats

    EOL = [CR] LF

1.2 allows CR LF everywhere; 1.0/1.1 only define LF, but real clients send CR LF anyway,
so this parser accepts an optional CR before every LF in every version (a consequence:
in 1.0/1.1 a header value cannot end in CR; :func:`encode` refuses to write one).

Header escaping (names and values)::

    octet   1.0            1.1                 1.2
    -----   ------------   -----------------   ---
    LF      not allowed    \n                  \n
    ':'     in value only  \c                  \c
    '\'     raw            \\                  \\
    CR      raw            raw (not at end)    \r

Any other backslash sequence is a fatal error in 1.1/1.2.  CONNECT and CONNECTED frames
are never escaped, because they are exchanged before a version has been negotiated; STOMP
(the 1.1+ spelling of CONNECT) is treated the same way, as stomp.py does when sending it.
Repeated headers are allowed; the FIRST occurrence wins (:meth:`Frame.get`).

Body: if the frame has a ``content-length`` header (first occurrence, ASCII decimal) the
body is exactly that many octets and MUST be followed by NUL, so it may contain NULs.
Without it the body runs to the first NUL.  :func:`encode` adds ``content-length`` when the
body contains a NUL or when asked, and rewrites any ``content-length`` already present to
the true length (never trust a relayed one).

Heart-beats: a bare EOL between frames.  ``heart-beat:cx,cy`` in CONNECT and ``sx,sy`` in
CONNECTED negotiate them (see :func:`negotiate_heartbeat`).  Peers such as ActiveMQ end
every frame with ``NUL LF``; the one EOL directly after a NUL is frame padding, not a
heart-beat, so the parser swallows it and reports every further EOL as :class:`Heartbeat`.

Interop notes (ActiveMQ Classic's StompWireFormat): it escapes header values only, never
names, and never CR, even in 1.2; it escapes CONNECTED values too (``session:ID\c...``
reaches us verbatim, since CONNECTED is not unescaped); it keeps undefined escapes such as
``\r`` literally instead of failing; and it honours ``content-length`` on SEND and MESSAGE
only.  So a CR in a header value does not survive a trip through ActiveMQ.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Final, TypeAlias, final

__all__ = [
    "ALL_COMMANDS",
    "CLIENT_COMMANDS",
    "DEFAULT_MAX_FRAME_SIZE",
    "DEFAULT_MAX_HEADERS",
    "DEFAULT_MAX_HEADER_LENGTH",
    "HEARTBEAT",
    "HEARTBEAT_EVENT",
    "SERVER_COMMANDS",
    "SUPPORTED_VERSIONS",
    "Event",
    "Frame",
    "FrameParser",
    "Heartbeat",
    "PreparedFrame",
    "StompError",
    "encode",
    "encode_header_lines",
    "negotiate_heartbeat",
    "negotiate_version",
    "parse_heartbeat",
]

SUPPORTED_VERSIONS: Final = ("1.0", "1.1", "1.2")

CLIENT_COMMANDS: Final = frozenset(
    {
        "CONNECT", "STOMP", "SEND", "SUBSCRIBE", "UNSUBSCRIBE", "ACK", "NACK",
        "BEGIN", "COMMIT", "ABORT", "DISCONNECT",
    }
)  # fmt: skip
SERVER_COMMANDS: Final = frozenset({"CONNECTED", "MESSAGE", "RECEIPT", "ERROR"})
ALL_COMMANDS: Final = CLIENT_COMMANDS | SERVER_COMMANDS

# Frames exchanged before a version is agreed; see the module docstring.
_UNESCAPED_COMMANDS: Final = frozenset({"CONNECT", "CONNECTED", "STOMP"})

#: What to write to send one heart-beat.
HEARTBEAT: Final = b"\n"

# Limits.  A browser-facing gateway must bound what one peer can make it buffer; these are
# deliberately smaller than ActiveMQ's (100 MB data, 1000 headers, 10 KiB header) and the
# service can raise them from its config.
DEFAULT_MAX_FRAME_SIZE: Final = 4 * 1024 * 1024
DEFAULT_MAX_HEADERS: Final = 128
DEFAULT_MAX_HEADER_LENGTH: Final = 8 * 1024

# "UNSUBSCRIBE" + CR: once a first line is longer than this without an LF it cannot be a
# command, so fail now instead of buffering up to max_frame_size.
_MAX_COMMAND_LINE: Final = max(len(c) for c in ALL_COMMANDS) + 1
# A 4 MiB frame needs 7 digits; 12 leaves headroom and keeps int() away from huge inputs.
_MAX_CONTENT_LENGTH_DIGITS: Final = 12

_LF: Final = 0x0A
_CR: Final = 0x0D


class StompError(Exception):
    """A fatal STOMP protocol error.

    ``message`` is short and fit for an ERROR frame's ``message`` header; ``detail`` (may
    be empty) is longer text for the ERROR body or the log.  After a parser raises, the
    stream is unusable: send ERROR (:meth:`to_frame`) and close, as the spec requires.
    """

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message if not detail else f"{message}: {detail}")
        self.message = message
        self.detail = detail

    def to_frame(self, receipt_id: str | None = None) -> Frame:
        """The ERROR frame to send for this error."""
        return Frame.error(self.message, self.detail, receipt_id=receipt_id)


@final
class Heartbeat:
    """Parser event: a heart-beat EOL arrived between frames.  A singleton."""

    __slots__ = ()
    _instance: ClassVar[Heartbeat | None] = None

    def __new__(cls) -> Heartbeat:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "Heartbeat()"


#: The one :class:`Heartbeat` instance returned by :meth:`FrameParser.feed`.
HEARTBEAT_EVENT: Final = Heartbeat()


@dataclass(slots=True, repr=False)
class Frame:
    """One STOMP frame.  Headers are decoded (unescaped) text, in wire order."""

    command: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def get(self, name: str, default: str | None = None) -> str | None:
        """Value of the first ``name`` header (the spec's rule for repeats), or default."""
        for key, value in self.headers:
            if key == name:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in wire order."""
        return [value for key, value in self.headers if key == name]

    def header_dict(self) -> dict[str, str]:
        """Headers as a dict, first occurrence winning."""
        result: dict[str, str] = {}
        for key, value in self.headers:
            result.setdefault(key, value)
        return result

    @classmethod
    def build(
        cls,
        command: str,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        body: bytes | str = b"",
    ) -> Frame:
        """Convenience constructor: headers from a mapping or pairs, str body as UTF-8."""
        pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
        data = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        return cls(command, pairs, data)

    @classmethod
    def error(cls, message: str, detail: str = "", *, receipt_id: str | None = None) -> Frame:
        """An ERROR frame; ``receipt-id`` echoes the failing frame's ``receipt``."""
        headers = [("message", message)]
        if receipt_id is not None:
            headers.append(("receipt-id", receipt_id))
        body = detail.encode("utf-8")
        if body:
            headers.append(("content-type", "text/plain;charset=utf-8"))
        return cls("ERROR", headers, body)

    def __repr__(self) -> str:
        # Bodies can be megabytes; logging a frame must not dump them.
        body = repr(self.body) if len(self.body) <= 64 else f"<{len(self.body)} bytes>"
        return f"Frame({self.command!r}, {self.headers!r}, {body})"


Event: TypeAlias = "Frame | Heartbeat"


# -- escaping -----------------------------------------------------------------------------


def _escape_11(text: str) -> str:
    # Cheap membership tests first: most names and values need no escaping, and each
    # replace() would still scan them (measured: ~40% faster on typical headers).
    if "\\" in text or "\n" in text or ":" in text:
        text = text.replace("\\", "\\\\").replace("\n", "\\n").replace(":", "\\c")
    return text


def _escape_12(text: str) -> str:
    if "\\" in text or "\n" in text or ":" in text or "\r" in text:
        text = (
            text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace(":", "\\c")
        )
    return text


_UNESCAPES_11: Final = {"n": "\n", "c": ":", "\\": "\\"}
_UNESCAPES_12: Final = {**_UNESCAPES_11, "r": "\r"}
# ".?" so that a lone trailing backslash matches with an empty group and is rejected.
_ESCAPE_RE: Final = re.compile(r"\\(.?)", re.DOTALL)

_Unescaper: TypeAlias = Callable[[str], str]


def _make_unescaper(table: Mapping[str, str]) -> _Unescaper:
    def replace(match: re.Match[str]) -> str:
        try:
            return table[match.group(1)]
        except KeyError:
            raise StompError(
                "invalid header escape", f"undefined escape sequence {match.group(0)!r}"
            ) from None

    def unescape(text: str) -> str:
        if "\\" not in text:
            return text
        return _ESCAPE_RE.sub(replace, text)

    return unescape


_UNESCAPERS: Final[dict[str, _Unescaper | None]] = {
    "1.0": None,
    "1.1": _make_unescaper(_UNESCAPES_11),
    "1.2": _make_unescaper(_UNESCAPES_12),
}


def _check_version(version: str) -> str:
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(f"unsupported STOMP version {version!r}")
    return version


# -- encoding -----------------------------------------------------------------------------


def _header_parts(
    parts: list[str],
    headers: Iterable[tuple[str, str]],
    escaped: str | None,
    content_length: int | None,
) -> bool:
    """Append ``name:value\\n`` pieces; returns whether a content-length was written.

    ``escaped`` is the version whose escaping applies, or None for raw headers.
    ``content_length`` replaces the value of any content-length header present.
    """
    wrote_length = False
    for name, value in headers:
        if not name:
            raise StompError("invalid header", "empty header name")
        if name == "content-length" and content_length is not None:
            value = str(content_length)
            wrote_length = True
        if escaped == "1.2":
            parts += (_escape_12(name), ":", _escape_12(value), "\n")
            continue
        # Unescaped or 1.1: some text has no representation; refuse rather than let a
        # relayed value inject header lines or be silently mangled.
        if escaped is None:
            if "\n" in name or ":" in name or "\n" in value:
                raise StompError(
                    "header not representable",
                    f"{name!r} cannot carry LF (or ':' in the name) without escaping",
                )
        else:
            name = _escape_11(name)
            value = _escape_11(value)
        if value.endswith("\r"):
            raise StompError("header not representable", f"value of {name!r} ends in CR")
        parts += (name, ":", value, "\n")
    return wrote_length


def encode_header_lines(
    headers: Iterable[tuple[str, str]], version: str = "1.2", command: str = "MESSAGE"
) -> bytes:
    """Encode header lines alone (``name:value\\n`` each), escaped as ``command`` would be.

    Used with :class:`PreparedFrame` to splice per-recipient headers into a shared frame.
    """
    escaped = None if command in _UNESCAPED_COMMANDS else _escape_mode(version)
    parts: list[str] = []
    _header_parts(parts, headers, escaped, None)
    return _utf8("".join(parts))


def _escape_mode(version: str) -> str | None:
    if version == "1.2" or version == "1.1":
        return version
    if version == "1.0":
        return None
    raise ValueError(f"unsupported STOMP version {version!r}")


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        # Lone surrogates, e.g. from a JSON "\ud800" that reached a header.
        raise StompError("header not representable", str(exc)) from None


def encode(frame: Frame, version: str = "1.2", *, content_length: bool = False) -> bytes:
    """Serialize ``frame`` for a peer speaking ``version``.

    Headers are escaped per version (never for CONNECT/CONNECTED/STOMP).  A
    ``content-length`` header is added when the body holds a NUL or ``content_length`` is
    true (never to CONNECT/STOMP), and any content-length already present is rewritten to
    the real body length.  Raises :class:`StompError` for headers the version cannot
    represent (LF in a raw header, empty name, ...).
    """
    command = frame.command
    body = frame.body
    raw = command in _UNESCAPED_COMMANDS
    escaped = None if raw else _escape_mode(version)
    has_nul = b"\0" in body
    if has_nul and command in ("CONNECT", "STOMP"):
        # Brokers honour content-length on SEND and MESSAGE at least (ActiveMQ only there),
        # not reliably on CONNECT; nothing legitimate sends a CONNECT body anyway.
        raise StompError("invalid CONNECT frame", "body contains NUL")
    parts = [command, "\n"]
    wrote_length = _header_parts(parts, frame.headers, escaped, len(body))
    if not wrote_length and (has_nul or content_length) and command not in ("CONNECT", "STOMP"):
        parts.append(f"content-length:{len(body)}\n")
    parts.append("\n")
    return b"".join((_utf8("".join(parts)), body, b"\0"))


def is_text(body: bytes) -> bool:
    """Whether *body* may go in a WebSocket text message: UTF-8 without NUL (STOMP ends a
    frame at NUL when there is no content-length)."""
    if b"\0" in body:
        return False
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class PreparedFrame:
    """A frame encoded once for fan-out, with optional per-recipient headers spliced in.

    The extra headers go directly after the command line, i.e. before the shared ones, so
    they win under the first-occurrence rule; still, leave per-recipient names
    (``subscription``, ``ack``) out of the shared frame.  The body is copied per
    :meth:`render` only by the final join; :meth:`chunks` avoids even that for
    ``transport.writeSequence``.
    """

    __slots__ = ("_head", "_rest", "command", "version")

    def __init__(self, frame: Frame, version: str = "1.2", *, content_length: bool = False) -> None:
        data = encode(frame, version, content_length=content_length)
        cut = data.index(b"\n") + 1
        self._head = data[:cut]
        self._rest = data[cut:]
        self.command = frame.command
        self.version = version

    def chunks(self, headers: Sequence[tuple[str, str]] = ()) -> list[bytes]:
        """The frame as pieces, ``headers`` (escaped for this version) spliced in."""
        if not headers:
            return [self._head, self._rest]
        return [
            self._head,
            encode_header_lines(headers, self.version, self.command),
            self._rest,
        ]

    def render(self, headers: Sequence[tuple[str, str]] = ()) -> bytes:
        """The frame as one bytes object, ``headers`` spliced in."""
        return b"".join(self.chunks(headers))


# -- parsing ------------------------------------------------------------------------------

_IDLE: Final = 0  # between frames: EOLs are heart-beats
_HEADERS: Final = 1  # reading the command line and headers
_BODY: Final = 2  # reading the body


class FrameParser:
    """Incremental STOMP frame parser over a byte stream.

    Two ways to drive it::

        for event in parser.feed(data): ...          # simple

        parser.receive_data(data)                     # when handling a frame can change
        while (event := parser.next_event()) is not None:   # parser.version, e.g. CONNECT
            ...                                       # then SUBSCRIBE in one WS message

    ``feed`` is all-or-nothing: if it raises, frames that preceded the bad one in the
    same call are lost, whereas ``next_event`` hands them out first.  Once a
    :class:`StompError` has been raised the parser keeps raising it.

    Every frame is limited to ``max_frame_size`` bytes (command through NUL), at most
    ``max_headers`` header lines, each at most ``max_header_length`` bytes; violations are
    detected as soon as the buffered bytes prove them, not when the frame completes.
    ``commands`` restricts accepted commands, e.g. ``CLIENT_COMMANDS`` on the
    browser-facing side, ``SERVER_COMMANDS`` on the broker side.
    """

    def __init__(
        self,
        version: str = "1.2",
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_headers: int = DEFAULT_MAX_HEADERS,
        max_header_length: int = DEFAULT_MAX_HEADER_LENGTH,
        commands: Iterable[str] | None = None,
    ) -> None:
        self._version = _check_version(version)
        self.max_frame_size = max_frame_size
        self.max_headers = max_headers
        self.max_header_length = max_header_length
        allowed = ALL_COMMANDS if commands is None else frozenset(commands)
        self._commands = {c.encode("ascii"): c for c in allowed}

        self._buf = bytearray()
        # All offsets index _buf; receive_data() drops consumed bytes and shifts them.
        self._start = 0  # first byte of the current frame (or of unconsumed EOLs)
        self._scan = 0  # where the next find() starts, so no byte is searched twice
        self._line_start = 0  # start of the header line being read
        self._body_start = 0
        self._state = _IDLE
        self._swallow_eol = False  # one EOL right after a NUL is padding, not a heart-beat
        self._command = ""
        self._headers: list[tuple[str, str]] = []
        self._unescape: _Unescaper | None = None
        self._content_length: str | None = None
        self._body_length = -1
        self._error: StompError | None = None

    @property
    def version(self) -> str:
        return self._version

    @version.setter
    def version(self, value: str) -> None:
        # Takes effect from the next frame's headers on; see the class docstring for how
        # to switch between frames that arrived together.
        self._version = _check_version(value)

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as events."""
        return len(self._buf) - self._start

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame | Heartbeat]:
        """Add ``data`` and return every complete event, in order."""
        self.receive_data(data)
        events: list[Frame | Heartbeat] = []
        while (event := self.next_event()) is not None:
            events.append(event)
        return events

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Add ``data`` to the buffer without parsing it."""
        if self._error is not None:
            raise self._error
        start = self._start
        if start:
            # Front deletion of a bytearray is cheap in CPython (it moves a start offset),
            # so compacting on every call costs nothing when there is nothing to drop.
            del self._buf[:start]
            self._start = 0
            self._scan -= start
            self._line_start -= start
            self._body_start -= start
        self._buf += data

    def next_event(self) -> Frame | Heartbeat | None:
        """The next complete event, or None until more data arrives."""
        if self._error is not None:
            raise self._error
        try:
            return self._next_event()
        except StompError as exc:
            self._error = exc
            raise
        except Exception as exc:
            # The contract is that malformed input only ever surfaces as StompError; a
            # stray ValueError/IndexError here would kill the connection's error handling.
            error = StompError("malformed frame", f"{type(exc).__name__}: {exc}")
            self._error = error
            raise error from exc

    # The state machine.  Each branch either returns an event, returns None having
    # recorded how far it scanned, or moves to the next state and loops.
    def _next_event(self) -> Frame | Heartbeat | None:
        buf = self._buf
        while True:
            if self._state == _IDLE:
                pos = self._start
                end = len(buf)
                if pos >= end:
                    return None
                byte = buf[pos]
                if byte == _LF or byte == _CR:
                    if byte == _CR:
                        if pos + 1 >= end:
                            return None  # CR LF may be split across reads
                        if buf[pos + 1] != _LF:
                            raise StompError("malformed frame", "CR not followed by LF")
                        pos += 1
                    self._start = pos + 1
                    if self._swallow_eol:
                        self._swallow_eol = False
                        continue
                    return HEARTBEAT_EVENT
                self._swallow_eol = False
                self._state = _HEADERS
                self._scan = self._line_start = pos
                self._command = ""
                self._headers = []
                self._content_length = None

            elif self._state == _HEADERS:
                if not self._read_headers():
                    return None

            else:
                return self._read_body()

    def _too_big(self, size: int) -> StompError:
        return StompError(
            "frame too large", f"{size} bytes exceeds the limit of {self.max_frame_size}"
        )

    def _read_command(self) -> bool:
        """Consume the command line; False until it is complete."""
        buf = self._buf
        line_start = self._line_start
        lf = buf.find(b"\n", self._scan)
        if lf < 0:
            if len(buf) - line_start > _MAX_COMMAND_LINE:
                raise StompError("unknown command", repr(bytes(buf[line_start : line_start + 32])))
            self._scan = len(buf)
            return False
        end = lf - 1 if lf > line_start and buf[lf - 1] == _CR else lf
        command = self._commands.get(bytes(buf[line_start:end]))
        if command is None:
            raise StompError(
                "unknown command", repr(bytes(buf[line_start : min(end, line_start + 32)]))
            )
        self._command = command
        self._unescape = None if command in _UNESCAPED_COMMANDS else _UNESCAPERS[self._version]
        self._scan = self._line_start = lf + 1
        return True

    def _read_headers(self) -> bool:
        """Consume complete header lines; True once the blank line has been read."""
        if not self._command and not self._read_command():
            return False
        # The per-frame hot loop: state lives in locals and is written back only when
        # waiting for data (after an error the parser is dead, so nothing to write back).
        buf = self._buf
        headers = self._headers
        unescape = self._unescape
        max_length = self.max_header_length
        max_headers = self.max_headers
        limit = self._start + self.max_frame_size  # first offset past the largest frame
        line_start = self._line_start
        scan = self._scan
        while True:
            lf = buf.find(b"\n", scan)
            if lf < 0:
                self._line_start = line_start
                self._scan = len(buf)
                if len(buf) - line_start > max_length:
                    raise StompError("header too long", f"limit is {max_length} bytes")
                if len(buf) > limit:
                    raise self._too_big(len(buf) - self._start)
                return False
            if lf >= limit:
                raise self._too_big(lf + 1 - self._start)
            end = lf - 1 if lf > line_start and buf[lf - 1] == _CR else lf
            if end == line_start:
                self._start_body(lf + 1)
                return True
            if end - line_start > max_length:
                raise StompError("header too long", f"limit is {max_length} bytes")
            if len(headers) >= max_headers:
                raise StompError("too many headers", f"limit is {max_headers}")
            try:
                line = buf[line_start:end].decode("utf-8")
            except UnicodeDecodeError as exc:
                raise StompError("malformed header", f"invalid UTF-8: {exc.reason}") from None
            # ':' is ASCII and never part of a multi-byte UTF-8 sequence, so splitting the
            # decoded text is the same as splitting the bytes.
            name, colon, value = line.partition(":")
            if not name or not colon:
                what = "no ':' in header line" if not colon else "empty header name"
                raise StompError("malformed header", what)
            if unescape is not None and "\\" in line:
                name = unescape(name)
                value = unescape(value)
            if name == "content-length" and self._content_length is None:
                self._content_length = value
            headers.append((name, value))
            scan = line_start = lf + 1

    def _start_body(self, body_start: int) -> None:
        self._state = _BODY
        self._body_start = self._scan = body_start
        length_text = self._content_length
        if length_text is None:
            self._body_length = -1
            return
        if not (
            0 < len(length_text) <= _MAX_CONTENT_LENGTH_DIGITS
            and length_text.isascii()
            and length_text.isdigit()
        ):
            raise StompError("invalid content-length", repr(length_text[:32]))
        length = int(length_text)
        total = body_start - self._start + length + 1
        if total > self.max_frame_size:
            raise self._too_big(total)
        self._body_length = length

    def _read_body(self) -> Frame | None:
        buf = self._buf
        body_start = self._body_start
        if self._body_length >= 0:
            nul = body_start + self._body_length
            if len(buf) <= nul:
                return None
            if buf[nul] != 0:
                raise StompError(
                    "missing NUL", f"no NUL after {self._body_length}-byte content-length body"
                )
        else:
            nul = buf.find(b"\0", self._scan)
            if nul < 0:
                if len(buf) - self._start >= self.max_frame_size:
                    raise self._too_big(len(buf) - self._start + 1)
                self._scan = len(buf)
                return None
            if nul + 1 - self._start > self.max_frame_size:
                raise self._too_big(nul + 1 - self._start)
        # One copy of the body: slicing the bytearray then bytes() would make two.
        with memoryview(buf) as view:
            body = bytes(view[body_start:nul])
        frame = Frame(self._command, self._headers, body)
        self._headers = []
        self._start = self._scan = nul + 1
        self._state = _IDLE
        self._swallow_eol = True
        return frame


# -- negotiation --------------------------------------------------------------------------


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def negotiate_version(
    accept_version_header: str | None, supported: Sequence[str] = SUPPORTED_VERSIONS
) -> str | None:
    """The highest version both sides support, or None (send ERROR and close).

    A CONNECT without ``accept-version`` is a 1.0 client.  An empty header lists no
    versions and so yields None.
    """
    if accept_version_header is None:
        return "1.0" if "1.0" in supported else None
    offered = {part.strip() for part in accept_version_header.split(",")}
    common = [version for version in supported if version in offered]
    return max(common, key=_version_key) if common else None


def parse_heartbeat(value: str | None) -> tuple[int, int]:
    """Parse a ``heart-beat`` header (``"x,y"`` in ms); absent means ``(0, 0)``.

    Spaces around the numbers are tolerated; anything else raises :class:`StompError`.
    """
    if value is None:
        return (0, 0)
    parts = value.split(",")
    if len(parts) == 2:
        x, y = parts[0].strip(), parts[1].strip()
        if all(0 < len(p) <= 10 and p.isascii() and p.isdigit() for p in (x, y)):
            return (int(x), int(y))
    raise StompError("invalid heart-beat header", repr(value[:64]))


def negotiate_heartbeat(
    client: tuple[int, int], server: tuple[int, int], *, gateway_role: str = "server"
) -> tuple[int, int]:
    """Return ``(gateway sends every ms, gateway expects every ms)``; 0 means none.

    ``client`` is the CONNECT ``heart-beat`` (cx, cy), ``server`` the CONNECTED one
    (sx, sy).  Per spec, client-to-server beats happen every max(cx, sy) ms unless either
    is 0, and server-to-client every max(sx, cy) ms unless either is 0.  ``gateway_role``
    says which end the gateway is: ``"server"`` facing browsers, ``"client"`` facing
    ActiveMQ.  The expected interval is nominal: allow slack (e.g. x2) before declaring
    the peer dead, since the spec leaves the tolerance to the receiver.
    """
    cx, cy = client
    sx, sy = server
    client_to_server = 0 if cx == 0 or sy == 0 else max(cx, sy)
    server_to_client = 0 if sx == 0 or cy == 0 else max(sx, cy)
    if gateway_role == "server":
        return (server_to_client, client_to_server)
    if gateway_role == "client":
        return (client_to_server, server_to_client)
    raise ValueError(f"gateway_role must be 'server' or 'client', not {gateway_role!r}")
