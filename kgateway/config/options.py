"""The accept-options and connect-options a service may set, with their parsers and defaults.

    ACCEPT_OPTIONS / CONNECT_OPTIONS:  name -> (parser, default)     (README: "Accept options")
    Options:                           the validated values of one service, defaults filled in

The parsers of TLS settings and of the PROXY-protocol and trusted-network options live here
too, with the tables that use them: they are pure (text in, value out), and the transport
layer only consumes what they produce.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from OpenSSL import SSL

from kgateway.config.values import (
    URI,
    parse_bind,
    parse_bool,
    parse_count,
    parse_duration,
    parse_positive_int,
    parse_size,
)
from kgateway.protocols.proxy_protocol import MODES as PROXY_MODES

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: ssl.protocols values, oldest first (transport.tls maps them onto OpenSSL versions)
TLS_PROTOCOLS = ("TLSv1.2", "TLSv1.3")
VERIFY_CLIENT = ("none", "optional", "required")


def parse_tls_protocols(text: str) -> tuple[str, ...]:
    """``TLSv1.2,TLSv1.3`` -> a tuple of known protocol names, oldest first."""
    names = [n.strip() for n in text.replace(" ", ",").split(",") if n.strip()]
    for name in names:
        if name not in TLS_PROTOCOLS:
            raise ValueError(f"unknown or insecure protocol {name!r}; expected "
                             + " and/or ".join(TLS_PROTOCOLS))
    if not names:
        raise ValueError("expected TLSv1.2 and/or TLSv1.3")
    return tuple(n for n in TLS_PROTOCOLS if n in names)


def parse_tls_ciphers(text: str) -> str:
    """An OpenSSL cipher string (TLS 1.2 and below); rejected if it selects nothing."""
    context = SSL.Context(SSL.TLS_METHOD)
    try:
        context.set_cipher_list(text.strip().encode())
    except SSL.Error:
        raise ValueError(f"no usable cipher in {text!r} (an OpenSSL cipher string such as "
                         "ECDHE+AESGCM:!aNULL)") from None
    return text.strip()


def parse_verify_client(text: str) -> str:
    value = text.strip().lower()
    if value not in VERIFY_CLIENT:
        raise ValueError(f"expected none, optional or required, not {text!r}")
    return value


def parse_window_bits(text: str) -> int:
    """A zlib window size, 9..15 (2**bits bytes)."""
    bits = parse_positive_int(text)
    if not 9 <= bits <= 15:
        raise ValueError(f"expected 9 to 15, not {bits}")
    return bits


def parse_allowed_names(text: str) -> tuple[str, ...]:
    """``internal1.corp, internal2.corp`` (or ``*``) -> names, lower-cased."""
    names = tuple(n.strip().lower() for n in text.replace(",", " ").split() if n.strip())
    if not names:
        raise ValueError("expected certificate names (CN or SAN), or *")
    if "*" in names and len(names) > 1:
        raise ValueError("* (any certificate the truststore vouches for) stands alone")
    return names


def parse_proxy_mode(text: str) -> str:
    mode = text.strip().lower()
    if mode not in PROXY_MODES:
        raise ValueError(f"expected one of {', '.join(PROXY_MODES)}, not {text!r}")
    return mode


def parse_networks(text: str) -> tuple[Network, ...]:
    """``10.0.0.0/8, 192.0.2.7, ::1`` -> networks (a bare address is a /32 or /128)."""
    networks = []
    for item in text.replace(",", " ").split():
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"expected addresses or CIDR networks, not {item!r}") from None
    return tuple(networks)


def parse_rate(text: str) -> float:
    """``10``, ``0.5``, ``10/sec``, ``600/min`` -> events per second (0 turns a limit off)."""
    number, _, unit = text.strip().partition("/")
    per = {"": 1.0, "s": 1.0, "sec": 1.0, "second": 1.0, "min": 60.0, "minute": 60.0}.get(
        unit.strip().lower())
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if per is None or value < 0 or value != value or value == float("inf"):
        raise ValueError(f"expected a rate such as 10, 10/sec or 600/min, not {text!r}")
    return value / per


def parse_http_proxy(text: str) -> tuple[str, int]:
    """``http://proxy.example:3128`` -> (host, port); the port defaults to 80.

    Credentials never go in the URL (it is logged): ``http.proxy.credentials.file``.
    """
    value = text.strip()
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError(f"expected http://host:port, not {text!r}") from None
    if parts.username is not None or parts.password is not None:
        raise ValueError("no credentials in http.proxy (it appears in logs): put user:password "
                         "in the file named by http.proxy.credentials.file")
    if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/") \
            or parts.query or parts.fragment:
        raise ValueError(f"expected http://host:port, not {text!r}")
    return parts.hostname, port or 80


OptionParser = Callable[[str], Any]


#: accept-options: name -> (parser, default). The defaults are documented in README.md.
ACCEPT_OPTIONS: dict[str, tuple[OptionParser, Any]] = {
    "ws.maximum.message.size": (parse_size, 1024 * 1024),
    "ws.inactivity.timeout": (parse_duration, 0.0),
    "ws.fast.path": (parse_bool, True),
    # permessage-deflate (RFC 7692), off by default: kgateway.transport.compression
    "ws.permessage-deflate": (parse_bool, False),
    "ws.permessage-deflate.window-bits": (parse_window_bits, 15),
    "ws.permessage-deflate.context-takeover": (parse_bool, True),
    "tcp.bind": (parse_bind, None),
    "ssl.bind": (parse_bind, None),
    "ws.bind": (parse_bind, None),
    "wss.bind": (parse_bind, None),
    "http.bind": (parse_bind, None),
    "https.bind": (parse_bind, None),
    "proxy.protocol": (parse_proxy_mode, "none"),
    "http.forwarded.trusted": (parse_networks, ()),
    "http.forwarded.hops": (parse_count, 0),
    "ssl.protocols": (parse_tls_protocols, ()),
    "ssl.ciphers": (parse_tls_ciphers, None),
    "ssl.verify-client": (parse_verify_client, "none"),
    # a CRL (PEM or DER) checked against client certificates (with ssl.verify-client)
    "ssl.crl": (str, None),
    "udp.idle.timeout": (parse_duration, 60.0),
    "reverse.prepared.connection.count": (parse_positive_int, 1),
    "reverse.retry.initial.interval": (parse_duration, 0.5),
    "reverse.retry.maximum.interval": (parse_duration, 30.0),
    "reverse.keepalive.interval": (parse_duration, 30.0),
    # admission (transport.admission, transport.handshake): bounds on what clients may hold
    "http.handshake.timeout": (parse_duration, 10.0),
    "ssl.handshake.timeout": (parse_duration, 10.0),
    "connection.limit": (parse_count, 10_000),
    "connection.limit.per.address": (parse_count, 0),
    "handshake.rate": (parse_rate, 0.0),
    "handshake.burst": (parse_count, 0),
    # reverse+wss:// accepts dial out to the DMZ gateway: through this HTTP proxy, if set
    "http.proxy": (parse_http_proxy, None),
    "http.proxy.credentials.file": (str, None),
}

#: connect-options: name -> (parser, default).
CONNECT_OPTIONS: dict[str, tuple[OptionParser, Any]] = {
    "connect.timeout": (parse_duration, 10.0),
    "ws.maximum.message.size": (parse_size, 1024 * 1024),
    "ws.inactivity.timeout": (parse_duration, 0.0),
    "ssl.truststore": (str, None),
    "ssl.hostname": (str, None),
    "ssl.present-certificate": (parse_bool, False),
    "ssl.verify-client": (parse_verify_client, "required"),
    "ssl.protocols": (parse_tls_protocols, ()),
    "ssl.ciphers": (parse_tls_ciphers, None),
    # a CRL (PEM or DER) checked against the back end's certificate; on a reverse+wss
    # connect, against the internal gateways' certificates at the backplane
    "ssl.crl": (str, None),
    # reverse+wss connects: certificate names (CN or SAN) of the internal gateways the
    # backplane accepts; "*" for any certificate the truststore vouches for. Required.
    "reverse.allowed.names": (parse_allowed_names, ()),
    "reverse.timeout": (parse_duration, 10.0),
    "udp.idle.timeout": (parse_duration, 60.0),
    "http.proxy": (parse_http_proxy, None),
    "http.proxy.credentials.file": (str, None),
}


class Options(Mapping[str, Any]):
    """Validated accept- or connect-options; unset ones read as their default."""

    def __init__(self, given: Mapping[str, Any], defaults: Mapping[str, Any]) -> None:
        self._given = MappingProxyType(dict(given))
        self._defaults = MappingProxyType(dict(defaults))

    def __getitem__(self, key: str) -> Any:
        if key in self._given:
            return self._given[key]
        return self._defaults[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._defaults)

    def __len__(self) -> int:
        return len(self._defaults)

    def explicit(self) -> Mapping[str, Any]:
        """Only the options the file set."""
        return self._given

    def __repr__(self) -> str:
        return f"Options({dict(self._given)!r})"


def bind_address(uri: URI, options: Options) -> tuple[str, int]:
    """Where an accept listens: its URI's host and port unless ``<scheme>.bind`` overrides."""
    override = options.get(f"{uri.scheme}.bind")
    if override is None and uri.scheme in ("ws", "http"):
        override = options.get("tcp.bind")
    if override is None:
        return uri.host, uri.port
    host, port = override
    return host or uri.host, port
