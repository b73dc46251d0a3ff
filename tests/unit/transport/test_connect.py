"""connect_stream in memory: a link only once TCP (and the WebSocket handshake) is done, one
deadline for it all, the back end's data and close delivered to the receiver, and a tcp back
end's read size following its pace."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from autobahn.twisted.testing import MemoryReactorClockResolver
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionRequest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.testing import StringTransport
from twisted.test import iosim
from zope.interface import implementer

from kgateway.config import CONNECT_OPTIONS, Options, parse_uri
from kgateway.interfaces import ConnectError, ILink, ILinkReceiver
from kgateway.transport.connect import MAX_READ, ReadSize, connect_stream


def options(**given: Any) -> Options:
    return Options({k.replace("_", "."): v for k, v in given.items()},
                   {k: d for k, (_, d) in CONNECT_OPTIONS.items()})


@implementer(ILinkReceiver)
class Receiver:
    def __init__(self) -> None:
        self.data: list[tuple[bytes, bool]] = []
        self.closes: list[tuple[int | None, str]] = []

    def received(self, data: bytes, binary: bool) -> None:
        self.data.append((data, binary))

    def closed(self, code: int | None, reason: str) -> None:
        self.closes.append((code, reason))


def outcome(d: Any) -> list[Any]:
    results: list[Any] = []
    d.addBoth(results.append)
    return results


def test_the_deadline_covers_everything_and_says_how_long_it_was() -> None:
    reactor = MemoryReactorClockResolver()
    d = connect_stream(reactor, parse_uri("tcp://backend.test:9000"), options(connect_timeout=3.0),
                       Receiver())
    results = outcome(d)
    reactor.advance(2.9)
    assert results == []
    reactor.advance(0.1)
    assert results[0].check(ConnectError)
    assert results[0].getErrorMessage() == "timed out after 3s"


def test_a_stream_link_delivers_both_ways_and_reports_the_close() -> None:
    reactor = MemoryReactorClockResolver()
    receiver = Receiver()
    results = outcome(connect_stream(reactor, parse_uri("tcp://backend.test:9000"),
                                     options(), receiver))
    (host, port, factory, _, _), = reactor.tcpClients
    assert (host, port) == ("127.0.0.1", 9000)
    proto = factory.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    link: ILink = results[0]
    assert link.remote == "192.168.1.1:54321"  # StringTransport's peer
    link.write(b"to the back end")
    assert transport.value() == b"to the back end"
    proto.dataReceived(b"from the back end")
    assert receiver.data == [(b"from the back end", True)]
    proto.connectionLost(None)
    assert receiver.closes == [(None, "connection lost")]
    reactor.advance(60)  # the deadline was cancelled: nothing more happens
    assert len(results) == 1


class _Server(WebSocketServerProtocol):
    def onConnect(self, request: ConnectionRequest) -> str:
        return "v11.stomp"

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.sendMessage(payload.upper(), isBinary)


def test_a_websocket_link_exists_only_after_the_handshake() -> None:
    reactor = MemoryReactorClockResolver()
    receiver = Receiver()
    results = outcome(connect_stream(reactor, parse_uri("ws://backend.test:9000/x"), options(),
                                     receiver, protocols=["v12.stomp", "v11.stomp"]))
    (_, _, client_factory, _, _), = reactor.tcpClients
    server_factory = WebSocketServerFactory("ws://backend.test:9000/x", reactor=reactor)
    server_factory.protocol = _Server
    _, _, pump = iosim.connectedServerAndClient(
        lambda: server_factory.buildProtocol(None), lambda: client_factory.buildProtocol(None),
        greet=False)
    assert results == []  # TCP is up, the handshake is not
    pump.flush()
    link: ILink = results[0]
    assert link.is_websocket and link.protocol == "v11.stomp"
    link.write(b"hello", False)
    pump.flush()
    assert receiver.data == [(b"HELLO", False)]
    link.close(1000, "done")
    pump.flush()
    assert [code for code, _ in receiver.closes] == [1000]


KIB = 1024


def stream_backend(buffer_size: int) -> tuple[Any, StringTransport, ILink, Receiver]:
    """A connected tcp back end whose transport reads *buffer_size* octets at a time."""
    reactor = MemoryReactorClockResolver()
    receiver = Receiver()
    results = outcome(connect_stream(reactor, parse_uri("tcp://backend.test:9000"),
                                     options(), receiver))
    (_, _, factory, _, _), = reactor.tcpClients
    proto = factory.buildProtocol(None)
    transport = StringTransport()
    transport.bufferSize = buffer_size  # type: ignore[attr-defined]  # as on Twisted's sockets
    proto.makeConnection(transport)
    return proto, transport, results[0], receiver


def test_full_reads_double_the_read_size_up_to_the_maximum_and_small_ones_halve_it() -> None:
    proto, transport, _, receiver = stream_backend(256 * KIB)
    sizes = []
    for _ in range(4):  # each read fills the buffer: the back end has more waiting
        proto.dataReceived(b"x" * transport.bufferSize)  # type: ignore[attr-defined]
        sizes.append(transport.bufferSize)  # type: ignore[attr-defined]
    assert sizes == [512 * KIB, MAX_READ, MAX_READ, MAX_READ]
    proto.dataReceived(b"x" * (MAX_READ // 2))  # half full: keeps the size
    assert transport.bufferSize == MAX_READ  # type: ignore[attr-defined]
    for _ in range(3):  # a quiet connection: back to where it started, no lower
        proto.dataReceived(b"hello")
        sizes.append(transport.bufferSize)  # type: ignore[attr-defined]
    assert sizes[4:] == [512 * KIB, 256 * KIB, 256 * KIB]
    assert sum(len(data) for data, _ in receiver.data) == \
        256 * KIB + 512 * KIB + 2 * MAX_READ + MAX_READ // 2 + 3 * 5


def test_a_new_write_limit_is_the_new_floor() -> None:
    proto, transport, link, _ = stream_backend(256 * KIB)
    proto.dataReceived(b"hello")  # less than the floor: nothing to shrink
    assert transport.bufferSize == 256 * KIB  # type: ignore[attr-defined]
    proto.dataReceived(b"x" * 256 * KIB)
    assert transport.bufferSize == 512 * KIB  # type: ignore[attr-defined]
    link.set_write_limit(64 * KIB)
    proto.dataReceived(b"hello")
    assert transport.bufferSize == 64 * KIB  # type: ignore[attr-defined]
    proto.dataReceived(b"x" * 64 * KIB)
    assert transport.bufferSize == 128 * KIB  # type: ignore[attr-defined]
    proto.dataReceived(b"hello")
    assert transport.bufferSize == 64 * KIB  # type: ignore[attr-defined]


@given(st.integers(1, 2 * MAX_READ), st.lists(st.integers(1, 2 * MAX_READ), max_size=30))
def test_the_read_size_stays_between_its_floor_and_the_maximum(floor: int,
                                                                reads: list[int]) -> None:
    sock = SimpleNamespace(bufferSize=floor)
    size = ReadSize(sock)
    for octets in reads:
        before = sock.bufferSize
        size.read(octets)
        after = sock.bufferSize
        assert floor <= after <= max(floor, MAX_READ)
        assert after <= before or octets >= before  # grows only after a full read
        assert after >= before or octets <= before // 4  # shrinks only after a small one
