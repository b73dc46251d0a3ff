"""The gateway's log observer: twistd's text lines (or ``--log-format json``'s objects),
the same bytes, at a fraction of the cost per line.

    log.info("access: service={service} ...", service=..., ...)      (any twisted.logger event)
        --> globalLogPublisher --> LineObserver(event)
              text = format_event(event)        classic_line (text) or Twisted's JSON
              pending += text                   in the reactor thread while it runs
              ... end of this reactor turn (one callLater(0)) --> out.write(pending); flush

What twistd sets up by itself (``textFileLogObserver(sys.stdout)``) formats and writes every
event on its own: Twisted's ``string.Formatter`` walk of the format (in Python, per field),
a ``DateTime`` and ``strftime`` for the timestamp, and a ``write`` plus ``flush`` per line,
which is one ``write(2)`` per line, as the gateway runs with ``PYTHONUNBUFFERED=1``. On the
WebSocket handshake benchmark that was 13% of the gateway's CPU, for the access line each
connection ends with. Here:

- the message is ``log_format.format_map(event)`` (C) when that is the same text as
  Twisted's ``formatWithCall``: always, except for its ``{name()}`` call syntax, a
  ``log_failure`` traceback or a flattened (JSON-read) event, which go to Twisted's
  ``formatEventAsClassicLogText`` as before. The event is untouched: the JSON observer and
  the status page's :class:`~kgateway.services.recent.RecentEvents` see the same fields
  and ``log_format``;
- the timestamp is Twisted's ``formatTime`` computed once per second (:class:`CachedTime`:
  the format has whole seconds, so the text is the same);
- the lines of one reactor turn are written together at its end (``callLater(0)``: the
  next iteration of the loop, well within a millisecond unless a callback hogs the loop).
  Lines at ``warn`` and above and lines while the reactor is not running (start-up, after
  the stop) are written and flushed at once, with whatever is pending before them; lines
  from other threads at once, on their own (as Twisted's observer writes every line); what
  is pending at shutdown is written by an ``after shutdown`` trigger and at exit
  (``atexit``). A process killed by SIGKILL or a fatal signal loses at most the lines of
  the turn it was in.

Written by hand because Twisted has neither a cheaper formatter nor a buffered observer;
:func:`classic_line` repeats the few lines of Twisted's ``eventAsText`` that it replaces
(the unit tests hold it to Twisted's output, byte for byte).
"""

from __future__ import annotations

import atexit
from collections.abc import Callable
from typing import IO, Any

from twisted.logger import (
    ILogObserver,
    LogEvent,
    LogLevel,
    formatEventAsClassicLogText,
    formatTime,
    jsonFileLogObserver,
    timeFormatRFC3339,
)
from twisted.python import threadable
from zope.interface import implementer

#: events written and flushed at once, with what is pending before them
URGENT = frozenset(level for level in LogLevel.iterconstants() if level >= LogLevel.warn)
#: pending text beyond which a turn's lines are written without waiting for its end
MAX_PENDING = 64 * 1024
#: ``datetime.fromtimestamp`` rounds to the microsecond, so a time in the last half
#: microsecond of a second is shown as the next second: those (and a margin) are not cached
_LAST_MICROSECOND = 0.999999


class CachedTime:
    """Twisted's ``formatTime(when, time_format)``, computed once per second.

    *time_format* must have no unit smaller than a second (twistd's RFC 3339 one has none).
    """

    __slots__ = ("time_format", "format_time", "_second", "_text")

    def __init__(self, time_format: str | None = timeFormatRFC3339,
                 format_time: Callable[[float | None, str | None], str] = formatTime) -> None:
        self.time_format = time_format
        self.format_time = format_time
        self._second: int | None = None
        self._text = ""

    def __call__(self, when: float | None) -> str:
        if when is None or self.time_format is None:
            return self.format_time(when, self.time_format)
        second = int(when // 1)
        if when - second >= _LAST_MICROSECOND:  # perhaps shown as the next second
            return self.format_time(when, self.time_format)
        if second != self._second:
            self._second, self._text = second, self.format_time(when, self.time_format)
        return self._text


def classic_line(event: LogEvent, format_time: Callable[[float | None], str],
                 twisteds: Callable[..., str | None] = formatEventAsClassicLogText) -> str | None:
    """``formatEventAsClassicLogText(event, format_time)``, cheaper for the usual event.

    ``str.format_map`` gives the text Twisted's ``formatWithCall`` gives (the same field
    lookups, conversions and ``format()`` of each value) unless the format uses the
    ``{name()}`` call syntax, the one thing it adds; those events, events with a traceback
    or a ``log_system``, flattened ones and any that fail to format take Twisted's own way
    (*twisteds*).
    """
    fmt = event.get("log_format")
    if (type(fmt) is not str or "()" in fmt or "log_failure" in event
            or "log_flattened" in event or event.get("log_system") is not None):
        return twisteds(event, formatTime=format_time)
    try:
        text = fmt.format_map(event)
        level = event.get("log_level")
        line = (f"{format_time(event.get('log_time'))} "
                f"[{event.get('log_namespace', '-')}#{'-' if level is None else level.name}] "
                f"{text}")
    except Exception:  # Twisted's way says what could not be formatted, as before
        return twisteds(event, formatTime=format_time)
    if not text:
        return None
    if "\n" in line:
        line = line.replace("\n", "\n\t")
    return line + "\n"


def text_format() -> Callable[[LogEvent], str | None]:
    """twistd's text lines: ``textFileLogObserver(out)``'s format, with a cached time."""
    format_time = CachedTime(timeFormatRFC3339)

    def format_event(event: LogEvent) -> str | None:
        return classic_line(event, format_time)

    return format_event


def json_format(out: IO[Any]) -> Callable[[LogEvent], str | None]:
    """``--log-format json``: exactly ``jsonFileLogObserver(out)``'s text per event."""
    return jsonFileLogObserver(out).formatEvent


@implementer(ILogObserver)
class LineObserver:
    """Formats each event with *format_event* and writes it to *out*, a turn's lines at once.

    *reactor*: whose turns batch the writes (``running``, ``callLater``,
    ``addSystemEventTrigger``). Written at once: events of a level in *urgent* and any while
    the reactor is not running (with what is pending, before them), and events from a thread
    other than the reactor's (on their own, as Twisted's observer writes every event).
    Pending lines are written after the reactor's shutdown and by *at_exit*'s hook.

    No lock: only the reactor's thread touches the pending lines, and a line logged by a
    signal handler (twistd's "Received SIGTERM") in the middle of a write lands either in
    the lines being written or in the next batch (a lock held there would deadlock).
    """

    def __init__(self, out: IO[Any], format_event: Callable[[LogEvent], str | None],
                 reactor: Any, urgent: frozenset[LogLevel] = URGENT,
                 in_reactor_thread: Callable[[], bool] = threadable.isInIOThread,
                 at_exit: Callable[[Callable[[], None]], Any] = atexit.register) -> None:
        self.out = out
        self.format_event = format_event
        self.reactor = reactor
        self.urgent = urgent
        self.in_reactor_thread = in_reactor_thread
        self._pending: list[str] = []
        self._size = 0
        self._scheduled = False
        reactor.addSystemEventTrigger("after", "shutdown", self.flush)
        at_exit(self._flush_at_exit)

    def __call__(self, event: LogEvent) -> None:
        text = self.format_event(event)
        if not text:
            return
        if not self.in_reactor_thread():
            self.out.write(text)
            self.out.flush()
        elif event.get("log_level") in self.urgent or not self.reactor.running:
            self._write(text)
        else:
            self._pending.append(text)
            self._size += len(text)
            if self._size >= MAX_PENDING:
                self._write("")
            elif not self._scheduled:
                self._scheduled = True
                self.reactor.callLater(0, self._end_of_turn)

    def _end_of_turn(self) -> None:
        self._scheduled = False
        self._write("")

    def flush(self) -> None:
        """Write and flush what is pending (the end of a turn, the shutdown)."""
        self._write("")

    def _write(self, text: str) -> None:
        pending = self._pending
        if pending:
            self._pending, self._size = [], 0  # before the write: see the class docstring
            pending.append(text)
            text = "".join(pending)
        if text:
            self.out.write(text)
            self.out.flush()

    def _flush_at_exit(self) -> None:
        try:
            self.flush()
        except (OSError, ValueError):  # the stream is gone or closed: nothing to write to
            pass


def text_observer(out: IO[Any], reactor: Any) -> LineObserver:
    """twistd's text log on *out* (``textFileLogObserver``'s lines), batched per turn."""
    return LineObserver(out, text_format(), reactor)


def json_observer(out: IO[Any], reactor: Any) -> LineObserver:
    """``jsonFileLogObserver``'s objects on *out*, batched per turn."""
    return LineObserver(out, json_format(out), reactor)
