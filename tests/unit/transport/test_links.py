"""links.backlogged: whether a peer has left more than a socket buffer of writes unread; the
links' own state; links.write_now: writes straight to a plain socket, the rest through
Twisted's buffer."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import tcp
from twisted.internet.abstract import FileDescriptor
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from kgateway.interfaces import ILink
from kgateway.transport.links import (
    StreamLink,
    WebSocketLink,
    backlogged,
    direct_socket,
    split_message,
    write_backlog,
    write_now,
)
from kgateway.transport.proxyproto import ProxyProtocolFactory
from kgateway.transport.tracker import NO_RECORD, ConnectionTracker


class Wrapper:
    """A TLS or PROXY-protocol wrapper: the buffer is its transport's."""

    def __init__(self, transport: object) -> None:
        self.transport = transport


def test_a_transport_is_backlogged_past_its_buffer_size_under_any_wrapping() -> None:
    sock = FileDescriptor(reactor=MemoryReactor())
    sock.connected = True
    wrapped = Wrapper(Wrapper(sock))
    sock.write(b"x" * sock.bufferSize)
    assert write_backlog(wrapped) == sock.bufferSize and not backlogged(wrapped)
    sock.write(b"x")
    assert backlogged(wrapped)


def test_a_transport_that_cannot_tell_is_never_backlogged() -> None:
    assert write_backlog(object()) == 0 and not backlogged(Wrapper(object()))


def test_a_link_is_slotted_and_counts_what_it_writes_on_its_record() -> None:
    proto = Protocol()
    proto.makeConnection(StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.1", 4000)))
    link = StreamLink(proto)
    assert verifyObject(ILink, link) and not hasattr(link, "__dict__")  # one per connection
    assert (link.remote, link.protocol, link.principal, link.record, link.sent) == (
        "192.0.2.1:4000", None, None, NO_RECORD, 0)
    link.write(b"untracked")
    link.record = ConnectionTracker().add("tcp", proto, link.remote)  # type: ignore[arg-type]
    link.write(b"abc")
    assert link.sent == 12 and link.record.sent == 3


class Lost(Protocol):
    reason: Failure | None = None

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.reason = reason


class Producer:
    paused = False

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False

    def stopProducing(self) -> None:
        pass


@pytest.fixture
def pair() -> Iterator[tuple[tcp.Connection, socket.socket, MemoryReactor]]:
    """Twisted's socket transport on one end of a socket pair, the other end to read."""
    ours, peer = socket.socketpair()
    reactor = MemoryReactor()
    conn = tcp.Connection(ours, Lost(), reactor)
    conn.connected = True
    peer.setblocking(False)
    yield conn, peer, reactor
    ours.close()
    peer.close()


def drain(conn: tcp.Connection, peer: socket.socket) -> bytes:
    """Read the peer end while Twisted writes what it buffered, as the reactor would."""
    got = bytearray()
    while True:
        try:
            chunk = peer.recv(1 << 20)
        except BlockingIOError:
            chunk = b""
        got += chunk
        if conn.dataBuffer or conn._tempDataLen:
            assert conn.doWrite() is None
        elif not chunk:
            return bytes(got)


def test_a_write_goes_straight_to_an_idle_socket(pair: tuple) -> None:
    conn, peer, reactor = pair
    write_now(conn, conn, [b"head", b"payload"])
    assert peer.recv(100) == b"headpayload"
    assert not conn._tempDataLen and conn not in reactor.getWriters()


def test_more_parts_than_sendmsg_takes_arrive_in_order(pair: tuple) -> None:
    conn, peer, _ = pair
    parts = [b"%05d" % i for i in range(5000)]  # one read of many small messages
    write_now(conn, conn, parts)
    assert drain(conn, peer) == b"".join(parts)


def test_a_write_after_buffered_ones_waits_its_turn(pair: tuple) -> None:
    conn, peer, _ = pair
    conn.write(b"first ")  # buffered: sent by doWrite, a reactor turn later
    write_now(conn, conn, [b"second"])
    with pytest.raises(BlockingIOError):
        peer.recv(100)
    assert drain(conn, peer) == b"first second"


def test_what_the_kernel_does_not_take_is_buffered_and_pauses_the_producer(pair: tuple) -> None:
    conn, peer, _ = pair
    conn.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    producer = Producer()
    conn.registerProducer(producer, True)
    conn.bufferSize = 256 * 1024
    payload = bytes(range(256)) * 8192  # 2 MiB: more than the socket pair holds
    write_now(conn, conn, [b"head", payload])
    assert 0 < conn._tempDataLen < len(payload)
    assert producer.paused
    assert drain(conn, peer) == b"head" + payload
    assert not producer.paused  # resumed once Twisted's buffer was empty


def test_a_broken_connection_is_reported_by_twisted(pair: tuple) -> None:
    conn, peer, _ = pair
    peer.close()
    write_now(conn, conn, [b"lost"])  # no exception here: the data waits in the buffer
    assert conn._tempDataLen == 4
    assert conn.doWrite() is not None  # CONNECTION_LOST, as for any write


def test_writes_bypass_only_wrappers_that_pass_them_through(pair: tuple) -> None:
    conn, _, _ = pair
    proxy = ProxyProtocolFactory(Factory.forProtocol(Protocol), "none", MemoryReactor())
    wrapper = proxy.buildProtocol(None)
    wrapper.makeConnection(conn)
    assert direct_socket(conn) is conn and direct_socket(wrapper) is conn
    tls = TLSMemoryBIOProtocol(None, Protocol())
    tls.transport = wrapper  # the TLS layer above the PROXY-protocol one, as on wss accepts
    assert direct_socket(tls) is None
    assert direct_socket(StringTransport()) is None


@given(st.text(min_size=0, max_size=300), st.integers(min_value=1, max_value=40),
       st.booleans())
def test_split_message_keeps_every_octet_and_utf8_characters_whole(
        text: str, limit: int, binary: bool) -> None:
    data = text.encode()
    parts = split_message(data, limit, binary)
    assert b"".join(parts) == data
    assert all(parts)
    assert all(len(p) <= (limit if binary else max(limit, 4)) for p in parts)
    if not binary:
        assert "".join(p.decode() for p in parts) == text  # each piece is valid UTF-8


def test_a_write_over_the_message_limit_goes_out_as_several_messages() -> None:
    sent: list[tuple[bytes, bool]] = []

    class Proto:
        STATE_OPEN = 3
        state = 3
        maxMessagePayloadSize = 10
        transport = StringTransport()

        def sendMessage(self, payload: bytes, isBinary: bool = False) -> None:
            sent.append((payload, isBinary))

    link = WebSocketLink(Proto())
    link.write(b"0123456789abcdefghijklmnopqrstu")
    assert sent == [(b"0123456789", True), (b"abcdefghij", True),
                    (b"klmnopqrst", True), (b"u", True)]
    sent.clear()
    link.write("ééééééé".encode(), binary=False)  # 14 octets, 2 per character
    assert [p for p, _ in sent] == ["ééééé".encode(), "éé".encode()]
    sent.clear()
    link.write(b"short")
    assert sent == [(b"short", True)]
