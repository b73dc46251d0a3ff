"""The gateway's own balancing over a service's several ``<connect>`` targets.

    client --> [gateway: proxy service] --pick()--> tcp://broker-a:5672   up,   3 active
                                                     tcp://broker-b:5672   down  (probe every 5s)
                                                     tcp://broker-c:5672   up,   2 active

A :class:`Balancer` picks a target per new client (``round-robin`` or
``least-connections``) among the targets it believes up. A target goes down when a connect to
it fails (passive) or when its probe fails (active: a plain TCP connect every
``connect.probe.interval``), and comes back when a probe succeeds. When every target is down
the balancer still offers them all, in turn: a target may be back before its next probe, and a
single-target service must keep trying its only back end.

This is how a DMZ gateway spreads clients over internal gateways or brokers without a
balancer in front of them. Kaazing's ``<cluster>`` + ``balancer`` service works differently:
it answers the WebSocket handshake with a redirect to a cluster member, which browsers do not
follow on WebSocket handshakes, so it only helps Kaazing's own client libraries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer, task
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from kgateway.config import URI

log = Logger()

STRATEGIES = ("round-robin", "least-connections")

#: probe(reactor, uri, timeout) -> Deferred firing when the target accepted a TCP connection
Probe = Callable[[Any, URI, float], "defer.Deferred[None]"]


def parse_strategy(text: str) -> str:
    strategy = text.strip().lower()
    if strategy not in STRATEGIES:
        raise ValueError(f"expected one of {', '.join(STRATEGIES)}, not {text!r}")
    return strategy


def tcp_probe(reactor: Any, uri: URI, timeout: float) -> defer.Deferred[None]:
    """Connect and hang up at once: the target's port accepts connections."""
    endpoint = HostnameEndpoint(reactor, uri.host, uri.port, timeout=timeout)

    def connected(proto: Protocol) -> None:
        assert proto.transport is not None
        proto.transport.loseConnection()

    return connectProtocol(endpoint, Protocol()).addCallback(connected)


@dataclass(eq=False)  # targets are compared by identity: two may share a URI
class Target:
    uri: URI
    up: bool = True
    active: int = 0
    probing: bool = False
    last_error: str = ""
    #: connects to it that failed, since start (probes not included)
    failures: int = 0

    def __str__(self) -> str:
        return str(self.uri)


class Balancer:
    """Targets of one service, their state, and the choice of one for each new client."""

    def __init__(self, reactor: Any, uris: Sequence[URI], *, strategy: str = "round-robin",
                 probe_interval: float = 0.0, probe_timeout: float = 5.0,
                 probe: Probe = tcp_probe, name: str = "") -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}")
        self.reactor = reactor
        self.targets = [Target(uri) for uri in uris]
        self.strategy = strategy
        self.probe_interval = probe_interval
        self.probe_timeout = probe_timeout
        self.probe = probe
        self.name = name
        self._next = 0
        self._loop: task.LoopingCall | None = None

    # choosing

    def pick(self, exclude: Sequence[Target] = ()) -> Target | None:
        """The target for a new client, or None when every one is in *exclude*."""
        n = len(self.targets)
        order = [self.targets[(self._next + i) % n] for i in range(n)]
        candidates = [t for t in order if t not in exclude]
        if not candidates:
            return None
        up = [t for t in candidates if t.up]
        pool = up or candidates
        if self.strategy == "least-connections":
            chosen = min(pool, key=lambda t: t.active)  # min keeps the rotation's order on ties
        else:
            chosen = pool[0]
        self._next = (self.targets.index(chosen) + 1) % n
        return chosen

    def untried(self, exclude: Sequence[Target]) -> bool:
        """Is any target not in *exclude* (and up, unless none is)? Changes nothing."""
        left = [t for t in self.targets if t not in exclude]
        return any(t.up for t in left) or (bool(left) and not any(t.up for t in self.targets))

    def connected(self, target: Target) -> None:
        target.active += 1
        self._mark(target, True, "")

    def released(self, target: Target) -> None:
        target.active = max(0, target.active - 1)

    def failed(self, target: Target, why: str) -> None:
        """A connect to *target* failed: stop offering it until a probe says it is back."""
        target.failures += 1
        self._mark(target, False, why)

    def _mark(self, target: Target, up: bool, why: str) -> None:
        if target.up == up:
            target.last_error = why or target.last_error
            return
        target.up = up
        target.last_error = why
        if up:
            log.info("{service}: target {target} is up", service=self.name, target=str(target))
        else:
            log.warn("{service}: target {target} is down: {why}", service=self.name,
                     target=str(target), why=why)

    # state for the health service

    def status(self) -> dict[str, dict[str, Any]]:
        return {str(t): {"up": t.up, "active": t.active, "connect_failures": t.failures,
                         **({"error": t.last_error} if not t.up else {})}
                for t in self.targets}

    def reachable(self) -> bool:
        return any(t.up for t in self.targets)

    # probing

    def start(self) -> None:
        if self.probe_interval > 0 and self._loop is None:
            self._loop = task.LoopingCall(self.probe_all)
            self._loop.clock = self.reactor
            self._loop.start(self.probe_interval, now=True)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def probe_all(self) -> None:
        for target in self.targets:
            # A TCP probe says nothing about a UDP port: those rely on connect failures.
            if not target.probing and target.uri.scheme != "udp":
                self._probe(target)

    def _probe(self, target: Target) -> None:
        target.probing = True
        try:
            d = self.probe(self.reactor, target.uri, self.probe_timeout)
        except Exception as e:  # a probe that cannot even start is a failed probe
            d = defer.fail(e)

        def done(result: Any) -> None:
            target.probing = False
            if isinstance(result, Failure):
                self._mark(target, False, f"probe: {result.getErrorMessage()}")
            else:
                self._mark(target, True, "")

        d.addBoth(done)
