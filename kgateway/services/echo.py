"""Service ``echo``: every WebSocket message comes back unchanged (text stays text, binary
stays binary); on ``tcp://``/``ssl://`` the bytes come back, on ``udp://`` each datagram.
"""

from __future__ import annotations

from zope.interface import implementer

from kgateway.interfaces import IFastPathSession, ILink, ISession
from kgateway.protocols.kaazing import application_protocols
from kgateway.services.base import ServiceBase, ServiceType


@implementer(ISession, IFastPathSession)
class EchoSession:
    __slots__ = ("link",)  # one per client, for as long as it is connected

    def __init__(self, link: ILink) -> None:
        self.link = link

    def negotiate(self, offered: list[str]) -> str | None:
        # Browsers fail the handshake if they offered subprotocols and none is chosen.
        # x-kaazing-handshake only the extended handshake may select (transport.kaazing).
        offered = application_protocols(offered)
        return offered[0] if offered else None

    def opened(self) -> None:
        # Stop reading from a client that does not read its echoes.
        self.link.register_producer(self.link.transport)

    def received(self, data: bytes, binary: bool) -> None:
        self.link.write(data, binary)

    def fast_path(self) -> str:
        return "messages"  # WebSocket clients: kgateway's codec instead of Autobahn's frames

    def received_stream(self, chunks: list[bytes]) -> None:  # pragma: no cover - never asked
        raise NotImplementedError

    def closed(self, code: int | None, reason: str) -> None:
        pass


class EchoService(ServiceBase):
    def session(self, link: ILink) -> EchoSession:
        return EchoSession(link)


SERVICE_TYPE = ServiceType(
    name="echo",
    accept_schemes=frozenset({"ws", "wss", "tcp", "ssl", "udp"}),
    build=lambda context: EchoService(context.config),
)
