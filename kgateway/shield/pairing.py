"""The Enterprise Shield pairing machines, sans-IO: one per end of a reverse connection.

    internal gateway (ReverseMachine)                 DMZ gateway (BackplaneMachine)
    CONNECTING --opened()--> HELLO   -- HELLO -->     HELLO
               <-- WELCOME --  IDLE                   IDLE     (in the DMZ's pool)
          ping every keepalive -- PING --> / <-- PONG          (watchdog: 3 x keepalive)
                               OPENING <-- OPEN --    OPENING  (a public client arrived)
    session ready: -- OPENED -->  PAIRED              PAIRED   (client data flows as is)
    session refused: -- REFUSED --> CLOSED            CLOSED

Inputs are method calls (decoded control messages go in through ``receive``); outputs are
calls on a small ``...Output`` protocol that the Autobahn adapters (``dmz.py``,
``internal.py``) implement: send a control message, close, drop, start and cancel named
timers, and the pairing events. No reactor, no transport, no clock: the machines are tested
with plain method calls (``tests/unit/shield/test_pairing.py``). Once PAIRED the adapters
relay WebSocket messages directly, without the machine: the data path pays nothing here.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Protocol

from kgateway.interfaces import BAD_GATEWAY, PROTOCOL_ERROR
from kgateway.protocols import shield_control as control

#: the DMZ drops a prepared connection whose pings stop for this many keepalive intervals
WATCHDOG_INTERVALS = 3
WATCHDOG = "watchdog"
PING = "ping"


class Phase(enum.Enum):
    CONNECTING = "connecting"  # internal only: TCP/TLS/WebSocket handshake under way
    HELLO = "hello"  # waiting for HELLO (DMZ) or WELCOME (internal)
    IDLE = "idle"  # prepared: waiting for a public client
    OPENING = "opening"  # OPEN sent / received: the internal service decides
    PAIRED = "paired"  # carries one client's messages
    CLOSED = "closed"


class _Decoding:
    """Control messages in, one handler call each; a protocol error closes with 1002."""

    phase: Phase

    def __init__(self) -> None:
        self._decoder = control.Decoder()

    def receive(self, payload: bytes) -> None:
        """A WebSocket message before PAIRED: control messages."""
        try:
            messages = self._decoder.feed(payload)
        except control.ShieldProtocolError as e:
            self._protocol_error(str(e))
            return
        for message in messages:
            if self.phase is Phase.CLOSED:
                return
            self._message(message)

    def _message(self, message: control.Message) -> None:
        raise NotImplementedError

    def _protocol_error(self, why: str) -> None:
        raise NotImplementedError


# -- the DMZ end ------------------------------------------------------------------------------


class BackplaneOutput(Protocol):
    def send(self, message: control.Message) -> None: ...

    def close(self, code: int) -> None:
        """Send a WebSocket close frame with *code*."""

    def drop(self) -> None:
        """Abort the connection now (its peer stopped answering)."""

    def start_timer(self, name: str, seconds: float) -> None: ...

    def cancel_timer(self, name: str) -> None: ...

    def prepared(self) -> None:
        """HELLO arrived: the connection may join the pool of prepared ones."""

    def opened(self, protocol: str | None) -> None:
        """The internal service took the client, choosing *protocol*."""

    def refused(self, reason: str) -> None:
        """The internal service could not take the client."""

    def event(self, what: str) -> None:
        """Something worth a log line."""


class BackplaneMachine(_Decoding):
    """A reverse connection as the DMZ gateway sees it."""

    def __init__(self, out: BackplaneOutput) -> None:
        super().__init__()
        self.out = out
        self.phase = Phase.HELLO
        self.keepalive = 0.0
        self.name = ""

    def pair(self, client: str, protocols: Sequence[str]) -> None:
        """A public client takes this prepared connection."""
        assert self.phase is Phase.IDLE, self.phase
        self.phase = Phase.OPENING
        self.out.cancel_timer(WATCHDOG)  # the internal side stops pinging once it has a client
        self.out.send(control.Open(client, tuple(protocols)))

    def timer_expired(self, name: str) -> None:
        if name == WATCHDOG and self.phase in (Phase.HELLO, Phase.IDLE):
            self.event(f"no PING from {self.name or 'the internal gateway'} within "
                       f"{self.keepalive * WATCHDOG_INTERVALS:g}s; dropping it")
            self.phase = Phase.CLOSED
            self.out.drop()

    def lost(self) -> None:
        """The connection ended (whatever the phase)."""
        self.phase = Phase.CLOSED
        self.out.cancel_timer(WATCHDOG)

    def event(self, what: str) -> None:
        self.out.event(what)

    def _watch(self) -> None:
        if self.keepalive > 0:
            self.out.start_timer(WATCHDOG, self.keepalive * WATCHDOG_INTERVALS)

    def _message(self, message: control.Message) -> None:
        if isinstance(message, control.Hello) and self.phase is Phase.HELLO:
            self.phase = Phase.IDLE
            self.keepalive = message.keepalive_ms / 1000
            self.name = message.name
            self.out.send(control.Welcome())
            self._watch()
            self.out.prepared()
        elif isinstance(message, control.Ping):
            self.out.send(control.Pong(message.n))
            if self.phase is Phase.IDLE:
                self._watch()
        elif isinstance(message, control.Opened) and self.phase is Phase.OPENING:
            self.phase = Phase.PAIRED
            self.out.opened(message.protocol)
        elif isinstance(message, control.Refused) and self.phase is Phase.OPENING:
            self.phase = Phase.CLOSED
            self.out.refused(message.reason)
            self.out.close(1000)
        else:
            self.event(f"unexpected {type(message).__name__} while {self.phase.value}")

    def _protocol_error(self, why: str) -> None:
        self.event(why)
        self.phase = Phase.CLOSED
        self.out.cancel_timer(WATCHDOG)
        self.out.close(PROTOCOL_ERROR)


# -- the internal end -------------------------------------------------------------------------


class ReverseOutput(Protocol):
    def send(self, message: control.Message) -> None: ...

    def close(self, code: int) -> None: ...

    def drop(self) -> None: ...

    def start_timer(self, name: str, seconds: float) -> None: ...

    def cancel_timer(self, name: str) -> None: ...

    def welcomed(self) -> None:
        """The DMZ gateway took this connection into its pool."""

    def open(self, client: str, protocols: tuple[str, ...]) -> None:
        """A public client: make a session for it, then call session_ready/_refused."""

    def event(self, what: str) -> None: ...


class ReverseMachine(_Decoding):
    """A reverse connection as the internal gateway sees it."""

    def __init__(self, out: ReverseOutput, keepalive: float, name: str) -> None:
        super().__init__()
        self.out = out
        self.keepalive = keepalive
        self.name = name
        self.phase = Phase.CONNECTING
        self.pings = 0
        self.awaiting_pong: int | None = None

    def connected(self) -> None:
        """The WebSocket is open: introduce ourselves."""
        self.phase = Phase.HELLO
        self.out.send(control.Hello(int(self.keepalive * 1000), self.name))

    def session_ready(self, protocol: str | None) -> None:
        if self.phase is not Phase.OPENING:
            return  # the DMZ side went away meanwhile
        self.phase = Phase.PAIRED
        self.out.send(control.Opened(protocol))

    def session_refused(self, reason: str) -> None:
        if self.phase is not Phase.OPENING:
            return
        self.phase = Phase.CLOSED
        self.out.send(control.Refused(reason[:1000]))
        self.out.close(BAD_GATEWAY)

    def timer_expired(self, name: str) -> None:
        if name != PING or self.phase is not Phase.IDLE:
            return
        if self.awaiting_pong is not None:
            self.event(f"no PONG from the DMZ gateway within {self.keepalive:g}s; reconnecting")
            self.phase = Phase.CLOSED
            self.out.drop()
            return
        self.pings += 1
        self.awaiting_pong = self.pings
        self.out.send(control.Ping(self.pings))
        self.out.start_timer(PING, self.keepalive)

    def lost(self) -> None:
        self.phase = Phase.CLOSED
        self.out.cancel_timer(PING)

    def event(self, what: str) -> None:
        self.out.event(what)

    def _message(self, message: control.Message) -> None:
        if isinstance(message, control.Welcome) and self.phase is Phase.HELLO:
            self.phase = Phase.IDLE
            self.out.welcomed()
            if self.keepalive > 0:
                self.out.start_timer(PING, self.keepalive)
        elif isinstance(message, control.Pong):
            if message.n == self.awaiting_pong:
                self.awaiting_pong = None
        elif isinstance(message, control.Open) and self.phase is Phase.IDLE:
            self.out.cancel_timer(PING)
            self.phase = Phase.OPENING
            self.out.open(message.client, message.protocols)
        else:
            self.event(f"unexpected {type(message).__name__} from the DMZ gateway while "
                       f"{self.phase.value}")

    def _protocol_error(self, why: str) -> None:
        self.event(f"from the DMZ gateway: {why}")
        self.phase = Phase.CLOSED
        self.out.cancel_timer(PING)
        self.out.close(PROTOCOL_ERROR)
