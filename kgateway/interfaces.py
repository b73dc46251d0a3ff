"""The contract between transports and services, all in one place. It imports no kgateway
import.

A service never sees a Twisted protocol or an Autobahn one. It sees *links*:

    client --ws/wss/tcp/ssl/udp--> [ accept adapter ] --ILink--> ISession (the service's logic)
                                                                   |
                    back end <-- [ connect adapter ] <--ILink------+  (through an IConnector;
                                 --ILinkReceiver-->                    the back end's data goes
                                                                       to an ILinkReceiver)

An adapter (``kgateway.transport``) turns WebSocket messages or stream bytes into calls on an
``ISession`` (or, for links the gateway opened, an ``ILinkReceiver``) and offers an ``ILink``
to write, close and apply back-pressure. The same session code therefore serves ``ws://``,
``tcp://``, ``udp://`` and Enterprise Shield clients alike.

The optional hooks the gateway looks for are declared here too: ``IFastPathSession`` (a
session whose WebSocket clients may take the fast data path), ``IGoingAway`` (a session's
goodbye before a drain closes it), ``ITrackedConnection`` (what the tracker can end),
``IHTTPService`` (a service that serves plain HTTP), ``IBackendStatus`` (a service that can
say whether its back ends are up), ``IMessageStats`` (a messaging service's counters) and
``IGatewayStatus`` (what health, metrics and the status page read).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

# WebSocket close codes (RFC 6455 section 7.4.1 and the IANA registry) the gateway sends.
NORMAL = 1000
GOING_AWAY = 1001
PROTOCOL_ERROR = 1002
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009
INTERNAL_ERROR = 1011
BAD_GATEWAY = 1014
#: codes that describe what happened but may never be sent in a close frame
UNSENDABLE = frozenset({1005, 1006, 1015})


class ConnectError(Exception):
    """A back end could not be reached; the message says why, for logs and close reasons."""


class ILinkReceiver(Interface):
    """What receives a link's data: a session, or the owner of a link the gateway opened."""

    def received(data: bytes, binary: bool) -> None:
        """A WebSocket message (*binary* says which kind), or bytes from a stream (binary)."""

    def closed(code: int | None, reason: str) -> None:
        """The connection ended; *code* is the WebSocket close code, None for streams."""


class ILink(Interface):
    """One connection, WebSocket or byte stream, as a session sees it."""

    remote = Attribute("The other end as 'host:port' (the real client address where known).")
    protocol = Attribute("The negotiated WebSocket subprotocol, or None.")
    is_websocket = Attribute("True when writes become WebSocket messages.")
    principal = Attribute(
        "Who the client proved to be at the handshake (a kgateway.auth Principal), or None."
    )
    transport = Attribute(
        "The ITransport underneath; also the IPushProducer to hand to another link's "
        "register_producer() for back-pressure."
    )

    def write(data: bytes, binary: bool = True) -> None:
        """Send *data*: one WebSocket message (binary or text), or bytes on a stream."""

    def close(code: int = NORMAL, reason: str = "") -> None:
        """Close: a WebSocket close frame with *code*, or a TCP FIN once buffers drain."""

    def pause_reading() -> None:
        """Stop delivering data to the receiver until resume_reading()."""

    def resume_reading() -> None:
        """Deliver data again."""

    def register_producer(producer: object) -> None:
        """Pause the IPushProducer *producer* while this link's write buffer is full.

        Give it the other link's ``transport`` and a fast sender can never make the gateway
        buffer without bound: its reads stop until this side drains.
        """

    def set_write_limit(limit: int) -> None:
        """Call the registered producer full once more than *limit* bytes wait to be written."""


class ISession(ILinkReceiver):
    """A service's logic for one accepted connection, driven by an accept adapter."""

    def negotiate(offered: list[str]) -> object:
        """Get ready before the client may send: for WebSocket, choose a subprotocol.

        Returns the chosen subprotocol (or None), or a Deferred firing with it; reading from
        the client waits until it fires. For streams *offered* is empty and the result ignored.
        """

    def opened() -> None:
        """The connection is established (after the WebSocket handshake)."""


class IFastPathSession(ISession):
    """Optional for an ISession whose WebSocket client may leave Autobahn, once the handshake
    is done, for the fast data path (``kgateway.transport.fastws``): the same close codes,
    pings, limits and back-pressure for a fraction of Autobahn's per-frame work.

    ``fast_path()`` is asked just before ``opened()``:

    - ``"stream"``: the session only relays bytes (``proxy`` to a tcp/ssl back end). The
      client's message payloads arrive through ``received_stream`` with no message boundaries
      and no text/binary kind: binary octets as they are read, a text message's octets once
      the whole message arrived and proved UTF-8 (as on Autobahn); ``received`` is not
      called.
    - ``"messages"``: ``received(data, binary)`` per whole message, as on Autobahn (``echo``).
    - None: stay on Autobahn.

    Either way, writes to the client's link become one message each.
    """

    def fast_path() -> str | None:
        """"stream", "messages" or None."""

    def received_stream(chunks: list[bytes]) -> None:
        """Stream mode: payload octets from one read of the client, in order (never empty)."""


class IGoingAway(Interface):
    """Optional for an ISession: warn the client before a draining gateway closes it.

    When a drain's time is up (SIGTERM, see README "Pools and high availability") the adapter
    calls ``going_away()`` if the session provides this, then closes the connection
    (WebSocket close 1001 Going Away, FIN on streams). A jms session sends a STOMP ERROR.
    """

    def going_away() -> None:
        """The gateway is shutting down: say so in the session's own protocol, now."""


class ITrackedConnection(Interface):
    """A client connection the ConnectionTracker counts, and a drain can end."""

    def going_away() -> None:
        """Tell the session (IGoingAway), then close: WebSocket 1001, FIN on streams."""

    def abort() -> None:
        """Drop the connection now."""


class IConnector(Interface):
    """Reaches any back end: tcp/ssl/ws/wss, udp, and reverse+wss (Enterprise Shield)."""

    def connect(uri: Any, options: Any, receiver: ILinkReceiver, *,
                protocols: Sequence[str] = (), client: str = "") -> Deferred[Any]:
        """A Deferred firing with an ILink once the back end is usable (TCP, TLS and any
        WebSocket handshake done), or failing with ConnectError; the back end's data goes
        to *receiver*. *client* is the address of the client on whose behalf it connects."""


class IGatewayService(Interface):
    """What a service type builds from its configuration: a factory of sessions."""

    config = Attribute("The ServiceConfig this service runs.")

    def session(link: ILink) -> ISession:
        """A new session for a freshly accepted connection."""

    def start() -> object:
        """Start background work (broker connections...); may return a Deferred."""

    def stop() -> object:
        """Stop it; may return a Deferred."""


class IHTTPService(IGatewayService):
    """A service that answers plain HTTP (directory, health, metrics) at its accept's path."""

    def http_resource() -> Any:
        """The twisted.web IResource serving the service's path."""


class IBackendStatus(Interface):
    """A service with back ends whose reachability health and metrics report."""

    def backend_status() -> dict[str, dict[str, object]]:
        """Per target URI: ``{"up": bool, ...}`` (active clients, last error)."""

    def backend_reachable() -> bool:
        """False while none of its targets is reachable."""


class IMessageStats(Interface):
    """A messaging service's counters (jms) that metrics and the status page report."""

    def message_stats() -> dict[str, int]:
        """``broker_subscriptions`` (shared), ``client_subscriptions`` (all of its clients'),
        ``topic_client_subscriptions`` (those the shared ones serve), ``messages_delivered``
        and ``slow_consumers`` (clients dropped) since start."""


class IGatewayStatus(Interface):
    """The narrow view of the running gateway that health and metrics read."""

    draining = Attribute("True from SIGTERM until the process ends.")
    worker = Attribute("This worker's number with --workers, else None.")
    tracker = Attribute("The ConnectionTracker: live connections and counters per service.")
    services = Attribute("Service name -> IGatewayService, in configuration order.")
    backplanes = Attribute("The DMZ gateway's Enterprise Shield Backplanes, or None.")
    recent = Attribute("The recent warnings and errors (a bounded ring), or None.")
    started = Attribute("When the gateway was built, as time.time().")
