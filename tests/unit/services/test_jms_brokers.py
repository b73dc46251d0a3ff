"""The jms service's brokers: the seed's OpenWire provider URL, failover URLs, several
<connect>; where each broker connection starts; what ``kgateway check`` shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from kgateway import cli
from kgateway.config import ConfigError
from kgateway.interfaces import ConnectError
from kgateway.services import load_config
from kgateway.services.jms import BrokerOrder, JmsService
from tests.unit.fakes import FakeConnector, FakeLink, build

#: the seed's JMS service, as printed (/work/shared/seeds: F5 BIG-IP with the gateway)
SEED = """<gateway-config xmlns="http://xmlns.kaazing.org/2016/06/gateway">
<properties>
<property><name>gateway.hostname</name><value>20.20.20.14</value></property>
<property><name>backend.hostname</name><value>192.0.2.11</value></property>
<property><name>gateway.extras.port</name><value>8001</value></property>
</properties>
<service>
  <name>JMS Service</name>
  <description>JMS Service</description>
  <accept>ws://${gateway.hostname}:${gateway.extras.port}/jms</accept>
  {connects}
  <type>jms</type>

  <properties>
    <connection.factory.name>ConnectionFactory</connection.factory.name>
    <context.lookup.topic.format>dynamicTopics/%s</context.lookup.topic.format>
    <context.lookup.queue.format>dynamicQueues/%s</context.lookup.queue.format>
    <env.java.naming.factory.initial>org.apache.activemq.jndi.ActiveMQInitialContextFactory</env.java.naming.factory.initial>
    <env.java.naming.provider.url>{provider}</env.java.naming.provider.url>
    {extra}
  </properties>

  <cross-site-constraint>
    <allow-origin>http://${gateway.hostname}:${gateway.extras.port}</allow-origin>
  </cross-site-constraint>
</service>
</gateway-config>
"""


def write(tmp_path: Path, provider: str = "tcp://${backend.hostname}:61616",
          connects: str = "", extra: str = "") -> str:
    path = tmp_path / "gateway.xml"
    path.write_text(SEED.replace("{provider}", provider).replace("{connects}", connects)
                    .replace("{extra}", extra))
    return str(path)


def settings(tmp_path: Path, **kw: str):  # type: ignore[no-untyped-def]
    return load_config(write(tmp_path, **kw), {}, {}).services[0].settings


def test_the_seed_as_pasted_connects_to_the_brokers_stomp_port(tmp_path: Path) -> None:
    s = settings(tmp_path)
    assert [str(b) for b in s.brokers] == ["stomp://192.0.2.11:61613"]
    assert str(s.broker) == "stomp://192.0.2.11:61613"


def test_the_stomp_port_is_a_property(tmp_path: Path) -> None:
    s = settings(tmp_path, extra="<broker.stomp.port>61713</broker.stomp.port>")
    assert [str(b) for b in s.brokers] == ["stomp://192.0.2.11:61713"]


def test_a_failover_url_gives_several_brokers_and_its_delays(tmp_path: Path) -> None:
    s = settings(tmp_path, provider="failover:(tcp://a:61616,tcp://b:61616)?randomize=false"
                                    "&amp;initialReconnectDelay=100&amp;maxReconnectDelay=3000")
    assert [str(b) for b in s.brokers] == ["stomp://a:61613", "stomp://b:61613"]
    assert s.order is BrokerOrder.FIRST
    assert (s.reconnect_delay, s.reconnect_delay_maximum) == (0.1, 3.0)
    # The service's own properties win over the URL's.
    s = settings(tmp_path, provider="failover:(tcp://a:61616,tcp://b:61616)"
                                    "?initialReconnectDelay=100",
                 extra="<reconnect.delay>2sec</reconnect.delay>")
    assert s.order is BrokerOrder.RANDOM and s.reconnect_delay == 2.0


def test_several_connects_win_over_the_provider_url(tmp_path: Path) -> None:
    s = settings(tmp_path, connects="<connect>stomp://a:61713</connect>"
                                    "<connect>stomp://b:61723</connect>")
    assert [str(b) for b in s.brokers] == ["stomp://a:61713", "stomp://b:61723"]
    assert s.order is BrokerOrder.SPREAD and s.provider is None


def test_a_bad_provider_url_is_reported_on_its_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        settings(tmp_path, provider="failover:(tcp://a:61616)?randomize=perhaps")
    [problem] = e.value.problems
    assert problem.line == 19 and "true or false" in str(problem)


def test_kgateway_check_shows_the_derived_brokers(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, provider="failover:(tcp://a:61616,tcp://b:61616)?randomize=false"
                                    "&amp;timeout=3000")
    assert cli.main(["check", path, "-D", "gateway.extras.port=9000"]) == 0
    out = capsys.readouterr().out
    assert "  connect: stomp://a:61613\n  connect: stomp://b:61613\n" in out
    assert "derived from env.java.naming.provider.url failover:(" in out
    assert "ignored (OpenWire only): timeout=3000" in out
    assert "fail-over: 2 brokers; broker connections start on the first" in out


def service(tmp_path: Path, **kw: str) -> tuple[JmsService, FakeConnector]:
    connector = FakeConnector()
    svc = build(load_config(write(tmp_path, **kw), {}, {}), connector=connector)
    assert isinstance(svc, JmsService)
    return svc, connector


def test_connections_are_spread_over_several_connects(tmp_path: Path) -> None:
    svc, connector = service(tmp_path, extra="<connection.count>3</connection.count>",
                             connects="<connect>stomp://a:61713</connect>"
                                      "<connect>stomp://b:61723</connect>")
    svc.start()
    assert [c.uri.host for c in connector.calls] == ["a", "b", "a"]
    svc.stop()


def test_connections_of_an_ordered_failover_url_start_on_the_first(tmp_path: Path) -> None:
    svc, connector = service(tmp_path, extra="<connection.count>2</connection.count>",
                             provider="failover:(tcp://a:61616,tcp://b:61616)?randomize=false")
    svc.start()
    assert [c.uri.host for c in connector.calls] == ["a", "a"]
    svc.stop()


def test_a_new_client_gets_a_connected_broker_connection(tmp_path: Path) -> None:
    svc, connector = service(tmp_path, extra="<connection.count>2</connection.count>",
                             connects="<connect>stomp://a:61713</connect>"
                                      "<connect>stomp://b:61723</connect>")
    svc.start()
    first, second = svc.connections
    # Only the second is connected (the first is between brokers): every client gets it.
    link = FakeLink(websocket=False)
    connector.calls[1].d.callback(link)
    second.received(b"CONNECTED\nversion:1.2\nheart-beat:0,0\n\n\x00", True)
    assert [svc.pick_connection() for _ in range(3)] == [second] * 3
    # Both connected: in turn again.
    connector.calls[0].d.callback(FakeLink(websocket=False))
    first.received(b"CONNECTED\nversion:1.2\nheart-beat:0,0\n\n\x00", True)
    assert {svc.pick_connection() for _ in range(2)} == {first, second}
    svc.stop()


def test_health_sees_each_broker(tmp_path: Path) -> None:
    svc, connector = service(tmp_path, connects="<connect>stomp://a:61713</connect>"
                                                "<connect>stomp://b:61723</connect>")
    svc.start()
    assert not svc.backend_reachable()  # not connected yet
    connector.calls[0].d.errback(ConnectError("Connection refused"))
    svc.reactor.advance(0)  # type: ignore[attr-defined]
    connector.calls[1].d.callback(FakeLink(websocket=False))
    svc.connections[0].received(b"CONNECTED\nversion:1.2\nheart-beat:0,0\n\n\x00", True)
    assert svc.backend_reachable()
    assert svc.backend_status() == {
        "stomp://a:61713": {"up": False, "active": 0, "error": "Connection refused"},
        "stomp://b:61723": {"up": True, "active": 1}}
    svc.stop()
