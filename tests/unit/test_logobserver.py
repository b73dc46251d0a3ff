"""kgateway.logobserver: the same text as Twisted's observers, byte for byte, written once
per reactor turn (at once when urgent, outside the reactor, or at shutdown and exit)."""

from __future__ import annotations

import io
import json
import string
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from twisted.application.service import Application
from twisted.internet import error
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import (
    ILogObserver,
    LogEvent,
    Logger,
    LogLevel,
    eventAsJSON,
    formatEventAsClassicLogText,
    formatTime,
    globalLogPublisher,
    jsonFileLogObserver,
    textFileLogObserver,
    timeFormatRFC3339,
)
from twisted.python.failure import Failure
from twisted.scripts.twistd import ServerOptions

from kgateway import tap
from kgateway.logobserver import (
    MAX_PENDING,
    CachedTime,
    LineObserver,
    classic_line,
    json_observer,
    text_format,
    text_observer,
)
from kgateway.transport.tracker import ConnectionTracker
from tests.helpers import gateway_xml, service_xml

NOW = 1_764_518_400.25  # 2025-11-30T16:00:00.25Z


def twisted_text(event: LogEvent) -> str | None:
    """What twistd's own observer (``textFileLogObserver(out)``) writes for *event*."""
    out = io.StringIO()
    textFileLogObserver(out)(event)
    return out.getvalue() or None


def ours(event: LogEvent) -> str | None:
    return text_format()(event)


def emitted(fmt: str, **fields: Any) -> LogEvent:
    """The event ``Logger.info(fmt, **fields)`` emits (what reaches the observers)."""
    events: list[LogEvent] = []
    Logger(namespace="kgateway.test", observer=events.append).info(fmt, **fields)
    return events[0]


# -- the text: Twisted's, byte for byte ------------------------------------------------------


def test_the_access_line_is_twisteds_line() -> None:
    events: list[LogEvent] = []
    globalLogPublisher.addObserver(events.append)
    try:
        tracker = ConnectionTracker()
        connection: Any = object()
        tracker.add("relay", connection)
        tracker.ended("relay", connection, "127.0.0.1:40000", 1234, 56789,
                      Failure(error.ConnectionDone()), target="tcp://127.0.0.1:5000")
        tracker.add("echo", connection)
        tracker.ended("echo", connection, "[::1]:40001", 0, 0, "close 1000")
    finally:
        globalLogPublisher.removeObserver(events.append)
    access = [e for e in events if e.get("log_kind") == "access"]
    assert len(access) == 2
    for event in access:
        line = ours(event)
        assert line is not None and line == twisted_text(event)
        assert " [kgateway.transport.tracker#info] access: service=" in line


@pytest.mark.parametrize("event", [
    emitted("plain text, no fields"),
    emitted("{a!r} {b!s} {c!a} {d:>8.2f} {e:{w}} {{literal}}", a="x'y", b=3, c="é",
            d=2.5, e="pad", w=6),
    emitted("{obj.real} {seq[1]} {mapping[key]}", obj=3, seq=[1, 2], mapping={"key": "v"}),
    emitted("lines\nof text\n", n=1),
    emitted("a call: {f()} and {g}", f=lambda: "called", g="plain"),
    emitted("missing {field}"),
    emitted("{0} positional"),
    emitted("{x:d} a bad spec", x="text"),
    emitted(""),
    {"log_format": "no time, no level, no namespace"},
    {"log_format": "a system", "log_system": "HTTPChannel,3,127.0.0.1", "log_time": NOW},
    {"log_format": b"bytes {x}", "x": 1, "log_time": NOW},
    {"log_format": None, "log_time": NOW},
    {"message": ("a legacy event",), "log_time": NOW},
    {"log_format": "{x}", "x": "flattened", "log_flattened": {"x!:": "FLAT"}, "log_time": NOW},
    {"log_format": "{x}", "x": 1, "log_time": None, "log_level": LogLevel.warn},
], ids=lambda e: repr(e.get("log_format"))[:40])
def test_every_kind_of_event_is_twisteds_text(event: LogEvent) -> None:
    assert ours(event) == twisted_text(event)


def test_an_event_with_a_failure_has_twisteds_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        failure = Failure()
    events: list[LogEvent] = []
    Logger(namespace="kgateway.test", observer=events.append).failure(
        "it failed: {what}", failure, what="this")
    line = ours(events[0])
    assert line == twisted_text(events[0])
    assert line is not None and "\n\tTraceback" in line and "ValueError: boom" in line


_names = st.sampled_from(["a", "b", "peer", "log_namespace", "missing"])
_specs = st.sampled_from(["", ":>6", ":.3f", ":d", ":x", "!r", "!s", "!a", "!r:>10", ":{b}"])
_pieces = st.one_of(
    st.text(alphabet=string.printable + "é€\n", max_size=12).map(
        lambda t: t.replace("{", "{{").replace("}", "}}")),
    st.builds(lambda n, s: "{" + n + s + "}", _names, _specs),
)
_values = st.one_of(st.integers(), st.floats(allow_nan=True), st.text(max_size=10),
                    st.none(), st.lists(st.integers(), max_size=3), st.booleans())


@given(pieces=st.lists(_pieces, max_size=8), a=_values, b=_values, peer=_values,
       when=st.one_of(st.none(), st.floats(min_value=0, max_value=4e9)),
       level=st.sampled_from([None, *LogLevel.iterconstants()]))
@example(pieces=["{a:.3f}s {b}"], a=0.0125, b="close=1000", peer="", when=NOW,
         level=LogLevel.info)
def test_any_event_is_twisteds_text(pieces: list[str], a: Any, b: Any, peer: Any,
                                    when: float | None, level: LogLevel | None) -> None:
    event: dict[str, Any] = {"log_format": "".join(pieces), "a": a, "b": b, "peer": peer,
                             "log_time": when, "log_namespace": "kgateway.x"}
    if level is not None:
        event["log_level"] = level
    assert ours(event) == twisted_text(event)


# -- the time, once per second ---------------------------------------------------------------


@given(st.lists(st.floats(min_value=0, max_value=4e9), min_size=1, max_size=20))
@example([1.9999996, 1.5])
@example([1.5, 1.9999996, 1.2])
@example([NOW, NOW + 0.9999999, NOW + 1, NOW - 0.5])
def test_the_cached_time_is_formattimes(times: list[float]) -> None:
    cached = CachedTime()
    for when in times:
        assert cached(when) == formatTime(when, timeFormatRFC3339)


def test_the_time_is_formatted_once_per_second() -> None:
    calls: list[float | None] = []

    def format_time(when: float | None, time_format: str | None) -> str:
        calls.append(when)
        return formatTime(when, time_format)

    cached = CachedTime(timeFormatRFC3339, format_time)
    for when in (NOW, NOW + 0.1, NOW + 0.7, NOW + 1.0, NOW + 1.3, NOW + 0.2):
        assert cached(when) == formatTime(when, timeFormatRFC3339)
    assert calls == [NOW, NOW + 1.0, NOW + 0.2]
    assert cached(None) == "-" and CachedTime(None)(NOW) == "-"


def test_only_the_unusual_events_take_twisteds_way() -> None:
    taken: list[LogEvent] = []

    def twisteds(event: LogEvent, formatTime: Any) -> str | None:
        taken.append(event)
        return formatEventAsClassicLogText(event, formatTime=formatTime)

    usual = [emitted("access: service={service} duration={d:.3f}s end={end}", service="echo",
                     d=0.25, end="close=1000"),
             emitted("{a!r} {b[0]} {c.real}", a="x", b=[1], c=2), emitted("no fields")]
    unusual = [emitted("{f()}", f=lambda: 1), emitted("{missing}"),
               {**emitted("{x}", x=1), "log_system": "sys"},
               {**emitted("{x}", x=1), "log_failure": Failure(ValueError("v"))},
               {**emitted("{x}", x=1), "log_flattened": {"x!:": "1"}}]
    format_time = CachedTime()
    for event in usual + unusual:
        assert classic_line(event, format_time, twisteds) == twisted_text(event)
    assert taken == unusual


# -- the JSON objects: Twisted's -------------------------------------------------------------


def test_json_lines_are_twisteds() -> None:
    reactor = MemoryReactorClock()
    out = io.StringIO()
    observer = json_observer(out, reactor)
    event = emitted("access: service={service} duration={duration:.3f}s", service="echo",
                    duration=0.5, log_kind="access")
    observer(event)
    theirs = io.StringIO()
    jsonFileLogObserver(theirs)(event)
    assert out.getvalue() == theirs.getvalue()
    assert json.loads(out.getvalue().lstrip("\x1e"))["service"] == "echo"


# -- writing: once per reactor turn ----------------------------------------------------------


class Out(io.StringIO):
    """A stream that records each write and flush."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []
        self.flushes = 0

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)

    def flush(self) -> None:
        self.flushes += 1


def running_reactor() -> MemoryReactorClock:
    reactor = MemoryReactorClock()
    reactor.running = True
    return reactor


def info(text: str, level: LogLevel = LogLevel.info) -> LogEvent:
    return {"log_format": text, "log_level": level, "log_namespace": "t", "log_time": NOW}


def make(out: Out, reactor: MemoryReactorClock, *, thread: bool = True,
         hooks: list[Any] | None = None) -> LineObserver:
    return LineObserver(out, text_format(), reactor, in_reactor_thread=lambda: thread,
                        at_exit=(hooks if hooks is not None else []).append)


def test_a_turns_lines_are_written_together_at_its_end() -> None:
    reactor, out = running_reactor(), Out()
    observer = make(out, reactor)
    for n in range(3):
        observer(info(f"line {n}"))
    assert out.writes == [] and len(reactor.getDelayedCalls()) == 1
    reactor.advance(0)
    assert len(out.writes) == 1 and out.flushes == 1
    assert [line.split("] ")[1] for line in out.getvalue().splitlines()] == [
        "line 0", "line 1", "line 2"]
    observer(info("next turn"))
    reactor.advance(0)
    assert len(out.writes) == 2 and out.writes[1].endswith("] next turn\n")
    assert reactor.getDelayedCalls() == []


def test_warnings_and_errors_are_written_at_once_after_what_is_pending() -> None:
    for level in (LogLevel.warn, LogLevel.error, LogLevel.critical):
        reactor, out = running_reactor(), Out()
        observer = make(out, reactor)
        observer(info("before"))
        observer(info("urgent", level))
        assert len(out.writes) == 1 and out.flushes == 1
        assert out.getvalue().endswith(f"] before\n{out.getvalue().splitlines()[1]}\n")
        assert out.getvalue().splitlines()[1].endswith(f"#{level.name}] urgent")
        reactor.advance(0)  # the turn's end finds nothing more to write
        assert len(out.writes) == 1


def test_lines_outside_the_running_reactor_are_written_at_once() -> None:
    reactor, out = MemoryReactorClock(), Out()  # not running: start-up, after the stop
    observer = make(out, reactor)
    observer(info("starting"))
    assert out.getvalue().endswith("] starting\n") and out.flushes == 1
    assert reactor.getDelayedCalls() == []


def test_a_threads_line_is_written_at_once_on_its_own() -> None:
    reactor, out = running_reactor(), Out()
    in_reactor = [True]
    observer = LineObserver(out, text_format(), reactor, in_reactor_thread=lambda: in_reactor[0],
                            at_exit=list[Any]().append)
    observer(info("the reactor's"))
    in_reactor[0] = False
    observer(info("a thread's"))  # leaves the reactor's pending lines to the reactor
    assert len(out.writes) == 1 and out.writes[0].endswith("] a thread's\n")
    reactor.advance(0)
    assert out.writes[1].endswith("] the reactor's\n")


def test_a_line_logged_during_a_write_is_neither_lost_nor_a_deadlock() -> None:
    """A signal handler (twistd's "Received SIGTERM") may log while a write is under way."""
    reactor = running_reactor()

    class Interrupted(Out):
        observer: LineObserver | None = None

        def write(self, text: str) -> int:
            if self.observer is not None:
                observer, self.observer = self.observer, None
                observer(info("Received SIGTERM, shutting down."))
                observer(info("urgent from the handler", LogLevel.warn))
            return super().write(text)

    out = Interrupted()
    observer = make(out, reactor)
    observer(info("line 1"))
    out.observer = observer
    reactor.advance(0)  # the end of the turn writes line 1; the handler runs in that write
    reactor.advance(0)
    # the handler's urgent line takes its pending line along, in the middle of line 1's write
    assert [line.split("] ")[1] for line in out.getvalue().splitlines()] == [
        "Received SIGTERM, shutting down.", "urgent from the handler", "line 1"]


def test_what_is_pending_is_written_after_the_shutdown() -> None:
    reactor, out = running_reactor(), Out()
    observer = make(out, reactor)
    observer(info("access: the last connection"))
    [(flush, args, kwargs)] = reactor.triggers["after"]["shutdown"]
    reactor.running = False  # the loop ended before the turn's end ran
    flush(*args, **kwargs)
    assert out.getvalue().endswith("] access: the last connection\n")


def test_what_is_pending_is_written_at_exit_even_on_a_closed_stream() -> None:
    reactor, out, hooks = running_reactor(), Out(), list[Any]()
    observer = make(out, reactor, hooks=hooks)
    observer(info("pending"))
    [hook] = hooks
    hook()
    assert out.getvalue().endswith("] pending\n")
    observer(info("pending again"))
    out.close()
    hook()  # nothing to write to: no error at exit


def test_a_long_turn_writes_before_its_end() -> None:
    reactor, out = running_reactor(), Out()
    observer = make(out, reactor)
    line = "x" * 1000
    for _ in range(MAX_PENDING // 1000 + 1):
        observer(info(line))
    assert len(out.writes) == 1 and len(out.getvalue()) >= MAX_PENDING
    observer(info("after"))
    reactor.advance(0)
    assert out.getvalue().endswith("] after\n") and len(out.writes) == 2


def test_events_without_text_write_nothing() -> None:
    reactor, out = running_reactor(), Out()
    make(out, reactor)({"log_format": None, "log_level": LogLevel.error})
    assert out.writes == [] and reactor.getDelayedCalls() == []


def test_text_observer_writes_twistds_lines() -> None:
    reactor, out = running_reactor(), Out()
    observer = text_observer(out, reactor)
    event = emitted("hello {name}", name="world")
    observer(event)
    reactor.advance(0)
    assert out.getvalue() == twisted_text(event)


# -- tap: which observer the gateway process gets --------------------------------------------


def twistd_options(tmp_path: Any, twistd: list[str], kgateway: list[str]) -> ServerOptions:
    path = tmp_path / "gateway.xml"
    path.write_text(gateway_xml([service_xml("echo", "tcp://127.0.0.1:0")]))
    config = ServerOptions()
    config.parseOptions([*twistd, "kgateway", "-c", str(path), *kgateway])
    return config


@pytest.mark.parametrize(("twistd", "kgateway", "kind"), [
    (["-n", "--pidfile="], [], "text"),
    (["-n", "--pidfile=", "--logfile=-"], [], "text"),
    (["-n", "--pidfile="], ["--log-format", "json"], "json"),
    (["-n", "--pidfile=", "--logfile=/tmp/kgateway-test.log"], [], None),
    (["-n", "--pidfile=", "--syslog"], [], None),
    (["-n", "--pidfile=", "--logger=twisted.logger.textFileLogObserver"], [], None),
    (["--pidfile="], [], None),  # a daemon logs to twistd.log
])
def test_the_gateway_logs_through_ours_where_twistd_would_use_stdout(
        tmp_path: Any, twistd: list[str], kgateway: list[str], kind: str | None) -> None:
    config = twistd_options(tmp_path, twistd, kgateway)
    reactor = MemoryReactorClock()
    gateway: Any = tap.makeService(config.subOptions, reactor=reactor)
    application = Application("kgateway")
    gateway.setServiceParent(application)
    observer = application.getComponent(ILogObserver, None)
    if kind is None:
        assert observer is None  # twistd's own, from its options
        return
    assert isinstance(observer, LineObserver) and observer.reactor is reactor
    event = emitted("x={x}", x=1)
    expected = twisted_text(event) if kind == "text" else f"\x1e{eventAsJSON(event)}\n"
    assert observer.format_event(event) == expected
