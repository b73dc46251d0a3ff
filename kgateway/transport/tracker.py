"""Live client connections per service, their counters, and the access-log line each ends with.

    accept adapter --add(service, conn, remote)--> Record  (one per client connection)
         |  record.count(rx, tx) as bytes flow   ----------> Totals of its service (live)
         |  tracker.opened(record)               ----------> handshake-time histogram
         +- tracker.ended(service, conn, ...)    ----------> duration histogram, access log
    refusals before a session exists  --refuse(service, reason)--> refused[service][reason]

Whatever accepts clients (the accept adapters, udp:// accepts, Enterprise Shield's reverse
connections) adds each connection when it connects and ends it through :meth:`ended`, which
also writes the access log. Health, metrics and the status page read the counters; a drain
ends the connections (``ITrackedConnection``: ``going_away()`` then ``abort()``).

Bytes are counted as they flow, cheaply: each connection's :class:`Record` adds to its own
counters and to its service's :class:`Totals` (four integer additions per chunk, no
lookups). Paths that have no record (a fast data path batching its counts) call
:meth:`ConnectionTracker.count`. At :meth:`ended` whatever the caller reports beyond what
was counted live (WebSocket framing and handshake bytes, paths that only count at the end)
is added, so the totals end up at the wire-level numbers the access log shows.

The histograms are plain bucket counts (what a Prometheus histogram exposes), kept here so
that this floor needs no metrics library: ``kgateway.services.metrics`` renders them.

Admission (``transport.admission``) counts here too: each service's gate, the connections
it admitted per service and per client host (held from admission until they end, including
those refused later, by origin or authentication), and the refusals per service and reason.

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

import bisect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer, error
from twisted.logger import Logger
from twisted.python.failure import Failure

from kgateway.interfaces import IGoingAway, ITrackedConnection
from kgateway.transport.admission import Clock, Limits, RefusalLog, ServiceGate

log = Logger()

#: connection lifetimes, seconds: from a quick request to a day-long subscription
DURATION_BUCKETS = (0.01, 0.1, 1.0, 10.0, 60.0, 600.0, 3600.0, 6 * 3600.0, 24 * 3600.0)
#: from the client's request (WebSocket upgrade, TCP accept) until its session is open:
#: authentication and the back-end connect are in there
HANDSHAKE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

#: refusal reasons the gateway itself uses (the metrics' ``reason`` label)
ORIGIN, AUTH, FORBIDDEN, TLS, PROXY = "origin", "auth", "forbidden", "tls", "proxy"


class Histogram:
    """Bucket counts, a sum and a count: a Prometheus histogram without the library."""

    __slots__ = ("bounds", "counts", "sum", "count")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """``[(le, cumulative count)...]`` ending with ``("+Inf", count)``."""
        total, out = 0, []
        for bound, n in zip((*(repr(float(b)) for b in self.bounds), "+Inf"), self.counts,
                            strict=True):
            total += n
            out.append((bound, total))
        return out


class Totals:
    """Bytes received from and sent to clients by one service, since start (live)."""

    __slots__ = ("received", "sent")

    def __init__(self) -> None:
        self.received = 0
        self.sent = 0


class Record:
    """One live client connection as the tracker, metrics and the status page see it."""

    __slots__ = ("service", "connection", "remote", "started", "wall", "received", "sent",
                 "handshake", "backend", "totals")

    def __init__(self, service: str, connection: Any, remote: str, totals: Totals,
                 started: float, wall: float) -> None:
        self.service = service
        self.connection = connection
        self.remote = remote
        self.started = started  # the tracker's clock (monotonic)
        self.wall = wall  # time.time() at the start, for people
        self.received = 0
        self.sent = 0
        self.handshake: float | None = None
        #: the back end it is relayed to (a target URI, a broker connection), if any
        self.backend = ""
        self.totals = totals

    def count(self, received: int, sent: int) -> None:
        """Bytes that just flowed on this connection (payload or wire, as the caller sees)."""
        self.received += received
        self.sent += sent
        totals = self.totals
        totals.received += received
        totals.sent += sent


class _NoRecord:
    """Where links not tracked (the gateway's own back-end links) count: nowhere."""

    __slots__ = ()
    backend = ""

    def count(self, received: int, sent: int) -> None:
        pass


#: the record of a link nobody tracks
NO_RECORD: Any = _NoRecord()


def note_backend(link: Any, backend: str) -> None:
    """Say which back end the client on *link* is relayed to (for the status page)."""
    record = getattr(link, "record", None)
    if isinstance(record, Record):
        record.backend = backend


@dataclass
class _Service:
    totals: Totals = field(default_factory=Totals)
    duration: Histogram = field(default_factory=lambda: Histogram(DURATION_BUCKETS))
    handshake: Histogram = field(default_factory=lambda: Histogram(HANDSHAKE_BUCKETS))


class ConnectionTracker:
    """Live client connections per service: health and metrics count them, a drain ends them."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.wall = wall
        self.live: dict[str, set[ITrackedConnection]] = {}
        self.records: dict[int, Record] = {}
        self._idle: list[defer.Deferred[None]] = []
        self._services: dict[str, _Service] = {}
        #: since start, per service: connections accepted
        self.accepted: dict[str, int] = {}
        #: since start, per service and reason: clients refused before a session was
        #: made (origin, auth, forbidden, tls, proxy, and admission limits)
        self.refused: dict[str, dict[str, int]] = {}
        #: admission: per service, the connections admitted and not yet ended, in all and
        #: per client host
        self.held_total: dict[str, int] = {}
        self.held_hosts: dict[str, dict[str, int]] = {}
        self._holds: dict[object, tuple[str, str]] = {}
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

    # live connections

    def _service(self, service: str) -> _Service:
        entry = self._services.get(service)
        if entry is None:
            entry = self._services[service] = _Service()
        return entry

    # -- connections -------------------------------------------------------------------------

    def add(self, service: str, connection: ITrackedConnection, remote: str = "",
            started: float | None = None) -> Record:
        """Track *connection*; its Record counts its bytes (``record.count(rx, tx)``).

        *started*: when the client's request arrived (the tracker's clock), if before now
        (a WebSocket is tracked once authenticated; its handshake time starts earlier).
        """
        self.live.setdefault(service, set()).add(connection)
        now = self.clock()
        record = Record(service, connection, remote, self._service(service).totals,
                        now if started is None else started,
                        self.wall() - (0.0 if started is None else now - started))
        self.records[id(connection)] = record
        self.accepted[service] = self.accepted.get(service, 0) + 1
        return record

    def opened(self, connection: ITrackedConnection) -> None:
        """*connection*'s session is open: its handshake time goes into the histogram."""
        record = self.records.get(id(connection))
        if record is not None and record.handshake is None:
            record.handshake = self.clock() - record.started
            self._service(record.service).handshake.observe(record.handshake)

    def ended(self, service: str, connection: ITrackedConnection, remote: str,
              received: int, sent: int, end: str | Failure | None,
              target: str | None = None) -> None:
        """*connection* is gone: count what its bytes add to the live counts, observe its
        duration and write its access-log line. *received* and *sent* are its totals; *end*
        is mapped onto the access log's vocabulary (:func:`end_reason`); *target* is the
        back end its session reached, if any (:func:`session_target`)."""
        record = self.records.pop(id(connection), None)
        self.live.get(service, set()).discard(connection)
        self.release(connection)
        entry = self._service(service)
        totals = entry.totals
        if record is not None:
            duration = self.clock() - record.started
            totals.received += max(0, received - record.received)
            totals.sent += max(0, sent - record.sent)
            entry.duration.observe(duration)
        else:
            duration = 0.0
            totals.received += received
            totals.sent += sent
        log.info("access: service={service} peer={peer} target={target} "
                 "duration={duration:.3f}s bytes_in={received} bytes_out={sent} end={end}",
                 service=service, peer=remote, target=target or "-",
                 duration=round(duration, 3), received=received, sent=sent,
                 end=end_reason(end), log_kind="access")
        if not self.total():
            waiting, self._idle = self._idle, []
            for d in waiting:
                d.callback(None)

    # -- counters ------------------------------------------------------------------------------

    def count(self, service: str, received: int, sent: int) -> None:
        """Bytes of *service* counted outside a Record (batched by a fast path)."""
        totals = self._service(service).totals
        totals.received += received
        totals.sent += sent

    def refuse(self, service: str, reason: str) -> None:
        """A client of *service* was refused for *reason* before any session existed."""
        reasons = self.refused.setdefault(service, {})
        reasons[reason] = reasons.get(reason, 0) + 1

    @property
    def received(self) -> dict[str, int]:
        """Bytes received from clients per service, live connections included."""
        return {name: s.totals.received for name, s in self._services.items()}

    @property
    def sent(self) -> dict[str, int]:
        """Bytes sent to clients per service, live connections included."""
        return {name: s.totals.sent for name, s in self._services.items()}

    def durations(self) -> dict[str, Histogram]:
        return {name: s.duration for name, s in self._services.items()}

    def handshakes(self) -> dict[str, Histogram]:
        return {name: s.handshake for name, s in self._services.items()}

    # -- views ----------------------------------------------------------------------------------

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
