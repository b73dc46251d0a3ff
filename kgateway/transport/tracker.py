"""Live client connections per service, and the access-log line each one ends with.

Whatever accepts clients (the accept adapters, udp:// accepts, Enterprise Shield's reverse
connections) adds each connection when it connects and ends it through :meth:`ended`, which
also writes the access log. Health and metrics count them; a drain ends the rest
(``ITrackedConnection``: ``going_away()`` then ``abort()``).

Admission (``transport.admission``) counts here too: each service's gate, the connections
it admitted per service and per client host (held from admission until they end, including
those refused later, by origin or authentication), and the refusals per service and reason.
"""

from __future__ import annotations

import time
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from kgateway.interfaces import IGoingAway, ITrackedConnection
from kgateway.transport.admission import Clock, Limits, RefusalLog, ServiceGate

log = Logger()


class ConnectionTracker:
    """Live client connections per service: health and metrics count them, a drain ends them."""

    def __init__(self) -> None:
        self.live: dict[str, set[ITrackedConnection]] = {}
        self._started: dict[int, float] = {}
        self._idle: list[defer.Deferred[None]] = []
        #: since start, per service: connections accepted, bytes received and sent by
        #: connections that have ended (the metrics service reports them)
        self.accepted: dict[str, int] = {}
        self.received: dict[str, int] = {}
        self.sent: dict[str, int] = {}
        #: admission: per service, the connections admitted and not yet ended, in all and
        #: per client host; refusals per service and reason (for metrics)
        self.held_total: dict[str, int] = {}
        self.held_hosts: dict[str, dict[str, int]] = {}
        self._holds: dict[object, tuple[str, str]] = {}
        self.refused: dict[str, dict[str, int]] = {}
        self.gates: dict[str, ServiceGate] = {}
        self._refusal_log: RefusalLog | None = None

    # admission

    def gate(self, service: str, limits: Limits, clock: Clock) -> ServiceGate:
        """The admission gate of *service*, shared by all its accepts."""
        gate = self.gates.get(service)
        if gate is None:
            gate = self.gates[service] = ServiceGate(service, limits, self, clock,
                                                     self.refusal_log(clock))
        return gate

    def refusal_log(self, clock: Clock) -> RefusalLog:
        """The process's rate-limited refusal log (one, so its limits hold per service)."""
        if self._refusal_log is None:
            self._refusal_log = RefusalLog(clock)
        return self._refusal_log

    def held(self, service: str) -> int:
        return self.held_total.get(service, 0)

    def held_by(self, service: str, host: str) -> int:
        return self.held_hosts.get(service, {}).get(host, 0)

    def hold(self, service: str, connection: object, host: str) -> None:
        self.release(connection)
        self._holds[connection] = (service, host)
        self.held_total[service] = self.held_total.get(service, 0) + 1
        hosts = self.held_hosts.setdefault(service, {})
        hosts[host] = hosts.get(host, 0) + 1

    def release(self, connection: object) -> None:
        """*connection* no longer counts against its service's limits (idempotent)."""
        held = self._holds.pop(connection, None)
        if held is None:
            return
        service, host = held
        self.held_total[service] -= 1
        hosts = self.held_hosts[service]
        hosts[host] -= 1
        if not hosts[host]:
            del hosts[host]

    def count_refusal(self, service: str, reason: str) -> None:
        reasons = self.refused.setdefault(service, {})
        reasons[reason] = reasons.get(reason, 0) + 1

    # live connections

    def add(self, service: str, connection: ITrackedConnection) -> None:
        self.live.setdefault(service, set()).add(connection)
        self._started[id(connection)] = time.monotonic()
        self.accepted[service] = self.accepted.get(service, 0) + 1

    def ended(self, service: str, connection: ITrackedConnection, remote: str,
              received: int, sent: int, end: str) -> None:
        """*connection* is gone: count its bytes and write its access-log line."""
        started = self._started.pop(id(connection), None)
        self.live.get(service, set()).discard(connection)
        self.release(connection)
        self.received[service] = self.received.get(service, 0) + received
        self.sent[service] = self.sent.get(service, 0) + sent
        duration = time.monotonic() - started if started is not None else 0.0
        log.info("access: service={service} peer={peer} duration={duration:.3f}s "
                 "bytes_in={received} bytes_out={sent} end={reason}", service=service,
                 peer=remote, duration=duration, received=received, sent=sent,
                 reason=end or "closed")
        if not self.total():
            waiting, self._idle = self._idle, []
            for d in waiting:
                d.callback(None)

    def counts(self) -> dict[str, int]:
        return {name: len(conns) for name, conns in self.live.items()}

    def total(self) -> int:
        return sum(len(conns) for conns in self.live.values())

    def connections(self) -> list[ITrackedConnection]:
        return [c for conns in self.live.values() for c in conns]

    def when_idle(self) -> defer.Deferred[None]:
        """Fires once no client connection is left (at once if none is)."""
        if not self.total():
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._idle.append(d)
        return d


def session_going_away(session: Any) -> None:
    """Call a session's going_away() if it provides IGoingAway; one failure is logged."""
    if session is not None and IGoingAway.providedBy(session):
        try:
            session.going_away()
        except Exception:
            log.failure("going_away() of {session} failed", session=session)
