"""One STOMP client of the ``jms`` service: the per-connection state machine.

(About 1,150 lines, over the house's ~500, on purpose: one client's state and the one class
that changes it, with a handler per STOMP command found by name, ``_on_<command>``, like
Twisted's ``irc_<COMMAND>`` or h11's connection. Login, destination rules, in-flight
budgets, client-ack bookkeeping and transactions all read and write the same few fields of
that state (its phase, its subscriptions, its budget, its broker connection); split across
objects they would reach into each other. What it shares with other clients lives in
fanout.py, broker.py, destinations.py and rules.py; the first cut, if it grows, is the
module-level helpers (``Admission``, ``JmsHost``, ``SessionSettings``) into a host module.)

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
from collections import OrderedDict, deque
from collections.abc import Callable
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
from kgateway.interfaces import NORMAL, POLICY_VIOLATION, IGoingAway, ILink, ISession
from kgateway.jms.broker import PER_SUBSCRIPTION, BrokerConnection, BrokerRefused
from kgateway.jms.destinations import TEMP_PREFIX, Destination, DestinationError, DestinationMap
from kgateway.jms.fanout import SharedMessage, SharedTopic, TopicFanout, TopicMember
from kgateway.jms.rules import DestinationRules, RuleRefusal
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
from kgateway.timers import IdleTimer
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
#: the client link's own write buffer past which the session keeps messages itself: small, so
#: an ERROR written after dropping the session's backlog reaches the client quickly
LINK_WRITE_LIMIT = 64 * 1024
#: other clients' temporary reply-to names shown to one session (oldest forgotten first)
SHOWN_REPLY_TO = 10_000
#: how long a client cut off while its link is backed up has to read what the link holds
#: before the close frame is sent anyway (the WebSocket close handshake has its own timeout)
CLOSE_GRACE = 30.0

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

    @property
    def rules(self) -> DestinationRules: ...

    @property
    def connect_timeout(self) -> float: ...

    @property
    def idle_timeout(self) -> float: ...

    @property
    def maximum_subscriptions(self) -> int: ...

    @property
    def maximum_broker_subscriptions(self) -> int: ...

    @property
    def maximum_inflight_bytes(self) -> int: ...

    @property
    def maximum_inflight_frames(self) -> int: ...


class JmsHost(Protocol):
    """What a session needs of its service: no more (``kgateway.services.jms.JmsService``)."""

    reactor: Any
    destinations: DestinationMap
    fanout: TopicFanout
    admission: Admission
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

    def broker_subscriptions(self) -> int:
        """Subscriptions the service holds on the broker now (maximum.broker.subscriptions)."""


class Admission:
    """Service-wide: at most *limit* new broker subscriptions waiting for the broker's
    RECEIPT at once (``maximum.pending.subscribes``). Sessions beyond wait in turn, each with
    its reads paused, so however many clients flood SUBSCRIBEs, a frame of any other client
    waits behind at most *limit* of them on the shared broker connection."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.pending = 0
        self.waiting: deque[JmsSession] = deque()

    def take(self, session: JmsSession) -> bool:
        """Take a place, or queue *session* (which parks its SUBSCRIBE) and say False."""
        if session.granted:
            session.granted = False  # taken for it by release()
            return True
        if self.pending < self.limit and not self.waiting:
            self.pending += 1
            return True
        self.waiting.append(session)
        return False

    def release(self) -> None:
        self.pending -= 1
        while self.waiting and self.pending < self.limit:
            session = self.waiting.popleft()
            if session.state == State.CLOSED or session.parked is None:
                continue
            self.pending += 1
            session.granted = True
            session.unpark()


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
    """A client mistake: send ERROR with this message and close (with *code*)."""

    def __init__(self, message: str, detail: str = "", code: int = NORMAL) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.code = code


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
    #: gives back this SUBSCRIBE's place in the client's in-flight budget (idempotent)
    settle: Callable[[], None] | None = None

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
        #: frames waiting for the client link while it is backed up: (data, binary, topic,
        #: run once written), and the topic bytes among them (maximum.pending.bytes)
        self.backlog: deque[tuple[bytes, bool, bool, Callable[[], object] | None]] = deque()
        self.backlog_topic_bytes = 0
        self.limit = settings.maximum_pending_bytes
        # What the link may hold, and what waits in the backlog before "slow consumer": in all
        # twice maximum.pending.bytes, as when the link held it all.
        self.link_limit = min(self.limit, LINK_WRITE_LIMIT)
        self.slow_limit = 2 * self.limit - self.link_limit
        #: other clients' temporary reply-to names shown to this client, which it may SEND to
        self.shown: OrderedDict[str, None] = OrderedDict()
        # The in-flight budget toward the broker (maximum.inflight.bytes/frames): bytes sent
        # and bytes the broker confirmed (a RECEIPT covers everything sent before it on the
        # connection), and frames waiting for their RECEIPT.
        self.sent_bytes = 0
        self.confirmed_bytes = 0
        self.inflight_frames = 0
        self._checkpoint = 0
        self._reading = True
        self._draining = False
        self._connect_timer: Any = None
        self._idle: IdleTimer | None = None
        #: a SUBSCRIBE waiting for a place among the service's pending broker subscriptions
        #: (Admission), and whether the place was taken for it
        self.parked: Frame | None = None
        self.granted = False
        #: (code, reason) of a close waiting for the link to drain, and its grace timer
        self._closing: tuple[int, str] | None = None
        self._closing_timer: Any = None
        self.heartbeat_send = 0.0
        self.heartbeat_expect = 0.0
        self._heartbeat: HeartbeatTimer | None = None
        self._tx_ids = itertools.count(1)
        self._cleaned = False
        self._first = True

    def __repr__(self) -> str:
        return f"<JmsSession {self.tag} {self.link.remote}>"

    @property
    def roles(self) -> frozenset[str]:
        """The roles the client authenticated with (matched by <destination-rule><role>)."""
        return self.principal.roles if self.principal is not None else frozenset()

    # -- ISession ------------------------------------------------------------------------------

    def negotiate(self, offered: list[str]) -> str | None:
        for protocol in SUBPROTOCOLS:
            if protocol in offered:
                return protocol
        return None

    def opened(self) -> None:
        self.link.register_producer(self)
        self.link.set_write_limit(self.link_limit)
        self.service.opened(self)
        self._read_from(self.connection)
        self._connect_timer = self.service.reactor.callLater(
            self.service.settings.connect_timeout, self._connect_timeout)

    def _read_from(self, connection: BrokerConnection) -> None:
        """Take back-pressure from *connection* (the one this client sends through)."""
        self.connection.readers.discard(self)
        self.connection = connection
        note_backend(self.link, f"{connection.uri} ({connection.label})")
        connection.readers.add(self)
        self._update_reading()

    def set_reading(self, reading: bool) -> None:
        """The broker link filled up or drained (BrokerConnection.readers)."""
        self._update_reading()

    def _over_budget(self) -> bool:
        settings = self.service.settings
        return (self.sent_bytes - self.confirmed_bytes > settings.maximum_inflight_bytes
                or self.inflight_frames >= settings.maximum_inflight_frames)

    def _update_reading(self) -> None:
        """Read from the client while its broker link is writable and the client is within
        its in-flight budget; only this client pauses when it alone is over budget."""
        if self.state == State.CLOSED:
            return
        reading = (self.connection.writable and not self._over_budget()
                   and self.parked is None)
        if reading != self._reading:
            self._reading = reading
            if reading:
                self.link.resume_reading()
            else:
                self.link.pause_reading()
        if reading:
            self._drain()  # frames parsed before the pause

    def received(self, data: bytes, binary: bool) -> None:
        if self.state == State.CLOSED:
            return
        if self._heartbeat is not None:
            self._heartbeat.heard()
        if self._idle is not None:
            self._idle.touch()
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
        self._closing = None
        if self._closing_timer is not None and self._closing_timer.active():
            self._closing_timer.cancel()
        self._closing_timer = None
        self._cleanup()

    # -- IPushProducer (the client link's write buffer) -------------------------------------------

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self._flush()
        if self._closing is not None:
            self._close_now()

    def stopProducing(self) -> None:
        self.paused = True

    def _flush(self, force: bool = False) -> None:
        """Hand the backlog to the link until it backs up again (all of it if *force*)."""
        while self.backlog and (force or not self.paused) and self.state != State.CLOSED:
            data, binary, topic, written = self.backlog.popleft()
            if topic:
                self.backlog_topic_bytes -= len(data)
            self.link.write(data, binary)
            if written is not None:
                written()

    # -- input -------------------------------------------------------------------------------------

    def _drain(self) -> None:
        if self._draining:
            return  # called back from inside the loop below: it goes on by itself
        self._draining = True
        try:
            self._drain_frames()
        finally:
            self._draining = False

    def _drain_frames(self) -> None:
        while self.state != State.CLOSED and not self.held and self._reading:
            try:
                event = self.parser.next_event()
            except StompError as e:
                self.fail(e.message, e.detail)
                return
            if event is None:
                return
            if isinstance(event, Heartbeat):
                continue
            self._handle(event)

    def _handle(self, event: Frame) -> None:
        """Handle one client frame; a mistake in it ends the session with ERROR."""
        try:
            self._frame(event)
        except ClientError as e:
            self.fail(e.message, e.detail, event.get("receipt"), e.code)
        except StompError as e:
            self.fail(e.message, e.detail, event.get("receipt"))
        except Exception:
            log.failure("jms: {peer}: handling {command}", peer=self.link.remote,
                        command=event.command)
            self.fail("internal error", "the gateway could not handle this frame",
                      event.get("receipt"))

    def unpark(self) -> None:
        """A place for the parked SUBSCRIBE is free (Admission): handle it, then go on."""
        frame, self.parked = self.parked, None
        if frame is not None and self.state != State.CLOSED:
            self._handle(frame)
        if self.granted:  # the SUBSCRIBE did not need it after all (or failed)
            self.granted = False
            self.service.admission.release()
        self._update_reading()

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

    def write(self, data: bytes, text_ok: bool = True, *, topic: bool = False,
              written: Callable[[], object] | None = None) -> None:
        """Write a frame, or keep it in the backlog while the client link is backed up;
        *written* runs once it is handed to the link (never, if the client is cut off)."""
        if self.state == State.CLOSED:
            return
        binary = not (self.text and text_ok)
        if self.paused or self.backlog:
            self.backlog.append((data, binary, topic, written))
            if topic:
                self.backlog_topic_bytes += len(data)
                if self.backlog_topic_bytes > self.slow_limit:
                    self.service.fanout.deliveries.slow_consumers += 1
                    self.fail("slow consumer",
                              f"more than {2 * self.limit} bytes of messages waited for this "
                              "client (twice maximum.pending.bytes); it was disconnected so it "
                              "cannot hold up the others", code=POLICY_VIOLATION)
            return
        self.link.write(data, binary)
        if written is not None:
            written()

    def send_frame(self, frame: Frame) -> None:
        self.write(encode(frame, self.version), is_text(frame.body))

    def receipt(self, receipt_id: str | None) -> None:
        if receipt_id is not None:
            self.send_frame(Frame("RECEIPT", [("receipt-id", receipt_id)]))

    def fail(self, message: str, detail: str = "", receipt_id: str | None = None,
             code: int = NORMAL) -> None:
        """ERROR then close, as the STOMP spec requires after an error. The backlog is
        dropped first, so the ERROR (and the close frame, whose reason is *message*) reaches
        the client right behind what the link already holds."""
        if self._error(message, detail, receipt_id):
            self._closing = (code, message)
            if self.paused:
                # The link still holds frames for the client. Sending the close frame now
                # would start the close handshake's timeout while the ERROR is still queued,
                # and a slow reader would see a reset; wait (CLOSE_GRACE at most) until the
                # link has handed everything to the network.
                self._closing_timer = self.service.reactor.callLater(CLOSE_GRACE,
                                                                     self._close_now)
            else:
                self._close_now()

    def _close_now(self) -> None:
        if self._closing_timer is not None and self._closing_timer.active():
            self._closing_timer.cancel()
        self._closing_timer = None
        closing, self._closing = self._closing, None
        if closing is not None:
            self.link.close(*closing)

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
        # Unwritten messages are dropped (queue messages among them were never acked, so the
        # broker redelivers them once the subscription ends in _cleanup).
        self.backlog.clear()
        self.backlog_topic_bytes = 0
        self.link.write(data, not self.text)
        self.state = State.CLOSED
        self._cleanup()
        if not self._reading:
            # Read again (and ignore) whatever comes, so the client's answer to the close
            # frame is heard and the close handshake ends cleanly instead of timing out.
            self._reading = True
            self.link.resume_reading()
        return True

    # -- timeouts --------------------------------------------------------------------------------

    def _connect_timeout(self) -> None:
        self._connect_timer = None
        if self.state != State.CONNECTING:
            return
        timeout = self.service.settings.connect_timeout
        if self.held:
            self.fail("broker unavailable",
                      f"the broker did not accept this client's connection within {timeout:g}s "
                      "(connect.timeout)", code=POLICY_VIOLATION)
        else:
            self.fail("connect timeout", f"no CONNECT frame within {timeout:g}s of opening "
                                         "(connect.timeout)", code=POLICY_VIOLATION)

    def _idle_timeout(self) -> None:
        if self.state == State.CLOSED:
            return
        if not self._reading and self._idle is not None:
            self._idle.touch()  # the gateway paused reading: the client cannot be heard
            return
        self.fail("idle timeout",
                  f"nothing received from this client for "
                  f"{self.service.settings.idle_timeout:g}s (idle.timeout); send heart-beats "
                  "to stay connected", code=POLICY_VIOLATION)

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
        if self._connect_timer is not None and self._connect_timer.active():
            self._connect_timer.cancel()
        self._connect_timer = None
        # Not STOMP: tells a client (the tutorial page) that its SENDs wait in the gateway's
        # outage buffer until the broker is back; clients that do not know it ignore it.
        headers = [*headers, (BROKER_HEADER, "connected" if self.connection.connected
                                             else "unavailable")]
        self.send_frame(Frame("CONNECTED", headers))
        self.receipt(receipt)
        self._start_heartbeat()
        self._idle = IdleTimer(self.service.reactor, self.service.settings.idle_timeout,
                               self._idle_timeout)

    def _start_heartbeat(self) -> None:
        self._heartbeat = HeartbeatTimer(self.service.reactor, self.heartbeat_send,
                                         self.heartbeat_expect * 2, self._beat, self._silent)

    def _beat(self) -> None:
        if self.state != State.CLOSED:
            self.link.write(HEARTBEAT, not self.text)

    def _silent(self) -> None:
        if self.state == State.CLOSED:
            return
        if not self._reading:
            self._start_heartbeat()  # the gateway paused reading: the client cannot be heard
            return
        self.fail("heart-beat timeout", f"nothing received for {self.heartbeat_expect * 2:g}s")

    # -- client frames --------------------------------------------------------------------------

    def _destination(self, frame: Frame, action: str,
                     header: str = "destination") -> Destination:
        """Resolve a destination the client may use for *action* (subscribe or publish)."""
        name = frame.get(header)
        if not name:
            raise ClientError(f"missing {header} header", f"{frame.command} needs a {header}")
        try:
            destination = self.service.destinations.resolve(name, self.tag)
        except DestinationError as e:
            raise ClientError(f"bad {header}" if header != "destination" else
                              "bad destination", str(e)) from None
        try:
            self.service.settings.rules.check(action, name, self.roles, own_tag=self.tag,
                                              shown=self.shown)
        except RuleRefusal as e:
            what = f"{frame.command} {name[:200]}" + (f" ({header})" if header != "destination"
                                                      else "")
            raise ClientError(f"destination not allowed ({e.rule})", f"{what}: {e.message} "
                              "(see the destination rules in docs/jms.md)",
                              POLICY_VIOLATION) from None
        return destination

    def _show(self, reply_to: str | None) -> None:
        """Remember another client's temporary reply-to shown to this one (it may answer)."""
        if not reply_to or TEMP_PREFIX not in reply_to:
            return
        self.shown[reply_to] = None
        self.shown.move_to_end(reply_to)
        if len(self.shown) > SHOWN_REPLY_TO:
            self.shown.popitem(last=False)

    # -- the in-flight budget toward the broker -----------------------------------------------

    def _to_broker(self, frame: Frame, on_receipt: Callable[[], None] | None = None,
                   on_error: Callable[[str, str], None] | None = None,
                   replayable: bool = False) -> bool:
        """Send *frame* through the session's connection, counted in its in-flight budget.

        Every ``maximum.inflight.bytes / 4`` the gateway asks a RECEIPT of its own, so the
        budget is given back even for a client that never asks for receipts."""
        size = len(frame.body) + sum(len(k) + len(v) + 2 for k, v in frame.headers) + 16
        self.sent_bytes += size
        mark = self.sent_bytes
        quarter = self.service.settings.maximum_inflight_bytes // 4
        if on_receipt is None and on_error is None and mark - self._checkpoint <= quarter:
            ok = self.connection.send(frame)
        else:
            self._checkpoint = mark
            settle = self._settler(mark)

            def receipt() -> None:
                settle()
                if on_receipt is not None:
                    on_receipt()

            def error(message: str, detail: str) -> None:
                settle()
                if on_error is not None:
                    on_error(message, detail)
                else:
                    log.info("jms: {peer}: the broker refused {command}: {message} {detail}",
                             peer=self.link.remote, command=frame.command, message=message,
                             detail=detail)

            ok = self.connection.send(frame, on_receipt=receipt, on_error=error,
                                      replayable=replayable)
            if not ok:
                settle()
        self._update_reading()
        return ok

    def _settler(self, mark: int | None,
                 release: Callable[[], None] | None = None) -> Callable[[], None]:
        """Count one frame in flight; the function returned gives it back (once), with the
        bytes up to *mark* if it is a RECEIPT on the session's connection, and calls
        *release* (an Admission place)."""
        self.inflight_frames += 1
        self._update_reading()
        done = False

        def settle() -> None:
            nonlocal done
            if done:
                return
            done = True
            self.inflight_frames -= 1
            if mark is not None and mark > self.confirmed_bytes:
                self.confirmed_bytes = mark
            if release is not None:
                release()
            self._update_reading()

        return settle

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
        destination = self._destination(frame, "publish")
        tx = self._transaction(frame)
        headers = [("destination", destination.broker)]
        if frame.get("reply-to"):
            # Replies come back there: a client names only what it may itself subscribe to.
            headers.append(("reply-to", self._destination(frame, "subscribe", "reply-to").broker))
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
            ok = self._to_broker(out)
        else:
            ok = self._to_broker(
                out, on_receipt=lambda: self.receipt(receipt),
                on_error=lambda m, d: self.fail(m, d, receipt), replayable=tx is None)
        if not ok:
            raise ClientError("broker unavailable",
                              "the broker is unreachable and the gateway's buffer for it is "
                              "full; try again later")

    def _on_subscribe(self, frame: Frame) -> None:
        destination = self._destination(frame, "subscribe")
        settings = self.service.settings
        if len(self.subscriptions) >= settings.maximum_subscriptions:
            raise ClientError("too many subscriptions",
                              f"this connection already has {len(self.subscriptions)} "
                              f"subscriptions, the most one connection may have "
                              "(maximum.subscriptions)", POLICY_VIOLATION)
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
        shared = destination.is_topic and durable is None
        new = not shared or (destination.broker, selector) not in self.service.fanout.topics
        if new and self.service.broker_subscriptions() >= settings.maximum_broker_subscriptions:
            raise ClientError("broker subscription limit",
                              f"{destination.client}: the gateway already holds "
                              f"{settings.maximum_broker_subscriptions} subscriptions on the "
                              "broker (maximum.broker.subscriptions); try again later",
                              POLICY_VIOLATION)
        if new:
            if not self.service.admission.take(self):
                self.parked = frame  # handled again by unpark(); reads pause meanwhile
                self._update_reading()
                return
        sub = ClientSubscription(self, sub_id, destination, ack, selector, durable=durable)
        receipt = frame.get("receipt")
        self.subscriptions[sub_id] = sub
        settle = sub.settle = self._settler(None, self.service.admission.release if new
                                            else None)

        def ready() -> None:
            settle()
            self.receipt(receipt)

        if shared:
            sub.topic = self.service.fanout.add(
                destination.broker, selector, sub,
                lambda d: self.service.destinations.to_client(d, self.tag), ready)
            return
        if durable is not None:
            if self.dedicated is None:
                del self.subscriptions[sub_id]
                settle()
                raise ClientError("durable subscription needs a client-id",
                                  "add a client-id header to CONNECT: the broker keys "
                                  "durable subscriptions by client-id and subscription name")
            if not destination.is_topic:
                del self.subscriptions[sub_id]
                settle()
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
            on_ready=ready)
        sub.broker_id = broker_sub.id
        self.by_broker_id[broker_sub.id] = sub

    def subscription_refused(self, sub: ClientSubscription, message: str, detail: str,
                             receipt: str | None = None) -> None:
        if sub.settle is not None:
            sub.settle()
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
            self._to_broker(
                Frame("UNSUBSCRIBE", [("id", frame.get("id") or durable),
                                      ("activemq.subscriptionName", durable)]),
                on_receipt=lambda: self.receipt(receipt),
                on_error=lambda m, d: self.fail(m, d, receipt))
            return
        self.receipt(receipt)

    def _drop(self, sub: ClientSubscription) -> None:
        self.subscriptions.pop(sub.id, None)
        if sub.settle is not None:
            sub.settle()  # its RECEIPT may never come now
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
            ok = self._to_broker(out)
        else:
            ok = self._to_broker(out, on_receipt=lambda: self.receipt(receipt),
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
        self._flush(force=True)  # what the client was owed, then its RECEIPT
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
        reply_to = message.frame.get("reply-to")
        if reply_to:
            self._show(self.service.destinations.to_client(reply_to, self.tag))
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
                if name == "reply-to":
                    self._show(value)
            headers.append((name, value))
        self.service.fanout.deliveries.messages += 1
        message = Frame("MESSAGE", headers, frame.body)
        if sub.ack == "auto":
            # Acked once handed to the link: while the client is slow, the broker's prefetch
            # window stops the flow instead of the gateway's memory.
            self.write(encode(message, self.version), is_text(message.body),
                       written=lambda: connection.ack(broker_ack, epoch))
        else:
            self.send_frame(message)
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
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        if self._connect_timer is not None and self._connect_timer.active():
            self._connect_timer.cancel()
        self._connect_timer = None
        self.service.ended(self)
        connection = self.connection
        connection.readers.discard(self)
        for tx in self.transactions.values():
            if tx.epoch == connection.epoch:
                connection.send(Frame("ABORT", [("transaction", tx.broker_id)]))
        self.transactions.clear()
        for sub in list(self.subscriptions.values()):
            self._drop(sub)
        self.backlog.clear()
        if self.dedicated is not None:
            dedicated, self.dedicated = self.dedicated, None
            dedicated.stop()
