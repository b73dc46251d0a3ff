"""links.backlogged: whether a peer has left more than a socket buffer of writes unread; the
links' own state."""

from __future__ import annotations

from twisted.internet.abstract import FileDescriptor
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactor, StringTransport
from zope.interface.verify import verifyObject

from kgateway.interfaces import ILink
from kgateway.transport.links import StreamLink, backlogged, write_backlog
from kgateway.transport.tracker import NO_RECORD, ConnectionTracker


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


def test_a_link_is_slotted_and_counts_what_it_writes_on_its_record() -> None:
    proto = Protocol()
    proto.makeConnection(StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.1", 4000)))
    link = StreamLink(proto)
    assert verifyObject(ILink, link) and not hasattr(link, "__dict__")  # one per connection
    assert (link.remote, link.protocol, link.principal, link.record, link.sent) == (
        "192.0.2.1:4000", None, None, NO_RECORD, 0)
    link.write(b"untracked")
    link.record = ConnectionTracker().add("tcp", proto, link.remote)  # type: ignore[arg-type]
    link.write(b"abc")
    assert link.sent == 12 and link.record.sent == 3
