"""AMQP 0-9-1 connection-class methods as dataclasses, decode_method, method_frame,
negotiate_frame_max, close_for (the Connection.Close reporting a FrameError) and the SASL
helpers sasl_credentials/plain_response.

Longer than the house's ~500 lines on purpose: one explicit dataclass per method, each
with its own encode/decode, like h11's events; generating them would hide the wire format.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Final, Self, TypeAlias

from kgateway.protocols.amqp.fields import (
    FieldTable,
    decode_table,
    encode_longstr,
    encode_shortstr,
    encode_table,
)
from kgateway.protocols.amqp.frames import (
    CONNECTION_CLASS_ID,
    FRAME_ERROR,
    FRAME_METHOD,
    FRAME_MIN_SIZE,
    NOT_ALLOWED,
    REPLY_SUCCESS,
    SYNTAX_ERROR,
    BytesLike,
    FrameError,
    encode_frame,
)

_CLOSE_HEAD = struct.Struct(">HHH")
_HEAD_OCTETS = struct.Struct(">HHBB")  # class-id, method-id, two octet arguments
_IDS = struct.Struct(">HH")
_TUNE = struct.Struct(">HHHIH")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")

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


class _NoArguments:
    """A method with no arguments: its ids are all it encodes."""

    __slots__ = ()
    CLASS_ID: ClassVar[int]
    METHOD_ID: ClassVar[int]

    def encode(self) -> bytes:
        return _IDS.pack(self.CLASS_ID, self.METHOD_ID)

    @classmethod
    def _decode(cls, a: _Args) -> Self:
        return cls()


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
class ConnectionCloseOk(_NoArguments):
    """Either side: answer to Connection.Close; the socket may then be closed."""

    CLASS_ID: ClassVar[int] = CONNECTION_CLASS_ID
    METHOD_ID: ClassVar[int] = 51
    NAME: ClassVar[str] = "connection.close-ok"


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
class ConnectionUnblocked(_NoArguments):
    """Server -> client (RabbitMQ): the alarm is over."""

    CLASS_ID: ClassVar[int] = CONNECTION_CLASS_ID
    METHOD_ID: ClassVar[int] = 61
    NAME: ClassVar[str] = "connection.unblocked"


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
class ConnectionUpdateSecretOk(_NoArguments):
    """Server -> client (RabbitMQ): the new secret is accepted."""

    CLASS_ID: ClassVar[int] = CONNECTION_CLASS_ID
    METHOD_ID: ClassVar[int] = 71
    NAME: ClassVar[str] = "connection.update-secret-ok"


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



def close_for(error: FrameError) -> ConnectionClose:
    """The Connection.Close that reports *error*, in RabbitMQ's text style."""
    # reply-text is a shortstr: cut at 255 octets without splitting a character.
    text = str(error).encode("utf-8")[:255].decode("utf-8", "ignore")
    return ConnectionClose(error.reply_code, text, error.class_id, error.method_id)


def sasl_credentials(start_ok: ConnectionStartOk) -> tuple[str, str] | None:
    """The user name and password of a Start-Ok's PLAIN (``authzid\0user\0password``,
    RFC 4616) or AMQPLAIN (a field table with LOGIN and PASSWORD) response, or None for any
    other mechanism or an unreadable response."""
    try:
        if start_ok.mechanism == "PLAIN":
            parts = start_ok.response.split(b"\0")
            if len(parts) != 3:
                return None
            return parts[1].decode("utf-8"), parts[2].decode("utf-8")
        if start_ok.mechanism == "AMQPLAIN":
            # The response is the table's fields without the table's own length prefix.
            table, _ = decode_table(len(start_ok.response).to_bytes(4, "big")
                                    + start_ok.response)
            login, password = table.get("LOGIN"), table.get("PASSWORD")
            if isinstance(login, bytes | str) and isinstance(password, bytes | str):
                return (login.decode("utf-8") if isinstance(login, bytes) else login,
                        password.decode("utf-8") if isinstance(password, bytes) else password)
    except (UnicodeDecodeError, FrameError):
        return None
    return None


def plain_response(user: str, password: str) -> bytes:
    """A PLAIN SASL response for *user* and *password*."""
    return b"\0" + user.encode("utf-8") + b"\0" + password.encode("utf-8")
