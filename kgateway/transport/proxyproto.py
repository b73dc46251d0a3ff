"""The PROXY protocol (v1, v2) on a listening socket, under TLS: the real client behind a
load balancer.

    client --> HAProxy / F5 / nginx --[PROXY header]--> ProxyProtocolWrapper --> TLS? --> HTTP
                                                        (getPeer() = the client)      or stream

Every listening socket is wrapped by :class:`ProxyProtocolFactory`, outside TLS (the header
comes before the TLS handshake), so ``getPeer()`` of everything above it, and hence
``ILink.remote``, the logs and the access log, report the client the balancer spoke for.

* ``proxy.protocol`` ``v1`` / ``v2`` / ``any``: the header is required; a connection without
  a valid one is closed (logged ``refusing ...``) before anything reaches a service.
* ``none`` (the default): a client that *starts* with a PROXY signature (``"PROXY "`` or the v2
  signature) is forging one, since no balancer was configured to send it; it is refused
  the same way. Other bytes pass through untouched (only a client that sends a strict prefix
  of a signature, like a lone ``P``, waits for its next bytes before they are delivered).

The header itself is parsed by the sans-IO ``kgateway.protocols.proxy_protocol``.

Once the header question is settled, the wrapper steps aside: the socket's reads are bound
straight to the wrapped protocol's ``dataReceived`` (rebound when Autobahn swaps the wrapped
protocol at a WebSocket upgrade), and writes to the socket's ``write``/``writeSequence``, so
each read and write of a relayed connection skips a Python call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols import policies
from twisted.python.failure import Failure
from zope.interface import directlyProvides, providedBy

from kgateway.protocols.proxy_protocol import (
    ProxyHeader,
    ProxyHeaderParser,
    ProxyProtocolError,
    signature_match,
)
from kgateway.transport.links import format_address

log = Logger()

#: a client (or a balancer) must send its PROXY header within this many seconds
HEADER_TIMEOUT = 10.0


class ProxyProtocolWrapper(policies.ProtocolWrapper):
    """Reads (or, in mode ``none``, refuses) a PROXY header before the wrapped protocol."""

    factory: ProxyProtocolFactory
    transport: Any
    #: writes reach the transport unchanged (``links.direct_socket`` may bypass this layer)
    passes_writes_through = True

    _passing = False  # the header question is settled: reads bypass this layer

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
        # ProtocolWrapper's write and writeSequence only call the transport's: bind those.
        self.write = transport.write  # type: ignore[method-assign]
        self.writeSequence = transport.writeSequence  # type: ignore[method-assign]
        Protocol.makeConnection(self, transport)
        self.factory.registerProtocol(self)

    @property
    def wrappedProtocol(self) -> Any:
        return self._wrapped

    @wrappedProtocol.setter
    def wrappedProtocol(self, protocol: Any) -> None:
        # Autobahn's WebSocketResource swaps in the WebSocket protocol at the upgrade;
        # ProtocolWrapper.connectionLost sets None (to break the cycle): nothing more to read.
        self._wrapped = protocol
        if protocol is None:
            self._passing = False
            vars(self).pop("dataReceived", None)
        elif self._passing:
            self.dataReceived = protocol.dataReceived  # type: ignore[method-assign]

    def _pass_through(self) -> None:
        """No (more) header to look for: the socket's reads go straight to the wrapped
        protocol from now on."""
        self.checking = False
        self._passing = True
        self.dataReceived = self._wrapped.dataReceived  # type: ignore[method-assign]

    # The write-buffer limit (ILink.set_write_limit) belongs to the socket, not to the wrapper.
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
        self.wrappedProtocol.makeConnection(self)

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
            self._pass_through()
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
        self._pass_through()
        if self.timeout is not None and self.timeout.active():
            self.timeout.cancel()
        self.real_peer = _address(header)
        self._start()
        if self.parser.remainder and self.transport is not None:
            self.wrappedProtocol.dataReceived(self.parser.remainder)

    def _refuse(self, why: str) -> None:
        log.warn("refusing {peer} on {accept}: {why}", peer=format_address(self.transport.getPeer()),
                 accept=self.factory.describe, why=why)
        self.refused = True
        self.pending = b""
        if self.factory.on_refused is not None:
            self.factory.on_refused()
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


class ProxyProtocolFactory(policies.WrappingFactory):
    """Wraps every connection of a listening socket in a :class:`ProxyProtocolWrapper`."""

    protocol = ProxyProtocolWrapper
    noisy = False

    def __init__(self, wrappedFactory: Any, mode: str, reactor: Any, describe: str = "",
                 on_refused: Callable[[], None] | None = None) -> None:
        super().__init__(wrappedFactory)
        self.mode = mode
        self.reactor = reactor
        self.describe = describe
        #: called for each refused connection (the tracker counts it)
        self.on_refused = on_refused


class ProxyProtocolEndpoint:
    """A server endpoint whose connections pass a :class:`ProxyProtocolWrapper` first.

    It wraps the TCP endpoint, under any TLS: ``TCP( PROXY( TLS( site ) ) )``.
    """

    def __init__(self, endpoint: Any, mode: str, reactor: Any, describe: str = "",
                 on_refused: Callable[[], None] | None = None) -> None:
        self.endpoint = endpoint
        self.mode = mode
        self.reactor = reactor
        self.describe = describe
        self.on_refused = on_refused

    def listen(self, factory: Any) -> Any:
        return self.endpoint.listen(
            ProxyProtocolFactory(factory, self.mode, self.reactor, self.describe,
                                 self.on_refused))
