"""Proxy sessions driven in memory: no sockets, no reactor running."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import defer

from kgateway.interfaces import ConnectError
from kgateway.services import proxy
from tests.unit.fakes import FakeConnector, FakeLink, build, load


def make_service(tmp_path, target: str = "ws://backend:9000/x"):  # type: ignore[no-untyped-def]
    cfg = load(tmp_path, f"<service><accept>ws://h:1/p</accept><connect>{target}</connect>"
                         "<type>proxy</type><properties><maximum.pending.bytes>16k"
                         "</maximum.pending.bytes></properties></service>")
    connector = FakeConnector()
    service = build(cfg, connector=connector)
    assert isinstance(service, proxy.ProxyService)
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
    assert call.protocols == ["v12.stomp", "v11.stomp"]
    backend = FakeLink(protocol="v11.stomp")
    call.d.callback(backend)
    assert outcome(d) == "v11.stomp"
    session.opened()
    assert client.producer is backend.transport and backend.producer is client.transport
    assert client.write_limit == backend.write_limit == 16 * 1024


def test_messages_keep_their_kind_between_websockets(tmp_path) -> None:  # type: ignore[no-untyped-def]
    service, connector = make_service(tmp_path)
    client, backend = FakeLink(), FakeLink()
    session = service.session(client)
    session.negotiate([])
    connector.calls[0].d.callback(backend)
    session.opened()
    session.received(b"text", False)
    connector.calls[0].receiver.received(b"reply", False)
    assert backend.messages == [(b"text", False)]
    assert client.messages == [(b"reply", False)]


def test_stream_data_reaches_websocket_clients_as_binary(tmp_path) -> None:  # type: ignore[no-untyped-def]
    service, connector = make_service(tmp_path, "tcp://backend:9000")
    client, backend = FakeLink(), FakeLink(websocket=False)
    session = service.session(client)
    session.negotiate([])
    connector.calls[0].d.callback(backend)
    session.opened()
    session.received(b"text", False)
    connector.calls[0].receiver.received(b"bytes", True)
    assert backend.data == b"text"  # a stream has no message kinds: the bytes go as they are
    assert client.messages == [(b"bytes", True)]


@pytest.mark.parametrize("from_client", [True, False])
def test_a_close_on_either_side_closes_the_other(tmp_path, from_client: bool) -> None:  # type: ignore[no-untyped-def]
    service, connector = make_service(tmp_path)
    client, backend = FakeLink(), FakeLink()
    session = service.session(client)
    session.negotiate([])
    connector.calls[0].d.callback(backend)
    session.opened()
    if from_client:
        session.closed(1000, "bye")
        assert backend.closes == [(1000, "bye")] and client.closes == []
    else:
        connector.calls[0].receiver.closed(None, "connection done")
        assert client.closes == [(1000, "")] and backend.closes == []


def test_unreachable_back_end_closes_a_websocket_client_with_1014(tmp_path) -> None:  # type: ignore[no-untyped-def]
    service, connector = make_service(tmp_path, "tcp://backend:9000")
    client = FakeLink()
    session = service.session(client)
    d = session.negotiate(["amqp"])
    connector.calls[0].d.errback(ConnectError("Connection refused"))
    assert outcome(d) == "amqp"
    session.opened()
    assert client.closes == [(1014, "cannot connect to tcp://backend:9000: Connection refused")]


def test_unreachable_back_end_refuses_a_stream_client(tmp_path) -> None:  # type: ignore[no-untyped-def]
    service, connector = make_service(tmp_path, "tcp://backend:9000")
    session = service.session(FakeLink(websocket=False))
    d = session.negotiate([])
    connector.calls[0].d.errback(ConnectError("Connection refused"))
    result = outcome(d)
    assert result.check(ConnectError)
    d.addErrback(lambda f: None)


def test_client_gone_before_the_back_end_answers(tmp_path) -> None:  # type: ignore[no-untyped-def]
    service, connector = make_service(tmp_path)
    session = service.session(FakeLink())
    session.negotiate([])
    session.closed(1006, "")
    backend = FakeLink()
    connector.calls[0].d.callback(backend)
    assert backend.closes == [(1000, "client went away")]


def test_a_back_end_that_speaks_first_is_heard_once_the_client_is_open(tmp_path) -> None:  # type: ignore[no-untyped-def]
    service, connector = make_service(tmp_path, "tcp://backend:22")
    client, backend = FakeLink(), FakeLink(websocket=False)
    session = service.session(client)
    session.negotiate([])
    connector.calls[0].d.callback(backend)
    assert backend.paused  # nothing more is read from it until the client can take it
    connector.calls[0].receiver.received(b"SSH-2.0-banner\r\n", True)
    assert client.messages == []  # the client's handshake is not finished yet
    session.opened()
    assert client.messages == [(b"SSH-2.0-banner\r\n", True)]
    assert not backend.paused


def test_a_back_end_that_greets_and_hangs_up_early_still_reaches_the_client(tmp_path) -> None:  # type: ignore[no-untyped-def]
    service, connector = make_service(tmp_path, "tcp://backend:25")
    client, backend = FakeLink(), FakeLink(websocket=False)
    session = service.session(client)
    session.negotiate([])
    connector.calls[0].d.callback(backend)
    connector.calls[0].receiver.received(b"421 too busy\r\n", True)
    connector.calls[0].receiver.closed(None, "connection done")
    session.opened()
    assert client.messages == [(b"421 too busy\r\n", True)]
    assert client.closes == [(1000, "")]


@pytest.mark.parametrize("code", [1001, 1008, 1009, 1011, 1014, 4000])
@pytest.mark.parametrize("early", [False, True])
def test_the_back_ends_close_code_and_reason_reach_the_client(tmp_path, code: int,  # type: ignore[no-untyped-def]
                                                              early: bool) -> None:
    """A chain of gateways: what the inner one said is what the client reads, even when it
    said it before the client's handshake finished."""
    service, connector = make_service(tmp_path)
    client, backend = FakeLink(), FakeLink()
    session = service.session(client)
    session.negotiate([])
    connector.calls[0].d.callback(backend)
    if not early:
        session.opened()
    connector.calls[0].receiver.closed(code, "cannot connect to tcp://db:5432")
    if early:
        assert client.closes == []
        session.opened()
    assert client.closes == [(code, "cannot connect to tcp://db:5432")]
