"""A Kaazing client's opening sequence against echo, proxy and amqp.proxy sessions behind
the real accept adapter, in memory (twisted.test.iosim; a real Autobahn client plays
Kaazing's JavaScript client: x-kaazing-handshake offered first, the extended request in its
first message, open only after the embedded 101 and the second balancer message)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autobahn.twisted.testing import MemoryReactorClock
from autobahn.twisted.websocket import WebSocketClientFactory
from twisted.test import iosim

from kgateway.config import parse_uri
from kgateway.interfaces import ConnectError
from kgateway.protocols.kaazing import BALANCER_NONE
from kgateway.transport.accept import GatewayWebSocketFactory
from kgateway.transport.closecodes import RelayingClientProtocol
from kgateway.transport.kaazing import REQUEST_TIMEOUT
from kgateway.transport.tracker import ConnectionTracker
from tests.unit.fakes import FakeConnector, FakeLink, build, load


class KaazingClient(RelayingClientProtocol):  # hears 1014 too
    """Records everything, in order: ("open", protocol), ("text"|"binary", payload),
    ("close", code, reason)."""

    def onOpen(self) -> None:
        self.factory.events.append(("open", self.websocket_protocol_in_use))

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.events.append(("binary" if isBinary else "text", payload))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.events.append(("close", code, reason))


def extended_request(path: str, protocols: list[str]) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nWebSocket-Protocol: \r\n"
            f"Sec-WebSocket-Protocol: {','.join(protocols)}\r\n"
            "Sec-WebSocket-Extensions: x-kaazing-idle-timeout,x-kaazing-ping-pong\r\n"
            "\r\n").encode()


def gateway(tmp_path: Path, body: str, connector: FakeConnector | None = None,
            ) -> GatewayWebSocketFactory:
    cfg = load(tmp_path, body)
    reactor = MemoryReactorClock()
    service = build(cfg, reactor=reactor, connector=connector)
    uri = cfg.services[0].accepts[0]
    return GatewayWebSocketFactory(service, parse_uri(uri.text), reactor, ConnectionTracker())


def open_kaazing(server: GatewayWebSocketFactory, protocols: list[str]
                 ) -> tuple[Any, list[Any], iosim.IOPump]:
    """The opening handshake and the first balancer message."""
    factory = WebSocketClientFactory(server.url, reactor=server.reactor,
                                     protocols=["x-kaazing-handshake", *protocols])
    factory.protocol = KaazingClient
    factory.events = []  # type: ignore[attr-defined]
    client, _, pump = iosim.connectedServerAndClient(
        lambda: server.buildProtocol(None), lambda: factory.buildProtocol(None), greet=False)
    pump.flush()
    events = factory.events  # type: ignore[attr-defined]
    assert events[:2] == [("open", "x-kaazing-handshake"), ("binary", BALANCER_NONE)]
    del events[:2]
    return client, events, pump


def complete(events: list[Any], protocol: str | None) -> None:
    """The embedded 101, the empty end-of-response message, the second balancer message."""
    (kind, response), end, balancer = events[:3]
    del events[:3]
    assert kind == "text" and response.startswith(b"HTTP/1.1 101 ")
    if protocol:
        assert f"\r\nSec-WebSocket-Protocol: {protocol}\r\n".encode() in response
    else:
        assert b"Sec-WebSocket-Protocol" not in response
    assert end == ("text", b"") and balancer == ("binary", BALANCER_NONE)


ECHO = "<service><accept>ws://gw.test:8000/echo</accept><type>echo</type></service>"


def test_echo_completes_the_extended_handshake_then_echoes(tmp_path: Path) -> None:
    server = gateway(tmp_path, ECHO)
    client, events, pump = open_kaazing(server, ["v12.stomp"])
    client.sendMessage(extended_request("/echo", ["v12.stomp"]), isBinary=False)
    pump.flush()
    complete(events, "v12.stomp")
    client.sendMessage(b"hello", isBinary=False)
    pump.flush()
    assert events == [("text", b"hello")]


def test_echo_with_no_application_protocol(tmp_path: Path) -> None:
    server = gateway(tmp_path, ECHO)
    client, events, pump = open_kaazing(server, [])
    client.sendMessage(extended_request("/echo", []), isBinary=False)
    pump.flush()
    complete(events, None)


def test_proxy_connects_with_the_real_protocols_only_after_the_request(tmp_path: Path) -> None:
    connector = FakeConnector()
    server = gateway(tmp_path, "<service><accept>ws://gw.test:8000/p</accept>"
                               "<connect>ws://backend:9000/x</connect><type>proxy</type>"
                               "</service>", connector)
    client, events, pump = open_kaazing(server, ["amqp0-9-1"])
    assert connector.calls == []  # nothing until the client says what it wants
    client.sendMessage(extended_request("/p", ["amqp0-9-1"]), isBinary=False)
    pump.flush()
    (call,) = connector.calls
    assert call.protocols == ["amqp0-9-1"]  # never x-kaazing-handshake to the back end
    assert events == []  # the client is not open while the back end connects
    backend = FakeLink(protocol="amqp0-9-1")
    call.d.callback(backend)
    pump.flush()
    complete(events, "amqp0-9-1")
    client.sendMessage(b"\x01\x02", isBinary=True)
    pump.flush()
    assert backend.messages == [(b"\x01\x02", True)]


def test_proxy_to_a_tcp_back_end_never_selects_the_handshake_protocol(tmp_path: Path) -> None:
    connector = FakeConnector()
    server = gateway(tmp_path, "<service><accept>ws://gw.test:8000/p</accept>"
                               "<connect>tcp://backend:9000</connect><type>proxy</type>"
                               "</service>", connector)
    client, events, pump = open_kaazing(server, [])
    client.sendMessage(extended_request("/p", []), isBinary=False)
    pump.flush()
    connector.calls[0].d.callback(FakeLink(websocket=False))
    pump.flush()
    complete(events, None)


def test_proxy_with_an_unreachable_back_end_answers_502_then_closes_1014(tmp_path: Path) -> None:
    connector = FakeConnector()
    server = gateway(tmp_path, "<service><accept>ws://gw.test:8000/p</accept>"
                               "<connect>ws://backend:9000/x</connect><type>proxy</type>"
                               "</service>", connector)
    client, events, pump = open_kaazing(server, ["amqp0-9-1"])
    client.sendMessage(extended_request("/p", ["amqp0-9-1"]), isBinary=False)
    pump.flush()
    connector.calls[0].d.errback(ConnectError("Connection refused"))
    pump.flush()
    # proxy answers a WebSocket client's failed connect with 101 and then 1014 (as without
    # the extended handshake): the reason reaches the client either way.
    complete(events, "amqp0-9-1")
    assert events[-1][:2] == ("close", 1014)
    assert "cannot connect to ws://backend:9000/x" in events[-1][2]


AMQP = ("<service><accept>ws://gw.test:8000/amqp</accept><connect>tcp://broker:5672</connect>"
        "<type>amqp.proxy</type></service>")


def test_amqp_proxy_takes_an_offer_of_only_the_handshake_protocol_as_none(
        tmp_path: Path) -> None:
    connector = FakeConnector()
    server = gateway(tmp_path, AMQP, connector)
    client, events, pump = open_kaazing(server, [])
    client.sendMessage(extended_request("/amqp", []), isBinary=False)
    pump.flush()
    complete(events, None)


def test_amqp_proxy_chooses_its_protocol_in_the_extended_handshake(tmp_path: Path) -> None:
    server = gateway(tmp_path, AMQP, FakeConnector())
    client, events, pump = open_kaazing(server, ["amqp"])
    client.sendMessage(extended_request("/amqp", ["v12.stomp", "amqp"]), isBinary=False)
    pump.flush()
    complete(events, "amqp")


def test_amqp_proxy_refuses_a_foreign_protocol_with_an_embedded_400(tmp_path: Path) -> None:
    server = gateway(tmp_path, AMQP, FakeConnector())
    client, events, pump = open_kaazing(server, ["v12.stomp"])
    client.sendMessage(extended_request("/amqp", ["v12.stomp"]), isBinary=False)
    pump.flush()
    assert events[0] == ("text", b"HTTP/1.1 400 Bad Request\r\n\r\n")
    assert events[1] == ("text", b"")
    assert events[2][:2] == ("close", 1002) and "AMQP 0-9-1" in events[2][2]


def test_a_client_that_skips_the_extended_request_is_closed(tmp_path: Path) -> None:
    server = gateway(tmp_path, ECHO)
    client, events, pump = open_kaazing(server, ["v12.stomp"])
    client.sendMessage(b"CONNECT\n\n\x00", isBinary=False)  # application data too early
    pump.flush()
    assert events[0] == ("text", b"HTTP/1.1 400 Bad Request\r\n\r\n")
    assert events[-1][:2] == ("close", 1002)


def test_a_client_that_says_nothing_is_closed_after_the_timeout(tmp_path: Path) -> None:
    server = gateway(tmp_path, ECHO)
    client, events, pump = open_kaazing(server, ["v12.stomp"])
    server.reactor.advance(REQUEST_TIMEOUT)
    pump.flush()
    assert events[-1][:2] == ("close", 1002) and "extended handshake" in events[-1][2]


def test_clients_that_do_not_offer_it_are_untouched(tmp_path: Path) -> None:
    server = gateway(tmp_path, ECHO)
    factory = WebSocketClientFactory(server.url, reactor=server.reactor, protocols=["v12.stomp"])
    factory.protocol = KaazingClient
    factory.events = []  # type: ignore[attr-defined]
    client, _, pump = iosim.connectedServerAndClient(
        lambda: server.buildProtocol(None), lambda: factory.buildProtocol(None), greet=False)
    pump.flush()
    client.sendMessage(b"hi", isBinary=False)
    pump.flush()
    assert factory.events == [("open", "v12.stomp"), ("text", b"hi")]  # type: ignore[attr-defined]


def test_no_service_selects_the_handshake_protocol_on_its_own(tmp_path: Path) -> None:
    """Where no extended handshake runs in front (a session built without the accept
    adapter's wrapper), the services still never choose x-kaazing-handshake."""
    offer = ["x-kaazing-handshake", "v12.stomp"]
    echo = gateway(tmp_path, ECHO).service.session(FakeLink())
    assert echo.negotiate(offer) == "v12.stomp"
    assert echo.negotiate(["x-kaazing-handshake"]) is None
    amqp = gateway(tmp_path, AMQP, FakeConnector()).service.session(FakeLink())
    assert amqp.negotiate(["x-kaazing-handshake"]) is None  # like an offer of none
    connector = FakeConnector()
    proxy = gateway(tmp_path, "<service><accept>ws://gw.test:8000/p</accept>"
                              "<connect>tcp://backend:9000</connect><type>proxy</type>"
                              "</service>", connector).service.session(FakeLink())
    chosen: list[Any] = []
    proxy.negotiate(offer).addCallback(chosen.append)
    assert connector.calls[0].protocols == ["v12.stomp"]
    connector.calls[0].d.callback(FakeLink(websocket=False))
    assert chosen == ["v12.stomp"]
