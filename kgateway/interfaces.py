"""The interfaces between transports and services, all in one place.

A service never sees a Twisted protocol or an Autobahn one. It sees *links*:

    client --ws/wss/tcp/ssl--> [ adapter ] --ILink--> ISession (the service's logic)
                                                        |
                                                        +--ILink--> [ adapter ] --> back end

An adapter (``kgateway.links``) turns WebSocket messages or stream bytes into calls on an
``ISession`` and offers the session an ``ILink`` to write, close and apply back-pressure.
The same session code therefore serves ``ws://`` and ``tcp://`` accepts alike.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface


class ILink(Interface):
    """One connection, WebSocket or byte stream, as a session sees it."""

    peer = Attribute("The remote end as 'host:port' (the real client address where known).")
    protocol = Attribute("The negotiated WebSocket subprotocol, or None.")
    is_websocket = Attribute("True when writes become WebSocket messages.")
    transport = Attribute(
        "The ITransport underneath; also the IPushProducer to hand to another link's "
        "register_producer() for back-pressure."
    )

    def write(data: bytes, binary: bool = True) -> None:
        """Send *data*: one WebSocket message (binary or text), or bytes on a stream."""

    def close(code: int = 1000, reason: str = "") -> None:
        """Close: a WebSocket close frame with *code*, or a TCP FIN once buffers drain."""

    def pause_reading() -> None:
        """Stop delivering data to the session until resume_reading()."""

    def resume_reading() -> None:
        """Deliver data again."""

    def register_producer(producer: object) -> None:
        """Pause the IPushProducer *producer* while this link's write buffer is full.

        Give it the other link's ``transport`` and a fast sender can never make the gateway
        buffer without bound: its reads stop until this side drains.
        """

    def set_write_limit(limit: int) -> None:
        """Call the registered producer full once more than *limit* bytes wait to be written."""


class ISession(Interface):
    """A service's logic for one connection, driven by an adapter."""

    def negotiate(offered: list[str]) -> object:
        """Get ready before the client may send: for WebSocket, choose a subprotocol.

        Returns the chosen subprotocol (or None), or a Deferred firing with it; reading from
        the client waits until it fires. For streams *offered* is empty and the result ignored.
        """

    def opened() -> None:
        """The connection is established (after the WebSocket handshake)."""

    def received(data: bytes, binary: bool) -> None:
        """A WebSocket message (*binary* says which kind), or bytes from a stream (binary)."""

    def closed(code: int | None, reason: str) -> None:
        """The connection ended; *code* is the WebSocket close code, None for streams."""


class IGoingAway(Interface):
    """Optional for an ISession: warn the client before a draining gateway closes it.

    When a drain's time is up (SIGTERM, see README "Pools and high availability") the adapter
    calls ``going_away()`` if the session has it, then closes the connection (WebSocket close
    1001 Going Away, FIN on streams). A jms session sends its STOMP ERROR frame here.
    """

    def going_away() -> None:
        """The gateway is shutting down: say so in the session's own protocol, now."""


class IPeer(Interface):
    """The receiving end of a link the gateway opened itself (a back-end connection)."""

    def received(data: bytes, binary: bool) -> None:
        """Data from the back end."""

    def closed(code: int | None, reason: str) -> None:
        """The back-end connection ended."""


class IGatewayService(Interface):
    """What a service type builds from its configuration: a factory of sessions."""

    config = Attribute("The ServiceConfig this service runs.")

    def session(link: ILink) -> ISession:
        """A new session for a freshly accepted connection."""

    def start() -> object:
        """Start background work (broker connections...); may return a Deferred."""

    def stop() -> object:
        """Stop it; may return a Deferred."""
