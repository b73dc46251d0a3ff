"""The gateway's timers, written once, on an injected clock (``IReactorTime``).

    IdleTimer    expire() after ``timeout`` seconds without touch()      (udp idle, Shield's
                                                                          DMZ-side watchdog)
    Heartbeat    send() every ``send_every`` s; dead() when a whole       (STOMP heart-beats to
                 ``expect_every`` window passed without heard()          clients and brokers,
                                                                          Shield keep-alive)
    NamedTimers  one pending call per name, replaced when set again      (the AMQP relay's
                                                                          handshake/close timers)

Imports Twisted only. Tests pass ``twisted.internet.task.Clock``.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall


class IdleTimer:
    """Calls *expire* once *timeout* seconds pass without :meth:`touch`; 0 never expires."""

    def __init__(self, clock: IReactorTime, timeout: float, expire: Callable[[], object]) -> None:
        self.clock, self.timeout, self.expire = clock, timeout, expire
        self.call: IDelayedCall | None = None
        self.touch()

    def touch(self) -> None:
        if self.timeout <= 0:
            return
        if self.call is not None and self.call.active():
            self.call.reset(self.timeout)
        else:
            self.call = self.clock.callLater(self.timeout, self.expire)

    def cancel(self) -> None:
        if self.call is not None and self.call.active():
            self.call.cancel()
        self.call = None


class Heartbeat:
    """Beats out every *send_every* seconds and watches for beats in.

    *dead* is called when a whole *expect_every* window went by without :meth:`heard`
    (a STOMP peer gets twice its negotiated interval, so callers pass that). Either interval
    may be 0 (off). After *dead*, or :meth:`stop`, nothing more is called.
    """

    def __init__(self, clock: IReactorTime, send_every: float, expect_every: float,
                 send: Callable[[], object], dead: Callable[[], object]) -> None:
        self.send_every, self.expect_every = send_every, expect_every
        self._heard = True
        self._dead = dead
        self._loops: list[LoopingCall] = []
        if send_every > 0:
            self._loops.append(self._loop(clock, send, send_every))
        if expect_every > 0:
            self._loops.append(self._loop(clock, self._check, expect_every))

    def _loop(self, clock: IReactorTime, f: Callable[[], object], every: float) -> LoopingCall:
        loop = LoopingCall(f)
        loop.clock = clock
        loop.start(every, now=False)
        return loop

    def heard(self) -> None:
        self._heard = True

    def _check(self) -> None:
        if not self._heard:
            self.stop()
            self._dead()
            return
        self._heard = False

    def stop(self) -> None:
        loops, self._loops = self._loops, []
        for loop in loops:
            if loop.running:
                loop.stop()


class NamedTimers:
    """One pending call per name: ``start(name, seconds, f)`` replaces an earlier one."""

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self.calls: dict[str, IDelayedCall] = {}

    def start(self, name: str, seconds: float, f: Callable[[str], object]) -> None:
        self.cancel(name)

        def fire() -> None:
            self.calls.pop(name, None)
            f(name)

        self.calls[name] = self.clock.callLater(seconds, fire)

    def cancel(self, name: str) -> None:
        call = self.calls.pop(name, None)
        if call is not None and call.active():
            call.cancel()

    def cancel_all(self) -> None:
        for name in list(self.calls):
            self.cancel(name)
