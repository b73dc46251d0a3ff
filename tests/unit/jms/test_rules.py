"""Destination rules: pure checks of what a client may SUBSCRIBE to and SEND to."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kgateway.jms.rules import DestinationRule, DestinationRules, Pattern, RuleRefusal

PLAIN = DestinationRules()


def refused(rules: DestinationRules, action: str, name: str, roles: frozenset[str] = frozenset(),
            **kw: object) -> str:
    with pytest.raises(RuleRefusal) as e:
        rules.check(action, name, roles, **kw)  # type: ignore[arg-type]
    return e.value.rule


@pytest.mark.parametrize("name", ["/topic/prices", "/queue/orders.eu", "/temp-queue/replies",
                                  "/temp-topic/t", "/queue/a-b_c.d/e", "/topic/ActiveMQfan"])
@pytest.mark.parametrize("action", ["subscribe", "publish"])
def test_plain_names_and_own_temporaries_are_allowed_by_default(action: str, name: str) -> None:
    PLAIN.check(action, name, own_tag="g1-7")


@pytest.mark.parametrize("name, rule", [
    ("/queue/>", "wildcard"),
    ("/topic/prices.*", "wildcard"),
    ("/topic/a.*.c", "wildcard"),
    ("/queue/a>b", "wildcard"),
    ("/temp-queue/>", "wildcard"),
    ("/topic/ActiveMQ.Advisory.Connection", "internal"),
    ("/topic/ActiveMQ.Advisory.>", "wildcard"),
    ("/queue/ActiveMQ.DLQ", "internal"),
    ("/queue/activemq.dlq", "internal"),
    ("/topic/ActiveMQ.Statistics.Broker", "internal"),
    ("/queue/kgw.tmp.g1-8.replies", "temporary"),
    ("/queue/a,b", "not-plain"),
    ("/queue/orders?consumer.exclusive=true", "not-plain"),
    ("/queue/queue://x", "not-plain"),
    ("/queue/a b", "not-plain"),
    ("/queue/.a", "not-plain"),
    ("/queue/a..b", "not-plain"),
    ("/exchange/amq.topic", "not-plain"),
])
def test_what_reaches_past_a_plain_name_is_refused_naming_the_rule(name: str, rule: str) -> None:
    assert refused(PLAIN, "subscribe", name, own_tag="g1-7") == rule


def test_temporaries_own_always_others_only_to_publish_a_shown_reply_to() -> None:
    other = "/queue/kgw.tmp.g1-8.replies"
    PLAIN.check("subscribe", "/queue/kgw.tmp.g1-7.replies", own_tag="g1-7")
    assert refused(PLAIN, "publish", other, own_tag="g1-7") == "temporary"
    PLAIN.check("publish", other, own_tag="g1-7", shown={other})
    assert refused(PLAIN, "subscribe", other, own_tag="g1-7", shown={other}) == "temporary"
    # A tag that is a prefix of another's is not the other's owner.
    assert refused(PLAIN, "subscribe", "/queue/kgw.tmp.g1-77.r", own_tag="g1-7") == "temporary"
    assert refused(PLAIN, "subscribe", "/queue/kgw.tmp.x", own_tag="") == "temporary"


def test_rules_open_per_role_and_for_everyone() -> None:
    rules = DestinationRules("plain", (
        DestinationRule(frozenset({"ops"}),
                        subscribe=(Pattern.parse("/topic/ActiveMQ.Advisory.Connection"),
                                   Pattern.parse("/queue/ActiveMQ.DLQ")),
                        publish=(Pattern.parse("/queue/audit.>"),)),
        DestinationRule(subscribe=(Pattern.parse("/topic/prices.*"),)),
    ))
    ops = frozenset({"ops", "user"})
    rules.check("subscribe", "/topic/ActiveMQ.Advisory.Connection", ops)
    rules.check("subscribe", "/queue/ActiveMQ.DLQ", ops)
    assert refused(rules, "subscribe", "/topic/ActiveMQ.Advisory.Connection",
                   frozenset({"user"})) == "internal"
    assert refused(rules, "subscribe", "/topic/ActiveMQ.Advisory.Consumer.Queue.x",
                   ops) == "internal"
    assert refused(rules, "publish", "/queue/ActiveMQ.DLQ", ops) == "internal"
    # The wildcard patterns cover wildcard names within them, never beyond.
    rules.check("publish", "/queue/audit.>", ops)
    rules.check("publish", "/queue/audit.*.x", ops)
    rules.check("publish", "/queue/audit", ops)  # > is zero or more segments, as in ActiveMQ
    assert refused(rules, "subscribe", "/queue/audit.>", ops) == "wildcard"
    assert refused(rules, "publish", "/queue/>", ops) == "wildcard"
    rules.check("subscribe", "/topic/prices.*")  # every client
    rules.check("subscribe", "/topic/prices.eur")
    assert refused(rules, "subscribe", "/topic/prices.>") == "wildcard"
    assert refused(rules, "subscribe", "/topic/prices.eur.x.*") == "wildcard"


def test_default_none_allows_only_the_rules_and_own_temporaries() -> None:
    rules = DestinationRules("none", (DestinationRule(publish=(Pattern.parse("/queue/in"),)),))
    rules.check("publish", "/queue/in")
    rules.check("subscribe", "/temp-queue/r", own_tag="t")
    assert refused(rules, "subscribe", "/queue/in") == "default"
    assert refused(rules, "publish", "/topic/anything") == "default"
    assert refused(rules, "publish", "/queue/>") == "wildcard"


@pytest.mark.parametrize("text, problem", [
    ("/exchange/x", "must start with /topic/ or /queue/"),
    ("/temp-queue/x", "must start with /topic/ or /queue/"),
    ("/queue/a.>.b", "> may only be the last segment"),
    ("/queue/a*", "whole segments"),
    ("/queue/a..b", "empty segment"),
    ("/queue/a,b", "whole segments"),
])
def test_bad_patterns_say_why(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Pattern.parse(text)


SEGMENT = st.sampled_from(["a", "b", "c"])
PATTERN_SEGMENT = st.sampled_from(["a", "b", "*"])


def _expand(segments: list[str], depth: int) -> set[tuple[str, ...]]:
    """Every concrete name of at most *depth* segments over {a, b, c} a wildcard name reaches."""
    if not segments:
        return {()}
    head, rest = segments[0], segments[1:]
    if head == ">":
        out: set[tuple[str, ...]] = {()}
        frontier: set[tuple[str, ...]] = {()}
        for _ in range(depth):
            frontier = {f + (s,) for f in frontier for s in "abc"}
            out |= frontier
        return out
    heads = "abc" if head == "*" else [head]
    return {(h,) + tail for h in heads for tail in _expand(rest, depth - 1) if depth > 0}


@given(pattern=st.lists(PATTERN_SEGMENT, min_size=1, max_size=3),
       pattern_tail=st.booleans(),
       name=st.lists(st.sampled_from(["a", "b", "c", "*"]), min_size=1, max_size=3),
       name_tail=st.booleans())
def test_covers_means_every_reachable_name_matches(pattern: list[str], pattern_tail: bool,
                                                   name: list[str], name_tail: bool) -> None:
    """Pattern.covers(name) agrees with brute force over a small alphabet and depth."""
    pattern = pattern + ([">"] if pattern_tail else [])
    name = name + ([">"] if name_tail else [])
    p = Pattern.parse("/queue/" + ".".join(pattern))
    depth = 6
    matched = _expand(pattern, depth)
    reached = _expand(name, depth)
    assert p.covers("/queue/" + ".".join(name)) == (reached <= matched)
