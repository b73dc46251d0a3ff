"""A WebSocket echo server on kgateway.protocols.websocket, for the conformance suite only.

    wstest fuzzingclient --ws--> Autobahn handshake --> WebSocketCodec data phase --> echo

Not kgateway's adapter (the lead writes that): the smallest harness that puts the codec
behind a real socket so that Autobahn|Testsuite can judge it.  Autobahn does the opening
handshake; in ``onOpen`` the connection switches to the codec, taking over any octets that
arrived with the handshake (``self.data``), and every later read goes to the codec.  It
echoes messages, answers pings, answers a Close with the same code and drops TCP, and on a
:class:`ProtocolError` echoes what came before the fault, sends Close with the error's code
and half-closes TCP, discarding what still comes until the peer closes (or 5 s pass).

That last part matters to any adapter: closing a socket whose receive queue still holds
data makes Linux send RST instead of FIN, and the peer's kernel then drops our echo and our
Close unread (Autobahn|Testsuite cases 3.2, 4.1.3, 5.15... see README.md).  Autobahn
itself waits for the peer's Close after failing a connection for the same reason.

    .venv/bin/python bench/conformance/codec_echo.py --port 9001 [--max-message-size 1048576]
"""

from __future__ import annotations

import argparse

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import reactor
from twisted.internet.interfaces import IDelayedCall, IReactorTCP, ITCPTransport
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure

from kgateway.protocols.websocket import (
    Close,
    Event,
    Message,
    Ping,
    ProtocolError,
    Role,
    State,
    WebSocketCodec,
)


class CodecEcho(WebSocketServerProtocol):
    max_message_size: int | None = None
    codec: WebSocketCodec | None = None
    failed = False
    linger: IDelayedCall | None = None

    def onOpen(self) -> None:
        self.codec = WebSocketCodec(Role.SERVER, max_message_size=self.max_message_size)
        leftover, self.data = self.data, b""
        if leftover:
            self._received(leftover)

    def dataReceived(self, data: bytes) -> None:
        if self.codec is None:
            super().dataReceived(data)  # the opening handshake
        else:
            self._received(data)

    def _received(self, data: bytes) -> None:
        assert self.codec is not None and self.transport is not None
        if self.failed:
            return  # the connection is failing: discard until the peer closes
        try:
            events = self.codec.receive_data(data)
        except ProtocolError as error:
            self._handle(error.events)
            self.failed = True
            tcp = ITCPTransport(self.transport)
            tcp.write(self.codec.send_close(error.code, error.reason))
            tcp.loseWriteConnection()
            self.linger = self.factory.reactor.callLater(5, tcp.abortConnection)
            return
        self._handle(events)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.linger is not None and self.linger.active():
            self.linger.cancel()
        super().connectionLost(reason)

    def _handle(self, events: list[Event]) -> None:
        assert self.codec is not None and self.transport is not None
        for event in events:
            if isinstance(event, Message):
                self.transport.writeSequence(self.codec.send_message(event.data, event.binary))
            elif isinstance(event, Ping):
                self.transport.write(self.codec.send_pong(event.payload))
            elif isinstance(event, Close):
                if self.codec.state is State.REMOTE_CLOSING:
                    code = None if event.code == 1005 else event.code
                    self.transport.write(self.codec.send_close(code))
                self.transport.loseConnection()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument("--max-message-size", type=int, default=1024 * 1024)
    args = parser.parse_args()
    CodecEcho.max_message_size = args.max_message_size
    factory = WebSocketServerFactory(f"ws://127.0.0.1:{args.port}")
    factory.protocol = CodecEcho
    factory.setProtocolOptions(autoPingInterval=0, openHandshakeTimeout=10)
    tcp: IReactorTCP = reactor
    tcp.listenTCP(args.port, factory, interface="127.0.0.1")
    print(f"codec echo ready on ws://127.0.0.1:{args.port}/echo", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
