"""Live client connections per service, and the access-log line each one ends with.

Whatever accepts clients (the accept adapters, udp:// accepts, Enterprise Shield's reverse
connections) adds each connection when it connects and ends it through :meth:`ended`, which
also writes the access log. Health and metrics count them; a drain ends the rest
(``ITrackedConnection``: ``going_away()`` then ``abort()``).

The access line's ``end=`` has one vocabulary, whatever the transport (:func:`end_reason`
maps what the adapters say onto it):

    close=CODE   a WebSocket close handshake with this code (1000 normal, 1001 going away...)
    dropped      a WebSocket connection that ended without a close handshake
    eof          a TCP connection closed cleanly (FIN)
    reset        a TCP connection lost uncleanly (RST, a broken pipe)
    timeout      ended by an idle or inactivity timeout
    refused      the session refused the client (its back end, credentials...)
    stopping     the gateway stopped with the connection still open
    error        anything else (the log line before says what)

``target=`` is the back end the session reached (``tcp://db:5432``), or ``-``.
"""

from __future__ import annotations

import time
from typing import Any

from twisted.internet import defer, error
from twisted.logger import Logger
from twisted.python.failure import Failure

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
              received: int, sent: int, end: str | Failure | None,
              target: str | None = None) -> None:
        """*connection* is gone: count its bytes and write its access-log line.

        *end* is mapped onto the access log's vocabulary (:func:`end_reason`); *target* is
        the back end its session reached, if any (:func:`session_target`)."""
        started = self._started.pop(id(connection), None)
        self.live.get(service, set()).discard(connection)
        self.received[service] = self.received.get(service, 0) + received
        self.sent[service] = self.sent.get(service, 0) + sent
        duration = time.monotonic() - started if started is not None else 0.0
        log.info("access: service={service} peer={peer} target={target} "
                 "duration={duration:.3f}s bytes_in={received} bytes_out={sent} end={end}",
                 service=service, peer=remote, target=target or "-",
                 duration=round(duration, 3), received=received, sent=sent,
                 end=end_reason(end), log_kind="access")
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


#: what adapters said before the vocabulary, and Twisted's prose, by their start
_PROSE = (
    ("close ", None), ("dropped", "dropped"), ("gateway stop", "stopping"),
    ("gateway shutting", "stopping"), ("idle", "timeout"), ("refused", "refused"),
    ("connection was closed cleanly", "eof"), ("closed", "eof"),
    ("connection to the other side was lost", "reset"), ("connection lost", "reset"),
    ("user timeout", "timeout"), ("timeout", "timeout"),
)
VOCABULARY = frozenset({"dropped", "eof", "reset", "timeout", "refused", "stopping", "error"})


def end_reason(end: str | Failure | BaseException | None) -> str:
    """How a connection ended, in the access log's vocabulary (module docstring)."""
    if isinstance(end, Failure):
        end = end.value
    if isinstance(end, BaseException):
        if isinstance(end, error.ConnectionDone):
            return "eof"
        if isinstance(end, (error.TimeoutError, defer.TimeoutError)):
            return "timeout"
        if isinstance(end, error.ConnectionLost | ConnectionError):
            return "reset"
        return "error"
    text = (end or "").strip()
    if not text:
        return "eof"
    if text in VOCABULARY or text.startswith("close="):
        return text
    lower = text.lower()
    for start, word in _PROSE:
        if lower.startswith(start):
            if word is None:  # "close 1000"
                code = lower[len(start):].split()[0] if lower[len(start):].split() else ""
                return f"close={code}" if code.isdigit() else "dropped"
            return word
    return "error"


def session_target(session: Any) -> str | None:
    """The back end a session reached (its ``target`` attribute: a URI, a balancer Target
    or a string), for the access line; None if it has none."""
    target = getattr(session, "target", None)
    return str(target) if target is not None else None


def session_going_away(session: Any) -> None:
    """Call a session's going_away() if it provides IGoingAway; one failure is logged."""
    if session is not None and IGoingAway.providedBy(session):
        try:
            session.going_away()
        except Exception:
            log.failure("going_away() of {session} failed", session=session)
