"""The Twisted side of one ``amqp.proxy`` client: drives the sans-IO AmqpRelay.

    client link --ISession--> AmqpSession --client_data()--> AmqpRelay (relay.py)
    broker link <--ILink----- AmqpSession <--RelayOutput----- (to_broker, close_client...)
    broker link --_Broker (ILinkReceiver)--> broker_data() / broker_lost()

It opens the broker connection when the relay asks (only after a valid protocol header) to
the node its service's balancer picks, moving on to the next node if a connect fails,
turns relay outputs into link writes and closes, runs the relay's timers on the reactor, and
wires back-pressure both ways: each link's write buffer is bounded by
``maximum.pending.bytes`` and, when full, pauses reading from the other link (through
:class:`_Throttle`, which never closes anything). What the session needs of its service is
exactly :class:`AmqpHost`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from autobahn.websocket.types import ConnectionDeny
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import LoginFailed
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from kgateway.amqp.relay import AmqpRelay, Phase, RelaySettings
from kgateway.auth.gate import Gate
from kgateway.auth.principal import Principal
from kgateway.config import ServiceConfig
from kgateway.interfaces import ConnectError, IConnector, IGoingAway, ILink, ILinkReceiver, ISession
from kgateway.protocols.kaazing import application_protocols
from kgateway.timers import NamedTimers
from kgateway.transport.tracker import note_backend

log = Logger()

SUBPROTOCOL = "amqp"


class Nodes(Protocol):
    """The service's choice of broker node (a ``kgateway.balancer.Balancer``): targets are
    opaque here, each with a ``uri``."""

    def pick(self, exclude: Sequence[Any] = ()) -> Any: ...

    def untried(self, exclude: Sequence[Any]) -> bool: ...

    def connected(self, target: Any) -> None: ...

    def released(self, target: Any) -> None: ...

    def failed(self, target: Any, why: str) -> None: ...


class AmqpHost(Protocol):
    """What an AmqpSession needs of its service."""

    reactor: Any
    config: ServiceConfig
    connector: IConnector
    relay_settings: RelaySettings
    #: maximum.pending.bytes: each link's write buffer before the other's reads pause
    pending_limit: int
    #: the service's realm and constraint, if it has a <realm-name>
    gate: Gate | None

    @property
    def balancer(self) -> Nodes:
        """The broker nodes (one per <connect>), and which one a new client gets."""


_LEVELS = {"info": log.info, "warn": log.warn}
#: the reason links report for a clean TCP close (IPeer.closed only passes the text)
_CLEAN = Failure(ConnectionDone()).getErrorMessage()


@implementer(ISession, IGoingAway)
class AmqpSession:
    """One AMQP client and its broker connection: ISession for the client, RelayOutput
    for the relay, ILinkReceiver (through _Broker) for the broker link."""

    def __init__(self, service: AmqpHost, client: ILink) -> None:
        self.service = service
        self.client = client
        self.broker: ILink | None = None
        #: the balancer's target (node) while connected to it
        self.node: Any = None
        #: the broker, once connected (the access log's ``target=``)
        self.target: Any = None
        self.timers = NamedTimers(service.reactor)
        principal = client.principal
        self.relay = AmqpRelay(self, service.relay_settings, client_address=client.remote,
                               websocket=client.is_websocket,
                               authenticate=service.gate is not None and principal is None,
                               user=principal.name if principal is not None else None)

    # -- ISession (the client) -------------------------------------------------------------

    def negotiate(self, offered: list[str]) -> str | None:
        # An offer of only x-kaazing-handshake is an offer of none (transport.kaazing plays
        # the extended handshake in front of this session and passes the real protocols).
        offered = application_protocols(offered)
        if not offered:
            return None
        if SUBPROTOCOL in offered:
            return SUBPROTOCOL
        raise ConnectionDeny(
            ConnectionDeny.BAD_REQUEST,
            f"service {self.service.config.name!r} speaks AMQP 0-9-1: offer subprotocol "
            f"'{SUBPROTOCOL}' or none (offered: {', '.join(offered)})",
        )

    def opened(self) -> None:
        self.relay.start()

    def received(self, data: bytes, binary: bool) -> None:
        self.relay.client_data(data)

    def closed(self, code: int | None, reason: str) -> None:
        self.relay.client_lost()

    def going_away(self) -> None:
        """Called by the adapter when a draining gateway is about to close this client."""
        self.relay.going_away()

    # -- RelayOutput -----------------------------------------------------------------------

    def to_client(self, data: bytes) -> None:
        self.client.write(data)

    def to_broker(self, data: bytes) -> None:
        if self.broker is not None:
            self.broker.write(data)

    def connect_broker(self) -> None:
        # Nothing more is read from the client until the broker can take it.
        self.client.pause_reading()
        self._dial([])

    def _dial(self, tried: list[Any]) -> None:
        service = self.service
        config = service.config
        balancer = service.balancer
        node = balancer.pick(tried)
        assert node is not None, "an amqp.proxy service has at least one <connect>"
        tried.append(node)
        target = node.uri
        d = service.connector.connect(target, config.connect_options, _Broker(self),
                                      client=self.client.remote)

        def connected(broker: ILink) -> None:
            self.broker = broker
            self.node = node
            balancer.connected(node)
            note_backend(self.client, str(target))
            self.target = target
            limit = service.pending_limit
            for link in (self.client, broker):
                link.set_write_limit(limit)
            self.client.register_producer(_Throttle(broker))
            broker.register_producer(_Throttle(self.client))
            self.client.resume_reading()
            self.relay.broker_connected()

        def failed(reason: Failure) -> None:
            reason.trap(ConnectError)
            why = reason.getErrorMessage()
            balancer.failed(node, why)
            if self.relay.client_phase is not Phase.CLOSED and balancer.untried(tried):
                # Another node of the cluster, before the client notices anything.
                self.event("info", f"cannot connect to {target}: {why}; trying another node")
                self._dial(tried)
                return
            self.relay.broker_failed(f"cannot connect to {target}: {why}")

        d.addCallbacks(connected, failed)
        d.addErrback(lambda f: log.failure("{service}: broker connection setup failed", f,
                                           service=config.name))

    def authenticate(self, user: str, password: str) -> None:
        gate = self.service.gate
        assert gate is not None, "the relay authenticates only for a service with a realm"

        def checked(principal: Principal) -> None:
            if gate.allows(principal):
                self.relay.authenticated(principal.name)
            else:
                self.relay.auth_refused(f"user '{principal.name}' may not use this service")

        def refused(failure: Failure) -> None:
            failure.trap(LoginFailed)
            self.relay.auth_refused("Login was refused using authentication mechanism PLAIN")

        d = gate.login(UsernamePassword(user.encode("utf-8"), password.encode("utf-8")))
        d.addCallbacks(checked, refused)
        d.addErrback(lambda f: log.failure("{service}: authentication failed", f,
                                           service=self.service.config.name))

    def close_client(self, code: int, reason: str) -> None:
        self.client.close(code, reason)
        if self.broker is not None:
            # The broker may still owe a Close-Ok: its reads must not stay throttled.
            self.broker.resume_reading()

    def close_broker(self, reason: str) -> None:
        broker, self.broker = self.broker, None
        node, self.node = self.node, None
        if node is not None:
            self.service.balancer.released(node)  # our own close says nothing of the node
        if broker is not None:
            broker.close(1000, reason)
            self.client.resume_reading()

    def start_timer(self, name: str, seconds: float) -> None:
        self.timers.start(name, seconds, self.relay.timer_expired)

    def cancel_timer(self, name: str) -> None:
        self.timers.cancel(name)

    def event(self, level: str, what: str) -> None:
        _LEVELS[level]("{service}: {peer}: {event}", service=self.service.config.name,
                       peer=self.client.remote, event=what)

    # -- the broker link, through _Broker ----------------------------------------------

    def broker_received(self, data: bytes) -> None:
        self.relay.broker_data(data)

    def broker_closed(self, reason: str) -> None:
        self.broker = None
        node, self.node = self.node, None
        clean = reason == _CLEAN
        if node is not None:
            self.service.balancer.released(node)
            if not clean:
                # The node died or dropped us: new clients go elsewhere until a probe (or a
                # connect) finds it back.
                self.service.balancer.failed(node, f"connection lost: {reason}")
        self.relay.broker_lost(reason, clean=clean)


@implementer(IPushProducer)
class _Throttle:
    """The producer one link registers for the other: back-pressure without lifetimes.

    Registering the other link's transport itself would make Twisted call its
    ``stopProducing()`` - a close - as soon as this side disconnects; but the two sides of
    an AMQP relay end separately (the client still owes a Close-Ok when the broker side
    is dropped, the broker owes one after a client's fatal error), so stopping is the
    relay's decision alone.
    """

    def __init__(self, link: ILink) -> None:
        self.link = link

    def pauseProducing(self) -> None:
        self.link.pause_reading()

    def resumeProducing(self) -> None:
        self.link.resume_reading()

    def stopProducing(self) -> None:
        pass


@implementer(ILinkReceiver)
class _Broker:
    def __init__(self, session: AmqpSession) -> None:
        self.session = session

    def received(self, data: bytes, binary: bool) -> None:
        self.session.broker_received(data)

    def closed(self, code: int | None, reason: str) -> None:
        self.session.broker_closed(reason)
