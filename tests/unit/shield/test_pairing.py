"""The Enterprise Shield pairing machines of both ends, with no Twisted at all: messages in,
recorded outputs out (in the style of txtorcon's test_socks)."""

from __future__ import annotations

from typing import Any

import pytest

from kgateway.protocols import shield_control as control
from kgateway.shield.pairing import (
    PING,
    WATCHDOG,
    BackplaneMachine,
    Phase,
    ReverseMachine,
)


class Recorder:
    """Both machines' outputs, as a list of (name, argument) in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        def record(*args: Any) -> None:
            self.calls.append((name, args[0] if len(args) == 1 else args))

        return record

    def sent(self) -> list[control.Message]:
        return [arg for name, arg in self.calls if name == "send"]

    def named(self, name: str) -> list[Any]:
        return [arg for n, arg in self.calls if n == name]


def wire(*messages: control.Message) -> bytes:
    return b"".join(control.encode(m) for m in messages)


# -- the internal end -----------------------------------------------------------------------


def prepared_reverse(keepalive: float = 2.0) -> tuple[ReverseMachine, Recorder]:
    out = Recorder()
    machine = ReverseMachine(out, keepalive, "internal-1")  # type: ignore[arg-type]
    assert machine.phase is Phase.CONNECTING
    machine.connected()
    assert out.sent() == [control.Hello(int(keepalive * 1000), "internal-1")]
    machine.receive(wire(control.Welcome()))
    assert machine.phase is Phase.IDLE
    return machine, out


def test_reverse_says_hello_and_is_welcomed_then_pings() -> None:
    machine, out = prepared_reverse()
    assert out.named("welcomed") == [()]
    assert ("start_timer", (PING, 2.0)) in out.calls


def test_reverse_pings_each_interval_and_drops_when_a_pong_is_missing() -> None:
    machine, out = prepared_reverse()
    machine.timer_expired(PING)
    assert out.sent()[-1] == control.Ping(1)
    machine.receive(wire(control.Pong(1)))
    machine.timer_expired(PING)
    assert out.sent()[-1] == control.Ping(2) and "drop" not in [n for n, _ in out.calls]
    machine.timer_expired(PING)  # no PONG for ping 2 by the next interval
    assert out.calls[-1][0] == "drop" and machine.phase is Phase.CLOSED
    assert any("no PONG" in e for e in out.named("event"))


def test_reverse_without_keepalive_never_pings() -> None:
    machine, out = prepared_reverse(keepalive=0)
    assert out.named("start_timer") == []


def test_reverse_open_then_session_ready_sends_opened() -> None:
    machine, out = prepared_reverse()
    machine.receive(wire(control.Open("198.51.100.7:40000", ("v12.stomp", "amqp"))))
    assert machine.phase is Phase.OPENING
    assert ("cancel_timer", PING) in out.calls
    assert out.named("open") == [("198.51.100.7:40000", ("v12.stomp", "amqp"))]
    machine.session_ready("v12.stomp")
    assert machine.phase is Phase.PAIRED and out.sent()[-1] == control.Opened("v12.stomp")


def test_reverse_refused_session_sends_refused_and_closes_1014() -> None:
    machine, out = prepared_reverse()
    machine.receive(wire(control.Open("198.51.100.7:40000", ())))
    machine.session_refused("x" * 5000)
    assert out.sent()[-1] == control.Refused("x" * 1000)
    assert out.calls[-1] == ("close", 1014) and machine.phase is Phase.CLOSED


def test_reverse_session_ready_after_the_dmz_went_away_does_nothing() -> None:
    machine, out = prepared_reverse()
    machine.receive(wire(control.Open("c", ())))
    machine.lost()
    before = list(out.calls)
    machine.session_ready(None)
    assert out.calls == before and machine.phase is Phase.CLOSED


@pytest.mark.parametrize("message", [control.Open("c", ()), control.Welcome()])
def test_reverse_out_of_order_messages_are_logged_not_obeyed(message: control.Message) -> None:
    out = Recorder()
    machine = ReverseMachine(out, 2.0, "n")  # type: ignore[arg-type]
    machine.connected()
    if isinstance(message, control.Welcome):
        machine.receive(wire(control.Welcome()))  # now IDLE: a second WELCOME is unexpected
    machine.receive(wire(message))
    assert any("unexpected" in e for e in out.named("event"))
    assert out.named("open") == []


def test_reverse_garbage_closes_with_1002() -> None:
    out = Recorder()
    machine = ReverseMachine(out, 2.0, "n")  # type: ignore[arg-type]
    machine.connected()
    machine.receive(b"\x63" + (1).to_bytes(4, "big") + b"?")
    assert out.calls[-1] == ("close", 1002) and machine.phase is Phase.CLOSED


# -- the DMZ end -----------------------------------------------------------------------------


def prepared_backplane() -> tuple[BackplaneMachine, Recorder]:
    out = Recorder()
    machine = BackplaneMachine(out)  # type: ignore[arg-type]
    machine.receive(wire(control.Hello(2000, "internal-1")))
    assert machine.phase is Phase.IDLE
    assert out.sent() == [control.Welcome()]
    assert ("start_timer", (WATCHDOG, 6.0)) in out.calls and ("prepared", ()) in out.calls
    return machine, out


def test_backplane_answers_pings_and_rearms_its_watchdog() -> None:
    machine, out = prepared_backplane()
    machine.receive(wire(control.Ping(7)))
    assert out.sent()[-1] == control.Pong(7)
    assert out.named("start_timer").count((WATCHDOG, 6.0)) == 2


def test_backplane_drops_a_connection_whose_pings_stopped() -> None:
    machine, out = prepared_backplane()
    machine.timer_expired(WATCHDOG)
    assert out.calls[-1][0] == "drop" and machine.phase is Phase.CLOSED


def test_backplane_pairs_then_opened_hands_over_the_subprotocol() -> None:
    machine, out = prepared_backplane()
    machine.pair("198.51.100.7:40000", ["v12.stomp"])
    assert ("cancel_timer", WATCHDOG) in out.calls
    assert out.sent()[-1] == control.Open("198.51.100.7:40000", ("v12.stomp",))
    machine.timer_expired(WATCHDOG)  # a late watchdog no longer applies
    assert "drop" not in [n for n, _ in out.calls]
    machine.receive(wire(control.Opened("v12.stomp")))
    assert machine.phase is Phase.PAIRED and out.named("opened") == ["v12.stomp"]


def test_backplane_refused_reports_the_reason_and_closes() -> None:
    machine, out = prepared_backplane()
    machine.pair("c", [])
    machine.receive(wire(control.Refused("no broker")))
    assert out.named("refused") == ["no broker"] and out.calls[-1] == ("close", 1000)


def test_backplane_opened_before_open_is_unexpected() -> None:
    machine, out = prepared_backplane()
    machine.receive(wire(control.Opened(None)))
    assert machine.phase is Phase.IDLE and out.named("opened") == []
    assert any("unexpected Opened while idle" in e for e in out.named("event"))


def test_both_machines_talk_to_each_other_byte_for_byte() -> None:
    """The internal and DMZ machines wired back to back, one byte at a time."""
    inner, outer = Recorder(), Recorder()
    internal = ReverseMachine(inner, 1.0, "i")  # type: ignore[arg-type]
    dmz = BackplaneMachine(outer)  # type: ignore[arg-type]

    def pump() -> None:
        while inner.sent() or outer.sent():
            for recorder, target in ((inner, dmz), (outer, internal)):
                for message in recorder.sent():
                    for byte in control.encode(message):
                        target.receive(bytes([byte]))
                recorder.calls = [c for c in recorder.calls if c[0] != "send"]

    internal.connected()
    pump()
    assert internal.phase is dmz.phase is Phase.IDLE
    dmz.pair("c:1", ["p"])
    pump()
    assert inner.named("open") == [("c:1", ("p",))]
    internal.session_ready("p")
    pump()
    assert internal.phase is dmz.phase is Phase.PAIRED and outer.named("opened") == ["p"]
