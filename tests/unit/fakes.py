"""In-memory links for session tests: they record what a session does to them."""

from __future__ import annotations

from typing import Any

from twisted.internet.testing import StringTransport
from zope.interface import implementer

from kgateway.interfaces import ILink


@implementer(ILink)
class FakeLink:
    def __init__(self, websocket: bool = True, peer: str = "192.0.2.7:5555",
                 protocol: str | None = None) -> None:
        self.is_websocket = websocket
        self.peer = peer
        self.protocol = protocol
        self.transport = StringTransport()
        self.messages: list[tuple[bytes, bool]] = []
        self.closes: list[tuple[int, str]] = []
        self.producer: Any = None
        self.write_limit: int | None = None
        self.paused = False

    def write(self, data: bytes, binary: bool = True) -> None:
        assert not self.closes, "write after close"
        self.messages.append((data, binary))

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.closes.append((code, reason))

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def register_producer(self, producer: object) -> None:
        self.producer = producer

    def set_write_limit(self, limit: int) -> None:
        self.write_limit = limit

    @property
    def data(self) -> bytes:
        return b"".join(m for m, _ in self.messages)
