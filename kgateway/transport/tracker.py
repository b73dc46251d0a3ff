"""Live client connections per service, and the access-log line each one ends with.

Whatever accepts clients (the accept adapters, udp:// accepts, Enterprise Shield's reverse
connections) adds each connection when it connects and ends it through :meth:`ended`, which
also writes the access log. Health and metrics count them; a drain ends the rest
(``ITrackedConnection``: ``going_away()`` then ``abort()``).
"""

from __future__ import annotations

import time
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from kgateway.interfaces import IGoingAway, ITrackedConnection

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

    def add(self, service: str, connection: ITrackedConnection) -> None:
        self.live.setdefault(service, set()).add(connection)
        self._started[id(connection)] = time.monotonic()
        self.accepted[service] = self.accepted.get(service, 0) + 1

    def ended(self, service: str, connection: ITrackedConnection, remote: str,
              received: int, sent: int, end: str) -> None:
        """*connection* is gone: count its bytes and write its access-log line."""
        started = self._started.pop(id(connection), None)
        self.live.get(service, set()).discard(connection)
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
