"""One STOMP client of the ``jms`` service: the per-connection state machine.

(About 700 lines on purpose: one client's state, with a handler per STOMP command found by
name, ``_on_<command>``, like Twisted's ``irc_<COMMAND>`` or h11's connection; the pieces it
shares with other clients live in fanout.py, broker.py and destinations.py.)

    CONNECTING --CONNECT/STOMP--> (client-id? wait for its own broker connection) --> OPEN
    OPEN --SEND/SUBSCRIBE/ACK/BEGIN...--> broker connection(s)      <--MESSAGE/RECEIPT--
    OPEN --DISCONNECT / bad frame / slow consumer / close--> CLOSED (cleanup below)

Where each client frame goes::

    SUBSCRIBE /topic/X            -> TopicFanout: shared broker subscription per (X, selector)
    SUBSCRIBE /queue/X, durable   -> its own broker subscription (ack client-individual,
                                     activemq.prefetchSize) on the session's connection
    SEND, BEGIN/COMMIT/ABORT, ACK -> the session's connection, tx ids and ack ids mapped

The session's connection is one of the service's shared ones, or, for a client whose
CONNECT carries ``client-id`` (durable subscriptions need it), a connection of its own
opened with that client-id. Closing the session aborts its open transactions, drops its
topic memberships and unsubscribes its queue consumers, so the broker redelivers their
unacknowledged messages to other consumers.

Back-pressure: the session is the IPushProducer of its client link, paused once more than
``maximum.pending.bytes`` wait to be written. Topic messages keep coming while paused; once
another ``maximum.pending.bytes`` has piled up the client gets ERROR "slow consumer" and is
closed. Queue messages are acknowledged to the broker (auto mode) only while not paused, so
the broker's prefetch window stops the flow instead.
"""

from __future__ import annotations

import enum
import itertools
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import LoginFailed
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from kgateway.auth.credentials import BearerToken
from kgateway.auth.gate import Credentials, Gate
from kgateway.auth.principal import Principal
from kgateway.interfaces import NORMAL, IGoingAway, ILink, ISession
from kgateway.jms.broker import PER_SUBSCRIPTION, BrokerConnection, BrokerRefused
from kgateway.jms.destinations import Destination, DestinationError, DestinationMap
from kgateway.jms.fanout import SharedMessage, SharedTopic, TopicFanout, TopicMember
from kgateway.protocols.stomp import (
    CLIENT_COMMANDS,
    HEARTBEAT,
    SUPPORTED_VERSIONS,
    Frame,
    FrameParser,
    Heartbeat,
    StompError,
    encode,
    is_text,
    negotiate_heartbeat,
    negotiate_version,
    parse_heartbeat,
)
from kgateway.timers import Heartbeat as HeartbeatTimer
from kgateway.transport.tracker import note_backend

log = Logger()

#: a CONNECTED header of the gateway's own: "connected", or "unavailable" while the broker
#: is down and the client's frames wait in the outage buffer
BROKER_HEADER = "kgateway-broker"

#: WebSocket subprotocols, best first
SUBPROTOCOLS = ("v12.stomp", "v11.stomp", "v10.stomp", "stomp")
ACK_MODES = ("auto", "client", "client-individual")
#: client headers the gateway sets itself on SEND
_SEND_OWN = frozenset({"destination", "receipt", "transaction", "reply-to"})
_DURABLE_HEADERS = ("activemq.subscriptionName", "durable-subscription-name")
_SESSION_IDS = itertools.count(1)



class State(enum.Enum):
    CONNECTING = "connecting"  # until CONNECT (and, with a client-id, its own connection)
    OPEN = "open"
    CLOSED = "closed"


class SessionSettings(Protocol):
    """The service settings a session reads (``kgateway.services.jms.JmsSettings``)."""

    @property
    def maximum_frame_size(self) -> int: ...

    @property
    def maximum_pending_bytes(self) -> int: ...

    @property
    def heartbeat_interval(self) -> float: ...

    @property
    def queue_prefetch(self) -> int: ...

    @property
    def user_header(self) -> str: ...


class JmsHost(Protocol):
    """What a session needs of its service: no more (``kgateway.services.jms.JmsService``)."""

    reactor: Any
    destinations: DestinationMap
    fanout: TopicFanout
    #: qualifies this gateway's temporary destination names
    instance: str

    @property
    def settings(self) -> SessionSettings: ...

    def pick_connection(self) -> BrokerConnection:
        """A shared broker connection for a new client."""

    def dedicated_connection(self, client_id: str, tag: str) -> BrokerConnection:
        """A connection of the client's own, CONNECTed with its client-id (not started)."""

    @property
    def gate(self) -> Gate | None:
        """The service's realm and authorization-constraint, if it has a <realm-name>."""

    def opened(self, session: JmsSession) -> None:
        """*session* is serving: stop it with the service."""

    def ended(self, session: JmsSession) -> None: ...


def _connect_credentials(frame: Frame) -> Credentials | None:
    """CONNECT's credentials: ``login`` + ``passcode``, or a bearer token in ``passcode``
    alone (for a realm with the jwt login module)."""
    login, passcode = frame.get("login"), frame.get("passcode")
    if login:
        return UsernamePassword(login.encode("utf-8"), (passcode or "").encode("utf-8"))
    if passcode:
        return BearerToken(passcode)
    return None


def broker_client_id(client_id: str, principal: Principal | None) -> str:
    """The client-id the broker sees for a client's CONNECT ``client-id``.

    ActiveMQ keys durable subscriptions by client-id and subscription name, and a client
    picks its client-id freely: on a service with a realm, any user could otherwise take
    over (read, or UNSUBSCRIBE to delete) another user's durable subscriptions by sending
    that user's client-id. So an authenticated client's client-id is its user name
    (percent-encoded: nothing a CONNECT header cannot carry) and its own, ``alice/app1``;
    without a realm every client shares one namespace, as on the broker itself.
    """
    if principal is None:
        return client_id
    return f"{quote(principal.name, safe='')}/{client_id}"


class ClientError(Exception):
    """A client mistake: send ERROR with this message and close."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


@dataclass
class ClientSubscription(TopicMember):
    session: JmsSession
    id: str
    destination: Destination
    ack: str
    selector: str | None
    topic: SharedTopic | None = None
    broker_id: str | None = None
    durable: str | None = None
    #: message-id -> (broker ack id, epoch), in delivery order (for cumulative acks)
    unacked: OrderedDict[str, tuple[str, int]] = field(default_factory=OrderedDict)

    def deliver(self, message: SharedMessage) -> None:
        self.session.deliver_shared(self, message)

    def refused(self, message: str, detail: str) -> None:
        self.session.subscription_refused(self, message, detail)

    __hash__ = object.__hash__


@dataclass
class Transaction:
    broker_id: str
    epoch: int


@implementer(ISession, IGoingAway, IPushProducer)
class JmsSession:
    """One client; see the module docstring."""

    @property
    def target(self) -> Any:
        """The broker this client's frames go to (the access log's ``target=``)."""
        settings = getattr(self.connection, "settings", None)
        return getattr(settings, "uri", None)

    def __init__(self, service: JmsHost, link: ILink) -> None:
        self.service = service
        self.link = link
        #: who the client is: from the WebSocket handshake, or from CONNECT (service.gate)
        self.principal: Principal | None = link.principal
        self.number = next(_SESSION_IDS)
        self.tag = f"{service.instance}-{self.number}"
        settings = service.settings
        self.parser = FrameParser("1.2", max_frame_size=settings.maximum_frame_size,
                                  commands=CLIENT_COMMANDS)
        self.version = "1.2"
        self.state = State.CONNECTING
        self.text = True
        self.held = False
        self.connection: BrokerConnection = service.pick_connection()
        self.dedicated: BrokerConnection | None = None
        self.subscriptions: dict[str, ClientSubscription] = {}
        self.by_broker_id: dict[str, ClientSubscription] = {}
        #: message-id -> subscription, for every unacknowledged queue message
        self.unacked: dict[str, ClientSubscription] = {}
        self.transactions: dict[str, Transaction] = {}
        self.paused = False
        self.overflow = 0
        self.deferred_acks: list[tuple[BrokerConnection, str, int]] = []
        self.limit = settings.maximum_pending_bytes
        self.heartbeat_send = 0.0
        self.heartbeat_expect = 0.0
        self._heartbeat: HeartbeatTimer | None = None
        self._tx_ids = itertools.count(1)
        self._cleaned = False
        self._first = True

    def __repr__(self) -> str:
        return f"<JmsSession {self.tag} {self.link.remote}>"

    # -- ISession ------------------------------------------------------------------------------

    def negotiate(self, offered: list[str]) -> str | None:
        for protocol in SUBPROTOCOLS:
            if protocol in offered:
                return protocol
        return None

    def opened(self) -> None:
        self.link.register_producer(self)
        self.link.set_write_limit(self.limit)
        self.service.opened(self)
        self._read_from(self.connection)

    def _read_from(self, connection: BrokerConnection) -> None:
        """Take back-pressure from *connection* (the one this client sends through)."""
        self.connection.readers.discard(self)
        self.connection = connection
        note_backend(self.link, f"{connection.settings.uri} ({connection.label})")
        connection.readers.add(self)
        self.set_reading(connection.writable)

    def set_reading(self, reading: bool) -> None:
        """Pause or resume reading from the client (back-pressure from the broker link:
        BrokerConnection.readers)."""
        if self.state == State.CLOSED:
            return
        if reading:
            self.link.resume_reading()
        else:
            self.link.pause_reading()

    def received(self, data: bytes, binary: bool) -> None:
        if self.state == State.CLOSED:
            return
        if self._heartbeat is not None:
            self._heartbeat.heard()
        if self._first:
            # Answer in the kind of WebSocket message the client chose for its CONNECT.
            self._first = False
            self.text = not binary
        try:
            self.parser.receive_data(data)
        except StompError as e:
            self.fail(e.message, e.detail)
            return
        self._drain()

    def closed(self, code: int | None, reason: str) -> None:
        self.state = State.CLOSED
        self._cleanup()

    # -- IPushProducer (the client link's write buffer) -------------------------------------------

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self.overflow = 0
        acks, self.deferred_acks = self.deferred_acks, []
        for connection, ack_id, epoch in acks:
            connection.ack(ack_id, epoch)

    def stopProducing(self) -> None:
        self.paused = True

    # -- input -------------------------------------------------------------------------------------

    def _drain(self) -> None:
        while self.state != State.CLOSED and not self.held:
            try:
                event = self.parser.next_event()
            except StompError as e:
                self.fail(e.message, e.detail)
                return
            if event is None:
                return
            if isinstance(event, Heartbeat):
                continue
            try:
                self._frame(event)
            except ClientError as e:
                self.fail(e.message, e.detail, event.get("receipt"))
            except StompError as e:
                self.fail(e.message, e.detail, event.get("receipt"))
            except Exception:
                log.failure("jms: {peer}: handling {command}", peer=self.link.remote,
                            command=event.command)
                self.fail("internal error", "the gateway could not handle this frame",
                          event.get("receipt"))

    def _frame(self, frame: Frame) -> None:
        command = frame.command
        if self.state == State.CONNECTING:
            if command not in ("CONNECT", "STOMP"):
                raise ClientError("not connected", f"the first frame must be CONNECT, "
                                                   f"not {command}")
            self._connect(frame)
            return
        handler = getattr(self, "_on_" + command.lower(), None)
        if handler is None:
            raise ClientError("unexpected frame", f"{command} after CONNECT")
        handler(frame)

    # -- output ------------------------------------------------------------------------------------

    def write(self, data: bytes, text_ok: bool = True, *, topic: bool = False) -> None:
        if self.state == State.CLOSED:
            return
        self.link.write(data, not (self.text and text_ok))
        if self.paused and topic:
            self.overflow += len(data)
            if self.overflow > self.limit:
                self.service.fanout.deliveries.slow_consumers += 1
                self.fail("slow consumer",
                          f"more than {self.limit} bytes of topic messages waited for this "
                          "client (maximum.pending.bytes); it was disconnected so it cannot "
                          "hold up the others")

    def send_frame(self, frame: Frame) -> None:
        self.write(encode(frame, self.version), is_text(frame.body))

    def receipt(self, receipt_id: str | None) -> None:
        if receipt_id is not None:
            self.send_frame(Frame("RECEIPT", [("receipt-id", receipt_id)]))

    def fail(self, message: str, detail: str = "", receipt_id: str | None = None) -> None:
        """ERROR then close, as the STOMP spec requires after an error."""
        if self._error(message, detail, receipt_id):
            self.link.close(NORMAL, message)

    def going_away(self) -> None:
        """A draining gateway is about to close this client with 1001 (IGoingAway)."""
        self._error("gateway shutting down",
                    "this gateway is going away: reconnect (through the load balancer) to go "
                    "on; unacknowledged queue messages are redelivered")

    def _error(self, message: str, detail: str, receipt_id: str | None = None) -> bool:
        """Send an ERROR frame and end the session (the caller closes the link)."""
        if self.state == State.CLOSED:
            return False
        log.info("jms: {peer}: ERROR {message}: {detail}", peer=self.link.remote,
                 message=message, detail=detail)
        try:
            data = encode(Frame.error(message, detail, receipt_id=receipt_id), self.version)
        except StompError:
            data = encode(Frame.error(message), self.version)
        self.link.write(data, not self.text)
        self.state = State.CLOSED
        self._cleanup()
        return True

    # -- CONNECT ---------------------------------------------------------------------------------

    def _connect(self, frame: Frame) -> None:
        version = negotiate_version(frame.get("accept-version"))
        if version is None:
            self.version = "1.2"
            raise ClientError("unsupported STOMP version",
                              f"this gateway speaks {','.join(SUPPORTED_VERSIONS)}; the "
                              f"client offered {frame.get('accept-version')!r}")
        self.version = version
        self.parser.version = version
        interval = int(self.service.settings.heartbeat_interval * 1000)
        send_ms, expect_ms = negotiate_heartbeat(parse_heartbeat(frame.get("heart-beat")),
                                                 (interval, interval), gateway_role="server")
        headers = [("version", version), ("server", "kgateway"),
                   ("session", self.tag), ("heart-beat", f"{interval},{interval}")]
        self.heartbeat_send = send_ms / 1000
        self.heartbeat_expect = expect_ms / 1000
        gate = self.service.gate
        if gate is None or self.principal is not None:
            self._admitted(frame, headers)
            return
        credentials = _connect_credentials(frame)
        if credentials is None:
            raise ClientError("authentication required",
                              f"this service needs a login and passcode on CONNECT (realm "
                              f"{gate.realm!r})")
        self.held = True

        def checked(principal: Principal) -> None:
            if self.state == State.CLOSED:
                return
            self.held = False
            if not gate.allows(principal):
                self.fail("access denied", f"user {principal.name!r} may not use this service",
                          frame.get("receipt"))
                return
            self.principal = principal
            self._admitted(frame, headers)
            self._drain()

        def refused(failure: Failure) -> None:
            failure.trap(LoginFailed)
            self.held = False
            self.fail("authentication failed", "wrong login or passcode", frame.get("receipt"))

        d = gate.login(credentials).addCallbacks(checked, refused)
        d.addErrback(lambda f: log.failure("jms: {peer}: authentication", f,
                                           peer=self.link.remote))

    def _admitted(self, frame: Frame, headers: list[tuple[str, str]]) -> None:
        """CONNECT went through (authenticated, where the service asks for it)."""
        client_id = frame.get("client-id")
        if client_id:
            self._connect_dedicated(client_id, headers, frame.get("receipt"))
        else:
            self._opened(headers, frame.get("receipt"))

    def _connect_dedicated(self, client_id: str, headers: list[tuple[str, str]],
                           receipt: str | None) -> None:
        """A client-id gets its own broker connection with that client-id (for durables)."""
        connection = self.service.dedicated_connection(broker_client_id(client_id,
                                                                        self.principal),
                                                       self.tag)
        self.dedicated = connection
        self._read_from(connection)
        self.held = True

        def ready(_: None) -> None:
            if self.state == State.CLOSED:
                return
            self.held = False
            self._opened(headers, receipt)
            self._drain()

        def refused(reason: Failure) -> None:
            reason.trap(BrokerRefused)
            self.held = False
            error = reason.value
            assert isinstance(error, BrokerRefused)
            self.fail("broker refused the connection",
                      f"client-id {client_id!r}: {error.message} {error.detail}".strip())

        connection.start().addCallbacks(ready, refused)

    def _opened(self, headers: list[tuple[str, str]], receipt: str | None) -> None:
        self.state = State.OPEN
        # Not STOMP: tells a client (the tutorial page) that its SENDs wait in the gateway's
        # outage buffer until the broker is back; clients that do not know it ignore it.
        headers = [*headers, (BROKER_HEADER, "connected" if self.connection.connected
                                             else "unavailable")]
        self.send_frame(Frame("CONNECTED", headers))
        self.receipt(receipt)
        self._heartbeat = HeartbeatTimer(self.service.reactor, self.heartbeat_send,
                                         self.heartbeat_expect * 2, self._beat, self._silent)

    def _beat(self) -> None:
        if self.state != State.CLOSED:
            self.link.write(HEARTBEAT, not self.text)

    def _silent(self) -> None:
        if self.state != State.CLOSED:
            self.fail("heart-beat timeout",
                      f"nothing received for {self.heartbeat_expect * 2:g}s")

    # -- client frames --------------------------------------------------------------------------

    def _destination(self, frame: Frame, header: str = "destination") -> Destination:
        name = frame.get(header)
        if not name:
            raise ClientError(f"missing {header} header", f"{frame.command} needs a {header}")
        try:
            return self.service.destinations.resolve(name, self.tag)
        except DestinationError as e:
            raise ClientError("bad destination", str(e)) from None

    def _transaction(self, frame: Frame) -> Transaction | None:
        name = frame.get("transaction")
        if name is None:
            return None
        tx = self.transactions.get(name)
        if tx is None:
            raise ClientError("unknown transaction", f"transaction {name!r} was not begun")
        if tx.epoch != self.connection.epoch:
            del self.transactions[name]
            raise ClientError("transaction lost",
                              f"transaction {name!r} was rolled back by the broker: the "
                              "gateway's broker connection was interrupted")
        return tx

    def _on_send(self, frame: Frame) -> None:
        destination = self._destination(frame)
        tx = self._transaction(frame)
        headers = [("destination", destination.broker)]
        reply_to = frame.get("reply-to")
        if reply_to:
            try:
                headers.append(("reply-to",
                                self.service.destinations.resolve(reply_to, self.tag).broker))
            except DestinationError as e:
                raise ClientError("bad reply-to", str(e)) from None
        if tx is not None:
            headers.append(("transaction", tx.broker_id))
        user_header = self.service.settings.user_header
        seen = {user_header}  # never the client's own claim of who it is
        for name, value in frame.headers:
            if name in _SEND_OWN or name in seen:
                continue
            seen.add(name)
            headers.append((name, value))
        if self.principal is not None:
            headers.append((user_header, self.principal.name))
        receipt = frame.get("receipt")
        out = Frame("SEND", headers, frame.body)
        if receipt is None:
            ok = self.connection.send(out)
        else:
            ok = self.connection.send(
                out, on_receipt=lambda: self.receipt(receipt),
                on_error=lambda m, d: self.fail(m, d, receipt), replayable=tx is None)
        if not ok:
            raise ClientError("broker unavailable",
                              "the broker is unreachable and the gateway's buffer for it is "
                              "full; try again later")

    def _on_subscribe(self, frame: Frame) -> None:
        destination = self._destination(frame)
        sub_id = frame.get("id")
        if sub_id is None:
            if self.version != "1.0":
                raise ClientError("missing id header", "SUBSCRIBE needs an id")
            sub_id = frame.get("destination") or ""
        if sub_id in self.subscriptions:
            raise ClientError("duplicate subscription id", f"id {sub_id!r} is already in use")
        ack = frame.get("ack", "auto") or "auto"
        if ack not in ACK_MODES:
            raise ClientError("bad ack mode", f"ack {ack!r}; expected auto, client or "
                                              "client-individual")
        selector = frame.get("selector") or None
        durable = next((frame.get(h) for h in _DURABLE_HEADERS if frame.get(h)), None)
        sub = ClientSubscription(self, sub_id, destination, ack, selector, durable=durable)
        receipt = frame.get("receipt")
        self.subscriptions[sub_id] = sub
        if destination.is_topic and durable is None:
            sub.topic = self.service.fanout.add(
                destination.broker, selector, sub,
                lambda d: self.service.destinations.to_client(d, self.tag),
                lambda: self.receipt(receipt))
            return
        if durable is not None:
            if self.dedicated is None:
                del self.subscriptions[sub_id]
                raise ClientError("durable subscription needs a client-id",
                                  "add a client-id header to CONNECT: the broker keys "
                                  "durable subscriptions by client-id and subscription name")
            if not destination.is_topic:
                del self.subscriptions[sub_id]
                raise ClientError("bad durable subscription",
                                  "durable subscriptions are for /topic/ destinations")
        headers = [("destination", destination.broker), ("ack", "client-individual"),
                   ("activemq.prefetchSize", str(self.service.settings.queue_prefetch))]
        if selector is not None:
            headers.append(("selector", selector))
        if durable is not None:
            headers.append(("activemq.subscriptionName", durable))
        broker_sub = self.connection.subscribe(
            headers, lambda f, epoch: self._queue_message(sub, f, epoch),
            on_error=lambda m, d: self.subscription_refused(sub, m, d, receipt),
            on_ready=lambda: self.receipt(receipt))
        sub.broker_id = broker_sub.id
        self.by_broker_id[broker_sub.id] = sub

    def subscription_refused(self, sub: ClientSubscription, message: str, detail: str,
                             receipt: str | None = None) -> None:
        if self.subscriptions.get(sub.id) is sub:
            del self.subscriptions[sub.id]
            self.fail("subscription refused by the broker",
                      f"{sub.destination.client}: {message} {detail}".strip(), receipt)

    def _find_subscription(self, frame: Frame) -> ClientSubscription | None:
        sub_id = frame.get("id")
        if sub_id is None and self.version == "1.0":
            sub_id = frame.get("destination")
        if sub_id is None:
            raise ClientError("missing id header", "UNSUBSCRIBE needs an id")
        return self.subscriptions.get(sub_id)

    def _on_unsubscribe(self, frame: Frame) -> None:
        sub = self._find_subscription(frame)
        receipt = frame.get("receipt")
        durable = next((frame.get(h) for h in _DURABLE_HEADERS if frame.get(h)), None)
        if sub is not None:
            self._drop(sub)
        if durable is not None and self.dedicated is not None:
            # Removes the durable subscription from the broker for good.
            self.connection.send(
                Frame("UNSUBSCRIBE", [("id", frame.get("id") or durable),
                                      ("activemq.subscriptionName", durable)]),
                on_receipt=lambda: self.receipt(receipt),
                on_error=lambda m, d: self.fail(m, d, receipt))
            return
        self.receipt(receipt)

    def _drop(self, sub: ClientSubscription) -> None:
        self.subscriptions.pop(sub.id, None)
        if sub.topic is not None:
            self.service.fanout.remove(sub.topic, sub)
            sub.topic = None
        if sub.broker_id is not None:
            self.by_broker_id.pop(sub.broker_id, None)
            # The broker redelivers this consumer's unacked messages to other consumers.
            self.connection.unsubscribe(sub.broker_id)
            sub.broker_id = None
        for message_id in sub.unacked:
            self.unacked.pop(message_id, None)
        sub.unacked.clear()

    def _on_ack(self, frame: Frame, nack: bool = False) -> None:
        header = "id" if self.version == "1.2" else "message-id"
        ack_id = frame.get(header)
        if ack_id is None:
            raise ClientError(f"missing {header} header", f"{frame.command} needs {header}")
        tx = self._transaction(frame)
        sub = self.unacked.get(ack_id)
        if sub is not None and sub.unacked:
            if sub.ack == "client":
                # Cumulative: everything up to this message; the broker side is per message.
                ids = []
                for message_id in sub.unacked:
                    ids.append(message_id)
                    if message_id == ack_id:
                        break
            else:
                ids = [ack_id]
            for message_id in ids:
                broker_ack, epoch = sub.unacked.pop(message_id)
                self.unacked.pop(message_id, None)
                self.connection.ack(broker_ack, epoch, nack=nack,
                                    transaction=tx.broker_id if tx else None)
        # Unknown ids are topic messages (acked by the gateway already) or messages from
        # before a broker outage, which the broker redelivers anyway: nothing to do.
        self.receipt(frame.get("receipt"))

    def _on_nack(self, frame: Frame) -> None:
        if self.version == "1.0":
            raise ClientError("unexpected frame", "NACK is not part of STOMP 1.0")
        self._on_ack(frame, nack=True)

    def _on_begin(self, frame: Frame) -> None:
        name = frame.get("transaction")
        if not name:
            raise ClientError("missing transaction header", "BEGIN needs a transaction")
        if name in self.transactions:
            raise ClientError("duplicate transaction", f"transaction {name!r} is already open")
        tx = Transaction(f"{self.tag}-tx{next(self._tx_ids)}", self.connection.epoch)
        self.transactions[name] = tx
        self._broker_tx("BEGIN", tx, frame.get("receipt"))

    def _broker_tx(self, command: str, tx: Transaction, receipt: str | None) -> None:
        out = Frame(command, [("transaction", tx.broker_id)])
        if receipt is None:
            # No on_error: a broker outage voids the transaction (see Transaction.epoch),
            # which the client learns at its COMMIT instead of losing its connection now.
            ok = self.connection.send(out)
        else:
            ok = self.connection.send(out, on_receipt=lambda: self.receipt(receipt),
                                      on_error=lambda m, d: self.fail(m, d, receipt))
        if not ok:
            raise ClientError("broker unavailable", "the gateway's buffer for the broker is full")

    def _end_tx(self, frame: Frame, command: str) -> None:
        name = frame.get("transaction")
        if not name:
            raise ClientError("missing transaction header", f"{command} needs a transaction")
        tx = self._transaction(frame)
        assert tx is not None
        del self.transactions[name]
        self._broker_tx(command, tx, frame.get("receipt"))

    def _on_commit(self, frame: Frame) -> None:
        self._end_tx(frame, "COMMIT")

    def _on_abort(self, frame: Frame) -> None:
        self._end_tx(frame, "ABORT")

    def _on_connect(self, frame: Frame) -> None:
        raise ClientError("already connected", "CONNECT may be sent only once")

    _on_stomp = _on_connect

    def _on_disconnect(self, frame: Frame) -> None:
        self.receipt(frame.get("receipt"))
        self.state = State.CLOSED
        self.link.close(NORMAL, "")
        self._cleanup()

    # -- messages to the client -----------------------------------------------------------------

    def deliver_shared(self, sub: ClientSubscription, message: SharedMessage) -> None:
        """A topic message, encoded once per version for every member of the fan-out."""
        if self.state != State.OPEN:
            return
        headers = [("subscription", sub.id)]
        if sub.ack != "auto" and self.version == "1.2":
            headers.append(("ack", message.frame.get("message-id") or ""))
        self.service.fanout.deliveries.messages += 1
        self.write(message.prepared(self.version).render(headers), message.text_ok, topic=True)

    def _queue_message(self, sub: ClientSubscription, frame: Frame, epoch: int) -> None:
        broker_ack = frame.get("ack") or frame.get("message-id") or ""
        connection = self.connection
        if self.state != State.OPEN or self.subscriptions.get(sub.id) is not sub:
            return  # never acked: the broker redelivers it once the subscription is gone
        message_id = frame.get("message-id") or broker_ack
        to_client = self.service.destinations.to_client
        headers: list[tuple[str, str]] = [("subscription", sub.id)]
        if sub.ack != "auto" and self.version == "1.2":
            headers.append(("ack", message_id))
        for name, value in frame.headers:
            if name in PER_SUBSCRIPTION:
                continue
            if name == "destination" or name == "reply-to":
                value = to_client(value, self.tag)
            headers.append((name, value))
        self.service.fanout.deliveries.messages += 1
        self.send_frame(Frame("MESSAGE", headers, frame.body))
        if sub.ack == "auto":
            if self.paused:
                self.deferred_acks.append((connection, broker_ack, epoch))
            else:
                connection.ack(broker_ack, epoch)
        else:
            sub.unacked[message_id] = (broker_ack, epoch)
            self.unacked[message_id] = sub

    # -- the end ------------------------------------------------------------------------------

    def _cleanup(self) -> None:
        if self._cleaned:
            return
        self._cleaned = True
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None
        self.service.ended(self)
        connection = self.connection
        connection.readers.discard(self)
        for tx in self.transactions.values():
            if tx.epoch == connection.epoch:
                connection.send(Frame("ABORT", [("transaction", tx.broker_id)]))
        self.transactions.clear()
        for sub in list(self.subscriptions.values()):
            self._drop(sub)
        self.deferred_acks = []
        if self.dedicated is not None:
            dedicated, self.dedicated = self.dedicated, None
            dedicated.stop()
