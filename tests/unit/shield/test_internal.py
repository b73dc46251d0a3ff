"""The internal end of Enterprise Shield: the reverse dialler's back-off, built with its real
constructor on a fake clock."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from autobahn.twisted.testing import MemoryReactorClockResolver
from twisted.internet.testing import MemoryReactorClock

from kgateway.certs import make_certificate
from kgateway.config import ACCEPT_OPTIONS, Options, parse_uri
from kgateway.shield.internal import ReverseConnector
from kgateway.transport.tls import load_identity
from kgateway.transport.tracker import ConnectionTracker


class _Service:
    def __init__(self, **options: object) -> None:
        defaults = {k: d for k, (_, d) in ACCEPT_OPTIONS.items()}
        self.config = type("C", (), {"name": "internal-echo",
                                     "accept_options": Options(options, defaults)})()


def reverse_connector(tmp_path: Path, clock: MemoryReactorClock,
                      **options: object) -> ReverseConnector:
    cert, key = make_certificate(str(tmp_path), "internal")
    return ReverseConnector(clock, _Service(**options),  # type: ignore[arg-type]
                            parse_uri("reverse+wss://dmz.test:1443/shield/echo"),
                            load_identity(cert, key), os.path.join(tmp_path, "ca.pem"),
                            ConnectionTracker())


@pytest.mark.parametrize("failures, expected", [(0, 0.5), (1, 1.0), (3, 4.0), (10, 30.0)])
def test_reconnect_back_off_doubles_up_to_the_maximum(tmp_path: Path, failures: int,
                                                      expected: float) -> None:
    clock = MemoryReactorClock()
    connector = reverse_connector(tmp_path, clock)
    connector.running = True
    connector.failures = failures
    connector.retry("refused")
    assert clock.getDelayedCalls()[0].getTime() == pytest.approx(expected)
    assert connector.failures == failures + 1


def test_start_dials_the_prepared_count_and_stop_cancels_retries(tmp_path: Path) -> None:
    clock = MemoryReactorClockResolver()
    connector = reverse_connector(tmp_path, clock, **{"reverse.prepared.connection.count": 3})
    connector.start()
    assert [(host, port) for host, port, *_ in clock.tcpClients] == [("127.0.0.1", 1443)] * 3
    connector.retry("refused")
    (pending,) = connector.retries
    connector.stop()
    assert connector.retries == [] and not pending.active()
    connector.retry("refused")  # a late failure after stop() schedules nothing
    assert connector.retries == []
