"""connect_stream in memory: a link only once TCP (and the WebSocket handshake) is done, one
deadline for it all, and the back end's data and close delivered to the receiver."""

from __future__ import annotations

from typing import Any

from autobahn.twisted.testing import MemoryReactorClockResolver
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionRequest
from twisted.internet.testing import StringTransport
from twisted.test import iosim
from zope.interface import implementer

from kgateway.config import CONNECT_OPTIONS, Options, parse_uri
from kgateway.interfaces import ConnectError, ILink, ILinkReceiver
from kgateway.transport.connect import connect_stream


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
