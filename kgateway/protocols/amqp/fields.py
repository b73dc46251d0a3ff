"""AMQP 0-9-1 field values and tables: tagged integers, encode and decode (RabbitMQ's
subset of types, with nesting bounded)."""

from __future__ import annotations

import datetime
import struct
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, ClassVar, Final, Self, TypeAlias, cast

from kgateway.protocols.amqp.frames import (
    FRAME_ERROR,
    MAX_FIELD_NESTING,
    SYNTAX_ERROR,
    BytesLike,
    FrameError,
    truncated,
)

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")

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
        raise truncated("shortstr length")
    end = offset + 1 + view[offset]
    if end > len(view):
        raise truncated("shortstr")
    return _utf8(view[offset + 1 : end], "shortstr"), end


def decode_longstr(buf: BytesLike, offset: int = 0) -> tuple[bytes, int]:
    """Decode a longstr at ``offset``; return its octets and the offset after it."""
    view = memoryview(buf)
    if offset + 4 > len(view):
        raise truncated("longstr length")
    end = offset + 4 + _U32.unpack_from(view, offset)[0]
    if end > len(view):
        raise truncated("longstr")
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
        raise truncated(f"{what} size")
    end = offset + 4 + _U32.unpack_from(view, offset)[0]
    if end > len(view):
        raise truncated(what)
    return view[offset + 4 : end], end


def _decode_value(view: memoryview, offset: int, depth: int) -> tuple[FieldValue, int]:
    if offset >= len(view):
        raise truncated("field value type")
    tag = view[offset]
    offset += 1
    fixed = _FIXED_VALUES.get(tag)
    if fixed is not None:
        st, wrap = fixed
        end = offset + st.size
        if end > len(view):
            raise truncated(f"field value of type {chr(tag)!r}")
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
            raise truncated("decimal field value")
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
            raise truncated("field name")
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


