"""links.backlogged: whether a peer has left more than a socket buffer of writes unread."""

from __future__ import annotations

from twisted.internet.abstract import FileDescriptor
from twisted.internet.testing import MemoryReactor

from kgateway.transport.links import backlogged, write_backlog


class Wrapper:
    """A TLS or PROXY-protocol wrapper: the buffer is its transport's."""

    def __init__(self, transport: object) -> None:
        self.transport = transport


def test_a_transport_is_backlogged_past_its_buffer_size_under_any_wrapping() -> None:
    sock = FileDescriptor(reactor=MemoryReactor())
    sock.connected = True
    wrapped = Wrapper(Wrapper(sock))
    sock.write(b"x" * sock.bufferSize)
    assert write_backlog(wrapped) == sock.bufferSize and not backlogged(wrapped)
    sock.write(b"x")
    assert backlogged(wrapped)


def test_a_transport_that_cannot_tell_is_never_backlogged() -> None:
    assert write_backlog(object()) == 0 and not backlogged(Wrapper(object()))
