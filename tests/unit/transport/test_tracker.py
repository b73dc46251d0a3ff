"""The access line: one end= vocabulary for every transport, and the back end's target."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import error
from twisted.logger import LogEvent, globalLogPublisher
from twisted.python.failure import Failure

from kgateway.transport.tracker import ConnectionTracker, end_reason, session_target


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
