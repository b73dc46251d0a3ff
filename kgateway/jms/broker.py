"""The gateway's own STOMP connections to the broker.

    JmsSession --subscribe/send/ack--> BrokerConnection --STOMP 1.2 over TCP--> ActiveMQ
         ^                                  |  (reconnect with back-off, re-SUBSCRIBE,
         |                                  |   receipts, an outbox while disconnected)
         +---- TopicFanout (fanout.py) <----+ MESSAGE

A :class:`BrokerConnection` owns one broker connection for its whole life: when the
connection drops it reconnects after ``reconnect.delay``, doubling up to
``reconnect.delay.maximum``, sends every live SUBSCRIBE again, then the frames queued while
it was down.

With several brokers (``BrokerSettings.brokers``: the members of one cluster, such as an
ActiveMQ network of brokers) it fails over instead of waiting: a lost or unreachable broker
is replaced at once by the next one in the list (round the list), and only once every broker
has failed in a row does it wait, with the same back-off, before each further attempt::

    A lost --> dial B at once --> refused --> dial C at once --> refused --> (all failed)
          --> wait reconnect.delay --> dial A --> wait 2x --> dial B ... --> CONNECTED: the
              SUBSCRIBEs again, then the outbox; the next loss starts a fresh round

To its users a fail-over is a reconnect like any other (a new epoch): the new broker
redelivers nothing of the old one's unacked messages (the cluster does, once the old broker
is back), and everything else (replayed SENDs, re-subscription) is the same. Callers never see the outage except through :attr:`BrokerConnection.epoch`
(bumped on every loss: acks and transactions of an older epoch are void, since the broker
forgot them and redelivers the unacked messages) and through receipts: a frame sent with
``on_receipt`` completes only when the broker's RECEIPT arrives; a replayable one (a SEND
outside a transaction) lost in an outage is sent again after the reconnect, anything else
fails with ``on_error``.

The connection is I/O-injected rather than sans-IO: it is given a Connector (tests pass a
fake returning an in-memory ILink) and a clock (tests pass ``twisted.internet.task.Clock``),
and it logs. Back-pressure: the broker link's write buffer pauses the connection's
``readers`` (the sessions sending through it), and resumes them when it drains.
"""

from __future__ import annotations

import enum
import itertools
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from kgateway.config import URI, Options
from kgateway.interfaces import ConnectError, IConnector, ILink, ILinkReceiver
from kgateway.protocols.stomp import (
    SERVER_COMMANDS,
    Frame,
    FrameParser,
    StompError,
    encode,
    negotiate_heartbeat,
    parse_heartbeat,
)
from kgateway.timers import Heartbeat

log = Logger()

Headers = list[tuple[str, str]]
MessageHandler = Callable[[Frame, int], None]
ErrorHandler = Callable[[str, str], None]

#: headers of a broker MESSAGE that belong to the gateway's subscription, not the message
PER_SUBSCRIPTION = frozenset({"subscription", "ack"})


@dataclass(frozen=True)
class BrokerSettings:
    """How to reach and log in to the broker."""

    uri: URI
    options: Options
    login: str | None = None
    passcode: str | None = None
    virtual_host: str | None = None
    reconnect_delay: float = 0.5
    reconnect_delay_maximum: float = 10.0
    #: bytes of frames kept while disconnected, per connection (outage.buffer.size)
    outage_buffer_size: int = 8 * 1024 * 1024
    max_frame_size: int = 16 * 1024 * 1024
    #: heart-beats asked of the broker both ways, seconds (0: none)
    heartbeat: float = 10.0
    #: broker link write buffer past which client reads pause
    write_limit: int = 1024 * 1024
    #: every broker of the cluster, in fail-over order (empty: just ``uri``)
    brokers: tuple[URI, ...] = ()


@dataclass
class Subscription:
    """A SUBSCRIBE the connection keeps alive across reconnects."""

    id: str
    headers: Headers
    on_message: MessageHandler
    on_error: ErrorHandler | None = None
    #: callbacks waiting for the broker's RECEIPT for this SUBSCRIBE
    waiting: list[Callable[[], None]] = field(default_factory=list)
    ready: bool = False


@dataclass
class _Pending:
    on_receipt: Callable[[], None] | None
    on_error: ErrorHandler | None
    #: the encoded frame, if it may be sent again after a reconnect
    replay: bytes | None
    written: bool = False
    subscription: str | None = None


class State(enum.Enum):
    DOWN = "down"  # dialling, waiting for CONNECTED, or waiting to reconnect
    CONNECTED = "connected"
    STOPPED = "stopped"  # stop() or a refused dedicated CONNECT: stays down


class Reader(Protocol):
    """A session sending through a connection: paused while the broker link is backed up."""

    def set_reading(self, reading: bool) -> None: ...


class BrokerRefused(Exception):
    """The broker answered CONNECT with an ERROR (a dedicated connection's client-id...)."""

    def __init__(self, message: str, detail: str) -> None:
        super().__init__(message)
        self.message, self.detail = message, detail


@implementer(ILinkReceiver, IPushProducer)
class BrokerConnection:
    """One STOMP 1.2 connection from the gateway to the broker, kept up for its whole life."""

    def __init__(self, reactor: Any, settings: BrokerSettings, label: str,
                 connector: IConnector, client_id: str | None = None, first: int = 0) -> None:
        self.reactor = reactor
        self.settings = settings
        self.brokers: tuple[URI, ...] = settings.brokers or (settings.uri,)
        #: the broker (index into ``brokers``) being dialled or connected
        self.current = first % len(self.brokers)
        #: dials failed in a row since the last CONNECTED (a full round: back off)
        self._failures = 0
        #: broker index -> why it last failed us (cleared when it accepts us again)
        self.broker_errors: dict[int, str] = {}
        self.label = label
        self.connector = connector
        self.client_id = client_id
        self.link: ILink | None = None
        self.state = State.DOWN
        #: bumped each time the connection is lost; acks/transactions of older epochs are void
        self.epoch = 0
        self.subscriptions: dict[str, Subscription] = {}
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self._outbox: deque[tuple[str | None, bytes]] = deque()
        self._outbox_bytes = 0
        self._ids = itertools.count(1)
        self._delay = settings.reconnect_delay
        self._retry: Any = None
        self._parser: FrameParser | None = None
        #: fired by the first CONNECTED after start(), or failed with BrokerRefused
        self._started: defer.Deferred[None] | None = None
        self.last_error = ""
        #: connects that failed (TCP, TLS) since start, for metrics
        self.failures = 0
        #: False while the broker link's write buffer is over ``write_limit``
        self.writable = True
        #: the sessions sending through this connection, paused while it is not writable
        self.readers: set[Reader] = set()
        self._heartbeat: Heartbeat | None = None

    def __repr__(self) -> str:
        return f"<BrokerConnection {self.label} {self.uri} {self.state.value}>"

    @property
    def uri(self) -> URI:
        """The broker this connection is on, or dialling."""
        return self.brokers[self.current]

    @property
    def connected(self) -> bool:
        return self.state is State.CONNECTED

    @property
    def stopped(self) -> bool:
        return self.state is State.STOPPED

    @property
    def buffered(self) -> int:
        """Bytes of frames kept for the broker until it is back (the outage buffer)."""
        return self._outbox_bytes

    # -- life cycle ----------------------------------------------------------------------

    def start(self) -> defer.Deferred[None]:
        """Connect (and reconnect for good); fires on the first CONNECTED, fails with
        BrokerRefused if the broker refuses this connection's CONNECT (it then stays down)."""
        self.state = State.DOWN
        self._started = defer.Deferred()
        self._dial()
        return self._started

    def stop(self) -> None:
        """DISCONNECT and stay down; pending receipts fail."""
        was_connected = self.connected
        self.state = State.STOPPED
        self._stop_heartbeat()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        link, self.link = self.link, None
        if link is not None:
            if was_connected:
                link.write(encode(Frame("DISCONNECT")), True)
            link.close()
        self._fail_pending("the gateway closed its broker connection", replay=False)
        self._outbox.clear()
        self._outbox_bytes = 0

    def _dial(self) -> None:
        self._retry = None
        if self.stopped:
            return
        self._parser = FrameParser("1.2", max_frame_size=self.settings.max_frame_size,
                                   commands=SERVER_COMMANDS)
        d = self.connector.connect(self.uri, self.settings.options, self)
        d.addCallbacks(self._tcp_up, self._dial_failed)

    def _tcp_up(self, link: ILink) -> None:
        if self.stopped:
            link.close()
            return
        self.link = link
        link.register_producer(self)
        link.set_write_limit(self.settings.write_limit)
        beat = int(self.settings.heartbeat * 1000)
        headers = [("accept-version", "1.2"),
                   ("host", self.settings.virtual_host or self.uri.host),
                   ("heart-beat", f"{beat},{beat}")]
        if self.settings.login is not None:
            headers.append(("login", self.settings.login))
        if self.settings.passcode is not None:
            headers.append(("passcode", self.settings.passcode))
        if self.client_id is not None:
            headers.append(("client-id", self.client_id))
        link.write(encode(Frame("CONNECT", headers)), True)

    def _dial_failed(self, reason: Failure) -> None:
        if not reason.check(ConnectError):
            log.failure("jms: connecting to broker {broker} ({label})", reason,
                        broker=str(self.uri), label=self.label)
        # Whatever went wrong, keep trying: a connection that stops retrying is an outage.
        self.last_error = reason.getErrorMessage()
        self.failures += 1  # since start: failed connects (metrics)
        failed = self.uri
        self.broker_errors[self.current] = self.last_error
        self._failures += 1
        delay = self._schedule_retry()
        log.warn("jms: broker {broker} ({label}) unreachable: {reason}; {next}",
                 broker=str(failed), label=self.label, reason=self.last_error,
                 next=self._next_text(delay))

    def _next_text(self, delay: float | None) -> str:
        if delay is None:
            return "stopped"
        where = f"trying {self.uri}" if len(self.brokers) > 1 else "retrying"
        return f"{where} at once" if delay == 0 else f"{where} in {delay:.1f}s"

    def _schedule_retry(self) -> float | None:
        """Dial again: the next broker at once while some broker has not failed in a row,
        else after the back-off delay. Returns the delay (None: nothing scheduled)."""
        if self.stopped or self._retry is not None:
            return None
        if len(self.brokers) > 1:
            self.current = (self.current + 1) % len(self.brokers)
        if len(self.brokers) > 1 and self._failures < len(self.brokers):
            delay = 0.0
        else:
            delay = self._delay
            self._delay = min(self._delay * 2, self.settings.reconnect_delay_maximum)
        self._retry = self.reactor.callLater(delay, self._dial)
        return delay

    # -- IPeer -----------------------------------------------------------------------------

    def received(self, data: bytes, binary: bool) -> None:
        parser = self._parser
        if parser is None or self.link is None:
            return
        if self._heartbeat is not None:
            self._heartbeat.heard()
        try:
            parser.receive_data(data)
            while self.link is not None and (event := parser.next_event()) is not None:
                if isinstance(event, Frame):
                    try:
                        self._frame(event)
                    except Exception:
                        # One client's failing callback must not kill the shared connection.
                        log.failure("jms: handling {command} from {label}",
                                    command=event.command, label=self.label)
        except StompError as e:
            log.error("jms: broker {broker} ({label}) sent a bad frame: {error}",
                      broker=str(self.uri), label=self.label, error=str(e))
            if self.link is not None:
                self.link.close()

    def closed(self, code: int | None, reason: str) -> None:
        was_connected = self.connected
        self.link = None
        if not self.stopped:
            self.state = State.DOWN
        self.epoch += 1
        self._stop_heartbeat()
        self._set_writable(True)
        for sub in self.subscriptions.values():
            sub.ready = False
        if self.stopped:
            return
        why = self.last_error or reason or "connection lost"
        self.last_error = ""
        lost = self.uri
        self.broker_errors[self.current] = why
        if not was_connected:
            self._failures += 1  # refused or dropped before CONNECTED: a failed dial
        self._fail_pending("the broker connection was lost before the broker confirmed it",
                           replay=True)
        delay = self._schedule_retry()
        if was_connected:
            log.warn("jms: lost broker {broker} ({label}): {reason}; {next}",
                     broker=str(lost), label=self.label, reason=why,
                     next=self._next_text(delay), failover=len(self.brokers) > 1)

    # -- heart-beats and back-pressure ------------------------------------------------------

    def _stop_heartbeat(self) -> None:
        heartbeat, self._heartbeat = self._heartbeat, None
        if heartbeat is not None:
            heartbeat.stop()

    def _beat(self) -> None:
        if self.link is not None:
            self.link.write(b"\n", True)

    def _silent(self) -> None:
        if self.link is not None and self._heartbeat is not None:
            # A half-open connection (partition, frozen broker): drop it and reconnect.
            self.last_error = (f"no heart-beat from the broker for "
                               f"{self._heartbeat.expect_every:g}s")
            self.link.close()

    def _set_writable(self, writable: bool) -> None:
        if writable != self.writable:
            self.writable = writable
            for reader in list(self.readers):
                reader.set_reading(writable)

    # IPushProducer: the broker link calls these as its write buffer fills and drains.
    def pauseProducing(self) -> None:
        self._set_writable(False)

    def resumeProducing(self) -> None:
        self._set_writable(True)

    def stopProducing(self) -> None:
        pass

    # -- frames from the broker -------------------------------------------------------------

    def _frame(self, frame: Frame) -> None:
        command = frame.command
        if command == "MESSAGE":
            sub = self.subscriptions.get(frame.get("subscription") or "")
            if sub is not None:
                sub.on_message(frame, self.epoch)
            return
        if command == "RECEIPT":
            self._receipt(frame.get("receipt-id") or "")
            return
        if command == "CONNECTED":
            self._connected(frame)
            return
        if command == "ERROR":
            self._error(frame)

    def _connected(self, frame: Frame) -> None:
        self.state = State.CONNECTED
        self._delay = self.settings.reconnect_delay
        self._failures = 0
        self.broker_errors.pop(self.current, None)
        beat = int(self.settings.heartbeat * 1000)
        try:
            send_ms, expect_ms = negotiate_heartbeat((beat, beat),
                                                     parse_heartbeat(frame.get("heart-beat")),
                                                     gateway_role="client")
        except StompError:
            send_ms = expect_ms = 0
        self._heartbeat = Heartbeat(self.reactor, send_ms / 1000, expect_ms * 2 / 1000,
                                    self._beat, self._silent)
        log.info("jms: connected to broker {broker} ({label}), STOMP {version}",
                 broker=str(self.uri), label=self.label,
                 version=frame.get("version", "1.0"))
        for sub in self.subscriptions.values():
            self._write_subscribe(sub)
        outbox, self._outbox = self._outbox, deque()
        self._outbox_bytes = 0
        for rid, data in outbox:
            self._write(data, rid)
        started, self._started = self._started, None
        if started is not None:
            started.callback(None)

    def _receipt(self, rid: str) -> None:
        pending = self._pending.pop(rid, None)
        if pending is None:
            return
        if pending.subscription is not None:
            sub = self.subscriptions.get(pending.subscription)
            if sub is not None:
                sub.ready = True
                waiting, sub.waiting = sub.waiting, []
                for callback in waiting:
                    callback()
            return
        if pending.on_receipt is not None:
            pending.on_receipt()

    def _error(self, frame: Frame) -> None:
        message = frame.get("message") or "broker error"
        detail = frame.body.decode("utf-8", "replace").strip()
        rid = frame.get("receipt-id")
        pending = self._pending.pop(rid, None) if rid else None
        if pending is not None:
            # ActiveMQ's body is a Java stack trace: clients get its first line, the log all.
            log.info("jms: broker {broker} ({label}) refused a frame: {message}",
                     broker=str(self.uri), label=self.label, message=message,
                     detail=detail[:2000])
            short = detail.splitlines()[0][:300] if detail else ""
            if pending.subscription is not None:
                sub = self.subscriptions.pop(pending.subscription, None)
                if sub is not None and sub.on_error is not None:
                    sub.on_error(message, short)
            elif pending.on_error is not None:
                pending.on_error(message, short)
            return
        if not self.connected:
            self.last_error = f"broker refused the connection: {message}"
            first = detail.splitlines()[0][:300] if detail else ""
            log.error("jms: broker {broker} ({label}) refused CONNECT: {message}{why}",
                      broker=str(self.uri), label=self.label, message=message,
                      why=f" ({first})" if first and first != message else "",
                      detail=detail[:500])
            if self.client_id is not None:
                # A dedicated connection: its client's CONNECT fails with it (a shared one
                # goes on retrying: the broker may accept once its problem is fixed).
                self.state = State.STOPPED
                started, self._started = self._started, None
                if started is not None:
                    started.errback(BrokerRefused(message, detail))
            return
        log.error("jms: broker {broker} ({label}) sent ERROR: {message}",
                  broker=str(self.uri), label=self.label, message=message,
                  detail=detail[:500])

    # -- frames to the broker ---------------------------------------------------------------

    def _write(self, data: bytes, rid: str | None) -> None:
        assert self.link is not None
        if rid is not None and rid in self._pending:
            self._pending[rid].written = True
        self.link.write(data, True)

    def _fail_pending(self, why: str, *, replay: bool) -> None:
        pendings, self._pending = self._pending, OrderedDict()
        requeue: list[tuple[str | None, bytes]] = []
        for rid, pending in pendings.items():
            if pending.subscription is not None:
                continue  # the SUBSCRIBE is sent again with a fresh receipt
            if not pending.written:
                self._pending[rid] = pending  # still in the outbox
            elif replay and pending.replay is not None:
                pending.written = False
                self._pending[rid] = pending
                requeue.append((rid, pending.replay))
            elif pending.on_error is not None:
                pending.on_error("broker unavailable", why)
        for item in reversed(requeue):
            self._outbox.appendleft(item)
            self._outbox_bytes += len(item[1])

    def next_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids)}"

    def send(self, frame: Frame, *, on_receipt: Callable[[], None] | None = None,
             on_error: ErrorHandler | None = None, replayable: bool = False) -> bool:
        """Send *frame* now or after the reconnect; False if the outbox is full.

        With *on_receipt* the frame carries a gateway receipt and the callback runs on the
        broker's RECEIPT; *on_error* runs on the broker's ERROR for it, or when the
        connection drops first and the frame is not *replayable*.
        """
        rid = None
        if on_receipt is not None or on_error is not None:
            rid = self.next_id("r")
            frame = Frame(frame.command, [*frame.headers, ("receipt", rid)], frame.body)
        data = encode(frame, "1.2")
        if rid is not None:
            self._pending[rid] = _Pending(on_receipt, on_error, data if replayable else None)
        if self.connected:
            self._write(data, rid)
            return True
        if self.stopped or self._outbox_bytes + len(data) > self.settings.outage_buffer_size:
            if rid is not None:
                self._pending.pop(rid, None)
            return False
        self._outbox.append((rid, data))
        self._outbox_bytes += len(data)
        return True

    def subscribe(self, headers: Sequence[tuple[str, str]], on_message: MessageHandler, *,
                  on_error: ErrorHandler | None = None,
                  on_ready: Callable[[], None] | None = None) -> Subscription:
        """SUBSCRIBE now and after every reconnect; *on_ready* runs on the first RECEIPT."""
        sub = Subscription(self.next_id("s"), list(headers), on_message, on_error)
        if on_ready is not None:
            sub.waiting.append(on_ready)
        self.subscriptions[sub.id] = sub
        if self.connected:
            self._write_subscribe(sub)
        return sub

    def _write_subscribe(self, sub: Subscription) -> None:
        rid = self.next_id("r")
        self._pending[rid] = _Pending(None, None, None, subscription=sub.id)
        headers = [("id", sub.id), *sub.headers, ("receipt", rid)]
        self._write(encode(Frame("SUBSCRIBE", headers), "1.2"), rid)

    def unsubscribe(self, sub_id: str) -> None:
        """Stop a subscription; the broker redelivers its unacked messages to others."""
        if self.subscriptions.pop(sub_id, None) is not None and self.connected:
            self.send(Frame("UNSUBSCRIBE", [("id", sub_id)]))

    def ack(self, ack_id: str, epoch: int, *, nack: bool = False,
            transaction: str | None = None) -> bool:
        """ACK/NACK a message delivered in *epoch*; False (and nothing sent) if it is void."""
        if epoch != self.epoch or not self.connected:
            return False
        headers = [("id", ack_id)]
        if transaction is not None:
            headers.append(("transaction", transaction))
        self.send(Frame("NACK" if nack else "ACK", headers))
        return True
