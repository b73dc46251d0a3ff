"""The fast data path: a relay's WebSocket client leaves Autobahn for the sans-IO codec.

    client --WS frames--> GatewayWebSocketProtocol.dataReceived
                              |  (after the opening handshake, when the session asks for it)
                              v
                          FastWebSocketLink.data_received --> WebSocketCodec
                              |  payload chunks of one read          |  Ping, Close, errors
                              v                                      v
                          session.received_stream(chunks)          answered here
                              (proxy: one links.write_now to the tcp/ssl back end)
                          or, in messages mode, session.received(data, binary) (echo)

    session.write(data) --> FastWebSocketLink.write --> links.write_now([header, data])
                            (one sendmsg on plain TCP, else transport.writeSequence)

Autobahn still does the opening handshake: subprotocols, origins, authentication and the
session's negotiate() are unchanged.  In ``onOpen`` the accept adapter asks the session
(``IFastPathSession.fast_path()``: "stream", "messages" or None) and, unless it says None or
the service's accept-option ``ws.fast.path`` is off, calls :meth:`FastWebSocketLink.take_over`: the octets Autobahn had
buffered past the handshake (``proto.data``) move to the codec, ``proto.data`` is emptied so
that Autobahn's ``consumeData`` after ``onOpen`` finds nothing, Autobahn's auto-ping timer is
cancelled, and from then on the adapter sends every read to :meth:`data_received` and the
lost connection to :meth:`connection_lost` instead of Autobahn's.

What Autobahn did and this module does instead, by hand (the codec is sans-IO on purpose; the
Twisted side is this small adapter):

- pings are answered with pongs (none while the client leaves more than a socket buffer of
  our writes unread: ``links.backlogged``, so a ping flood cannot grow memory); the peer's Close is answered with Close 1000, as Autobahn
  does (``echoCloseCodeReason`` off), and TCP is dropped by us, the server (the session still
  gets the peer's code and reason); our own Close (``close(code,
  reason)``, any code the gateway sends, 1001, 1009, 1011, 1014...) waits
  ``closeHandshakeTimeout`` for the peer's answer, then drops TCP;
- ``ws.inactivity.timeout`` T (Autobahn's auto-ping, interval and timeout T/2 each): a ping
  every T/2, and a whole window of T without a single octet from the client (a pong, or
  anything) drops the connection, so between T and 2T after its last octet
  (``kgateway.timers.Heartbeat``; Autobahn drops T after the last ping it sent);
- a protocol violation (:class:`ProtocolError`: 1002, 1007, 1009): what was parsed before it
  is delivered, our Close with the error's code is written, then the socket is half-closed
  (``loseWriteConnection``) and further input discarded until the peer closes or
  ``closeHandshakeTimeout`` passes: closing a socket with unread data makes Linux send RST,
  and the peer would never read our Close;
- the session's ``closed(code, reason)`` and the tracker's access line come from the
  protocol's own ``onClose``, called once when TCP is gone, with the same arguments Autobahn
  would pass (the peer's close code, or 1006 and a reason); the octets read and written are
  added to Autobahn's ``trafficStats``, which the access log reads.

Memory: an idle client costs what its objects hold, so the link is slotted, a text buffer
exists only while a text message is under way, and :meth:`FastWebSocketLink.take_over`
sets to None what Autobahn kept only for its own handshake and framing
(:data:`AUTOBAHN_ONLY`, ~1.8 KiB a client); ``bench.relay``'s ``mem_echo`` and
``mem_proxy`` measure it against a plain Autobahn relay.

Back-pressure needs nothing new: the link's transport (pause/resume, registerProducer, the
write limit on the socket under TLS or PROXY wrappers) is the same one Autobahn used.
"""

from __future__ import annotations

from typing import Any

from autobahn.websocket.protocol import WebSocketProtocol
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from kgateway.interfaces import INTERNAL_ERROR, NORMAL, UNSENDABLE
from kgateway.protocols.websocket import (
    CLOSE_NO_STATUS,
    Chunk,
    Close,
    Event,
    Message,
    Ping,
    ProtocolError,
    Role,
    State,
    WebSocketCodec,
)
from kgateway.timers import Heartbeat
from kgateway.transport.links import WebSocketLink, backlogged, socket_transport, write_now

log = Logger()

#: Close reasons are cut to this many UTF-8 octets (a control frame's payload is <= 125).
MAX_REASON = 123

_OPEN = WebSocketProtocol.STATE_OPEN
_CLOSING = WebSocketProtocol.STATE_CLOSING
_CLOSED = WebSocketProtocol.STATE_CLOSED


#: Autobahn's per-connection state that only its own opening handshake and framing use:
#: once the codec has the connection nothing reads it (the access line reads the link's
#: remote and ``trafficStats``; the status page the tracker's Record), so take_over drops it
#: (module docstring, "Memory"): the request and response as sent, the parsed headers,
#: query and offers, the send queue (an empty deque is ~0.7 KiB), the UTF-8 validator, the
#: transport details (a wss client's certificate too) and the event-emitter tables.
AUTOBAHN_ONLY = ("http_request_data", "http_response_data", "http_status_line",
                 "http_headers", "http_request_params", "websocket_protocols",
                 "websocket_extensions", "_wskey", "send_queue", "utf8validator",
                 "_transport_details", "_valid_events", "_results")


def _truncate(reason: str) -> str:
    return reason.encode("utf-8")[:MAX_REASON].decode("utf-8", "ignore")


class FastWebSocketLink(WebSocketLink):
    """A server-side WebSocketLink that can switch from Autobahn to the codec once open.

    Until :meth:`take_over` it is a plain :class:`WebSocketLink`.  After it, writes are
    framed by the codec (header and payload in one ``links.write_now``, the payload uncopied)
    and the client's payload octets go to ``session.received_stream(chunks)``, one call per
    read, without message boundaries (``stream``: binary octets as they are read, a text
    message's once all of it arrived and proved UTF-8), or whole messages to
    ``session.received(data, binary)``.
    """

    # One per WebSocket client for as long as it is connected: slotted (module docstring,
    # "Memory").
    __slots__ = ("codec", "_session", "_pending", "_text", "_octets_in", "_octets_out",
                 "_heartbeat", "_linger", "_failed", "_close_sent", "_clean", "_code",
                 "_reason")

    def __init__(self, proto: Any, remote: str | None = None,
                 protocol: str | None = None, principal: Any = None) -> None:
        super().__init__(proto, remote, protocol, principal)
        self.codec: WebSocketCodec | None = None
        self._session: Any = None
        # what came with the handshake, parsed by start()
        self._pending = b""
        # a text message's octets until its last, created by its first text chunk (one
        # buffer: see WebSocketCodec._parts); None while no text message is under way
        self._text: bytearray | None = None
        self._octets_in = 0
        self._octets_out = 0
        self._heartbeat: Heartbeat | None = None
        self._linger: IDelayedCall | None = None
        self._failed = False
        self._close_sent = False
        # What onClose will be told when TCP is gone (Autobahn's wasClean / code / reason).
        self._clean = False
        self._code: int | None = WebSocketProtocol.CLOSE_STATUS_CODE_ABNORMAL_CLOSE
        self._reason: str | None = None

    # -- the switch ---------------------------------------------------------------------

    def take_over(self, session: Any, *, stream: bool = True) -> None:
        """Leave Autobahn: call from ``onOpen``, before ``session.opened()``; then call
        :meth:`start` once the session is open, to parse what came with the handshake."""
        proto: Any = self._proto
        size = proto.maxMessagePayloadSize
        self.codec = WebSocketCodec(Role.SERVER, stream=stream,
                                    max_message_size=size if size else None)
        self._session = session
        self._pending, proto.data = proto.data, b""
        # Autobahn's own auto-ping would send frames behind the codec's back.
        for name in ("autoPingPendingCall", "autoPingTimeoutCall", "closeHandshakeTimeoutCall"):
            call = getattr(proto, name, None)
            if call is not None:
                call.cancel()
                setattr(proto, name, None)
        for name in AUTOBAHN_ONLY:
            setattr(proto, name, None)
        interval = proto.autoPingInterval
        if interval:
            self._heartbeat = Heartbeat(proto.factory.reactor, interval,
                                        interval + (proto.autoPingTimeout or interval),
                                        self._ping, self._inactive)

    def start(self) -> None:
        pending, self._pending = self._pending, b""
        if pending:
            self.data_received(pending)

    # -- reading ------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._octets_in += len(data)
        self.record.count(len(data), 0)
        heartbeat = self._heartbeat
        if heartbeat is not None:
            heartbeat.heard()
        if self._failed:
            return  # failing: discard until the peer closes
        codec = self.codec
        assert codec is not None
        try:
            events = codec.receive_data(data)
        except ProtocolError as error:
            self._deliver(error.events)
            self._fail(error)
            return
        if events:
            self._deliver(events)

    def _deliver(self, events: list[Event]) -> None:
        chunks: list[bytes] = []
        session = self._session
        for event in events:
            kind = type(event)
            if kind is Chunk:
                data = event.data  # type: ignore[union-attr]
                if event.binary:  # type: ignore[union-attr]
                    if data:
                        chunks.append(data)
                    continue
                # Text waits for the end of its message, valid UTF-8 (as on Autobahn): a back
                # end never gets octets of a text message the connection then fails for.
                text = self._text
                if event.last:  # type: ignore[union-attr]
                    if text is not None:
                        self._text = None
                        text += data
                        chunks.append(bytes(text))
                    elif data:
                        chunks.append(data)  # a whole text message in one chunk: no copy
                    continue
                if data:
                    if text is None:
                        self._text = bytearray(data)
                    else:
                        text += data
                continue
            if chunks:
                if session is not None:
                    session.received_stream(chunks)
                chunks = []
            if kind is Message:  # messages mode
                if session is not None:
                    session.received(event.data, event.binary)  # type: ignore[union-attr]
            elif kind is Ping:
                self._pong(event.payload)  # type: ignore[union-attr]
            elif kind is Close:
                self._closed_by_peer(event)  # type: ignore[arg-type]
        if chunks and session is not None:
            session.received_stream(chunks)

    def _pong(self, payload: bytes) -> None:
        # A client pinging without reading gets no more pongs until it reads (links.backlogged).
        if not self._close_sent and not backlogged(self.transport):
            assert self.codec is not None
            self._write_frame(self.codec.send_pong(payload))

    def _closed_by_peer(self, event: Close) -> None:
        codec = self.codec
        assert codec is not None
        self._clean = True
        self._code = None if event.code == CLOSE_NO_STATUS else event.code
        self._reason = event.reason or None
        if codec.state is State.REMOTE_CLOSING:  # the peer began: answer, as Autobahn, 1000
            self._write_frame(codec.send_close(NORMAL))
            self._close_sent = True
        self._proto.state = _CLOSING
        self._stop_timers()
        # The server drops TCP once the closing handshake is done (RFC 6455 7.1.1). Nothing
        # more is written, so the back end stops being our producer first: Twisted would
        # otherwise, once a client that had stopped reading drains our buffer, resume a
        # paused producer instead of closing, and the connection (and its back end) stayed.
        self.transport.unregisterProducer()
        self.transport.loseConnection()

    def _fail(self, error: ProtocolError) -> None:
        log.debug("{peer}: WebSocket protocol error {code}: {reason}", peer=self.remote,
                  code=error.code, reason=error.reason)
        self._failed = True
        self._clean = False
        self._code, self._reason = error.code, error.reason
        if not self._close_sent:
            assert self.codec is not None
            self._write_frame(self.codec.send_close(error.code, _truncate(error.reason)))
            self._close_sent = True
        self._proto.state = _CLOSING
        self._stop_timers()
        sock = socket_transport(self.transport)
        half_close = getattr(sock, "loseWriteConnection", None)
        if half_close is None:  # pragma: no cover - every socket transport has it
            self.transport.loseConnection()
        else:
            half_close()
        self._start_linger()

    # -- writing ------------------------------------------------------------------------

    def _write_frame(self, frame: bytes) -> None:
        self._octets_out += len(frame)
        self.record.count(0, len(frame))
        self.transport.write(frame)

    def write(self, data: bytes, binary: bool = True) -> None:
        codec = self.codec
        if codec is None:
            super().write(data, binary)
            return
        if self._close_sent:
            return
        frame = codec.send_data(data, binary)
        self._octets_out += len(frame[0]) + len(data)
        self.record.count(0, len(frame[0]) + len(data))
        write_now(self.transport, self.direct, frame)

    def close(self, code: int = NORMAL, reason: str = "") -> None:
        codec = self.codec
        if codec is None:
            super().close(code, reason)
            return
        if self._close_sent:
            return
        if code in UNSENDABLE:
            code = NORMAL if code == CLOSE_NO_STATUS else INTERNAL_ERROR
        self._write_frame(codec.send_close(code, _truncate(reason)))
        self._close_sent = True
        self._proto.state = _CLOSING
        self._stop_timers()
        self._start_linger()

    def _ping(self) -> None:
        if not self._close_sent and self.codec is not None:
            self._write_frame(self.codec.send_ping())

    def _inactive(self) -> None:
        self._clean = False
        self._code = WebSocketProtocol.CLOSE_STATUS_CODE_ABNORMAL_CLOSE
        self._reason = "connection was closed uncleanly (WebSocket ping timeout)"
        self.transport.abortConnection()

    def _start_linger(self) -> None:
        proto: Any = self._proto
        timeout = proto.closeHandshakeTimeout
        if timeout and self._linger is None:
            self._linger = proto.factory.reactor.callLater(timeout, self._no_close)

    def _no_close(self) -> None:
        """Our Close went unanswered: drop TCP (Autobahn's onCloseHandshakeTimeout)."""
        self._linger = None
        if not self._failed:
            self._clean = False
            self._code = WebSocketProtocol.CLOSE_STATUS_CODE_ABNORMAL_CLOSE
            self._reason = "connection was closed uncleanly (peer did not finish the " \
                           "WebSocket closing handshake)"
        self.transport.abortConnection()

    def _stop_timers(self) -> None:
        heartbeat, self._heartbeat = self._heartbeat, None
        if heartbeat is not None:
            heartbeat.stop()

    # -- the end ------------------------------------------------------------------------

    def connection_lost(self, reason: Failure) -> None:
        """TCP is gone: tell the protocol's ``onClose`` what Autobahn would have."""
        self._stop_timers()
        linger, self._linger = self._linger, None
        if linger is not None and linger.active():
            linger.cancel()
        proto = self._proto
        proto.state = _CLOSED
        stats = proto.trafficStats
        stats.incomingOctetsWireLevel += self._octets_in
        stats.outgoingOctetsWireLevel += self._octets_out
        self._octets_in = self._octets_out = 0
        self._session = None
        if not self._clean and self._reason is None:
            why = "peer dropped the TCP connection without previous WebSocket closing " \
                  "handshake" if reason.check(ConnectionDone) else reason.getErrorMessage()
            self._reason = f"connection was closed uncleanly ({why})"
        proto.onClose(self._clean, self._code, self._reason)

