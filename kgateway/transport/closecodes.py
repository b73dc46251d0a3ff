"""Close codes that survive a chain of gateways.

    client <--ws-- gateway A <--wss-- gateway B <--tcp-- (unreachable back end)
            1014            1014             "cannot connect to ..."

A gateway relays the close code and reason it receives to the other side, so a client at
the end of a chain sees what the innermost gateway said. Autobahn checks every received
close code against ``WebSocketProtocol.CLOSE_STATUS_CODES_ALLOWED``, a list that lacks
1014 (IANA "Bad Gateway", registered after RFC 6455): it answers such a close with a
protocol error (1002) and reports 1000 "normal" to the application, so a gateway's 1014
became a 1000 one hop later. Autobahn reads that list from the base class by name (not
``self``), so no subclass attribute changes it: :class:`RelayingServerProtocol` and
:class:`RelayingClientProtocol` override ``onCloseFrame`` for the registered codes the list
lacks, and leave every other code to Autobahn's check (0-999, 1004-1006, 1015, 1016-2999
and 5000+ stay protocol errors).

Every WebSocket protocol of the gateway (accept and connect adapters, both ends of
Enterprise Shield) derives from one of them instead of Autobahn's Twisted classes.
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted.websocket import WebSocketClientProtocol, WebSocketServerProtocol
from autobahn.websocket.protocol import WebSocketProtocol

from kgateway.interfaces import BAD_GATEWAY, NORMAL
from kgateway.transport import autobahnlog

# Autobahn pretty-prints its options for a debug line on every connection: not when
# debug logging is off (transport.autobahnlog).
autobahnlog.install()

#: registered codes a peer may send (RFC 6455 7.4.1 and the IANA registry) that Autobahn's
#: receive check does not know
EXTRA_RECEIVABLE = frozenset({BAD_GATEWAY})


def receivable(code: int) -> bool:
    """True if a close frame may carry *code* (what a gateway accepts from a peer)."""
    if code in EXTRA_RECEIVABLE or 3000 <= code <= 4999:
        return True
    return code in WebSocketProtocol.CLOSE_STATUS_CODES_ALLOWED


def _close_frame(proto: WebSocketProtocol, autobahn: Any, code: int,
                 reasonRaw: bytes) -> bool | None:
    """``onCloseFrame`` for *proto*, with *autobahn* its parent class's bound method."""
    if code not in EXTRA_RECEIVABLE:
        return autobahn(code, reasonRaw)
    # Let Autobahn run its closing handshake (reason check, reply, timers) on a code it knows,
    # then record the real one: onClose reads remoteCloseCode only later, from
    # connectionLost. The reply we send is 1000 either way (echoCloseCodeReason is off).
    stop: bool | None = autobahn(NORMAL, reasonRaw)
    if proto.remoteCloseCode == NORMAL:
        proto.remoteCloseCode = code
    return stop


class RelayingServerProtocol(WebSocketServerProtocol):
    """Autobahn's server protocol, accepting 1014 in received close frames."""

    def onCloseFrame(self, code: int, reasonRaw: bytes) -> bool | None:
        return _close_frame(self, super().onCloseFrame, code, reasonRaw)


class RelayingClientProtocol(WebSocketClientProtocol):
    """Autobahn's client protocol, accepting 1014 in received close frames."""

    def onCloseFrame(self, code: int, reasonRaw: bytes) -> bool | None:
        return _close_frame(self, super().onCloseFrame, code, reasonRaw)
