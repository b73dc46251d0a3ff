"""Admission: which new clients a service takes, and why it refuses the others.

    new client --> ServiceGate.admit(connection, remote)
                     | per service: connection.limit            --> refuse: 503 / close
                     | per client host: connection.limit.per.address --> refuse: 429 / close
                     | per client host: handshake.rate (token bucket) --> 429 + Retry-After
                     v
                   admitted: held (counted) until ServiceGate.release / tracker.ended

The decisions are pure: counts come from the ConnectionTracker (per service and per client
host), time from an injected clock, and the answer is a :class:`Refusal` (reason, HTTP
status, message, headers) or ``None``. The accept adapters (``transport.accept``) turn a
refusal into an HTTP response (WebSocket) or a closed socket (tcp/ssl).

The client is ``ILink.remote``: after the PROXY protocol and trusted Forwarded headers, and
counted by host, not host:port (a client opens each connection from a new port).

The handshake rate is per service, not per port: accept-options are a service's, the
rate protects what that service's handshakes cost (its back-end connects), and a client
using two services on one port (a page with an AMQP and a JMS connection) is not refused
by one for its use of the other.

The token buckets are hand-written (a dozen lines): the well-kept rate-limit libraries
on PyPI are either asyncio/Redis-bound or hide their clock, and these must run on the
reactor's clock and be tested with a fake one. Their number is bounded: full buckets are
dropped (a full bucket is what a new one would be), then the least recently used.

Refusals are logged through :class:`RefusalLog`, which lets a few lines a second through
per service and reason and sums up the rest, so a flood cannot fill the disk.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.logger import Logger

log = Logger()

Clock = Callable[[], float]

#: refusal reasons (the keys of ConnectionTracker.refused[service])
SERVICE_LIMIT = "service connection limit"
ADDRESS_LIMIT = "address connection limit"
RATE_LIMIT = "handshake rate"
HANDSHAKE_TIMEOUT = "handshake timeout"
TLS_HANDSHAKE_TIMEOUT = "TLS handshake timeout"

#: at most this many clients' token buckets are remembered per service
MAX_BUCKETS = 10_000


def client_host(remote: str) -> str:
    """The host of a ``host:port`` / ``[v6]:port`` address (what per-address limits count)."""
    if remote.startswith("["):
        return remote[1:].partition("]")[0]
    if remote.count(":") == 1:
        return remote.partition(":")[0]
    return remote  # a bare host, or an IPv6 address without a port


@dataclass(frozen=True)
class Limits:
    """A service's admission limits (accept-options); 0 turns one off."""

    connections: int = 0
    per_address: int = 0
    rate: float = 0.0  # handshakes per second per client host
    burst: int = 0  # bucket size; 0: one second's worth of rate (at least 1)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Limits:
        return cls(options["connection.limit"], options["connection.limit.per.address"],
                   options["handshake.rate"], options["handshake.burst"])

    @property
    def bucket_size(self) -> float:
        return float(self.burst or max(1, math.ceil(self.rate)))


@dataclass(frozen=True)
class Refusal:
    """Why a client is refused, and what a WebSocket client is told."""

    reason: str
    status: int
    message: str
    retry_after: int | None = None

    @property
    def headers(self) -> list[tuple[str, str]]:
        return [("Retry-After", str(self.retry_after))] if self.retry_after else []


class TokenBuckets:
    """One token bucket per client host: *rate* tokens a second, up to *size*."""

    def __init__(self, rate: float, size: float, clock: Clock,
                 max_buckets: int = MAX_BUCKETS) -> None:
        self.rate = rate
        self.size = size
        self.clock = clock
        self.max_buckets = max_buckets
        #: host -> (tokens, when); insertion order is least recently used first
        self.buckets: dict[str, tuple[float, float]] = {}

    def take(self, host: str) -> float:
        """Take a token for *host*: 0.0 if there was one, else seconds until there is."""
        now = self.clock()
        tokens, then = self.buckets.pop(host, (self.size, now))
        tokens = min(self.size, tokens + (now - then) * self.rate)
        if tokens >= 1.0:
            tokens -= 1.0
            wait = 0.0
        else:
            wait = (1.0 - tokens) / self.rate
        self.buckets[host] = (tokens, now)
        if len(self.buckets) > self.max_buckets:
            self._prune(now)
        return wait

    def _prune(self, now: float) -> None:
        full = [h for h, (tokens, then) in self.buckets.items()
                if tokens + (now - then) * self.rate >= self.size]
        for host in full:
            del self.buckets[host]
        while len(self.buckets) > self.max_buckets:
            del self.buckets[next(iter(self.buckets))]


class Admission:
    """The decision for one service: limits and the rate, given the live counts."""

    def __init__(self, service: str, limits: Limits, clock: Clock) -> None:
        self.service = service
        self.limits = limits
        self.buckets = TokenBuckets(limits.rate, limits.bucket_size, clock) \
            if limits.rate > 0 else None

    def check(self, host: str, service_live: int, address_live: int) -> Refusal | None:
        """Refuse or admit a new client of *host*, with *service_live* connections to the
        service and *address_live* from *host* already held."""
        limits = self.limits
        if limits.connections and service_live >= limits.connections:
            return Refusal(SERVICE_LIMIT, 503, f"service {self.service!r} is at its limit of "
                                               f"{limits.connections} connections")
        if limits.per_address and address_live >= limits.per_address:
            return Refusal(ADDRESS_LIMIT, 429, f"{host} has {address_live} connections to "
                                               f"service {self.service!r}, its limit")
        if self.buckets is not None:
            wait = self.buckets.take(host)
            if wait:
                return Refusal(RATE_LIMIT, 429,
                               f"{host} opens connections to service {self.service!r} faster "
                               f"than {limits.rate:g}/s", retry_after=max(1, math.ceil(wait)))
        return None


class RefusalLog:
    """Rate-limited refusal logging: per (service, reason), *per_second* lines pass, the rest
    are counted and summed up in the next line that passes."""

    def __init__(self, clock: Clock, per_second: int = 5) -> None:
        self.clock = clock
        self.per_second = per_second
        #: (service, reason) -> (second, lines logged in it, suppressed since the last line)
        self.state: dict[tuple[str, str], tuple[int, int, int]] = {}

    def should_log(self, service: str, reason: str) -> int | None:
        """None: stay silent; else log now, mentioning this many refusals left unlogged."""
        second = int(self.clock())
        key = (service, reason)
        current, lines, suppressed = self.state.get(key, (second, 0, 0))
        if current != second:
            lines = 0
        if lines >= self.per_second:
            self.state[key] = (second, lines, suppressed + 1)
            return None
        self.state[key] = (second, lines + 1, 0)
        return suppressed


class Counts(Protocol):
    """What a gate needs of the ConnectionTracker."""

    def held(self, service: str) -> int: ...

    def held_by(self, service: str, host: str) -> int: ...

    def hold(self, service: str, connection: object, host: str) -> None: ...

    def release(self, connection: object) -> None: ...

    def refuse(self, service: str, reason: str) -> None: ...


class ServiceGate:
    """One service's admission: decides, holds admitted connections, logs and counts
    refusals. Shared by every accept of the service (``ConnectionTracker.gate``)."""

    def __init__(self, service: str, limits: Limits, counts: Counts, clock: Clock,
                 refusal_log: RefusalLog | None = None) -> None:
        self.service = service
        self.counts = counts
        self.admission = Admission(service, limits, clock)
        self.refusal_log = refusal_log or RefusalLog(clock)

    def admit(self, connection: object, remote: str) -> Refusal | None:
        """Admit *connection* from *remote* (held until :meth:`release`), or say why not."""
        host = client_host(remote)
        refusal = self.admission.check(host, self.counts.held(self.service),
                                       self.counts.held_by(self.service, host))
        if refusal is None:
            self.counts.hold(self.service, connection, host)
            return None
        refused(self.counts, self.refusal_log, self.service, remote, refusal.reason,
                refusal.message)
        return refusal

    def release(self, connection: object) -> None:
        self.counts.release(connection)


def refused(counts: Counts, refusal_log: RefusalLog, service: str, peer: str, reason: str,
            message: str) -> None:
    """Count a refusal, and log it unless a flood of them is being summed up."""
    counts.refuse(service, reason)
    unlogged = refusal_log.should_log(service, reason)
    if unlogged is None:
        return
    more = f" ({unlogged} more refused for this reason, not logged)" if unlogged else ""
    log.warn("refusing {peer} for {service}: {reason}: {message}{more}", peer=peer,
             service=service, reason=reason, message=message, more=more)
