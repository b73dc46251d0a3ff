"""The real client address behind load balancers: PROXY protocol and Forwarded headers.

    client --> HAProxy / F5 / nginx --[PROXY header]--> ProxyProtocolWrapper --> TLS? --> HTTP
                                                        (getPeer() = the client)      or stream

Every listening socket is wrapped by :class:`ProxyProtocolFactory`, outside TLS (the header
comes before the TLS handshake), so ``getPeer()`` of everything above it, and hence
``ILink.peer``, the logs and the access log, report the client the balancer spoke for.

* ``proxy.protocol`` ``v1`` / ``v2`` / ``any``: the header is required; a connection without
  a valid one is closed (logged ``refusing ...``) before anything reaches a service.
* ``none`` (the default): a client that *starts* with a PROXY signature (``"PROXY "`` or the v2
  signature) is forging one, since no balancer was configured to send it; it is refused
  the same way. Other bytes pass through untouched (only a client that sends a strict prefix
  of a signature, like a lone ``P``, waits for its next bytes before they are delivered).

``X-Forwarded-For`` and ``Forwarded`` (RFC 7239) are HTTP-level and are trusted only as
configured by ``http.forwarded.hops`` (that many proxies append to the header) or
``http.forwarded.trusted`` (addresses of proxies, CIDR): :func:`forwarded_client`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols import policies
from twisted.python.failure import Failure
from zope.interface import directlyProvides, providedBy

from kgateway.protocols.proxy_protocol import (
    MODES,
    ProxyHeader,
    ProxyHeaderParser,
    ProxyProtocolError,
    signature_match,
)

log = Logger()

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: a client (or a balancer) must send its PROXY header within this many seconds
HEADER_TIMEOUT = 10.0


# -- option parsers (used by kgateway.config) -------------------------------------------------


def parse_proxy_mode(text: str) -> str:
    mode = text.strip().lower()
    if mode not in MODES:
        raise ValueError(f"expected one of {', '.join(MODES)}, not {text!r}")
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


# -- Forwarded / X-Forwarded-For --------------------------------------------------------------


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


def _host_of(peer: str) -> str:
    if peer.startswith("["):
        return peer[1:].partition("]")[0]
    return peer.rpartition(":")[0] if peer.count(":") == 1 else peer


def _format(node: tuple[str, int | None]) -> str:
    host, port = node
    if port is None:
        return host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# -- the PROXY protocol on a listening socket -------------------------------------------------


class ProxyProtocolWrapper(policies.ProtocolWrapper):
    """Reads (or, in mode ``none``, refuses) a PROXY header before the wrapped protocol."""

    factory: ProxyProtocolFactory
    transport: Any

    def __init__(self, factory: Any, wrappedProtocol: Any) -> None:
        super().__init__(factory, wrappedProtocol)
        self.mode = factory.mode
        self.parser = ProxyHeaderParser(self.mode) if self.mode != "none" else None
        self.pending = b""  # mode none: the first bytes, until they cannot be a signature
        self.checking = True
        self.real_peer: IAddress | None = None
        self.started = False
        self.refused = False
        self.timeout: Any = None

    def makeConnection(self, transport: Any) -> None:
        # Unlike ProtocolWrapper's, the wrapped protocol is connected only once the header
        # is known: it must see the real client from its first getPeer().
        directlyProvides(self, providedBy(transport))
        Protocol.makeConnection(self, transport)
        self.factory.registerProtocol(self)

    # The write-buffer limit (links.set_write_limit) belongs to the socket, not to the wrapper.
    @property
    def bufferSize(self) -> int:
        return int(self.transport.bufferSize)

    @bufferSize.setter
    def bufferSize(self, value: int) -> None:
        self.transport.bufferSize = value

    def connectionMade(self) -> None:
        if self.parser is None:
            self._start()
        else:
            self.timeout = self.factory.reactor.callLater(HEADER_TIMEOUT, self._refuse,
                                                          "no PROXY header in time")

    def _start(self) -> None:
        self.started = True
        self.wrappedProtocol.makeConnection(self)  # type: ignore[arg-type]

    def getPeer(self) -> IAddress:
        return self.real_peer or self.transport.getPeer()

    def dataReceived(self, data: bytes) -> None:
        if self.refused:
            return
        if not self.checking:
            self.wrappedProtocol.dataReceived(data)
            return
        if self.parser is None:
            self.pending += data
            match = signature_match(self.pending)
            if match is None:
                return
            if match:
                self._refuse("PROXY header on an accept without proxy.protocol")
                return
            self.checking = False
            data, self.pending = self.pending, b""
            self.wrappedProtocol.dataReceived(data)
            return
        try:
            header = self.parser.feed(data)
        except ProxyProtocolError as e:
            self._refuse(str(e))
            return
        if header is None:
            return
        self.checking = False
        if self.timeout is not None and self.timeout.active():
            self.timeout.cancel()
        self.real_peer = _address(header)
        self._start()
        if self.parser.remainder and self.transport is not None:
            self.wrappedProtocol.dataReceived(self.parser.remainder)

    def _refuse(self, why: str) -> None:
        log.warn("refusing {peer} on {accept}: {why}", peer=_describe(self.transport.getPeer()),
                 accept=self.factory.describe, why=why)
        self.refused = True
        self.pending = b""
        self.transport.abortConnection()

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        if self.timeout is not None and self.timeout.active():
            self.timeout.cancel()
        if self.started:
            super().connectionLost(reason)
        else:
            self.factory.unregisterProtocol(self)


def _address(header: ProxyHeader) -> IAddress | None:
    if not header.has_address or header.source is None:
        return None
    host, port = header.source
    if ":" in host:
        return IPv6Address("TCP", host, port)
    return IPv4Address("TCP", host, port)


def _describe(address: IAddress) -> str:
    host = getattr(address, "host", None)
    if host is None:
        return str(address)
    port = getattr(address, "port", 0)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ProxyProtocolFactory(policies.WrappingFactory):
    """Wraps every connection of a listening socket in a :class:`ProxyProtocolWrapper`."""

    protocol = ProxyProtocolWrapper
    noisy = False

    def __init__(self, wrappedFactory: Any, mode: str, reactor: Any, describe: str = "") -> None:
        super().__init__(wrappedFactory)
        self.mode = mode
        self.reactor = reactor
        self.describe = describe


class ProxyProtocolEndpoint:
    """A server endpoint whose connections pass a :class:`ProxyProtocolWrapper` first.

    It wraps the TCP endpoint, under any TLS: ``TCP( PROXY( TLS( site ) ) )``.
    """

    def __init__(self, endpoint: Any, mode: str, reactor: Any, describe: str = "") -> None:
        self.endpoint = endpoint
        self.mode = mode
        self.reactor = reactor
        self.describe = describe

    def listen(self, factory: Any) -> Any:
        return self.endpoint.listen(
            ProxyProtocolFactory(factory, self.mode, self.reactor, self.describe))
