"""Echo and proxy sessions driven in memory: no sockets, no reactor running."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock
from zope.interface.verify import verifyObject

from kgateway import config
from kgateway.interfaces import ILink, ISession
from kgateway.links import ConnectError
from kgateway.services import proxy
from kgateway.services.echo import EchoSession
from tests.unit.fakes import FakeLink


def test_fake_link_and_sessions_provide_their_interfaces() -> None:
    assert verifyObject(ILink, FakeLink())
    assert verifyObject(ISession, EchoSession(FakeLink()))


def test_echo_keeps_the_message_kind_and_applies_back_pressure_to_itself() -> None:
    link = FakeLink()
    session = EchoSession(link)
    assert session.negotiate(["v12.stomp", "x"]) == "v12.stomp"
    session.opened()
    assert link.producer is link.transport
    session.received("é".encode(), False)
    session.received(b"\x00\xff", True)
    assert link.messages == [("é".encode(), False), (b"\x00\xff", True)]


class FakeConnector:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, reactor, uri, options, peer, *, protocols=(), truststore=None,  # type: ignore[no-untyped-def]
                 identity=None, client=""):
        d: defer.Deferred[ILink] = defer.Deferred()
        self.calls.append({"uri": uri, "peer": peer, "protocols": list(protocols), "d": d})
        return d


def make_service(tmp_path, target: str = "ws://backend:9000/x"):  # type: ignore[no-untyped-def]
    path = tmp_path / "g.xml"
    path.write_text(f"<gateway-config><service><accept>ws://h:1/p</accept><connect>{target}"
                    "</connect><type>proxy</type><properties><maximum.pending.bytes>16k"
                    "</maximum.pending.bytes></properties></service></gateway-config>")
    cfg = config.load(str(path), {}, {})
    service = proxy.ProxyService(MemoryReactorClock(), cfg.services[0], cfg)
    connector = FakeConnector()
    service.connect = connector  # type: ignore[assignment]
    return service, connector


def outcome(d: defer.Deferred[Any]) -> Any:
    """The Deferred's result so far (or "pending"), leaving it in place."""
    results: list[Any] = []

    def keep(result: Any) -> Any:
        results.append(result)
        return result

    d.addBoth(keep)
    return results[0] if results else "pending"


def test_client_waits_for_the_back_end_which_chooses_the_subprotocol(tmp_path) -> None:  # type: ignore[no-untyped-def]
    service, connector = make_service(tmp_path)
    client = FakeLink()
    session = service.session(client)
    d = session.negotiate(["v12.stomp", "v11.stomp"])
    assert outcome(d) == "pending"
    (call,) = connector.calls
    assert call["protocols"] == ["v12.stomp", "v11.stomp"]
    backend = FakeLink(protocol="v11.stomp")
    call["d"].callback(backend)
    assert outcome(d) == "v11.stomp"
    session.opened()
    assert client.producer is backend.transport and backend.producer is client.transport
    assert client.write_limit == backend.write_limit == 16 * 1024


def test_messages_keep_their_kind_between_websockets(tmp_path) -> None:  # type: ignore[no-untyped-def]
    service, connector = make_service(tmp_path)
    client, backend = FakeLink(), FakeLink()
    session = service.session(client)
    session.negotiate([])
    connector.calls[0]["d"].callback(backend)
    session.opened()
    session.received(b"text", False)
    connector.calls[0]["peer"].received(b"reply", False)
    assert backend.messages == [(b"text", False)]
    assert client.messages == [(b"reply", False)]


def test_stream_data_reaches_websocket_clients_as_binary(tmp_path) -> None:  # type: ignore[no-untyped-def]
    service, connector = make_service(tmp_path, "tcp://backend:9000")
    client, backend = FakeLink(), FakeLink(websocket=False)
    session = service.session(client)
    session.negotiate([])
    connector.calls[0]["d"].callback(backend)
    session.opened()
    session.received(b"text", False)
    connector.calls[0]["peer"].received(b"bytes", True)
    assert backend.messages == [(b"text", True)]
    assert client.messages == [(b"bytes", True)]


@pytest.mark.parametrize("from_client", [True, False])
def test_a_close_on_either_side_closes_the_other(tmp_path, from_client: bool) -> None:  # type: ignore[no-untyped-def]
    service, connector = make_service(tmp_path)
    client, backend = FakeLink(), FakeLink()
    session = service.session(client)
    session.negotiate([])
    connector.calls[0]["d"].callback(backend)
    session.opened()
    if from_client:
        session.closed(1000, "bye")
        assert backend.closes == [(1000, "bye")] and client.closes == []
    else:
        connector.calls[0]["peer"].closed(None, "connection done")
        assert client.closes == [(1000, "")] and backend.closes == []


def test_unreachable_back_end_closes_a_websocket_client_with_1014(tmp_path) -> None:  # type: ignore[no-untyped-def]
    service, connector = make_service(tmp_path, "tcp://backend:9000")
    client = FakeLink()
    session = service.session(client)
    d = session.negotiate(["amqp"])
    connector.calls[0]["d"].errback(ConnectError("Connection refused"))
    assert outcome(d) == "amqp"
    session.opened()
    assert client.closes == [(1014, "cannot connect to tcp://backend:9000: Connection refused")]


def test_unreachable_back_end_refuses_a_stream_client(tmp_path) -> None:  # type: ignore[no-untyped-def]
    service, connector = make_service(tmp_path, "tcp://backend:9000")
    session = service.session(FakeLink(websocket=False))
    d = session.negotiate([])
    connector.calls[0]["d"].errback(ConnectError("Connection refused"))
    result = outcome(d)
    assert result.check(ConnectError)
    d.addErrback(lambda f: None)


def test_client_gone_before_the_back_end_answers(tmp_path) -> None:  # type: ignore[no-untyped-def]
    service, connector = make_service(tmp_path)
    session = service.session(FakeLink())
    session.negotiate([])
    session.closed(1006, "")
    backend = FakeLink()
    connector.calls[0]["d"].callback(backend)
    assert backend.closes == [(1000, "client went away")]


def test_a_back_end_that_speaks_first_is_heard_once_the_client_is_open(tmp_path) -> None:  # type: ignore[no-untyped-def]
    service, connector = make_service(tmp_path, "tcp://backend:22")
    client, backend = FakeLink(), FakeLink(websocket=False)
    session = service.session(client)
    session.negotiate([])
    connector.calls[0]["d"].callback(backend)
    assert backend.paused  # nothing more is read from it until the client can take it
    connector.calls[0]["peer"].received(b"SSH-2.0-banner\r\n", True)
    assert client.messages == []  # the client's handshake is not finished yet
    session.opened()
    assert client.messages == [(b"SSH-2.0-banner\r\n", True)]
    assert not backend.paused


def test_a_back_end_that_greets_and_hangs_up_early_still_reaches_the_client(tmp_path) -> None:  # type: ignore[no-untyped-def]
    service, connector = make_service(tmp_path, "tcp://backend:25")
    client, backend = FakeLink(), FakeLink(websocket=False)
    session = service.session(client)
    session.negotiate([])
    connector.calls[0]["d"].callback(backend)
    connector.calls[0]["peer"].received(b"421 too busy\r\n", True)
    connector.calls[0]["peer"].closed(None, "connection done")
    session.opened()
    assert client.messages == [(b"421 too busy\r\n", True)]
    assert client.closes == [(1000, "")]
