"""The ConnectionTracker: live bytes, refusals, histograms, records, and the access line
(one end= vocabulary for every transport, and the back end's target)."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import error
from twisted.logger import LogEvent, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import implementer

from kgateway.interfaces import ITrackedConnection
from kgateway.transport.tracker import (
    NO_RECORD,
    ConnectionTracker,
    Histogram,
    Record,
    end_reason,
    note_backend,
    session_target,
)


@implementer(ITrackedConnection)
class Conn:
    def going_away(self) -> None:
        pass

    def abort(self) -> None:
        pass


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_bytes_count_live_and_the_end_adds_only_what_was_not_counted() -> None:
    tracker = ConnectionTracker()
    a, b = Conn(), Conn()
    ra = tracker.add("svc", a, "192.0.2.1:1")
    rb = tracker.add("svc", b, "192.0.2.2:2")
    ra.count(10, 0)
    ra.count(0, 30)
    rb.count(5, 5)
    assert tracker.received == {"svc": 15} and tracker.sent == {"svc": 35}
    assert (ra.received, ra.sent) == (10, 30)
    # a's wire totals include 4 bytes of framing the live counts did not see
    tracker.ended("svc", a, "192.0.2.1:1", 14, 30, "close 1000")
    assert tracker.received == {"svc": 19} and tracker.sent == {"svc": 35}
    # a path that never counts live reports everything at the end
    c = Conn()
    tracker.add("svc", c)
    tracker.ended("svc", c, "192.0.2.3:3", 100, 200, "")
    assert tracker.received == {"svc": 119} and tracker.sent == {"svc": 235}
    # a fast path counting in batches, without a record
    tracker.count("svc", 1, 2)
    assert tracker.received == {"svc": 120} and tracker.sent == {"svc": 237}
    assert set(tracker.records) == {id(b)}


def test_refusals_per_service_and_reason() -> None:
    tracker = ConnectionTracker()
    tracker.refuse("echo", "origin")
    tracker.refuse("echo", "origin")
    tracker.refuse("echo,metrics", "tls")
    assert tracker.refused == {"echo": {"origin": 2}, "echo,metrics": {"tls": 1}}


def test_handshake_and_duration_histograms_use_the_tracker_clock() -> None:
    clock = Clock()
    tracker = ConnectionTracker(clock=clock)
    conn = Conn()
    tracker.add("svc", conn)
    clock.now = 0.03
    tracker.opened(conn)
    tracker.opened(conn)  # once only
    clock.now = 75.0
    tracker.ended("svc", conn, "x", 0, 0, "")
    handshake = tracker.handshakes()["svc"]
    assert handshake.count == 1 and abs(handshake.sum - 0.03) < 1e-9
    assert dict(handshake.cumulative())["0.025"] == 0
    assert dict(handshake.cumulative())["0.05"] == 1
    duration = tracker.durations()["svc"]
    assert dict(duration.cumulative())["60.0"] == 0
    assert dict(duration.cumulative())["600.0"] == 1
    assert duration.cumulative()[-1] == ("+Inf", 1)


def test_histogram_bucket_edges_are_inclusive() -> None:
    h = Histogram((1.0, 2.0))
    for value in (1.0, 1.5, 2.0, 9.0):
        h.observe(value)
    assert h.cumulative() == [("1.0", 1), ("2.0", 3), ("+Inf", 4)]
    assert h.sum == 13.5


def test_back_end_notes_reach_tracked_links_only() -> None:
    tracker = ConnectionTracker()

    class Link:
        record = NO_RECORD

    tracked, untracked = Link(), Link()
    tracked.record = tracker.add("svc", Conn(), "192.0.2.1:1")
    note_backend(tracked, "tcp://b:1")
    note_backend(untracked, "tcp://b:1")
    note_backend(object(), "tcp://b:1")
    assert isinstance(tracked.record, Record) and tracked.record.backend == "tcp://b:1"
    NO_RECORD.count(1, 1)  # counts nowhere


def test_a_connection_tracked_after_its_request_counts_its_handshake_from_the_request() -> None:
    clock = Clock()
    tracker = ConnectionTracker(clock=clock, wall=lambda: 1000.0 + clock.now)
    conn = Conn()
    clock.now = 2.0  # authenticated 2 s after the upgrade request arrived at 0
    record = tracker.add("svc", conn, started=0.0)
    assert record.started == 0.0 and record.wall == 1000.0
    clock.now = 2.5
    tracker.opened(conn)
    assert tracker.handshakes()["svc"].sum == 2.5



@pytest.mark.parametrize(("said", "end"), [
    ("close=1000", "close=1000"),
    ("close 1001", "close=1001"),  # the adapters' old spelling
    ("dropped", "dropped"),
    (Failure(error.ConnectionDone()), "eof"),
    (Failure(error.ConnectionLost()), "reset"),
    (error.TimeoutError(), "timeout"),
    (ConnectionResetError(), "reset"),
    ("Connection was closed cleanly.", "eof"),
    ("Connection to the other side was lost in a non-clean fashion: Connection lost.", "reset"),
    ("idle timeout", "timeout"),
    ("refused", "refused"),
    ("gateway stopping", "stopping"),
    ("gateway shutting down", "stopping"),
    ("", "eof"),
    (None, "eof"),
    ("something odd", "error"),
    (ValueError("x"), "error"),
])
def test_every_reason_maps_onto_the_vocabulary(said: Any, end: str) -> None:
    assert end_reason(said) == end


def test_the_target_is_whatever_the_session_reached() -> None:
    class Session:
        target = "tcp://db:5432"

    assert session_target(Session()) == "tcp://db:5432"
    assert session_target(object()) is None and session_target(None) is None


def test_the_access_line_has_target_and_end() -> None:
    events: list[LogEvent] = []
    globalLogPublisher.addObserver(events.append)
    try:
        tracker = ConnectionTracker()
        connection: Any = object()
        tracker.add("proxy", connection)
        tracker.ended("proxy", connection, "198.51.100.7:40000", 3, 4,
                      Failure(error.ConnectionDone()), target="tcp://db:5432")
        tracker.add("echo", connection)
        tracker.ended("echo", connection, "198.51.100.7:40001", 1, 1, "close 1000")
    finally:
        globalLogPublisher.removeObserver(events.append)
    access = [e for e in events if e.get("log_kind") == "access"]
    assert [(e["service"], e["target"], e["end"]) for e in access] == [
        ("proxy", "tcp://db:5432", "eof"), ("echo", "-", "close=1000")]
    assert tracker.received == {"proxy": 3, "echo": 1}
