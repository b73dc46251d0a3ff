"""From a JNDI provider URL, as pasted from a Kaazing or ActiveMQ configuration, to the
brokers' STOMP connectors the gateway talks to.

    env.java.naming.provider.url                         the gateway connects to
    ----------------------------                         -----------------------
    tcp://mq:61616              (OpenWire)           ->  stomp://mq:61613
    ssl://mq:61617              (OpenWire over TLS)  ->  stomp+ssl://mq:61612
    failover:(tcp://a:61616,tcp://b:61616)?randomize=false
                                                     ->  stomp://a:61613, stomp://b:61613
                                                         (in that order: randomize=false)
    stomp://mq:61613            (already STOMP)      ->  itself

The host comes from the OpenWire URL; the port is ActiveMQ's default STOMP port (61613, or
61612 for STOMP over TLS), or the service's ``broker.stomp.port`` /
``broker.stomp.ssl.port``. Of the failover transport's options, ``randomize`` (ActiveMQ's
default: true), ``initialReconnectDelay`` and ``maxReconnectDelay`` (milliseconds) are used;
the others tune OpenWire's own reconnects, mean nothing to STOMP connections and are
reported as ignored. Options of a nested URL (``tcp://a:61616?wireFormat...``) are
OpenWire's and are dropped.

Parsed by hand: ActiveMQ's composite-URI grammar (``failover:(uri,uri)?options``) is Java's
own and no Python library reads it; ``urllib.parse`` handles each nested URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import parse_qsl, urlsplit

from kgateway.config import URI, parse_uri

#: ActiveMQ's default STOMP connector ports (activemq.xml of the distribution)
STOMP_PORT = 61613
STOMP_SSL_PORT = 61612

_PLAIN = frozenset({"tcp", "nio", "auto", "auto+nio"})
_TLS = frozenset({"ssl", "nio+ssl", "auto+ssl", "auto+nio+ssl"})
_STOMP = frozenset({"stomp", "stomp+ssl"})
#: failover options the gateway applies to its own STOMP reconnects
USED_OPTIONS = ("randomize", "initialReconnectDelay", "maxReconnectDelay")


@dataclass(frozen=True)
class ProviderBrokers:
    """What a provider URL says about the brokers."""

    #: the STOMP connectors, in the URL's order
    brokers: tuple[URI, ...]
    #: True if the URL named OpenWire brokers, whose STOMP connectors were derived
    derived: bool
    #: start each broker connection at a random broker (failover's ``randomize``)
    randomize: bool = False
    #: failover's initialReconnectDelay / maxReconnectDelay, in seconds, if given
    reconnect_delay: float | None = None
    reconnect_delay_maximum: float | None = None
    #: failover options given but without meaning for STOMP connections
    ignored: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


def _split_composite(text: str) -> tuple[list[str], str]:
    """``failover:(a,b)?opts`` or ``failover:a,b?opts`` -> (["a", "b"], "opts")."""
    rest = text[len("failover:"):].strip()
    if rest.startswith("("):
        close = rest.rfind(")")
        if close < 0:
            raise ValueError(f"bad failover URL {text!r}: no closing parenthesis")
        inner, tail = rest[1:close], rest[close + 1:]
        if tail and not tail.startswith("?"):
            raise ValueError(f"bad failover URL {text!r}: expected ?options after ')'")
        query = tail[1:]
    else:
        inner, _, query = rest.partition("?")
    parts = [p.strip() for p in inner.split(",") if p.strip()]
    if not parts:
        raise ValueError(f"bad failover URL {text!r}: no broker in it")
    return parts, query


def _broker(text: str, stomp_port: int, stomp_ssl_port: int) -> tuple[URI, bool]:
    """One nested URL -> (its STOMP connector, derived?)."""
    try:
        parts = urlsplit(text.strip())
        scheme = parts.scheme.lower()
        host = parts.hostname
    except ValueError as e:
        raise ValueError(f"bad broker URL {text!r}: {e}") from None
    if scheme in _STOMP:
        return parse_uri(text), False
    if scheme == "vm":
        raise ValueError(f"{text} is an in-process (vm://) broker, which the gateway cannot "
                         "reach: name the broker's host")
    if scheme not in _PLAIN | _TLS:
        raise ValueError(f"{text} is not an ActiveMQ OpenWire or STOMP URL (expected tcp://, "
                         "ssl://, nio://, stomp:// ...)")
    if not host:
        raise ValueError(f"bad broker URL {text!r}: no host")
    if scheme in _TLS:
        return parse_uri(f"stomp+ssl://{_hostport(host, stomp_ssl_port)}"), True
    return parse_uri(f"stomp://{_hostport(host, stomp_port)}"), True


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _bool(name: str, value: str) -> bool:
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError(f"failover option {name}={value!r}: expected true or false")


def _millis(name: str, value: str) -> float:
    try:
        ms = int(value)
    except ValueError:
        raise ValueError(f"failover option {name}={value!r}: expected milliseconds") from None
    if ms <= 0:
        raise ValueError(f"failover option {name}={value!r}: expected milliseconds above 0")
    return ms / 1000


def parse_provider_url(text: str, *, stomp_port: int = STOMP_PORT,
                       stomp_ssl_port: int = STOMP_SSL_PORT) -> ProviderBrokers:
    """The brokers named by *text*; ValueError saying what is wrong otherwise."""
    text = text.strip()
    if not text.lower().startswith("failover:"):
        uri, derived = _broker(text, stomp_port, stomp_ssl_port)
        return ProviderBrokers((uri,), derived)
    nested, query = _split_composite(text)
    brokers: list[URI] = []
    derived = False
    for part in nested:
        uri, was_derived = _broker(part, stomp_port, stomp_ssl_port)
        derived = derived or was_derived
        if any(b.authority == uri.authority and b.scheme == uri.scheme for b in brokers):
            continue  # two OpenWire connectors of one host give one STOMP connector
        brokers.append(uri)
    randomize = True  # ActiveMQ's default
    delay = maximum = None
    ignored: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name == "randomize":
            randomize = _bool(name, value)
        elif name == "initialReconnectDelay":
            delay = _millis(name, value)
        elif name == "maxReconnectDelay":
            maximum = _millis(name, value)
        else:
            ignored[name] = value
    return ProviderBrokers(tuple(brokers), derived, randomize, delay, maximum,
                           MappingProxyType(ignored))
