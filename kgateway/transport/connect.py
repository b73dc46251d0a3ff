"""Connect adapters: links the gateway opens to tcp/ssl/ws/wss back ends.

    connect_stream(reactor, uri, options, receiver, client_tls=...) --> Deferred[ILink]
        fires only once TCP is connected, the TLS handshake is done (chain and host name
        checked) and, for ws/wss, the WebSocket handshake is done; the back end's data goes
        to the ILinkReceiver. One deadline, ``connect.timeout``, covers all three steps
        (four with ``http.proxy``: the CONNECT tunnel first, TLS inside it).

A tcp back end's reads adapt to its pace (``ReadSize``): Twisted reads a socket
``bufferSize`` octets at a time, so a back end that sends faster than one read per reactor
turn (a bulk download) would cost a turn, a recv and a relayed write per 256 KiB; a read that
fills the buffer doubles it, up to ``MAX_READ``, and small reads bring it back down, so quiet
and interactive connections keep the small one.

Failures arrive as ConnectError with a reason fit for a close frame (123 bytes) and a log
line; TLS refusals say which check failed (``ClientTLS.explain``). Which scheme goes where
(udp, Enterprise Shield's reverse+wss) is decided by ``kgateway.connector``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory
from autobahn.websocket.types import ConnectionResponse
from twisted.internet import defer
from twisted.internet.endpoints import wrapClientTLS
from twisted.internet.interfaces import IAddress, IHandshakeListener, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from kgateway.config import URI, Options
from kgateway.interfaces import ConnectError, ILink, ILinkReceiver
from kgateway.transport.closecodes import RelayingClientProtocol
from kgateway.transport.httpproxy import dial_endpoint
from kgateway.transport.links import StreamLink, WebSocketLink, configure_websocket
from kgateway.transport.tls import ClientTLS, is_tls_failure


def _explain(reason: Failure, client_tls: ClientTLS | None) -> str:
    return client_tls.explain(reason) if client_tls is not None else reason.getErrorMessage()


#: the largest read from a tcp back end. bench.relay down64k on loopback, CPU per octet
#: relayed: 1 MiB reads 0.37 ms/MB, 256 KiB 0.52, 2 MiB 0.34 (the buffers twice as large)
MAX_READ = 1024 * 1024


class ReadSize:
    """Twisted's read size on one socket transport (``bufferSize``), following the peer.

    A read that fills the buffer means more was waiting: the next read may take twice as
    much, up to ``MAX_READ``. A read of a quarter of the buffer or less means the socket
    was drained: the size halves, down to its floor. The floor is the size the socket had
    at the first read, or whatever someone else set since (``ILink.set_write_limit``).

    Twisted uses the same attribute as the socket's write limit (a registered producer is
    paused past it), so while reads are larger, so is that limit: octets written to this
    socket may wait up to the read size (at most ``MAX_READ``) before the other side's reads
    pause, instead of the floor.

    The other side's write limit is left alone, although one read may now exceed it: writes
    go straight to the kernel when nothing waits (``links.write_now``), so Twisted's buffer
    only holds what the client's socket refused, and a pause then means the client really
    is behind. On loopback at 1.3 GB/s that never happened (no epoll_ctl at all: every
    sendmsg took the whole read); a slow client holds at most its limit plus one read.
    """

    __slots__ = ("_sock", "_floor", "_set")

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._floor = 0
        self._set = 0  # the size this object last gave the socket

    def read(self, octets: int) -> None:
        """Account for one read of *octets* octets and set the size of the next."""
        sock = self._sock
        size: int = sock.bufferSize
        if size != self._set:
            self._floor = size  # the first read, or a new write limit
        if octets >= size:
            if size < MAX_READ:
                size = sock.bufferSize = min(size * 2, MAX_READ)
        elif octets <= size >> 2 and size > self._floor:
            size = sock.bufferSize = max(size >> 1, self._floor)
        self._set = size


@implementer(IHandshakeListener)
class _StreamClientProtocol(Protocol):
    def __init__(self, receiver: ILinkReceiver, ready: defer.Deferred[ILink],
                 client_tls: ClientTLS | None) -> None:
        self.receiver = receiver
        self.ready: defer.Deferred[ILink] | None = ready
        self.client_tls = client_tls
        self.link: StreamLink | None = None

    #: made at the first read that fills the buffer (an idle connection carries none)
    read_size: ReadSize | None = None

    def connectionMade(self) -> None:
        self.link = StreamLink(self)
        if self.client_tls is None:
            self._established()

    def handshakeCompleted(self) -> None:
        self._established()

    def _established(self) -> None:
        ready, self.ready = self.ready, None
        if ready is None or self.link is None:
            return
        if ready.called:  # too late: connect.timeout has expired
            self.abort()
            return
        ready.callback(self.link)

    def dataReceived(self, data: bytes) -> None:
        read_size = self.read_size
        if read_size is not None:
            read_size.read(len(data))
        elif self.client_tls is None and len(data) >= getattr(self.transport, "bufferSize",
                                                              len(data) + 1):
            # Plain TCP only: under TLS, reads hand on decrypted records (at most 16 KiB)
            # that say nothing of the socket's reads.
            self.read_size = read_size = ReadSize(self.transport)
            read_size.read(len(data))
        self.receiver.received(data, True)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        ready, self.ready = self.ready, None
        # With TLS 1.3 the server judges our certificate after our handshake is done, so a
        # refusal can arrive here as a lost connection: describe it like a failed connect.
        message = _explain(reason, self.client_tls) if reason else "connection lost"
        if ready is None:
            self.receiver.closed(None, message)
        elif not ready.called:
            ready.errback(ConnectError(message))

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]


class _WebSocketClientProtocol(RelayingClientProtocol):
    factory: _WebSocketClientFactory
    lost: Failure | None = None

    def onConnect(self, response: ConnectionResponse) -> None:
        self.link = WebSocketLink(self, protocol=response.protocol)

    def onOpen(self) -> None:
        ready, self.factory.ready = self.factory.ready, None
        if ready is None:
            return
        if ready.called:  # too late: connect.timeout has expired
            self.abort()
            return
        ready.callback(self.link)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.receiver.received(payload, isBinary)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.lost = reason  # onClose only gets a text; keep the TLS error behind it
        super().connectionLost(reason)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        ready, self.factory.ready = self.factory.ready, None
        if ready is not None and ready.called:
            return  # connect.timeout expired: the caller already has its ConnectError
        if ready is not None:
            if is_tls_failure(self.lost):
                assert self.lost is not None
                ready.errback(ConnectError(_explain(self.lost, self.factory.client_tls)))
            else:
                ready.errback(ConnectError(
                    f"WebSocket handshake failed: {reason or 'connection lost'}"))
        else:
            self.factory.receiver.closed(code, reason or "")

    def abort(self) -> None:
        self.dropConnection(abort=True)


class _WebSocketClientFactory(WebSocketClientFactory):
    protocol = _WebSocketClientProtocol  # type: ignore[assignment]
    noisy = False

    def __init__(self, url: str, receiver: ILinkReceiver, ready: defer.Deferred[ILink],
                 protocols: Sequence[str], reactor: Any, client_tls: ClientTLS | None) -> None:
        super().__init__(url, protocols=list(protocols) or None, reactor=reactor)
        self.client_tls = client_tls
        self.receiver = receiver
        self.ready: defer.Deferred[ILink] | None = ready
        self.built: _WebSocketClientProtocol | None = None

    def buildProtocol(self, addr: IAddress | None) -> Any:
        proto = super().buildProtocol(addr)
        assert isinstance(proto, _WebSocketClientProtocol)
        self.built = proto
        return proto


class _StreamClientFactory(Factory):
    noisy = False

    def __init__(self, receiver: ILinkReceiver, ready: defer.Deferred[ILink],
                 client_tls: ClientTLS | None) -> None:
        self.receiver, self.ready, self.client_tls = receiver, ready, client_tls
        self.built: _StreamClientProtocol | None = None

    def buildProtocol(self, addr: IAddress | None) -> _StreamClientProtocol:
        self.built = _StreamClientProtocol(self.receiver, self.ready, self.client_tls)
        return self.built


def connect_stream(reactor: IReactorTime, uri: URI, options: Options,
                   receiver: ILinkReceiver, *, protocols: Sequence[str] = (),
                   client_tls: ClientTLS | None = None) -> defer.Deferred[ILink]:
    """Open a tcp/ssl/ws/wss connection to *uri*; see the module docstring.

    *client_tls* is required for ``ssl://`` and ``wss://``: it holds the truststore, the
    host name to check and any client certificate to present.
    """
    if uri.is_tls and client_tls is None:
        raise ValueError(f"{uri} needs a ClientTLS")
    timeout: float = options["connect.timeout"]
    ready: defer.Deferred[ILink] = defer.Deferred()
    try:  # directly, or through an HTTP CONNECT tunnel (http.proxy)
        endpoint: Any = dial_endpoint(reactor, uri.host, uri.port, options, timeout)
    except ConnectError as e:
        return defer.fail(e)
    if client_tls is not None:
        endpoint = wrapClientTLS(client_tls.creator, endpoint)
    factory: _WebSocketClientFactory | _StreamClientFactory
    if uri.is_websocket:
        factory = _WebSocketClientFactory(uri.text, receiver, ready, protocols, reactor,
                                          client_tls)
        configure_websocket(factory, options)
    else:
        factory = _StreamClientFactory(receiver, ready, client_tls)

    def failed(reason: Failure) -> None:
        if not ready.called:
            ready.errback(ConnectError(_explain(reason, client_tls)))

    attempt = endpoint.connect(factory)
    attempt.addErrback(failed)

    def expired() -> None:
        if ready.called:
            return
        ready.errback(ConnectError(f"timed out after {timeout:g}s"))
        attempt.cancel()  # still dialling: stop
        if factory.built is not None:
            factory.built.abort()  # connected, but TLS or the handshake never finished

    call = reactor.callLater(timeout, expired)

    def done(result: Any) -> Any:
        if call.active():
            call.cancel()
        return result

    ready.addBoth(done)
    return ready
