"""Close codes a gateway relays: every registered code (1014 too) reaches the gateway's
protocols on either side, and truly invalid codes are still protocol errors. Real Autobahn
peers in memory (twisted.test.iosim)."""

from __future__ import annotations

from typing import Any

import pytest
from autobahn.twisted.testing import MemoryReactorClock
from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from twisted.test import iosim

from kgateway.transport.closecodes import (
    RelayingClientProtocol,
    RelayingServerProtocol,
    receivable,
)

#: what a gateway sends or relays (RFC 6455, IANA, application codes)
RELAYED = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000,
           4000, 4999]
#: what no close frame may carry
INVALID = [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000]


class _Recording:
    """What each side saw: onOpen, and onClose's (code, reason)."""

    factory: Any

    def onOpen(self) -> None:
        self.factory.opened.append(self)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.closes.append((code, reason))


class GatewayServer(_Recording, RelayingServerProtocol):
    pass


class GatewayClient(_Recording, RelayingClientProtocol):
    pass


class PlainServer(_Recording, WebSocketServerProtocol):
    pass


class PlainClient(_Recording, WebSocketClientProtocol):
    pass


def pair(server_class: type, client_class: type) -> tuple[Any, Any, iosim.IOPump]:
    reactor = MemoryReactorClock()
    server = WebSocketServerFactory("ws://gw.test:8000/", reactor=reactor)
    client = WebSocketClientFactory("ws://gw.test:8000/", reactor=reactor)
    for factory, proto in ((server, server_class), (client, client_class)):
        factory.protocol = proto
        factory.opened, factory.closes = [], []
        factory.setProtocolOptions(failByDrop=False)
    _, _, pump = iosim.connectedServerAndClient(
        lambda: server.buildProtocol(None), lambda: client.buildProtocol(None), greet=False)
    pump.flush()
    assert server.opened and client.opened
    return server, client, pump


@pytest.mark.parametrize("code", RELAYED)
def test_a_gateway_client_hears_every_code_a_gateway_sends(code: int) -> None:
    server, client, pump = pair(PlainServer, GatewayClient)
    server.opened[0].sendCloseFrame(code, b"cannot connect to tcp://db:5432")
    pump.flush()
    assert client.closes == [(code, "cannot connect to tcp://db:5432")]


@pytest.mark.parametrize("code", RELAYED)
def test_a_gateway_server_hears_every_code_a_client_sends(code: int) -> None:
    server, client, pump = pair(GatewayServer, PlainClient)
    client.opened[0].sendCloseFrame(code, b"bye")
    pump.flush()
    assert server.closes == [(code, "bye")]


@pytest.mark.parametrize("code", INVALID)
def test_invalid_codes_are_still_protocol_errors(code: int) -> None:
    server, client, pump = pair(PlainServer, GatewayClient)
    server.opened[0].sendCloseFrame(code, b"odd")
    pump.flush()
    # The gateway answers 1002 and does not pass the invalid code on.
    assert server.closes and server.closes[0][0] == 1002
    assert client.closes and client.closes[0][0] != code


def test_receivable_is_the_same_rule() -> None:
    assert all(receivable(c) for c in RELAYED)
    assert not any(receivable(c) for c in INVALID)


def test_a_plain_autobahn_client_loses_1014() -> None:
    """Why the subclasses exist: Autobahn alone turns 1014 into a 1002 and reports 1000."""
    server, client, pump = pair(PlainServer, PlainClient)
    server.opened[0].sendCloseFrame(1014, b"bad gateway")
    pump.flush()
    assert server.closes[0][0] == 1002
    assert client.closes[0][0] == 1000
