"""Which client address to believe from ``Forwarded`` (RFC 7239) and ``X-Forwarded-For``.

Pure functions, no Twisted. HTTP-level headers are trusted only as configured by the
accept-options ``http.forwarded.hops`` (that many proxies append to the header) or
``http.forwarded.trusted`` (addresses or networks of proxies): :func:`forwarded_client`.
Neither configured: the headers are ignored, since any client can write them.
:func:`forwarded_proto` applies the same trust to the scheme a TLS off-loader reports
(``X-Forwarded-Proto``, or ``proto=`` in ``Forwarded``), for the origin check.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from kgateway.config import format_hostport
from kgateway.config.options import Network


def _node(text: str) -> tuple[str, int | None] | None:
    """An address from XFF (``1.2.3.4``, ``::1``) or a Forwarded ``for=`` (``"[::1]:80"``)."""
    text = text.strip().strip('"')
    port: int | None = None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = int(port_text) if port_text.isdigit() else None
    else:
        host = text
    try:
        return str(ipaddress.ip_address(host)), port
    except ValueError:
        return None  # "unknown", an obfuscated "_hidden", garbage: not an address we can use


def forwarded_chain(headers: Any) -> list[tuple[str, int | None] | None]:
    """The client chain a header names, leftmost (claimed original client) first.

    *headers* maps lower-case names to values (several lines joined by commas). ``Forwarded``
    wins over ``X-Forwarded-For`` when both are present.
    """
    forwarded = headers.get("forwarded")
    if forwarded:
        chain: list[tuple[str, int | None] | None] = []
        for element in forwarded.split(","):
            found: tuple[str, int | None] | None = None
            for pair in element.split(";"):
                name, _, value = pair.strip().partition("=")
                if name.lower() == "for":
                    found = _node(value)
            chain.append(found)
        return chain
    xff = headers.get("x-forwarded-for")
    if xff:
        return [_node(item) for item in xff.split(",")]
    return []


def forwarded_client(peer: str, headers: Any, trusted: Sequence[Network] = (),
                     hops: int = 0) -> str:
    """The client address to believe, as ``host`` or ``host:port``; *peer* if none is trusted.

    *peer* is the TCP peer (after any PROXY header). With *hops* N the last N entries were
    added by proxies we run, so the entry before them is the client. With *trusted*
    networks, entries are dropped from the right while they (starting with *peer*) are
    trusted proxies. Neither configured: the headers are ignored, a client can write them.
    """
    if not hops and not trusted:
        return peer
    chain = forwarded_chain(headers)
    if not chain:
        return peer
    if hops:
        node = chain[max(0, len(chain) - hops)]
        return _format(node) if node is not None else peer

    def is_trusted(host: str) -> bool:
        address = ipaddress.ip_address(host)
        return any(address in net for net in trusted)

    if not is_trusted(_host_of(peer)):
        return peer
    for node in reversed(chain):
        if node is None:
            return peer
        if not is_trusted(node[0]):
            return _format(node)
        peer = _format(node)
    return peer  # every hop is a trusted proxy: the leftmost one is all we know


def forwarded_proto(peer: str, headers: Any, trusted: Sequence[Network] = (),
                    hops: int = 0) -> str | None:
    """The scheme (``http``/``https``) the client used at our outermost proxy, or None.

    Believed only as :func:`forwarded_client` believes addresses: with *hops* N, the N-th
    value from the right (the one our outermost proxy added); with *trusted* networks, the
    rightmost value, if *peer* (the proxy that added it) is trusted. Otherwise None: the
    header is the client's to write.
    """
    if not hops and not trusted:
        return None
    if not hops:
        try:
            address = ipaddress.ip_address(_host_of(peer))
        except ValueError:
            return None
        if not any(address in net for net in trusted):
            return None
    values: list[str | None]
    forwarded = headers.get("forwarded")
    if forwarded:
        values = []
        for element in forwarded.split(","):
            proto = None
            for pair in element.split(";"):
                name, _, value = pair.strip().partition("=")
                if name.lower() == "proto":
                    proto = value.strip().strip('"')
            values.append(proto)
    else:
        values = [v.strip() for v in headers.get("x-forwarded-proto", "").split(",")
                  if v.strip()]
    if not values:
        return None
    value = values[max(0, len(values) - hops)] if hops else values[-1]
    value = value.lower() if value else None
    return value if value in ("http", "https") else None


def _host_of(peer: str) -> str:
    if peer.startswith("["):
        return peer[1:].partition("]")[0]
    return peer.rpartition(":")[0] if peer.count(":") == 1 else peer


def _format(node: tuple[str, int | None]) -> str:
    host, port = node
    return host if port is None else format_hostport(host, port)
