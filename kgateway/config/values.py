"""Values in a gateway-config: durations, sizes, booleans, counts, URIs and bind addresses.

Every parser takes the text of an element and returns a value, or raises ``ValueError``
with a message that says what was expected; the loader adds the file and line.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit


def format_hostport(host: str, port: int | str) -> str:
    """``host:port``, with an IPv6 address in brackets: ``[::1]:80``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.I)
_DURATION_UNITS = {
    "": 1.0, "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
    "ms": 0.001, "millis": 0.001, "milliseconds": 0.001,
    "m": 60.0, "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hour": 3600.0, "hours": 3600.0,
}  # fmt: skip
_SIZE = re.compile(r"^\s*(\d+)\s*([a-z]*)\s*$", re.I)
_SIZE_UNITS = {
    "": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024,
    "m": 1024**2, "mb": 1024**2, "mib": 1024**2, "g": 1024**3, "gb": 1024**3, "gib": 1024**3,
}  # fmt: skip


def parse_duration(text: str) -> float:
    """``"30"``, ``"30sec"``, ``"500ms"``, ``"5min"`` -> seconds."""
    m = _DURATION.match(text)
    unit = m.group(2).lower() if m else None
    if not m or unit not in _DURATION_UNITS:
        raise ValueError(f"expected a duration such as 30sec, 500ms or 5min, not {text!r}")
    return float(m.group(1)) * _DURATION_UNITS[unit]


def parse_size(text: str) -> int:
    """``"65536"``, ``"64k"``, ``"1MiB"`` -> bytes."""
    m = _SIZE.match(text)
    unit = m.group(2).lower() if m else None
    if not m or unit not in _SIZE_UNITS:
        raise ValueError(f"expected a size such as 65536, 64k or 1MiB, not {text!r}")
    return int(m.group(1)) * _SIZE_UNITS[unit]


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"expected true or false, not {text!r}")


def parse_count(text: str, minimum: int = 0) -> int:
    """A whole number of at least *minimum* (a hop count, a connection count...)."""
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"expected a whole number, not {text!r}") from None
    if value < minimum:
        expected = "0 or more" if minimum == 0 else f"a number of at least {minimum}"
        raise ValueError(f"expected {expected}, not {value}")
    return value


def parse_positive_int(text: str) -> int:
    return parse_count(text, 1)


DEFAULT_PORTS = {"ws": 80, "http": 80, "wss": 443, "https": 443}
WEBSOCKET_SCHEMES = frozenset({"ws", "wss"})
HTTP_SCHEMES = frozenset({"ws", "wss", "http", "https"})
STREAM_SCHEMES = frozenset({"tcp", "ssl"})
TLS_SCHEMES = frozenset({"wss", "https", "ssl", "reverse+wss"})
#: Enterprise Shield: an accept dialled out to the DMZ, a connect served by a reverse connection
REVERSE_SCHEMES = frozenset({"reverse+wss"})
KNOWN_SCHEMES = HTTP_SCHEMES | STREAM_SCHEMES | REVERSE_SCHEMES | {"udp", "stomp", "stomp+ssl"}


@dataclass(frozen=True)
class URI:
    """An accept or connect URI such as ``ws://localhost:8000/echo`` or ``tcp://db:5432``."""

    text: str
    scheme: str
    host: str
    port: int
    path: str

    @property
    def is_websocket(self) -> bool:
        return self.scheme in WEBSOCKET_SCHEMES

    @property
    def is_http(self) -> bool:
        """Served by the shared HTTP listener (WebSocket upgrade or plain HTTP)."""
        return self.scheme in HTTP_SCHEMES

    @property
    def is_reverse(self) -> bool:
        """Enterprise Shield: ``reverse+wss://dmz:port/path`` (see kgateway.shield)."""
        return self.scheme in REVERSE_SCHEMES

    @property
    def is_stream(self) -> bool:
        """A byte stream (tcp://, ssl://): no message boundaries."""
        return self.scheme in STREAM_SCHEMES

    @property
    def is_tls(self) -> bool:
        return self.scheme in TLS_SCHEMES or self.scheme == "stomp+ssl"

    @property
    def is_loopback(self) -> bool:
        """Reachable from this machine only: ``localhost``, 127.0.0.0/8 or ``::1``."""
        if self.host.lower() == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def authority(self) -> str:
        return format_hostport(self.host, self.port)

    def __str__(self) -> str:
        return self.text


def parse_uri(text: str) -> URI:
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError as e:
        raise ValueError(f"bad URI {text!r}: {e}") from None
    scheme = parts.scheme.lower()
    if scheme not in KNOWN_SCHEMES:
        known = ", ".join(sorted(KNOWN_SCHEMES))
        raise ValueError(f"bad URI {text!r}: unknown scheme {scheme!r} (expected one of {known})")
    if not parts.hostname:
        raise ValueError(f"bad URI {text!r}: no host")
    if port is None:
        if scheme not in DEFAULT_PORTS:
            raise ValueError(f"bad URI {text!r}: {scheme}:// needs a port")
        port = DEFAULT_PORTS[scheme]
    if parts.query or parts.fragment:
        raise ValueError(f"bad URI {text!r}: no query or fragment allowed")
    path = parts.path or "/"
    if scheme not in HTTP_SCHEMES and scheme not in REVERSE_SCHEMES and path != "/":
        raise ValueError(f"bad URI {text!r}: {scheme}:// takes no path")
    return URI(text.strip(), scheme, parts.hostname, port, path)


def parse_bind(text: str) -> tuple[str | None, int]:
    """A ``tcp.bind``-style value: ``8000``, ``0.0.0.0:8000`` or ``[::]:8000``."""
    text = text.strip()
    host: str | None
    if text.isdigit():
        host, port_text = None, text
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not port_text.isdigit():
            raise ValueError(f"expected port or host:port, not {text!r}")
        host = host.strip("[]") or None
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port out of range in {text!r}")
    return host, port


def parse_define(value: str) -> tuple[str, str]:
    """A ``-D name=value`` property override (twistd's -D and ``kgateway check -D``)."""
    name, sep, text = value.partition("=")
    if not sep or not name.strip():
        raise ValueError(f"-D expects name=value, not {value!r}")
    return name.strip(), text
