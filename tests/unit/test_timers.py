"""The shared timers on a fake clock."""

from __future__ import annotations

from twisted.internet.task import Clock

from kgateway.timers import Heartbeat, IdleTimer, NamedTimers


def test_idle_timer_expires_only_after_a_quiet_timeout() -> None:
    clock, fired = Clock(), []
    idle = IdleTimer(clock, 5, lambda: fired.append(clock.seconds()))
    clock.advance(4)
    idle.touch()
    clock.advance(4)
    assert fired == []
    clock.advance(1)
    assert fired == [9]
    off = IdleTimer(clock, 0, lambda: fired.append(-1))
    off.touch()
    clock.advance(100)
    assert fired == [9]


def test_heartbeat_sends_and_declares_a_silent_peer_dead_once() -> None:
    clock, events = Clock(), []
    beat = Heartbeat(clock, 2, 5, lambda: events.append("beat"), lambda: events.append("dead"))
    clock.pump([1] * 3)
    beat.heard()
    clock.pump([1] * 2)  # 5 s: heard in the first window, a new one starts
    assert events == ["beat", "beat"]
    clock.pump([1] * 5)  # 10 s: nothing heard in the second window
    assert events == ["beat"] * 4 + ["dead"]
    clock.pump([1] * 60)
    assert events == ["beat"] * 4 + ["dead"]  # nothing after death


def test_heartbeat_intervals_may_be_off() -> None:
    clock, events = Clock(), []
    Heartbeat(clock, 0, 0, lambda: events.append("beat"), lambda: events.append("dead"))
    clock.advance(1000)
    assert events == [] and clock.getDelayedCalls() == []


def test_named_timers_replace_and_cancel() -> None:
    clock, fired = Clock(), []
    timers = NamedTimers(clock)
    timers.start("a", 5, fired.append)
    timers.start("a", 10, fired.append)  # replaces the first
    timers.start("b", 1, fired.append)
    clock.advance(5)
    assert fired == ["b"]
    clock.advance(5)
    assert fired == ["b", "a"]
    timers.start("c", 1, fired.append)
    timers.cancel_all()
    clock.advance(5)
    assert fired == ["b", "a"] and clock.getDelayedCalls() == []
