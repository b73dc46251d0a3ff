"""permessage-deflate on accepts: off by default, negotiated when asked, bounded by
ws.maximum.message.size. A real Autobahn client offering deflate, in memory (iosim)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from autobahn.twisted.testing import MemoryReactorClock
from autobahn.twisted.websocket import WebSocketClientFactory
from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateResponseAccept
from twisted.test import iosim

from kgateway.config import parse_uri
from kgateway.transport.accept import GatewayWebSocketFactory
from kgateway.transport.closecodes import RelayingClientProtocol
from kgateway.transport.tracker import ConnectionTracker
from tests.unit.fakes import build, load


class Client(RelayingClientProtocol):
    def onOpen(self) -> None:
        self.factory.events.append(("open", self._perMessageCompress is not None))

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.events.append(("message", len(payload)))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.events.append(("close", code))


def echo(tmp_path: Path, options: str = "") -> GatewayWebSocketFactory:
    cfg = load(tmp_path, "<service><accept>ws://gw.test:8000/echo</accept><type>echo</type>"
                         f"<accept-options>{options}</accept-options></service>")
    return GatewayWebSocketFactory(build(cfg), parse_uri("ws://gw.test:8000/echo"),
                                   MemoryReactorClock(), ConnectionTracker())


def connect(server: GatewayWebSocketFactory, offer: Any) -> tuple[Any, Any, list[Any],
                                                                   iosim.IOPump]:
    factory = WebSocketClientFactory("ws://gw.test:8000/echo", reactor=server.reactor)
    factory.setProtocolOptions(perMessageCompressionOffers=[offer],
                               perMessageCompressionAccept=PerMessageDeflateResponseAccept)
    factory.protocol = Client
    factory.events = []  # type: ignore[attr-defined]
    client, server_proto, pump = iosim.connectedServerAndClient(
        lambda: server.buildProtocol(None), lambda: factory.buildProtocol(None), greet=False)
    pump.flush()
    return client, server_proto, factory.events, pump  # type: ignore[attr-defined]


def test_off_by_default(tmp_path: Path) -> None:
    _, server_proto, events, _ = connect(echo(tmp_path), PerMessageDeflateOffer())
    assert events == [("open", False)]
    assert server_proto._perMessageCompress is None


@pytest.mark.parametrize("options, takeover", [
    ("<ws.permessage-deflate>true</ws.permessage-deflate>", True),
    ("<ws.permessage-deflate>true</ws.permessage-deflate>"
     "<ws.permessage-deflate.window-bits>10</ws.permessage-deflate.window-bits>"
     "<ws.permessage-deflate.context-takeover>false</ws.permessage-deflate.context-takeover>",
     False),
])
def test_negotiated_when_asked_and_messages_still_echo(tmp_path: Path, options: str,
                                                       takeover: bool) -> None:
    client, server_proto, events, pump = connect(echo(tmp_path, options),
                                                 PerMessageDeflateOffer())
    assert events == [("open", True)]
    compress = server_proto._perMessageCompress
    assert compress.server_no_context_takeover is (not takeover)
    wire_before = client.trafficStats.incomingOctetsWireLevel
    client.sendMessage(b"a" * 100_000, isBinary=True)
    pump.flush()
    assert events[-1] == ("message", 100_000)
    # The echo crossed the wire compressed: far fewer octets than the payload.
    assert client.trafficStats.incomingOctetsWireLevel - wire_before < 2_000


def test_a_zip_bomb_is_an_oversize_message(tmp_path: Path) -> None:
    options = ("<ws.permessage-deflate>true</ws.permessage-deflate>"
               "<ws.maximum.message.size>64k</ws.maximum.message.size>")
    client, _, events, pump = connect(echo(tmp_path, options), PerMessageDeflateOffer())
    client.sendMessage(b"\x00" * (1024 * 1024), isBinary=True)  # ~1 KiB on the wire
    pump.flush()
    # The client was told 1009 (its onClose waits for the server to drop TCP, on a timer).
    assert client.remoteCloseCode == 1009
    assert b"after decompression" in (client.remoteCloseReason or "").encode()
    assert not any(e[0] == "message" for e in events)


def test_window_bits_are_checked(tmp_path: Path) -> None:
    from kgateway.config.model import ConfigError

    with pytest.raises(ConfigError, match="expected 9 to 15"):
        echo(tmp_path, "<ws.permessage-deflate.window-bits>16</ws.permessage-deflate.window-bits>")
