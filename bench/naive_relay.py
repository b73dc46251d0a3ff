"""The "same stack, no gateway" baseline of bench.relay: Autobahn + Twisted and nothing else.

    client --ws|wss--> [naive relay] --tcp--> back end       (or --echo: messages come back)

No configuration model, no services, no logging per connection: accept a WebSocket, connect
TCP, relay both ways, each transport the other's producer. Whatever kgateway costs beyond
this is what its gateway logic costs. Run: python -m bench.naive_relay PORT HOST:PORT
"""

from __future__ import annotations

import argparse
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import endpoints, protocol, reactor


class Backend(protocol.Protocol):
    def __init__(self, ws: Relay) -> None:
        self.ws = ws

    def connectionMade(self) -> None:
        mine: Any = self.transport  # ITCPTransport: a consumer and a push producer
        theirs: Any = self.ws.transport
        mine.registerProducer(theirs, True)
        theirs.registerProducer(mine, True)
        self.ws.backend = self
        mine.write(b"".join(self.ws.early))
        theirs.resumeProducing()

    def dataReceived(self, data: bytes) -> None:
        self.ws.sendMessage(data, isBinary=True)

    def write(self, data: bytes) -> None:
        transport: Any = self.transport
        transport.write(data)

    def close(self) -> None:
        transport: Any = self.transport
        transport.loseConnection()

    def connectionLost(self, reason: Any = None) -> None:
        self.ws.sendClose()


class Relay(WebSocketServerProtocol):
    backend: Backend | None = None
    echo = False
    target = ""

    def onOpen(self) -> None:
        if self.echo:
            return
        self.early: list[bytes] = []
        transport: Any = self.transport
        transport.pauseProducing()  # until the back end is connected
        endpoint = endpoints.clientFromString(reactor, self.target)
        d = endpoints.connectProtocol(endpoint, Backend(self))
        d.addErrback(lambda _: self.dropConnection())

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.echo:
            self.sendMessage(payload, isBinary)
        elif self.backend is not None:
            self.backend.write(payload)
        else:
            self.early.append(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self.backend is not None:
            self.backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("port", type=int)
    parser.add_argument("target", nargs="?", default="", help="HOST:PORT of the TCP back end")
    parser.add_argument("--echo", action="store_true", help="echo messages, no back end")
    parser.add_argument("--cert", help="serve wss with this certificate (PEM)")
    parser.add_argument("--key", help="and this key (PEM)")
    args = parser.parse_args()
    host, _, port = args.target.rpartition(":")
    Relay.echo, Relay.target = args.echo, f"tcp:host={host}:port={port}"
    factory = WebSocketServerFactory()
    factory.protocol = Relay
    listen = f"tcp:{args.port}:interface=127.0.0.1"
    if args.cert:
        listen = (f"ssl:{args.port}:interface=127.0.0.1:certKey={args.cert}:"
                  f"privateKey={args.key}")
    endpoints.serverFromString(reactor, listen).listen(factory).addCallback(
        lambda _: print(f"naive relay listening on {args.port}", flush=True))
    reactor.run()


if __name__ == "__main__":
    main()
