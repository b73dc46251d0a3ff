"""Which destinations a jms client may SUBSCRIBE to and SEND to: pure rules, no I/O.

    client frame --> DestinationRules.check(action, name, roles, own_tag, shown) --> ok
                                                     |                       or RuleRefusal
                                                     v                       (rule name + why)
        1. the client's own temporary destinations (/temp-queue/X, /temp-topic/X): allowed
        2. another client's temporary destination (kgw.tmp.*): SEND only to a reply-to the
           gateway showed this client, never SUBSCRIBE                    (rule "temporary")
        3. a <destination-rule> for one of the client's roles (or for everyone) whose
           <subscribe>/<publish> pattern covers the name: allowed
        4. destinations.default = plain: /topic/NAME and /queue/NAME with NAME plain:
           no broker wildcard ("wildcard"), no ActiveMQ.* internals ("internal"), no
           character ActiveMQ reads as syntax ("not-plain"); none: refused ("default")

Patterns are ActiveMQ's wildcard syntax applied to the names clients write: ``.`` separates
segments, ``*`` is one segment, ``>`` the rest (zero or more segments, as ActiveMQ reads it).
A client name may itself contain wildcards (a subscription to many destinations at once):
it is allowed only if a pattern covers every destination it could reach, so
``/queue/audit.*`` is allowed by ``/queue/audit.>`` but ``/queue/>`` never is by it.

Written by hand: the matching is ActiveMQ's destination-filter semantics (plus the subset
test for wildcard names), which no maintained Python library offers.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from kgateway.jms.destinations import TEMP_PREFIX

__all__ = ["ACTIONS", "DEFAULTS", "DestinationRule", "DestinationRules", "Pattern",
           "RuleRefusal", "TEMP_PREFIX"]

ACTIONS = ("subscribe", "publish")
DEFAULTS = ("plain", "none")
_PREFIXES = ("/topic/", "/queue/")
_TEMP_PREFIXES = ("/temp-queue/", "/temp-topic/")
#: characters a plain name may not contain: wildcards, ActiveMQ's composite (,), option (?)
#: and scheme (:) syntax, quoting and whitespace
_NOT_PLAIN = re.compile(r"[*>?,:;\\\"'<&|\s\x00-\x1f\x7f]")
_INTERNAL = "activemq."


class RuleRefusal(ValueError):
    """A destination refused by a rule: ``rule`` names it, the message says why."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


def _segments(name: str) -> list[str]:
    return name.split(".")


def _covers(pattern: list[str], name: list[str]) -> bool:
    """True if every destination *name* (maybe wildcarded) reaches is matched by *pattern*."""
    for i, p in enumerate(pattern):
        if p == ">":
            return True  # the rest, including nothing
        if i >= len(name):
            return False
        n = name[i]
        if n == ">":
            return False  # the name reaches any depth here; only a > pattern covers that
        if p == "*":
            continue
        if n == "*" or n != p:
            return False
    return len(name) == len(pattern)


@dataclass(frozen=True)
class Pattern:
    """``/topic/A.*.C`` or ``/queue/audit.>``: a kind prefix and ActiveMQ-style segments."""

    text: str
    prefix: str
    segments: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Pattern:
        """Parse a pattern, or raise ValueError saying what is wrong with it."""
        text = text.strip()
        prefix = next((p for p in _PREFIXES if text.startswith(p)), None)
        if prefix is None:
            raise ValueError(f"pattern {text!r} must start with /topic/ or /queue/ (a client's "
                             "own temporary destinations are always allowed)")
        rest = text[len(prefix):]
        segments = _segments(rest)
        for i, segment in enumerate(segments):
            if not segment:
                raise ValueError(f"pattern {text!r} has an empty segment (between dots)")
            if segment == ">" and i != len(segments) - 1:
                raise ValueError(f"pattern {text!r}: > may only be the last segment")
            if segment not in ("*", ">") and _NOT_PLAIN.search(segment):
                raise ValueError(f"pattern {text!r}: * and > must be whole segments, and "
                                 "names may not contain , ? : ; quotes or spaces")
        return cls(text, prefix, tuple(segments))

    def covers(self, name: str) -> bool:
        """True if this pattern covers client destination *name* (which may be wildcarded)."""
        if not name.startswith(self.prefix):
            return False
        return _covers(list(self.segments), _segments(name[len(self.prefix):]))


@dataclass(frozen=True)
class DestinationRule:
    """A ``<destination-rule>``: for clients with one of *roles* (empty: every client)."""

    roles: frozenset[str] = frozenset()
    subscribe: tuple[Pattern, ...] = ()
    publish: tuple[Pattern, ...] = ()
    line: int = 0

    def applies(self, roles: Collection[str]) -> bool:
        return not self.roles or not self.roles.isdisjoint(roles)

    def allows(self, action: str, name: str) -> bool:
        patterns = self.subscribe if action == "subscribe" else self.publish
        return any(p.covers(name) for p in patterns)


def plain_problem(name: str) -> RuleRefusal | None:
    """Why the NAME of /topic/NAME or /queue/NAME is not plain, or None if it is."""
    if "*" in name or ">" in name:
        return RuleRefusal("wildcard", "broker wildcards (* and >) reach many destinations "
                                       "at once and are not allowed")
    if name.lower().startswith(_INTERNAL) or name.lower() == "activemq":
        return RuleRefusal("internal", "ActiveMQ.* destinations are the broker's internals "
                                       "(advisories, dead letters, statistics)")
    if name.startswith(TEMP_PREFIX):
        return RuleRefusal("temporary", "another client's temporary destination")
    if _NOT_PLAIN.search(name):
        return RuleRefusal("not-plain", "the name contains a character the broker reads as "
                                        "syntax (, ? : ; quotes, spaces, control characters)")
    if any(not s for s in _segments(name)):
        return RuleRefusal("not-plain", "the name has an empty segment (a leading, trailing "
                                        "or doubled dot)")
    return None


@dataclass(frozen=True)
class DestinationRules:
    """The service's destination policy: ``destinations.default`` and its rules."""

    default: str = "plain"
    rules: tuple[DestinationRule, ...] = ()

    def check(self, action: str, name: str, roles: Collection[str] = frozenset(), *,
              own_tag: str = "", shown: Collection[str] = ()) -> None:
        """Allow *action* (subscribe or publish) on client destination *name*, or raise
        RuleRefusal. *own_tag* is the session's temporary-name tag; *shown* the other
        clients' temporary reply-to names the gateway showed this session."""
        for temp in _TEMP_PREFIXES:
            if name.startswith(temp):
                problem = plain_problem(name[len(temp):])
                if problem is not None:
                    raise problem
                return  # the client's own: always allowed
        prefix = next((p for p in _PREFIXES if name.startswith(p)), None)
        if prefix is None:
            raise RuleRefusal("not-plain", "use /topic/NAME, /queue/NAME, /temp-queue/NAME or "
                                           "/temp-topic/NAME")
        rest = name[len(prefix):]
        if rest.startswith(TEMP_PREFIX):
            if rest.startswith(f"{TEMP_PREFIX}{own_tag}.") and own_tag:
                return  # its own, written the long way
            if action == "publish" and name in shown:
                return  # a reply-to another client gave, as the gateway showed it
            raise RuleRefusal("temporary", "another client's temporary destination: a "
                                           "client may only SEND to a reply-to the gateway "
                                           "showed it, and never SUBSCRIBE")
        if any(rule.applies(roles) and rule.allows(action, name) for rule in self.rules):
            return
        problem = plain_problem(rest)
        if problem is not None:
            raise problem
        if self.default != "plain":
            raise RuleRefusal("default", "destinations.default is none and no "
                                         "<destination-rule> allows it")

    def roles(self) -> frozenset[str]:
        """Every role some rule names."""
        return frozenset(r for rule in self.rules for r in rule.roles)


def parse_patterns(texts: Iterable[str]) -> tuple[Pattern, ...]:
    return tuple(Pattern.parse(t) for t in texts)
