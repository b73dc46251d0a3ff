"""The Connector's dispatch by scheme, on a memory reactor."""

from __future__ import annotations

from typing import Any

from autobahn.twisted.testing import MemoryReactorClockResolver
from zope.interface.verify import verifyObject

from kgateway.config import CONNECT_OPTIONS, Options, parse_uri
from kgateway.connector import Connector
from kgateway.interfaces import ConnectError, IConnector
from kgateway.shield.dmz import Backplane


def options(**given: Any) -> Options:
    return Options(given, {k: d for k, (_, d) in CONNECT_OPTIONS.items()})


class Receiver:
    def received(self, data: bytes, binary: bool) -> None:
        pass

    def closed(self, code: int | None, reason: str) -> None:
        pass


def failure(d: Any) -> str:
    failures: list[Any] = []
    d.addErrback(failures.append)
    assert failures and failures[0].check(ConnectError)
    return str(failures[0].getErrorMessage())


def test_it_is_an_iconnector() -> None:
    assert verifyObject(IConnector, Connector(MemoryReactorClockResolver()))


def test_tcp_dials_and_reverse_goes_to_the_backplane_it_owns() -> None:
    reactor = MemoryReactorClockResolver()
    connector = Connector(reactor)
    connector.connect(parse_uri("tcp://db.test:5432"), options(), Receiver())
    assert [(h, p) for h, p, *_ in reactor.tcpClients] == [("127.0.0.1", 5432)]
    uri = parse_uri("reverse+wss://dmz.test:1443/shield/echo")
    assert "no Enterprise Shield backplane" in failure(
        connector.connect(uri, options(), Receiver(), client="198.51.100.7:1"))
    connector.backplanes.add(Backplane(reactor, "dmz", uri))
    waiting = connector.connect(uri, options(**{"reverse.timeout": 2.0}), Receiver())
    reactor.advance(2)
    assert "within 2s (reverse.timeout)" in failure(waiting)
    assert len(reactor.tcpClients) == 1  # nothing dialled for reverse+wss


def test_a_client_certificate_without_a_keystore_is_a_clear_refusal() -> None:
    connector = Connector(MemoryReactorClockResolver(), truststore=None, identity=None)
    d = connector.connect(parse_uri("ssl://db.test:5432"),
                          options(**{"ssl.present-certificate": True}), Receiver())
    assert failure(d) == "TLS configuration: ssl.present-certificate needs <security><keystore>"
