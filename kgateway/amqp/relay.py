"""Sans-IO core of the ``amqp.proxy`` service: one AMQP 0-9-1 client relayed to the broker.

(Over the house's ~500 lines on purpose: both sides' phases of one connection, the
handshake checks, authentication of Start-Ok and the closing rules are one state machine;
split, each half would need the other's phases.)

The relay *understands* the connection handshake and checks the framing of everything
else; it never decodes channel traffic::

    client (ws/wss/tcp/ssl)              AmqpRelay                              broker (tcp/ssl)
      "AMQP\\0\\0\\x09\\x01" --> ProtocolHeaderReader   wrong: PROTOCOL_HEADER back, close;
                                 valid: connect_broker()  the broker never sees the bytes
                                               header ----------------------------------> |
      <-------------------------------- Start ------------------------------------------- |
      Start-Ok -----------> client-properties += x-forwarded-for, kgateway.client ------> |
      <-------------------------- Secure / Secure-Ok (relayed) --------------------------> |
      <---------------- Tune (frame-max capped to maximum.frame.size) ------------------- |
      Tune-Ok ------------> negotiate_frame_max(): both FrameReaders take it -----------> |
      Open ---------------> virtual-host checked (refused: Close 530 to the client) ----> |
      <-------------------------------- Open-Ok ----------------------------------------- |
      frames -------------> FrameReader.feed_chunk: frame-max, frame-end, type ---------> |
      <------ whole frames per WebSocket message (feed_chunk); raw bytes for streams ---- |

Inputs are method calls (``client_data``, ``broker_data``, ``broker_connected`` ...);
outputs are calls on a :class:`RelayOutput` (the Twisted session in
``kgateway.amqp.session``). No reactor, no transport, no clock: timers are requested
through the output and reported back with :meth:`AmqpRelay.timer_expired`.

Closing rules (docs/amqp.md has the table):

* a client protocol violation gets ``Connection.Close`` with the AMQP reply code
  (501 frame-error, 503 command-invalid, 505 unexpected-frame, 530 not-allowed); the
  relay then waits ``close.timeout`` for ``Close-Ok`` before closing. After a fatal
  framing error (bad frame-end, unknown frame type) nothing more can be read from the
  stream, so the connection is closed right after the ``Close``, as RabbitMQ does.
* the broker side is closed with ``Connection.Close`` 320 / ``Close-Ok`` once it is open;
  before ``Open-Ok`` RabbitMQ accepts no ``Close`` (it answers 504 "unexpected method in
  connection state opening"), so the TCP connection is simply closed.
* a client that vanishes closes the broker connection the way it would have gone had
  the client been connected directly; a broker that goes away closes the client.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Final, Protocol

from kgateway.interfaces import BAD_GATEWAY, NORMAL, POLICY_VIOLATION, PROTOCOL_ERROR
from kgateway.protocols.amqp import (
    ACCESS_REFUSED,
    COMMAND_INVALID,
    CONNECTION_FORCED,
    FRAME_ERROR,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    FRAME_MIN_SIZE,
    NOT_ALLOWED,
    PROTOCOL_HEADER,
    UNEXPECTED_FRAME,
    AnyMethod,
    ConnectionClose,
    ConnectionCloseOk,
    ConnectionOpen,
    ConnectionOpenOk,
    ConnectionSecureOk,
    ConnectionStartOk,
    ConnectionTune,
    ConnectionTuneOk,
    Frame,
    FrameError,
    FrameReader,
    Method,
    ProtocolHeaderError,
    ProtocolHeaderReader,
    close_for,
    decode_method,
    method_frame,
    negotiate_frame_max,
    plain_response,
    sasl_credentials,
)

# WebSocket close codes the relay asks for; streams just close.
WS_NORMAL: Final = NORMAL
WS_PROTOCOL_ERROR: Final = PROTOCOL_ERROR
WS_POLICY_VIOLATION: Final = POLICY_VIOLATION
WS_BAD_GATEWAY: Final = BAD_GATEWAY

#: RabbitMQ accepts frames this much over frame-max (its FRAME_SIZE_FUDGE): some clients
#: compare the payload rather than the whole frame with frame-max.
FRAME_SLACK: Final = 8

#: the client-properties keys the relay sets (any values the client sent are replaced)
FORWARDED_FOR: Final = "x-forwarded-for"
CLIENT_KEY: Final = "kgateway.client"
#: the client capability asking for Connection.Close 403 (not a bare close) on a bad login
AUTH_FAILURE_CLOSE: Final = "authentication_failure_close"
#: the user the gateway authenticated (the client's own value is replaced)
USER_KEY: Final = "kgateway.user"

HANDSHAKE_TIMER: Final = "handshake"
CLIENT_CLOSE_TIMER: Final = "client-close"
BROKER_CLOSE_TIMER: Final = "broker-close"


class Phase(enum.Enum):
    HEADER = "header"  # client: reading the protocol header
    CONNECTING = "connecting"  # client: header valid, broker connection under way
    IDLE = "idle"  # broker: not asked for yet
    HANDSHAKE = "handshake"  # Start .. Open (client) / Open-Ok (broker)
    OPEN = "open"  # the hot path: frame checks only
    CLOSING = "closing"  # we sent Connection.Close and wait for Close-Ok
    CLOSED = "closed"


@dataclass(frozen=True)
class RelaySettings:
    virtual_host: str | None = None
    frame_max: int = 128 * 1024
    handshake_timeout: float = 10.0
    close_timeout: float = 5.0
    #: the user name and password the broker gets instead of the client's (identity
    #: promotion: browsers never hold broker passwords); only with authentication
    broker_credentials: tuple[str, str] | None = None


class RelayOutput(Protocol):
    """What the relay asks its driver to do."""

    def to_client(self, data: bytes) -> None:
        """Write to the client: for WebSocket clients one message (whole frames only)."""

    def to_broker(self, data: bytes) -> None: ...

    def connect_broker(self) -> None:
        """Open the broker connection: answer with broker_connected() or broker_failed()."""

    def close_client(self, code: int, reason: str) -> None:
        """Close the client (after pending writes); *code* is for WebSocket clients."""

    def close_broker(self, reason: str) -> None: ...

    def authenticate(self, user: str, password: str) -> None:
        """Check the client's Start-Ok credentials: answer with authenticated() or
        auth_refused()."""

    def start_timer(self, name: str, seconds: float) -> None:
        """Call timer_expired(name) after *seconds*, replacing a timer of that name."""

    def cancel_timer(self, name: str) -> None: ...

    def event(self, level: str, what: str) -> None:
        """Something worth a log line (level: "info" or "warn")."""


def _host(peer: str) -> str:
    """The host part of 'host:port' or '[v6]:port'."""
    host, sep, port = peer.rpartition(":")
    if not sep or not port.isdigit():
        return peer
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _ids(method: AnyMethod) -> tuple[int, int]:
    if isinstance(method, Method):
        return method.class_id, method.method_id
    return method.CLASS_ID, method.METHOD_ID


def _method_name(method: AnyMethod) -> str:
    if isinstance(method, Method):
        return f"method {method.class_id}.{method.method_id}"
    return method.NAME


def _ws_code(reply_code: int) -> int:
    return WS_POLICY_VIOLATION if reply_code in (NOT_ALLOWED, 403) else WS_PROTOCOL_ERROR


class AmqpRelay:
    """The state of one client connection and its broker connection."""

    def __init__(self, out: RelayOutput, settings: RelaySettings, *, client_address: str,
                 websocket: bool, authenticate: bool = False,
                 user: str | None = None) -> None:
        self.out = out
        self.settings = settings
        self.client_address = client_address
        self.websocket = websocket
        self.client_phase = Phase.HEADER
        self.broker_phase = Phase.IDLE
        self._header = ProtocolHeaderReader()
        self._client_reader = FrameReader(slack=FRAME_SLACK)
        self._broker_reader = FrameReader(slack=FRAME_SLACK)
        self._pending: list[bytes] = []
        self._expect: type[ConnectionStartOk | ConnectionTuneOk | ConnectionOpen] = (
            ConnectionStartOk)
        self._tune: ConnectionTune | None = None
        self._client_close_code = WS_NORMAL
        self._client_close_reason = ""
        #: the frame-max both directions were held to once Tune-Ok went through
        self.frame_max: int | None = None
        #: the client's Start-Ok credentials are checked (out.authenticate) before relaying
        self.authenticate = authenticate
        #: who the client is, once known (at the handshake, or from Start-Ok)
        self.user = user
        self._start_ok: ConnectionStartOk | None = None  # held while authenticating
        #: the broker's Connection.Close during the handshake ("403 ACCESS_REFUSED - ...")
        self._broker_refusal: str | None = None
        #: whether the client's Start-Ok asked for capability authentication_failure_close
        self._client_failure_close = True
        self.virtual_host: str | None = None

    # -- driver events ---------------------------------------------------------------------

    def start(self) -> None:
        """The client is connected: the handshake clock starts."""
        self.out.start_timer(HANDSHAKE_TIMER, self.settings.handshake_timeout)

    def client_data(self, data: bytes) -> None:
        if self.client_phase is Phase.OPEN:
            # The hot path: checked, never decoded, relayed as received.
            try:
                chunk = self._client_reader.feed_chunk(data)
            except FrameError as exc:
                if exc.preceding and self.broker_phase in (Phase.HANDSHAKE, Phase.OPEN):
                    self.out.to_broker(exc.preceding)
                self._fail_client(exc)
                return
            if chunk:
                self.out.to_broker(chunk)
        elif self.client_phase is Phase.HANDSHAKE:
            self._client_handshake(data)
        elif self.client_phase is Phase.HEADER:
            self._client_header(data)
        elif self.client_phase is Phase.CONNECTING:
            self._pending.append(data)
        elif self.client_phase is Phase.CLOSING:
            self._client_closing(data)

    def broker_connected(self) -> None:
        if self.client_phase is Phase.CLOSED:
            self.broker_phase = Phase.CLOSED
            self.out.close_broker("client went away")
            return
        self.broker_phase = Phase.HANDSHAKE
        self.out.to_broker(PROTOCOL_HEADER)
        self.client_phase = Phase.HANDSHAKE
        pending, self._pending = self._pending, []
        for data in pending:
            self.client_data(data)

    def broker_failed(self, reason: str) -> None:
        self.broker_phase = Phase.CLOSED
        if self.client_phase is not Phase.CLOSED:
            self.out.event("warn", reason)
            self._close_client(WS_BAD_GATEWAY, reason)

    def broker_data(self, data: bytes) -> None:
        phase = self.broker_phase
        if phase is Phase.OPEN:
            if self.client_phase is not Phase.OPEN:
                return  # the client is being closed: nothing more reaches it
            # Stream clients get whole frames too: a Close the gateway has to inject
            # must never land in the middle of a frame.
            try:
                chunk = self._broker_reader.feed_chunk(data)
            except FrameError as exc:
                if exc.preceding:
                    self.out.to_client(exc.preceding)
                self._fail_broker(exc)
                return
            if chunk:
                self.out.to_client(chunk)
        elif phase is Phase.HANDSHAKE:
            self._broker_handshake(data)
        elif phase is Phase.CLOSING:
            self._broker_closing(data)

    def broker_lost(self, reason: str, clean: bool) -> None:
        was = self.broker_phase
        self.broker_phase = Phase.CLOSED
        self.out.cancel_timer(BROKER_CLOSE_TIMER)
        if was is Phase.CLOSING or self.client_phase in (Phase.CLOSING, Phase.CLOSED):
            return
        if self._broker_refusal is not None:
            # Its Connection.Close went to the client, which may not have answered yet.
            self._close_client(WS_NORMAL, f"broker refused: {self._broker_refusal}")
        elif clean:
            self._close_client(WS_NORMAL, "broker closed the connection")
        else:
            self.out.event("warn", f"broker connection lost: {reason}")
            self._close_client(WS_BAD_GATEWAY, f"broker connection lost: {reason}")

    def client_lost(self) -> None:
        self.client_phase = Phase.CLOSED
        self._pending = []
        for name in (HANDSHAKE_TIMER, CLIENT_CLOSE_TIMER):
            self.out.cancel_timer(name)
        if self.broker_phase in (Phase.HANDSHAKE, Phase.OPEN):
            # Exactly what the broker would have seen from a direct client.
            self.broker_phase = Phase.CLOSED
            self.out.close_broker("client went away")

    def going_away(self) -> None:
        """The gateway is shutting down: tell an open client and the broker, properly."""
        if self.client_phase is Phase.OPEN:
            self.out.to_client(method_frame(0, ConnectionClose(
                CONNECTION_FORCED, "CONNECTION_FORCED - kgateway is shutting down")))
            self.client_phase = Phase.CLOSING
            self._client_close_code, self._client_close_reason = 1001, "gateway shutting down"
        self._abort_broker(f"kgateway is shutting down (client {self.client_address})")

    def timer_expired(self, name: str) -> None:
        if name == HANDSHAKE_TIMER:
            if self.client_phase in (Phase.HEADER, Phase.CONNECTING, Phase.HANDSHAKE) or (
                    self.broker_phase is Phase.HANDSHAKE):
                reason = (f"AMQP handshake not completed within "
                          f"{self.settings.handshake_timeout:g}s")
                self.out.event("warn", reason)
                self._drop_broker(reason)
                self._close_client(WS_PROTOCOL_ERROR, reason)
        elif name == CLIENT_CLOSE_TIMER:
            if self.client_phase is Phase.CLOSING:
                self._close_client(self._client_close_code, self._client_close_reason)
        elif name == BROKER_CLOSE_TIMER and self.broker_phase is Phase.CLOSING:
            self.broker_phase = Phase.CLOSED
            self.out.close_broker("no connection.close-ok in time")

    # -- client side -----------------------------------------------------------------------

    def _client_header(self, data: bytes) -> None:
        try:
            rest = self._header.feed(data)
        except ProtocolHeaderError as exc:
            reason = f"{exc}; this gateway speaks AMQP 0-9-1"
            self.out.event("info", reason)
            # The spec's answer: the supported header, then close.
            self.out.to_client(PROTOCOL_HEADER)
            self._close_client(WS_PROTOCOL_ERROR, reason)
            return
        if rest is None:
            return
        self.client_phase = Phase.CONNECTING
        if rest:
            self._pending.append(rest)
        self.broker_phase = Phase.CONNECTING
        self.out.connect_broker()

    def _client_handshake(self, data: bytes) -> None:
        reader = self._client_reader
        error: FrameError | None = None
        try:
            frames = reader.feed(data)
        except FrameError as exc:
            error = exc
            frames = FrameReader(reader.frame_max, slack=FRAME_SLACK).feed(exc.preceding)
        relay: list[bytes] = []
        for i, frame in enumerate(frames):
            try:
                raw = self._client_handshake_frame(frame)
            except FrameError as exc:
                self._flush_to_broker(relay)
                self._fail_client(exc)
                return
            relay.append(raw)
            if self.client_phase is Phase.OPEN:
                # Open went through: whatever followed is ordinary traffic.
                relay.extend(f.raw for f in frames[i + 1:])
                break
        self._flush_to_broker(relay)
        if error is not None:
            self._fail_client(error)

    def _flush_to_broker(self, relay: list[bytes]) -> None:
        data = b"".join(relay)
        if data and self.broker_phase in (Phase.HANDSHAKE, Phase.OPEN):
            self.out.to_broker(data)

    def _client_handshake_frame(self, frame: Frame) -> bytes:
        """Check one client frame of the handshake; return the bytes to relay."""
        if frame.type == FRAME_HEARTBEAT:
            return frame.raw
        if frame.type != FRAME_METHOD or frame.channel != 0:
            raise FrameError(UNEXPECTED_FRAME,
                             f"frame type {frame.type} on channel {frame.channel} before "
                             "connection.open")
        method = decode_method(frame.payload)
        if isinstance(method, (ConnectionClose, ConnectionCloseOk)):
            return frame.raw  # the client gives up, or answers the broker's Close
        expected = self._expect
        allowed = (expected, ConnectionSecureOk) if expected is ConnectionTuneOk else (expected,)
        if not isinstance(method, allowed):
            class_id, method_id = _ids(method)
            raise FrameError(COMMAND_INVALID,
                             f"expected {expected.NAME}, got {_method_name(method)}",
                             class_id=class_id, method_id=method_id)
        if isinstance(method, ConnectionStartOk):
            self._expect = ConnectionTuneOk
            if self.authenticate:
                credentials = sasl_credentials(method)
                if credentials is None:
                    raise FrameError(ACCESS_REFUSED,
                                     f"authentication mechanism {method.mechanism} is not "
                                     "supported here: use PLAIN",
                                     class_id=method.CLASS_ID, method_id=method.METHOD_ID)
                self._start_ok = method
                self.out.authenticate(*credentials)
                return b""  # relayed by authenticated()
            return self._rewrite_start_ok(method)
        if isinstance(method, ConnectionSecureOk):
            return frame.raw
        if isinstance(method, ConnectionTuneOk):
            if self._tune is None:
                raise FrameError(COMMAND_INVALID, "connection.tune-ok before connection.tune",
                                 class_id=method.CLASS_ID, method_id=method.METHOD_ID)
            offered = self._tune.channel_max
            if offered and method.channel_max > offered:
                raise FrameError(NOT_ALLOWED,
                                 f"channel-max {method.channel_max} is above the "
                                 f"{offered} the broker offered",
                                 class_id=method.CLASS_ID, method_id=method.METHOD_ID)
            frame_max = negotiate_frame_max(self._tune, method)
            self.frame_max = frame_max
            self._client_reader.frame_max = frame_max
            self._broker_reader.frame_max = frame_max
            self._expect = ConnectionOpen
            if method.frame_max != frame_max:
                # A client's 0 ("no limit") would let the broker send frames beyond the
                # gateway's cap: the broker is told the limit the client was offered.
                return method_frame(0, replace(method, frame_max=frame_max))
            return frame.raw
        assert isinstance(method, ConnectionOpen)
        allowed_vhost = self.settings.virtual_host
        if allowed_vhost is not None and method.virtual_host != allowed_vhost:
            raise FrameError(NOT_ALLOWED,
                             f"access to vhost '{method.virtual_host}' refused by the gateway: "
                             f"only vhost '{allowed_vhost}' is allowed here",
                             class_id=method.CLASS_ID, method_id=method.METHOD_ID)
        self.virtual_host = method.virtual_host
        self.client_phase = Phase.OPEN
        return frame.raw

    def authenticated(self, user: str) -> None:
        """The Start-Ok credentials are good: relay the Start-Ok (mapped, if configured)."""
        start_ok, self._start_ok = self._start_ok, None
        if start_ok is None or self.client_phase is not Phase.HANDSHAKE:
            return
        self.user = user
        try:
            raw = self._rewrite_start_ok(start_ok)
        except FrameError as exc:
            self._fail_client(exc)
            return
        self._flush_to_broker([raw])

    def auth_refused(self, reason: str) -> None:
        """The Start-Ok credentials are refused: Close 403 to the client, as RabbitMQ does."""
        start_ok, self._start_ok = self._start_ok, None
        if start_ok is None or self.client_phase is not Phase.HANDSHAKE:
            return
        self._fail_client(FrameError(ACCESS_REFUSED, reason, class_id=start_ok.CLASS_ID,
                                     method_id=start_ok.METHOD_ID))

    def _rewrite_start_ok(self, method: ConnectionStartOk) -> bytes:
        properties = dict(method.client_properties)
        # Ask the broker to say why it refuses a login (Connection.Close 403) instead of
        # just closing: the log then has the reason. A client that did not ask never sees
        # that Close (_broker_handshake), as if the broker had closed the connection.
        capabilities = properties.get("capabilities")
        capabilities = dict(capabilities) if isinstance(capabilities, dict) else {}
        self._client_failure_close = bool(capabilities.get(AUTH_FAILURE_CLOSE))
        capabilities[AUTH_FAILURE_CLOSE] = True
        properties["capabilities"] = capabilities
        properties[FORWARDED_FOR] = _host(self.client_address)
        properties[CLIENT_KEY] = self.client_address
        # Only the gateway names the user: a client's own kgateway.user (possible on a
        # service without a realm) would otherwise reach the broker as if vouched for.
        properties.pop(USER_KEY, None)
        if self.user is not None:
            properties[USER_KEY] = self.user
        if self.settings.broker_credentials is not None:
            method = replace(method, mechanism="PLAIN",
                             response=plain_response(*self.settings.broker_credentials))
        raw = method_frame(0, replace(method, client_properties=properties))
        if len(raw) > FRAME_MIN_SIZE + FRAME_SLACK:
            raise FrameError(FRAME_ERROR,
                             f"connection.start-ok of {len(raw)} octets with the client address "
                             f"added exceeds frame-min-size {FRAME_MIN_SIZE}",
                             class_id=method.CLASS_ID, method_id=method.METHOD_ID)
        return raw

    def _client_closing(self, data: bytes) -> None:
        """We sent Connection.Close: only Close-Ok (or a crossing Close) matters now."""
        try:
            frames = self._client_reader.feed(data)
        except FrameError:
            self._close_client(self._client_close_code, self._client_close_reason)
            return
        for method in _connection_methods(frames):
            if isinstance(method, ConnectionClose):
                self.out.to_client(method_frame(0, ConnectionCloseOk()))
            if isinstance(method, (ConnectionClose, ConnectionCloseOk)):
                self._close_client(self._client_close_code, self._client_close_reason)
                return

    def _fail_client(self, exc: FrameError) -> None:
        """The client broke the protocol: tell it why, and close both sides."""
        reason = str(exc)
        self.out.event("warn", f"closing the client: {reason}")
        self.out.cancel_timer(HANDSHAKE_TIMER)
        self._abort_broker(f"kgateway closed client {self.client_address}: {reason}")
        self.out.to_client(method_frame(0, close_for(exc)))
        code = _ws_code(exc.reply_code)
        if exc.fatal:
            # Nothing after a bad frame-end or frame type can be trusted or even found.
            self._close_client(code, reason)
            return
        self.client_phase = Phase.CLOSING
        self._client_close_code = code
        self._client_close_reason = reason
        self.out.start_timer(CLIENT_CLOSE_TIMER, self.settings.close_timeout)

    def _close_client(self, code: int, reason: str) -> None:
        if self.client_phase is Phase.CLOSED:
            return
        self.client_phase = Phase.CLOSED
        self._pending = []
        for name in (HANDSHAKE_TIMER, CLIENT_CLOSE_TIMER):
            self.out.cancel_timer(name)
        self.out.close_client(code, reason)
        if self.broker_phase is Phase.CONNECTING:
            self.broker_phase = Phase.IDLE  # broker_connected() will close it
        if self.broker_phase is Phase.HANDSHAKE:
            self._drop_broker(reason)

    # -- broker side -----------------------------------------------------------------------

    def _broker_handshake(self, data: bytes) -> None:
        try:
            frames = self._broker_reader.feed(data)
        except FrameError as exc:
            self._fail_broker(exc)
            return
        relay: list[bytes] = []
        for i, frame in enumerate(frames):
            raw = frame.raw
            if frame.type == FRAME_METHOD and frame.channel == 0:
                try:
                    method = decode_method(frame.payload)
                except FrameError as exc:
                    self._fail_broker(exc)
                    return
                if isinstance(method, ConnectionTune):
                    cap = self.settings.frame_max
                    if method.frame_max == 0 or method.frame_max > cap:
                        method = replace(method, frame_max=cap)
                        raw = method_frame(0, method)
                    self._tune = method
                elif isinstance(method, ConnectionClose):
                    # The broker refuses during the handshake (403 ACCESS_REFUSED for a
                    # wrong password, 530 NOT_ALLOWED for a vhost): say why, once.
                    self._broker_refusal = f"{method.reply_code} {method.reply_text}"
                    self.out.event("warn", f"broker refused the connection: "
                                           f"{self._broker_refusal}")
                    if not self._client_failure_close and \
                            method.reply_code == ACCESS_REFUSED:
                        # The client did not ask for this Close (we did): close it the
                        # way the broker would have, and finish the broker's side.
                        if relay:
                            self.out.to_client(b"".join(relay))
                        self.out.to_broker(method_frame(0, ConnectionCloseOk()))
                        self._close_client(WS_NORMAL, f"broker refused: "
                                                      f"{self._broker_refusal}")
                        self._drop_broker("login refused")
                        return
                elif isinstance(method, ConnectionOpenOk):
                    self.broker_phase = Phase.OPEN
                    self.out.cancel_timer(HANDSHAKE_TIMER)
                    relay.append(raw)
                    relay.extend(f.raw for f in frames[i + 1:])
                    break
            relay.append(raw)
        if relay and self.client_phase in (Phase.HANDSHAKE, Phase.OPEN):
            self.out.to_client(b"".join(relay))

    def _broker_closing(self, data: bytes) -> None:
        try:
            frames = self._broker_reader.feed(data)
        except FrameError:
            self.broker_phase = Phase.CLOSED
            self.out.close_broker("bad frame while closing")
            return
        for method in _connection_methods(frames):
            if isinstance(method, ConnectionClose):
                self.out.to_broker(method_frame(0, ConnectionCloseOk()))
            if isinstance(method, (ConnectionClose, ConnectionCloseOk)):
                self.broker_phase = Phase.CLOSED
                self.out.cancel_timer(BROKER_CLOSE_TIMER)
                self.out.close_broker("closed")
                return

    def _abort_broker(self, reason: str) -> None:
        """Close the broker side as properly as its state allows."""
        if self.broker_phase is Phase.OPEN:
            self.broker_phase = Phase.CLOSING
            text = reason.encode("utf-8")[:255].decode("utf-8", "ignore")
            self.out.to_broker(method_frame(0, ConnectionClose(CONNECTION_FORCED, text)))
            self.out.start_timer(BROKER_CLOSE_TIMER, self.settings.close_timeout)
        else:
            self._drop_broker(reason)

    def _drop_broker(self, reason: str) -> None:
        if self.broker_phase is Phase.CONNECTING:
            self.broker_phase = Phase.IDLE
        elif self.broker_phase in (Phase.HANDSHAKE, Phase.OPEN, Phase.CLOSING):
            self.broker_phase = Phase.CLOSED
            self.out.cancel_timer(BROKER_CLOSE_TIMER)
            self.out.close_broker(reason)

    def _fail_broker(self, exc: FrameError) -> None:
        """The broker sent something unreadable: nothing sensible can follow."""
        reason = f"broker sent a bad frame: {exc}"
        self.out.event("warn", reason)
        self.broker_phase = Phase.CLOSED
        self.out.close_broker(reason)
        self._close_client(WS_BAD_GATEWAY, reason)


def _connection_methods(frames: list[Frame]) -> Iterator[AnyMethod]:
    """The channel-0 methods among *frames* while a side is closing; anything else (content,
    other channels, undecodable methods) no longer matters and is skipped."""
    for frame in frames:
        if frame.type != FRAME_METHOD or frame.channel != 0:
            continue
        try:
            yield decode_method(frame.payload)
        except FrameError:
            continue
