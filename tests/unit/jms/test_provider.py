"""Provider URLs as pasted from Kaazing/ActiveMQ configurations -> the brokers' STOMP
connectors (kgateway.jms.provider): pure parsing."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kgateway.jms.provider import parse_provider_url


def uris(text: str, **kw: int) -> list[str]:
    return [str(u) for u in parse_provider_url(text, **kw).brokers]


def test_an_openwire_url_gives_the_hosts_stomp_connector() -> None:
    p = parse_provider_url("tcp://mq.example:61616")
    assert [str(u) for u in p.brokers] == ["stomp://mq.example:61613"] and p.derived
    assert uris("nio://10.0.0.5:61616") == ["stomp://10.0.0.5:61613"]
    assert uris("tcp://[2001:db8::1]:61616") == ["stomp://[2001:db8::1]:61613"]


def test_openwire_over_tls_gives_stomp_over_tls() -> None:
    [uri] = parse_provider_url("ssl://mq:61617").brokers
    assert (uri.scheme, uri.port, uri.is_tls) == ("stomp+ssl", 61612, True)


def test_the_stomp_ports_can_be_given() -> None:
    assert uris("tcp://mq:61616", stomp_port=61713) == ["stomp://mq:61713"]
    assert uris("ssl://mq:61617", stomp_ssl_port=61714) == ["stomp+ssl://mq:61714"]


def test_a_stomp_url_is_taken_as_it_is() -> None:
    p = parse_provider_url("stomp://mq:61999")
    assert [str(u) for u in p.brokers] == ["stomp://mq:61999"] and not p.derived


def test_nested_openwire_options_are_dropped() -> None:
    assert uris("tcp://mq:61616?wireFormat.maxInactivityDuration=0") == ["stomp://mq:61613"]


def test_failover_gives_every_broker_in_order_randomized_by_default() -> None:
    p = parse_provider_url("failover:(tcp://a:61616,tcp://b:61616)")
    assert [str(u) for u in p.brokers] == ["stomp://a:61613", "stomp://b:61613"]
    assert p.randomize and p.derived and not p.ignored


def test_failover_options_used_and_ignored() -> None:
    p = parse_provider_url("failover:(tcp://a:61616,ssl://b:61617)?randomize=false"
                           "&initialReconnectDelay=100&maxReconnectDelay=2000&timeout=3000")
    assert [str(u) for u in p.brokers] == ["stomp://a:61613", "stomp+ssl://b:61612"]
    assert not p.randomize
    assert (p.reconnect_delay, p.reconnect_delay_maximum) == (0.1, 2.0)
    assert dict(p.ignored) == {"timeout": "3000"}


def test_failover_without_parentheses_and_one_host_twice() -> None:
    assert uris("failover:tcp://a:61616,tcp://b:61616?randomize=false") == \
        ["stomp://a:61613", "stomp://b:61613"]
    # two OpenWire connectors of one broker are one STOMP connector
    assert uris("failover:(tcp://a:61616,nio://a:61618)") == ["stomp://a:61613"]


@pytest.mark.parametrize("text, expected", [
    ("vm://localhost", "in-process"),
    ("http://mq:8161", "not an ActiveMQ"),
    ("failover:()", "no broker"),
    ("failover:(tcp://a:61616", "closing parenthesis"),
    ("failover:(tcp://a:61616)?randomize=maybe", "true or false"),
    ("failover:(tcp://a:61616)?initialReconnectDelay=-1", "milliseconds"),
    ("failover:(tcp://a:61616)x", "?options"),
    ("tcp://:61616", "no host"),
])
def test_bad_provider_urls_say_what_is_wrong(text: str, expected: str) -> None:
    with pytest.raises(ValueError, match=re.escape(expected)):
        parse_provider_url(text)


hosts = st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z][a-z0-9-]{0,10}){0,2}", fullmatch=True)


@given(st.lists(st.tuples(hosts, st.sampled_from(["tcp", "ssl", "nio"])), min_size=1,
                max_size=5, unique_by=lambda t: t[0]), st.booleans())
def test_any_failover_list_keeps_its_hosts_and_order(brokers: list[tuple[str, str]],
                                                    randomize: bool) -> None:
    text = ("failover:(" + ",".join(f"{scheme}://{host}:61616" for host, scheme in brokers)
            + f")?randomize={str(randomize).lower()}")
    p = parse_provider_url(text)
    assert [u.host for u in p.brokers] == [host for host, _ in brokers]
    assert [u.is_tls for u in p.brokers] == [scheme == "ssl" for _, scheme in brokers]
    assert p.randomize is randomize
