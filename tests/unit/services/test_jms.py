"""The jms service's configuration checks and destination mapping: pure, no I/O."""

from __future__ import annotations

import pytest

from kgateway.config import ConfigError
from kgateway.jms.destinations import DestinationError, DestinationMap
from kgateway.services import load_config

SEED = """<gateway-config xmlns="http://xmlns.kaazing.org/2016/06/gateway">
<service><name>JMS Service</name><accept>ws://localhost:8000/jms</accept>{connect}
  <type>jms</type>
  <properties>
    <connection.factory.name>ConnectionFactory</connection.factory.name>
    <context.lookup.topic.format>dynamicTopics/%s</context.lookup.topic.format>
    <context.lookup.queue.format>dynamicQueues/%s</context.lookup.queue.format>
    <env.java.naming.factory.initial>org.apache.activemq.jndi.ActiveMQInitialContextFactory</env.java.naming.factory.initial>
    <env.java.naming.provider.url>{provider}</env.java.naming.provider.url>
    {extra}
  </properties>
</service></gateway-config>
"""


def load(tmp_path, connect: str = "<connect>stomp://localhost:61613</connect>",  # type: ignore[no-untyped-def]
         provider: str = "tcp://localhost:61616", extra: str = ""):
    path = tmp_path / "gateway.xml"
    path.write_text(SEED.format(connect=connect, provider=provider, extra=extra))
    return load_config(str(path), {}, {}).services[0].settings


def problems(tmp_path, **kw: str) -> list[str]:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as e:
        load(tmp_path, **kw)
    return [str(p) for p in e.value.problems]


def test_the_seed_form_with_a_stomp_connect_loads_with_defaults(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = load(tmp_path)
    assert (s.broker.host, s.broker.port) == ("localhost", 61613)
    assert s.connection_count == 1 and s.maximum_pending_bytes == 512 * 1024
    assert s.destinations.resolve("/topic/a", "t").broker == "/topic/a"


def test_openwire_provider_without_stomp_connect_gives_the_stomp_connector(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = load(tmp_path, connect="", provider="tcp://broker1:61616")
    assert [str(b) for b in s.brokers] == ["stomp://broker1:61613"]  # more in test_jms_brokers


def test_an_unusable_provider_url_says_what_to_add(tmp_path) -> None:  # type: ignore[no-untyped-def]
    [message] = problems(tmp_path, connect="", provider="vm://localhost")
    assert "vm://" in message and "<connect>stomp://host:61613</connect>" in message
    assert ":9:" in message  # the provider URL's line


def test_a_stomp_provider_url_serves_as_the_connect(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = load(tmp_path, connect="", provider="stomp://mq:61613")
    assert (s.broker.host, s.broker.port) == ("mq", 61613)


@pytest.mark.parametrize("extra, expected", [
    ("<connection.count>0</connection.count>", "connection.count"),
    ("<reconnect.delay>soon</reconnect.delay>", "reconnect.delay"),
    ("<maximum.pending.bytes>lots</maximum.pending.bytes>", "maximum.pending.bytes"),
    ("<queue.prefetch>none</queue.prefetch>", "queue.prefetch"),
    ("<broker.queue.prefix>queue</broker.queue.prefix>", "broker.queue.prefix"),
    ("<topic><name>x</name><cache.size>-1</cache.size></topic>", "cache.size"),
    ("<topic><cache.size>3</cache.size></topic>", "needs a <name>"),
    ("<topic><name>x</name><size>3</size></topic>", "unknown element <size>"),
    ("<frobnicate>1</frobnicate>", "unknown property <frobnicate>"),
])
def test_every_bad_value_is_an_error_with_its_line(tmp_path, extra: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    found = problems(tmp_path, extra=extra)
    assert any(expected in p and ":10:" in p for p in found), found


def test_topic_caches_and_tuning(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = load(tmp_path, extra="<topic><name>prices</name><cache.size>5</cache.size></topic>"
                             "<connection.count>3</connection.count>"
                             "<reconnect.delay>250ms</reconnect.delay>")
    assert s.caches == {"/topic/prices": 5}
    assert s.connection_count == 3 and s.reconnect_delay == 0.25


def test_destination_mapping_both_ways() -> None:
    m = DestinationMap()
    d = m.resolve("/queue/orders", "g-1")
    assert (d.kind, d.broker, d.temporary) == ("queue", "/queue/orders", False)
    t = m.resolve("/temp-queue/replies", "g-1")
    assert t.broker == "/queue/kgw.tmp.g-1.replies" and t.temporary
    assert m.to_client(t.broker, "g-1") == "/temp-queue/replies"
    # Another client sees someone's temp queue as an ordinary queue it can reply to.
    assert m.to_client(t.broker, "g-2") == "/queue/kgw.tmp.g-1.replies"
    assert m.resolve("/queue/kgw.tmp.g-1.replies", "g-2").broker == t.broker


def test_custom_lookup_formats_and_broker_prefixes() -> None:
    m = DestinationMap("prices.%s", "jms/queue/%s", "/exchange/amq.topic/", "/amq/queue/")
    assert m.resolve("/topic/eur", "t").broker == "/exchange/amq.topic/prices.eur"
    assert m.resolve("/queue/q1", "t").broker == "/amq/queue/jms/queue/q1"
    assert m.to_client("/exchange/amq.topic/prices.eur", "t") == "/topic/eur"
    assert m.to_client("/amq/queue/jms/queue/q1", "t") == "/queue/q1"


@pytest.mark.parametrize("name", ["/exchange/x", "/topic/", "topic/x", "/queue/a,b",
                                  "/queue/a\nb"])
def test_bad_destinations(name: str) -> None:
    with pytest.raises(DestinationError):
        DestinationMap().resolve(name, "t")


def test_a_lookup_format_needs_one_placeholder(tmp_path) -> None:  # type: ignore[no-untyped-def]
    text = SEED.replace("dynamicTopics/%s", "topics")
    path = tmp_path / "gateway.xml"
    path.write_text(text.format(connect="", provider="stomp://h:1", extra=""))
    with pytest.raises(ConfigError) as e:
        load_config(str(path), {}, {})
    assert "exactly one %s" in str(e.value) and ":6:" in str(e.value)


def test_stomp_over_tls_connect(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = load(tmp_path, connect="<connect>stomp+ssl://mq.example:61614</connect>")
    assert s.broker.is_tls and s.broker.port == 61614


def test_a_connect_of_another_scheme_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    found = problems(tmp_path, connect="<connect>tcp://mq:61613</connect>")
    assert any("cannot connect tcp://" in m and "stomp" in m for m in found), found


def test_limits_have_documented_defaults(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = load(tmp_path)
    assert s.rules.default == "plain" and s.rules.rules == ()
    assert (s.connect_timeout, s.idle_timeout) == (20.0, 600.0)
    assert (s.maximum_subscriptions, s.maximum_broker_subscriptions) == (1000, 2000)
    assert (s.maximum_inflight_bytes, s.maximum_inflight_frames) == (256 * 1024, 32)


def test_destination_rules_and_limits_are_read(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = load(tmp_path, extra="<destinations.default>none</destinations.default>"
                             "<destination-rule><subscribe>/topic/prices.*</subscribe>"
                             "<subscribe>/queue/work</subscribe>"
                             "<publish>/queue/audit.></publish></destination-rule>"
                             "<connect.timeout>5sec</connect.timeout>"
                             "<idle.timeout>0</idle.timeout>"
                             "<maximum.subscriptions>10</maximum.subscriptions>")
    assert s.rules.default == "none"
    [rule] = s.rules.rules
    assert rule.roles == frozenset() and rule.line == 10
    assert [p.text for p in rule.subscribe] == ["/topic/prices.*", "/queue/work"]
    s.rules.check("publish", "/queue/audit.eu")
    assert (s.connect_timeout, s.idle_timeout, s.maximum_subscriptions) == (5.0, 0.0, 10)


def test_a_rule_with_a_role_needs_a_realm(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rule = ("<destination-rule>\n<role>ops</role>\n"
            "<subscribe>/topic/ActiveMQ.Advisory.Connection</subscribe></destination-rule>")
    [message] = problems(tmp_path, extra=rule)
    assert ":11:" in message and "<realm-name>" in message and "ops" in message
    path = tmp_path / "realm.xml"
    users = tmp_path / "users"
    users.write_text("# nobody\n")
    realm = ("<security><realm><name>demo</name><authentication><login-modules><login-module>"
             f"<type>file</type><options><file>{users}</file></options></login-module>"
             "</login-modules></authentication></realm></security>\n<service>")
    path.write_text(SEED.format(connect="<connect>stomp://localhost:61613</connect>",
                                provider="tcp://x:61616", extra=rule)
                    .replace("</properties>", "</properties><realm-name>demo</realm-name>")
                    .replace("<service>", realm, 1))
    [loaded] = load_config(str(path), {}, {}).services[0].settings.rules.rules
    assert loaded.roles == frozenset({"ops"})
    loaded_rules = load_config(str(path), {}, {}).services[0].settings.rules
    loaded_rules.check("subscribe", "/topic/ActiveMQ.Advisory.Connection", {"ops"})


@pytest.mark.parametrize("extra, expected", [
    ("<destination-rule><subscribe>/queue/a.>.b</subscribe></destination-rule>",
     "bad <subscribe> in <destination-rule>"),
    ("<destination-rule><publish>/exchange/x</publish></destination-rule>",
     "bad <publish> in <destination-rule>"),
    ("<destination-rule><queue>x</queue></destination-rule>", "unknown element <queue>"),
    ("<destination-rule></destination-rule>", "needs at least one"),
    ("<destinations.default>open</destinations.default>", "destinations.default"),
    ("<connect.timeout>0</connect.timeout>", "connect.timeout"),
    ("<maximum.subscriptions>0</maximum.subscriptions>", "maximum.subscriptions"),
    ("<maximum.inflight.bytes>lots</maximum.inflight.bytes>", "maximum.inflight.bytes"),
])
def test_bad_rules_and_limits_are_errors_with_their_line(tmp_path, extra: str,  # type: ignore[no-untyped-def]
                                                          expected: str) -> None:
    found = problems(tmp_path, extra=extra)
    assert any(expected in p and ":10:" in p for p in found), found
