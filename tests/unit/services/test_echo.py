"""The echo session, in memory."""

from __future__ import annotations

from zope.interface.verify import verifyObject

from kgateway.interfaces import ILink, ISession
from kgateway.services.echo import EchoSession
from tests.unit.fakes import FakeLink


def test_fake_link_and_sessions_provide_their_interfaces() -> None:
    assert verifyObject(ILink, FakeLink())
    assert verifyObject(ISession, EchoSession(FakeLink()))
    assert not hasattr(EchoSession(FakeLink()), "__dict__")  # one per client: slotted


def test_echo_keeps_the_message_kind_and_applies_back_pressure_to_itself() -> None:
    link = FakeLink()
    session = EchoSession(link)
    assert session.negotiate(["v12.stomp", "x"]) == "v12.stomp"
    session.opened()
    assert link.producer is link.transport
    session.received("é".encode(), False)
    session.received(b"\x00\xff", True)
    assert link.messages == [("é".encode(), False), (b"\x00\xff", True)]
