"""The pool examples under etc/examples/ stay loadable (the integration tests run them)."""

from __future__ import annotations

import os

import pytest

from kgateway.services import SERVICE_TYPES, load_config
from tests.helpers import ROOT

EXAMPLES = os.path.join(ROOT, "etc", "examples")


def test_the_default_config_serves_health_at_slash_health() -> None:
    cfg = load_config(os.path.join(ROOT, "etc", "gateway.xml"), environ={})
    (health,) = [s for s in cfg.services if s.type == "health"]
    assert [u.path for u in health.accepts] == ["/health"]


@pytest.mark.skipif("jms" not in SERVICE_TYPES, reason="the jms service type is not in yet")
def test_the_f5_gateway_config_loads_with_the_seed_properties() -> None:
    cfg = load_config(os.path.join(EXAMPLES, "f5-bigip", "gateway.xml"),
                      {"gateway.hostname": "20.20.20.15"}, environ={})
    by_name = {s.name: s for s in cfg.services}
    assert str(by_name["AMQP Service"].accepts[0]) == "ws://20.20.20.15:8001/amqp"
    assert str(by_name["AMQP Service"].connects[0]) == "tcp://192.0.2.11:5672"
    assert by_name["JMS Service"].type == "jms"
    assert by_name["health"].type == "health"


def test_the_f5_files_are_all_there() -> None:
    for name in ("README.md", "gateway.xml", "allow-ws.irule", "proxy-protocol.irule",
                 "bigip.conf"):
        assert os.path.getsize(os.path.join(EXAMPLES, "f5-bigip", name)) > 0
    with open(os.path.join(EXAMPLES, "f5-bigip", "bigip.conf")) as f:
        text = f.read()
    assert 'send "GET /health' in text and 'recv-disable "draining"' in text
