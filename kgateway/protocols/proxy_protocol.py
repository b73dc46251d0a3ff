"""Sans-IO PROXY protocol v1 and v2 (HAProxy's, also sent by F5 BIG-IP, nginx, AWS NLB).

A load balancer in front of the gateway opens its own TCP connection, so the gateway's peer
is the balancer. With the PROXY protocol the balancer first sends one header naming the real
client, then the client's bytes unchanged:

    client 198.51.100.7:40000 --> balancer --"PROXY TCP4 198.51.100.7 10.0.0.5 40000 8000\\r\\n"
                                            + client bytes --> gateway (peer = 198.51.100.7:40000)

Version 1 is one text line, at most 107 bytes with its CRLF:

    "PROXY" SP ("TCP4" | "TCP6") SP src SP dst SP sport SP dport CRLF
    "PROXY" SP "UNKNOWN" [anything] CRLF                      (addresses not known)

Version 2 is binary:

    12-byte signature  0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A
    1 byte   version (high nibble, 2) | command (low nibble: 0 LOCAL, 1 PROXY)
    1 byte   family (high nibble: 0 UNSPEC, 1 INET, 2 INET6, 3 UNIX)
             | transport (low nibble: 0 UNSPEC, 1 STREAM, 2 DGRAM)
    2 bytes  length of what follows, big-endian
    INET:  src4 dst4 sport2 dport2 (12 bytes);  INET6: src16 dst16 sport2 dport2 (36 bytes);
    UNIX:  src108 dst108;  then TLVs (type, 2-byte length, value), which are skipped.

``LOCAL`` (a balancer's own health check) and ``UNKNOWN``/``UNSPEC`` carry no client: the
connection's own peer stands. Only a header is ever parsed here: bytes after it are handed
back untouched as :attr:`ProxyHeaderParser.remainder`.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_PREFIX = b"PROXY "
V1_MAX_LENGTH = 107  # the spec's worst case, "PROXY UNKNOWN" + two IPv6 addresses, with CRLF
V2_HEADER = 16
V2_MAX_LENGTH = V2_HEADER + 65535

MODES = ("none", "v1", "v2", "any")


class ProxyProtocolError(Exception):
    """The bytes are not a valid PROXY protocol header (of the accepted versions)."""


@dataclass(frozen=True)
class ProxyHeader:
    version: int  # 1 or 2
    #: False for v2 LOCAL and v1 UNKNOWN / v2 UNSPEC: no client address, keep the socket's peer
    has_address: bool
    family: str  # "TCP4", "TCP6", "UDP4", "UDP6", "UNIX", "UNKNOWN"
    source: tuple[str, int] | None = None
    destination: tuple[str, int] | None = None


def _ip(text: str, version: int) -> str:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ProxyProtocolError(f"bad address {text!r} in PROXY v1 header") from None
    if address.version != version:
        raise ProxyProtocolError(f"address {text!r} is not IPv{version}")
    return str(address)


def _port(text: str) -> int:
    if not text.isdigit() or len(text) > 5 or (len(text) > 1 and text[0] == "0"):
        raise ProxyProtocolError(f"bad port {text!r} in PROXY v1 header")
    port = int(text)
    if port > 65535:
        raise ProxyProtocolError(f"port {port} out of range in PROXY v1 header")
    return port


def parse_v1(line: bytes) -> ProxyHeader:
    """One complete v1 line, CRLF included."""
    if not line.endswith(b"\r\n") or not line.startswith(V1_PREFIX):
        raise ProxyProtocolError("PROXY v1 header must be 'PROXY ...\\r\\n'")
    try:
        text = line[:-2].decode("ascii")
    except UnicodeDecodeError:
        raise ProxyProtocolError("PROXY v1 header is not ASCII") from None
    parts = text.split(" ")
    if len(parts) >= 2 and parts[1] == "UNKNOWN":
        return ProxyHeader(1, False, "UNKNOWN")
    if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
        raise ProxyProtocolError(f"malformed PROXY v1 header {text!r}")
    version = 4 if parts[1] == "TCP4" else 6
    return ProxyHeader(
        1, True, parts[1],
        (_ip(parts[2], version), _port(parts[4])),
        (_ip(parts[3], version), _port(parts[5])),
    )


_V2_FAMILIES = {
    0x00: ("UNKNOWN", 0), 0x11: ("TCP4", 12), 0x12: ("UDP4", 12), 0x21: ("TCP6", 36),
    0x22: ("UDP6", 36), 0x31: ("UNIX", 216), 0x32: ("UNIX", 216),
}  # fmt: skip


def parse_v2(header: bytes) -> ProxyHeader:
    """One complete v2 header: signature, 4 fixed bytes and the length they announce."""
    if header[:12] != V2_SIGNATURE or len(header) < V2_HEADER:
        raise ProxyProtocolError("not a PROXY v2 header")
    ver_cmd, fam, length = struct.unpack("!BBH", header[12:16])
    if len(header) != V2_HEADER + length:
        raise ProxyProtocolError("PROXY v2 header length mismatch")
    if ver_cmd >> 4 != 2:
        raise ProxyProtocolError(f"unsupported PROXY protocol version {ver_cmd >> 4}")
    command = ver_cmd & 0x0F
    if command not in (0, 1):
        raise ProxyProtocolError(f"unknown PROXY v2 command {command}")
    if fam not in _V2_FAMILIES:
        raise ProxyProtocolError(f"unknown PROXY v2 address family 0x{fam:02x}")
    family, needed = _V2_FAMILIES[fam]
    if length < needed:
        raise ProxyProtocolError(f"PROXY v2 {family} header needs {needed} address bytes")
    if command == 0 or family in ("UNKNOWN", "UNIX"):
        # LOCAL: the balancer speaking for itself (health checks); UNIX: no IP to report.
        return ProxyHeader(2, False, family if command else "UNKNOWN")
    body = header[V2_HEADER:]
    if needed == 12:
        src, dst = (str(ipaddress.IPv4Address(body[0:4])), str(ipaddress.IPv4Address(body[4:8])))
        sport, dport = struct.unpack("!HH", body[8:12])
    else:
        src, dst = (str(ipaddress.IPv6Address(body[0:16])),
                    str(ipaddress.IPv6Address(body[16:32])))
        sport, dport = struct.unpack("!HH", body[32:36])
    return ProxyHeader(2, True, family, (src, sport), (dst, dport))


def signature_match(prefix: bytes) -> bool | None:
    """Does *prefix* start a PROXY header? True, False, or None when too short to tell.

    Used on accepts *without* the PROXY protocol to refuse a client forging one.
    """
    for signature in (V1_PREFIX, V2_SIGNATURE):
        n = min(len(prefix), len(signature))
        if prefix[:n] == signature[:n]:
            return True if n == len(signature) else None
    return False


class ProxyHeaderParser:
    """Feed bytes until :meth:`feed` returns the header; the bytes after it are ``remainder``.

    *mode* is ``v1``, ``v2`` or ``any``. Anything that is not a complete, valid header of an
    accepted version raises :class:`ProxyProtocolError` as soon as that is certain.
    """

    def __init__(self, mode: str = "any") -> None:
        if mode not in ("v1", "v2", "any"):
            raise ValueError(f"PROXY protocol mode must be v1, v2 or any, not {mode!r}")
        self.mode = mode
        self._buffer = b""
        self.header: ProxyHeader | None = None
        self.remainder = b""

    def feed(self, data: bytes) -> ProxyHeader | None:
        if self.header is not None:
            raise ProxyProtocolError("header already parsed; data after it is the caller's")
        self._buffer += data
        buf = self._buffer
        if self.mode != "v2" and buf[: len(V1_PREFIX)] == V1_PREFIX[: len(buf)]:
            if len(buf) < len(V1_PREFIX):
                return None
            end = buf.find(b"\r\n", 0, V1_MAX_LENGTH)
            if end < 0:
                if len(buf) >= V1_MAX_LENGTH:
                    raise ProxyProtocolError("PROXY v1 header longer than 107 bytes")
                if b"\n" in buf or b"\r" in buf[:-1]:
                    raise ProxyProtocolError("PROXY v1 header not ended by CRLF")
                return None
            return self._done(parse_v1(buf[: end + 2]), end + 2)
        if self.mode != "v1" and buf[:12] == V2_SIGNATURE[: len(buf)]:
            if len(buf) < V2_HEADER:
                if len(buf) > 12 and buf[12] >> 4 != 2:
                    raise ProxyProtocolError(f"unsupported PROXY protocol version {buf[12] >> 4}")
                return None
            (length,) = struct.unpack("!H", buf[14:16])
            if len(buf) < V2_HEADER + length:
                return None
            return self._done(parse_v2(buf[: V2_HEADER + length]), V2_HEADER + length)
        wanted = {"v1": "a PROXY v1 header", "v2": "a PROXY v2 header"}.get(
            self.mode, "a PROXY protocol header")
        raise ProxyProtocolError(f"expected {wanted}, got {bytes(buf[:16])!r}")

    def _done(self, header: ProxyHeader, used: int) -> ProxyHeader:
        self.header = header
        self.remainder = self._buffer[used:]
        self._buffer = b""
        return header


def build_v1(source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    """A v1 header (for tests and for a gateway that forwards to another one)."""
    family = "TCP6" if ":" in source[0] else "TCP4"
    return (f"PROXY {family} {source[0]} {destination[0]} {source[1]} {destination[1]}\r\n"
            .encode("ascii"))


def build_v2(source: tuple[str, int] | None, destination: tuple[str, int] | None = None,
             tlvs: bytes = b"") -> bytes:
    """A v2 PROXY header, or LOCAL when *source* is None."""
    if source is None:
        return V2_SIGNATURE + struct.pack("!BBH", 0x20, 0x00, len(tlvs)) + tlvs
    destination = destination or (("::" if ":" in source[0] else "0.0.0.0"), 0)
    src, dst = ipaddress.ip_address(source[0]), ipaddress.ip_address(destination[0])
    body = src.packed + dst.packed + struct.pack("!HH", source[1], destination[1]) + tlvs
    fam = 0x11 if src.version == 4 else 0x21
    return V2_SIGNATURE + struct.pack("!BBH", 0x21, fam, len(body)) + body
