"""ILink over a Twisted or Autobahn protocol: what a session writes to, closes and pauses.

    StreamLink      tcp/ssl (and a PROXY-protocol or TLS wrapper): bytes on a transport
    WebSocketLink   ws/wss, either side: one WebSocket message per write

Both count what they write on the tracker's Record of a client connection (``record``;
links to back ends count nowhere). Both set TCP_NODELAY on the socket under any wrapper, and put the write limit on the
socket transport that owns the buffer.

Writes on plain TCP go straight to the socket when nothing of theirs is still waiting
(``write_now``): one ``sendmsg`` of header and payload, as asyncio's transports do, and only
what the kernel did not take is left to Twisted. Twisted's transport would instead join the
pieces into one new string (a copy of every octet) and send it a reactor turn later, at most
128 KiB per ``send``: on loopback at 1 GB/s that copy, the extra turns and the sends were a
third of the relay's CPU (bench.relay down64k).
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from autobahn.util import encode_truncate
from twisted.internet.abstract import FileDescriptor
from twisted.internet.interfaces import IAddress
from zope.interface import implementer

from kgateway.config import Options, format_hostport
from kgateway.interfaces import INTERNAL_ERROR, NORMAL, UNSENDABLE, ILink
from kgateway.transport.tracker import NO_RECORD


def format_address(address: IAddress) -> str:
    """``host:port`` (``[v6]:port``) of a Twisted address."""
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is None:
        return str(address)
    return format_hostport(host, port if port is not None else 0)


def socket_transport(transport: Any) -> Any:
    """The TCP transport under any TLS or PROXY-protocol wrapping, which owns the buffer."""
    while not hasattr(transport, "bufferSize") and hasattr(transport, "transport"):
        transport = transport.transport
    return transport


def write_backlog(transport: Any) -> int:
    """Octets written to *transport* (under any wrapping) that the peer has not taken yet,
    measured as Twisted measures it before pausing a producer; 0 if it cannot tell."""
    sock = socket_transport(transport)
    try:
        return len(sock.dataBuffer) + int(sock._tempDataLen)
    except (AttributeError, TypeError):
        return 0


def backlogged(transport: Any) -> bool:
    """Whether the peer has stopped reading: more than the transport's buffer size waits.

    Answers the peer asked for (pongs) are then skipped: RFC 6455 5.5.3 lets an endpoint
    answer only the most recent of several pings, and a client that pings without reading
    would otherwise have the gateway buffer one pong per ping, without bound.
    """
    sock = socket_transport(transport)
    size = getattr(sock, "bufferSize", None)
    return isinstance(size, int) and write_backlog(sock) > size


#: write_now joins more parts than this into one before its sendmsg
MAX_PARTS = 64


def direct_socket(transport: Any) -> Any:
    """The socket transport under *transport* if writes may bypass what lies between: plain
    TCP, under nothing but wrappers that pass writes on unchanged (a class attribute
    ``passes_writes_through``: the PROXY-protocol wrapper); None under TLS, or for anything
    that is not a socket."""
    layer = transport
    while not isinstance(layer, FileDescriptor):
        if not getattr(type(layer), "passes_writes_through", False):
            return None
        layer = layer.transport
    return layer if hasattr(layer, "socket") else None


def write_now(transport: Any, sock: Any, parts: list[bytes]) -> None:
    """Write *parts* to *transport*, in order: first straight to *sock* (its
    ``direct_socket``, or None) with one ``sendmsg``, if nothing written before is still in
    Twisted's buffer; whatever the kernel did not take goes to ``transport.writeSequence``,
    which buffers it, pauses a registered producer past the write limit, and sends the rest
    (or finds a broken connection and reports it) as usual. Many small parts (one read of
    small WebSocket messages) are joined first: sendmsg takes at most IOV_MAX of them, and
    the kernel walks short ones more slowly than memcpy does."""
    if len(parts) > MAX_PARTS:
        parts = [b"".join(parts)]
    if (sock is not None and not sock.dataBuffer and not sock._tempDataLen and sock.connected
            and not (sock.disconnecting or sock._writeDisconnecting
                     or sock._writeDisconnected or sock.TLS or sock._aborting)):
        try:
            sent = sock.socket.sendmsg(parts)
        except OSError:  # full (EAGAIN) or broken: Twisted's own write will tell which
            sent = 0
        if sent:
            for i, part in enumerate(parts):
                if sent < len(part):
                    parts = [part[sent:], *parts[i + 1:]]
                    break
                sent -= len(part)
            else:
                return
    transport.writeSequence(parts)


class _LinkBase:
    # Slotted, as every link class: one lives as long as each connection (no __dict__ each).
    __slots__ = ("_proto", "transport", "remote", "protocol", "principal", "record", "direct")

    is_websocket = False
    protocol: str | None
    #: who the client proved to be at the handshake (kgateway.auth), if anyone
    principal: Any
    #: the tracker's Record of a client connection, which counts its bytes as they go
    record: Any

    def __init__(self, proto: Any, remote: str | None = None) -> None:
        self._proto = proto
        self.protocol = None
        self.principal = None
        self.record = NO_RECORD
        # The transport never changes once connected: TCP, or TLS over TCP.
        self.transport: Any = proto.transport
        #: the real client address (the PROXY header's, or a trusted Forwarded header's)
        self.remote = remote or format_address(self.transport.getPeer())
        #: the socket, if writes may go straight to it (``write_now``)
        self.direct = direct_socket(self.transport)
        # Relayed protocols are chatty (AMQP, STOMP): Nagle plus delayed ACKs would add 40 ms
        # to some round trips. Set on the socket itself: twisted.web and Autobahn only try the
        # transport they see, which under TLS or the PROXY-protocol wrapper is not a socket.
        sock = socket_transport(self.transport)
        if hasattr(sock, "setTcpNoDelay"):
            try:
                sock.setTcpNoDelay(True)
            except OSError:
                pass  # already closed: nothing to tune

    def pause_reading(self) -> None:
        self.transport.pauseProducing()

    def resume_reading(self) -> None:
        self.transport.resumeProducing()

    def register_producer(self, producer: object) -> None:
        transport = self.transport
        # A WebSocket taken over from twisted.web still has its HTTPChannel registered.
        transport.unregisterProducer()
        transport.registerProducer(producer, True)

    def set_write_limit(self, limit: int) -> None:
        socket_transport(self.transport).bufferSize = limit

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.remote}>"


@implementer(ILink)
class StreamLink(_LinkBase):
    __slots__ = ("sent",)

    def __init__(self, proto: Any, remote: str | None = None) -> None:
        super().__init__(proto, remote)
        self.sent = 0

    def write(self, data: bytes, binary: bool = True) -> None:
        self.sent += len(data)
        self.record.count(0, len(data))
        write_now(self.transport, self.direct, [data])

    def close(self, code: int = NORMAL, reason: str = "") -> None:
        self.transport.loseConnection()


@implementer(ILink)
class WebSocketLink(_LinkBase):
    __slots__ = ()

    is_websocket = True
    _proto: WebSocketServerProtocol | WebSocketClientProtocol

    def __init__(self, proto: Any, remote: str | None = None,
                 protocol: str | None = None, principal: Any = None) -> None:
        super().__init__(proto, remote)
        self.protocol = protocol
        self.principal = principal

    def write(self, data: bytes, binary: bool = True) -> None:
        proto = self._proto
        if proto.state != proto.STATE_OPEN:
            return
        self.record.count(0, len(data))
        limit = getattr(proto, "maxMessagePayloadSize", 0)  # copied from its factory
        if not limit or len(data) <= limit:
            proto.sendMessage(data, isBinary=binary)
            return
        # A back end's read (up to 1 MiB, see connect.ReadSize) plus what a relay held back
        # (AMQP frames) can be longer than ws.maximum.message.size, which Autobahn also
        # enforces on what it sends: those bytes are a stream, so they go out as several
        # messages, text cut between UTF-8 characters.
        for part in split_message(data, limit, binary):
            proto.sendMessage(part, isBinary=binary)

    def close(self, code: int = NORMAL, reason: str = "") -> None:
        proto = self._proto
        if proto.state != proto.STATE_OPEN:
            if proto.state in (proto.STATE_CONNECTING, proto.STATE_PROXY_CONNECTING):
                proto.dropConnection(abort=True)
            return
        if code in UNSENDABLE:
            code = NORMAL if code == 1005 else INTERNAL_ERROR
        # sendClose() only lets applications send 1000 and 3000-4999; a gateway must be able
        # to say 1001, 1009, 1011 and 1014 as well, which sendCloseFrame() allows.
        proto.sendCloseFrame(code, encode_truncate(reason, 123) if reason else None)


def split_message(data: bytes, limit: int, binary: bool = True) -> list[bytes]:
    """*data* in pieces of at most *limit* octets; for text, no piece ends inside a UTF-8
    character (a limit under 4 octets could not hold every character: at least 4 is used)."""
    limit = limit if binary else max(limit, 4)
    parts, start, end = [], 0, len(data)
    while start < end:
        cut = min(start + limit, end)
        if not binary:
            while cut < end and data[cut] & 0xC0 == 0x80:  # a continuation octet: back off
                cut -= 1
        parts.append(data[start:cut])
        start = cut
    return parts


def configure_websocket(factory: WebSocketServerFactory | WebSocketClientFactory,
                        options: Options) -> None:
    """The protocol options both sides share: message size, pings, handshake timeouts."""
    inactivity = options["ws.inactivity.timeout"]
    factory.setProtocolOptions(
        maxMessagePayloadSize=options["ws.maximum.message.size"],
        maxFramePayloadSize=options["ws.maximum.message.size"],
        # Send a close frame (1009, 1002...) on protocol violations instead of dropping TCP.
        failByDrop=False,
        autoPingInterval=inactivity / 2 if inactivity else 0,
        autoPingTimeout=inactivity / 2 if inactivity else 0,
        # Accepts: http.handshake.timeout also bounds reading the request (transport.handshake);
        # from the request to the open WebSocket it is Autobahn's. Connects: 10 s.
        openHandshakeTimeout=options.get("http.handshake.timeout", 10.0),
        closeHandshakeTimeout=5,
    )
