"""The PROXY-protocol wrapper of listening sockets, in memory."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport

from kgateway.protocols.proxy_protocol import build_v1, build_v2
from kgateway.transport.proxyproto import HEADER_TIMEOUT, ProxyProtocolFactory


class Recorder(Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.peer: Any = None
        self.lost = False

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.peer = self.transport.getPeer()

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: object = None) -> None:
        self.lost = True


def connect(mode: str, refusals: list[str] | None = None
            ) -> tuple[Any, Recorder, StringTransport, MemoryReactorClock]:
    reactor = MemoryReactorClock()
    inner = Recorder()
    on_refused = (lambda: refusals.append("proxy")) if refusals is not None else None
    factory = ProxyProtocolFactory(Factory.forProtocol(lambda: inner), mode, reactor, "test",
                                   on_refused)
    proto = factory.buildProtocol(IPv4Address("TCP", "10.0.0.2", 51000))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.2", 51000))
    proto.makeConnection(transport)
    return proto, inner, transport, reactor


@pytest.mark.parametrize("header", [build_v1(("198.51.100.7", 40000), ("10.0.0.5", 8000)),
                                    build_v2(("198.51.100.7", 40000), ("10.0.0.5", 8000))])
def test_the_wrapped_protocol_sees_the_real_client_from_its_first_call(header: bytes) -> None:
    proto, inner, transport, _ = connect("any")
    assert inner.peer is None  # not connected before the header is known
    for i in range(len(header)):
        proto.dataReceived(header[i:i + 1])
    proto.dataReceived(b"hello")
    assert inner.peer == IPv4Address("TCP", "198.51.100.7", 40000)
    assert inner.data == b"hello"
    assert not transport.disconnecting


def test_local_header_keeps_the_socket_peer_and_trailing_bytes() -> None:
    proto, inner, _, _ = connect("v2")
    proto.dataReceived(build_v2(None) + b"GET")
    assert inner.peer == IPv4Address("TCP", "10.0.0.2", 51000)
    assert inner.data == b"GET"


def test_a_client_without_a_header_is_refused() -> None:
    refusals: list[str] = []
    proto, inner, transport, _ = connect("v1", refusals)
    proto.dataReceived(b"GET / HTTP/1.1\r\n")
    assert transport.disconnecting and inner.peer is None and inner.data == b""
    assert refusals == ["proxy"]  # counted (the listener gives it to the tracker)


def test_a_silent_client_is_refused_after_the_header_timeout() -> None:
    proto, inner, transport, reactor = connect("any")
    reactor.advance(HEADER_TIMEOUT)
    assert transport.disconnecting


@pytest.mark.parametrize("forged", [b"PROXY TCP4 6.6.6.6 10.0.0.5 1 2\r\n",
                                    build_v2(("6.6.6.6", 1))])
def test_mode_none_refuses_a_forged_header(forged: bytes) -> None:
    proto, inner, transport, _ = connect("none")
    assert inner.peer == IPv4Address("TCP", "10.0.0.2", 51000)  # connected at once
    for i in range(len(forged)):
        if transport.disconnecting:
            break
        proto.dataReceived(forged[i:i + 1])
    assert transport.disconnecting and inner.data == b""


def test_mode_none_passes_other_bytes_through() -> None:
    proto, inner, transport, _ = connect("none")
    proto.dataReceived(b"PRO")  # might be a signature: held
    assert inner.data == b""
    proto.dataReceived(b"TOCOL 1")  # "PROTO..." is not "PROXY ": delivered, in order
    proto.dataReceived(b"more")
    assert inner.data == b"PROTOCOL 1more"
    assert not transport.disconnecting


def test_write_limit_reaches_the_socket() -> None:
    proto, _, transport, _ = connect("none")
    proto.bufferSize = 1234
    assert transport.bufferSize == 1234  # type: ignore[attr-defined]


@pytest.mark.parametrize("mode, first", [("none", b"GET / HTTP/1.1\r\n"),
                                         ("v1", build_v1(("198.51.100.7", 40000),
                                                         ("10.0.0.5", 8000)))])
def test_once_settled_reads_and_writes_skip_the_wrapper(mode: str, first: bytes) -> None:
    proto, inner, transport, _ = connect(mode)
    assert proto.dataReceived != inner.dataReceived  # still looking at the first bytes
    proto.dataReceived(first)
    assert proto.dataReceived == inner.dataReceived  # bound straight to the protocol
    proto.dataReceived(b"frames")
    assert inner.data.endswith(b"frames")
    proto.write(b"out")
    proto.writeSequence([b" and ", b"more"])
    assert transport.value() == b"out and more"
    # Autobahn's WebSocketResource swaps the protocol at the upgrade: reads follow it.
    websocket = Recorder()
    proto.wrappedProtocol = websocket
    proto.dataReceived(b"ws")
    assert websocket.data == b"ws" and not inner.data.endswith(b"ws")


@pytest.mark.parametrize("mode, first", [("none", b"GET / HTTP/1.1\r\n"), ("none", b""),
                                         ("v1", build_v1(("198.51.100.7", 40000),
                                                         ("10.0.0.5", 8000)))])
def test_connection_lost_after_the_header_is_settled_or_not(mode: str, first: bytes) -> None:
    # ProtocolWrapper.connectionLost drops the wrapped protocol (wrappedProtocol = None) to
    # break the cycle: that must not try to bind reads to None (an "Unhandled Error" per
    # reset connection, once).
    proto, inner, _, _ = connect(mode)
    if first:
        proto.dataReceived(first)
    proto.connectionLost(ConnectionDone())
    assert proto.wrappedProtocol is None
    assert inner.lost
