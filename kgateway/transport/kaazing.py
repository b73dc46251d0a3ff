"""The extended handshake for Kaazing clients, in front of any service's session.

    Kaazing client --ws/wss--> GatewayWebSocketProtocol --> KaazingHandshake --> ISession
                                (offered x-kaazing-handshake)   (this module)     (echo, proxy,
                                                                                  amqp.proxy, jms)

When a client offers ``x-kaazing-handshake`` the accept adapter wraps the service's session
in :class:`KaazingHandshake`, which selects that protocol in the opening handshake, then plays
the extended handshake (``kgateway.protocols.kaazing``): the service's own ``negotiate`` runs
on the protocols named in the client's first message, its choice goes back in the embedded
101, and only then is the service's session ``opened()``. From there on every call passes
straight through. A service therefore never sees ``x-kaazing-handshake``, and a Kaazing
client behind any number of kgateway hops talks to the first one's extended handshake only.

A refusal by the service (amqp.proxy's 400 for a foreign protocol, an unreachable back end)
is answered in the extended handshake (400/403/502) and the WebSocket is closed (1002, 1008
or 1014) with the reason. Not done: the 401 challenge inside the extended handshake (a
service's realm challenges at the opening handshake instead: see README "Authentication").
"""

from __future__ import annotations

import enum
from typing import Any

from autobahn.websocket.types import ConnectionDeny
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import alsoProvides, implementer

from kgateway.interfaces import (
    BAD_GATEWAY,
    POLICY_VIOLATION,
    PROTOCOL_ERROR,
    ConnectError,
    IGoingAway,
    ILink,
    ISession,
)
from kgateway.protocols.kaazing import (
    BALANCER_NONE,
    KAAZING_HANDSHAKE,
    BadExtendedRequest,
    encode_response,
    parse_request,
)

log = Logger()

#: seconds a client has to send its extended handshake request (Kaazing's client gives up
#: on the server after 5s, so a live client is always well within this)
REQUEST_TIMEOUT = 10.0


class Phase(enum.Enum):
    OFFERED = "offered"  # opening handshake: x-kaazing-handshake selected
    WAITING = "waiting"  # open; waiting for the extended handshake request
    NEGOTIATING = "negotiating"  # the service's negotiate() runs (a back end connects)
    OPEN = "open"  # pass-through
    CLOSED = "closed"


def offers_kaazing_handshake(offered: list[str]) -> bool:
    return KAAZING_HANDSHAKE in offered


@implementer(ISession)
class KaazingHandshake:
    """Wraps *inner* (the service's session for *link*); see the module docstring."""

    def __init__(self, inner: ISession, link: ILink, reactor: Any,
                 timeout: float = REQUEST_TIMEOUT, service: str = "") -> None:
        self.inner = inner
        self.link = link
        self.reactor = reactor
        self.timeout = timeout
        self.service = service
        self.phase = Phase.OFFERED
        self._timer: Any = None
        if IGoingAway.providedBy(inner):
            alsoProvides(self, IGoingAway)

    # ISession, as the accept adapter drives it

    def negotiate(self, offered: list[str]) -> str:
        return KAAZING_HANDSHAKE

    def opened(self) -> None:
        if self.phase is not Phase.OFFERED:
            return
        self.phase = Phase.WAITING
        self.link.write(BALANCER_NONE, True)
        self._timer = self.reactor.callLater(self.timeout, self._expired)

    def received(self, data: bytes, binary: bool) -> None:
        if self.phase is Phase.OPEN:
            self.inner.received(data, binary)
        elif self.phase is Phase.WAITING:
            self._request(data)
        elif self.phase is Phase.NEGOTIATING:
            self._fail(PROTOCOL_ERROR, "message before the extended handshake completed")

    def closed(self, code: int | None, reason: str) -> None:
        was, self.phase = self.phase, Phase.CLOSED
        self._cancel_timer()
        if was in (Phase.NEGOTIATING, Phase.OPEN):
            # The service has begun (a back end may be connecting): let it clean up.
            self.inner.closed(code, reason)

    def going_away(self) -> None:  # provided only when the inner session provides it
        if self.phase is Phase.OPEN:
            self.inner.going_away()  # type: ignore[attr-defined]

    # the extended handshake

    def _request(self, data: bytes) -> None:
        self._cancel_timer()
        try:
            request = parse_request(data)
        except BadExtendedRequest as e:
            self._refuse(400, PROTOCOL_ERROR, str(e))
            return
        self.phase = Phase.NEGOTIATING
        d = defer.maybeDeferred(self.inner.negotiate, request.protocols)
        d.addCallbacks(self._chosen, self._refused)

    def _chosen(self, protocol: Any) -> None:
        if self.phase is not Phase.NEGOTIATING:
            return  # the client went away meanwhile
        self.phase = Phase.OPEN
        self.link.protocol = protocol
        self.link.write(encode_response(101, protocol), False)
        self.link.write(b"", False)
        self.link.write(BALANCER_NONE, True)
        self.inner.opened()

    def _refused(self, failure: Failure) -> None:
        if self.phase is not Phase.NEGOTIATING:
            return
        value = failure.value
        if isinstance(value, ConnectionDeny):
            status = value.code
            code = PROTOCOL_ERROR if status == 400 else POLICY_VIOLATION
            why = value.reason or f"refused ({status})"
        elif isinstance(value, ConnectError):
            status, code, why = 502, BAD_GATEWAY, str(value)
        else:
            log.failure("{service}: extended handshake failed", failure,
                        service=self.service)
            status, code, why = 500, PROTOCOL_ERROR, "internal error"
        self._refuse(status, code, why)

    def _refuse(self, status: int, code: int, why: str) -> None:
        log.info("{service}: refusing {peer} at the Kaazing extended handshake: {reason}",
                 service=self.service, peer=self.link.remote, reason=why)
        self.link.write(encode_response(status), False)
        self.link.write(b"", False)
        self._fail(code, why)

    def _fail(self, code: int, why: str) -> None:
        was, self.phase = self.phase, Phase.CLOSED
        self._cancel_timer()
        if was in (Phase.NEGOTIATING, Phase.OPEN):
            self.inner.closed(code, why)  # it may have begun: a back end connecting
        self.link.close(code, why)

    def _expired(self) -> None:
        self._timer = None
        if self.phase is Phase.WAITING:
            self._fail(PROTOCOL_ERROR, f"no extended handshake request within "
                                       f"{self.timeout:g}s")

    def _cancel_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
