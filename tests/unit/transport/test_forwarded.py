"""Which client address to believe: Forwarded / X-Forwarded-For trust (pure)."""

from __future__ import annotations

from kgateway.config.options import parse_networks
from kgateway.transport.forwarded import forwarded_chain, forwarded_client

HAPROXY = "10.0.0.2:51000"


def test_headers_are_ignored_unless_trust_is_configured() -> None:
    headers = {"x-forwarded-for": "6.6.6.6"}
    assert forwarded_client(HAPROXY, headers) == HAPROXY


def test_hops_take_the_entry_before_our_own_proxies() -> None:
    headers = {"x-forwarded-for": "6.6.6.6, 198.51.100.7, 10.0.0.9"}
    # With one hop, our proxy (the peer) appended the last entry: the client it saw.
    assert forwarded_client(HAPROXY, headers, hops=1) == "10.0.0.9"
    assert forwarded_client(HAPROXY, headers, hops=2) == "198.51.100.7"
    # More hops than entries: the leftmost claim is all there is.
    assert forwarded_client(HAPROXY, headers, hops=9) == "6.6.6.6"


def test_trusted_networks_walk_from_the_right() -> None:
    trusted = parse_networks("10.0.0.0/8, 192.0.2.1")
    headers = {"x-forwarded-for": "6.6.6.6, 198.51.100.7, 192.0.2.1, 10.0.0.9"}
    assert forwarded_client(HAPROXY, headers, trusted) == "198.51.100.7"
    # A peer that is not a trusted proxy: its headers are the client's own words.
    assert forwarded_client("203.0.113.5:4000", headers, trusted) == "203.0.113.5:4000"


def test_forwarded_header_wins_and_keeps_ports() -> None:
    headers = {"forwarded": 'for=6.6.6.6, for="[2001:db8:cafe::17]:4711";proto=https',
               "x-forwarded-for": "1.1.1.1"}
    assert forwarded_chain(headers) == [("6.6.6.6", None), ("2001:db8:cafe::17", 4711)]
    assert forwarded_client(HAPROXY, headers, hops=1) == "[2001:db8:cafe::17]:4711"


def test_unusable_entries_stop_the_walk_at_the_peer() -> None:
    trusted = parse_networks("10.0.0.0/8")
    headers = {"forwarded": "for=unknown, for=_hidden"}
    assert forwarded_client(HAPROXY, headers, trusted) == HAPROXY
    assert forwarded_client(HAPROXY, {"x-forwarded-for": "garbage"}, hops=1) == HAPROXY


def test_forwarded_proto_is_believed_only_from_trusted_proxies() -> None:
    import ipaddress

    from kgateway.transport.forwarded import forwarded_proto

    lb = [ipaddress.ip_network("10.0.0.0/8")]
    xfp = {"x-forwarded-proto": "https"}
    assert forwarded_proto("10.1.1.1", xfp) is None  # nothing configured: the client's word
    assert forwarded_proto("10.1.1.1", xfp, lb) == "https"
    assert forwarded_proto("203.0.113.9", xfp, lb) is None  # not from the balancer
    # The nearest trusted proxy's value wins over one a client put in front of it.
    assert forwarded_proto("10.1.1.1", {"x-forwarded-proto": "https, http"}, lb) == "http"
    # With hops, the value our outermost proxy appended.
    assert forwarded_proto("10.1.1.1", {"x-forwarded-proto": "http, https, http"},
                           hops=2) == "https"
    assert forwarded_proto("10.1.1.1", {"forwarded": 'for=1.2.3.4;proto=HTTPS'}, lb) == "https"
    assert forwarded_proto("10.1.1.1", {"x-forwarded-proto": "gopher"}, lb) is None
