"""The last warnings and errors the gateway logged, for the status page and metrics.

    twisted.logger (every log.warn / log.error / log.failure in the process)
        --> RecentEvents (an observer the gateway adds to the global publisher on start)
              ring: the last ``size`` events at level warn or above (time, level, source, text)
              counts: warn/error/critical events since start

A bounded ring, so a storm of errors costs a fixed amount of memory; the log itself keeps
everything.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.logger import ILogObserver, LogLevel, formatEvent
from zope.interface import implementer

#: events kept by default
DEFAULT_SIZE = 50
#: characters kept of each event's text
MAX_TEXT = 500


@implementer(ILogObserver)
class RecentEvents:
    """A twisted.logger observer keeping the last *size* events at *level* or above."""

    def __init__(self, size: int = DEFAULT_SIZE, level: LogLevel = LogLevel.warn,
                 clock: Callable[[], float] = time.time) -> None:
        self.levels = frozenset(lv for lv in LogLevel.iterconstants() if lv >= level)
        self.clock = clock
        self.events: deque[dict[str, Any]] = deque(maxlen=size)
        #: events at level warn or above since start, by level name
        self.counts: dict[str, int] = {}

    def __call__(self, event: dict[str, Any]) -> None:
        level = event.get("log_level")
        if level is None or level not in self.levels:
            return
        try:
            text = formatEvent(event)
            failure = event.get("log_failure")
            if failure is not None:
                text = f"{text}: {failure.getErrorMessage()}"
        except Exception:  # an observer must never raise into the logging system
            text = repr(event.get("log_format"))
        self.counts[level.name] = self.counts.get(level.name, 0) + 1
        self.events.append({
            "time": event.get("log_time") or self.clock(),
            "level": level.name,
            "source": event.get("log_namespace") or "",
            "text": text[:MAX_TEXT],
        })

    def recent(self) -> list[dict[str, Any]]:
        """The kept events, newest first."""
        return list(reversed(self.events))
