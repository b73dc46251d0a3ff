"""Autobahn's per-connection pformat runs only when its debug logging is on."""

from __future__ import annotations

import pprint

import autobahn.websocket.protocol as autobahn_protocol
import pytest
import txaio

from kgateway.transport import autobahnlog, closecodes


@pytest.fixture
def level() -> object:
    before = txaio.get_global_log_level()  # type: ignore[attr-defined]
    yield
    txaio.set_global_log_level(before)  # type: ignore[attr-defined]


def test_the_gateways_protocols_install_it() -> None:
    assert closecodes.RelayingServerProtocol is not None
    assert autobahn_protocol.pformat is autobahnlog.debug_pformat


def test_pformat_only_with_debug_logging(level: object) -> None:
    value = [("openHandshakeTimeout", 10, "Factory"), ("autoPingInterval", 0, "Factory")]
    txaio.set_global_log_level("info")  # type: ignore[attr-defined]
    assert autobahnlog.debug_pformat(value) == autobahnlog.SKIPPED
    txaio.set_global_log_level("debug")  # type: ignore[attr-defined]
    assert autobahnlog.debug_pformat(value, width=20) == pprint.pformat(value, width=20)
