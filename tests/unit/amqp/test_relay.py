"""AmqpRelay on its own: method calls in, a recording RelayOutput out. No Twisted."""

from __future__ import annotations

from typing import Any

from kgateway.amqp.relay import (
    BROKER_CLOSE_TIMER,
    CLIENT_KEY,
    FORWARDED_FOR,
    HANDSHAKE_TIMER,
    USER_KEY,
    AmqpRelay,
    Phase,
    RelaySettings,
)
from kgateway.protocols import amqp as A


class Output:
    """A RelayOutput that records every call, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.timers: dict[str, float] = {}

    def to_client(self, data: bytes) -> None:
        self.calls.append(("to_client", data))

    def to_broker(self, data: bytes) -> None:
        self.calls.append(("to_broker", data))

    def connect_broker(self) -> None:
        self.calls.append(("connect_broker", None))

    def close_client(self, code: int, reason: str) -> None:
        self.calls.append(("close_client", (code, reason)))

    def close_broker(self, reason: str) -> None:
        self.calls.append(("close_broker", reason))

    def start_timer(self, name: str, seconds: float) -> None:
        self.timers[name] = seconds

    def cancel_timer(self, name: str) -> None:
        self.timers.pop(name, None)

    def event(self, level: str, what: str) -> None:
        self.calls.append(("event", (level, what)))

    def bytes_to(self, side: str) -> bytes:
        return b"".join(data for name, data in self.calls if name == f"to_{side}")

    def names(self) -> list[str]:
        return [name for name, _ in self.calls if name != "event"]


START = A.method_frame(0, A.ConnectionStart(0, 9, {"product": "RabbitMQ"}, b"PLAIN", b"en_US"))
START_OK = A.method_frame(0, A.ConnectionStartOk({"product": "t", FORWARDED_FOR: "spoof"},
                                                 "PLAIN", b"\0guest\0guest", "en_US"))
TUNE = A.method_frame(0, A.ConnectionTune(2047, 0, 60))
TUNE_OK = A.method_frame(0, A.ConnectionTuneOk(2047, 0, 60))


def relay(**settings: Any) -> tuple[AmqpRelay, Output]:
    out = Output()
    r = AmqpRelay(out, RelaySettings(**settings), client_address="[2001:db8::1]:4000",
                  websocket=True)
    r.start()
    return r, out


def test_a_wrong_header_gets_the_supported_one_and_a_close_without_dialling() -> None:
    r, out = relay()
    r.client_data(b"HTTP/1.1")
    assert out.names() == ["to_client", "close_client"]
    assert out.bytes_to("client") == A.PROTOCOL_HEADER
    assert out.calls[-1][1][0] == 1002 and r.client_phase is Phase.CLOSED


def test_the_broker_is_dialled_only_after_a_valid_header_and_gets_it_first() -> None:
    r, out = relay()
    assert out.timers == {HANDSHAKE_TIMER: 10.0}
    r.client_data(A.PROTOCOL_HEADER[:5])
    assert out.names() == []
    r.client_data(A.PROTOCOL_HEADER[5:] + START_OK)  # Start-Ok early: held until connected
    assert out.names() == ["connect_broker"]
    r.broker_connected()
    assert out.bytes_to("broker").startswith(A.PROTOCOL_HEADER)


def test_start_ok_carries_the_real_client_address_and_tune_is_capped() -> None:
    r, out = relay(frame_max=8192)
    r.client_data(A.PROTOCOL_HEADER)
    r.broker_connected()
    r.broker_data(START)
    r.client_data(START_OK)
    sent = out.bytes_to("broker")[len(A.PROTOCOL_HEADER):]
    [frame] = A.FrameReader().feed(sent)
    method = A.decode_method(frame.payload)
    assert isinstance(method, A.ConnectionStartOk)
    assert method.client_properties[FORWARDED_FOR] == "2001:db8::1"
    assert method.client_properties[CLIENT_KEY] == "[2001:db8::1]:4000"
    r.broker_data(TUNE)  # frame-max 0 ("no limit") from the broker
    [tune_frame] = A.FrameReader().feed(out.bytes_to("client")[len(START):])
    tune = A.decode_method(tune_frame.payload)
    assert isinstance(tune, A.ConnectionTune) and tune.frame_max == 8192


def test_a_refused_vhost_is_a_connection_close_530_then_1008() -> None:
    r, out = relay(virtual_host="/allowed")
    r.client_data(A.PROTOCOL_HEADER)
    r.broker_connected()
    r.broker_data(START)
    r.client_data(START_OK)
    r.broker_data(TUNE)
    r.client_data(TUNE_OK + A.method_frame(0, A.ConnectionOpen("/other")))
    name, data = out.calls[-1]
    assert name == "to_client"
    close = A.decode_method(A.FrameReader().feed(data)[0].payload)
    assert isinstance(close, A.ConnectionClose) and close.reply_code == A.NOT_ALLOWED
    assert r.client_phase is Phase.CLOSING
    r.client_data(A.method_frame(0, A.ConnectionCloseOk()))
    assert out.calls[-1] == ("close_client", (1008, str(A.FrameError(
        A.NOT_ALLOWED, "access to vhost '/other' refused by the gateway: only vhost "
        "'/allowed' is allowed here", class_id=10, method_id=40))))


def test_the_handshake_timer_closes_both_sides() -> None:
    r, out = relay(handshake_timeout=2.0)
    r.client_data(A.PROTOCOL_HEADER)
    r.broker_connected()
    r.timer_expired(HANDSHAKE_TIMER)
    assert "close_broker" in out.names() and out.calls[-1][0] == "close_client"
    assert out.calls[-1][1] == (1002, "AMQP handshake not completed within 2s")


def test_going_away_closes_an_open_client_and_the_broker_properly() -> None:
    r, out = relay()
    r.client_data(A.PROTOCOL_HEADER)
    r.broker_connected()
    r.broker_data(START)
    r.client_data(START_OK)
    r.broker_data(TUNE)
    r.client_data(TUNE_OK + A.method_frame(0, A.ConnectionOpen("/")))
    r.broker_data(A.method_frame(0, A.ConnectionOpenOk()))
    assert r.client_phase is r.broker_phase is Phase.OPEN
    r.going_away()
    assert r.client_phase is Phase.CLOSING and r.broker_phase is Phase.CLOSING
    assert BROKER_CLOSE_TIMER in out.timers
    frames = A.FrameReader().feed(out.bytes_to("broker")[len(A.PROTOCOL_HEADER):])
    closes = [A.decode_method(f.payload) for f in frames]
    assert any(isinstance(m, A.ConnectionClose) and m.reply_code == A.CONNECTION_FORCED
               for m in closes)


class AuthOutput(Output):
    def authenticate(self, user: str, password: str) -> None:
        self.calls.append(("authenticate", (user, password)))


def authenticating(**settings: Any) -> tuple[AmqpRelay, AuthOutput]:
    out = AuthOutput()
    r = AmqpRelay(out, RelaySettings(**settings), client_address="192.0.2.7:4000",
                  websocket=True, authenticate=True)
    r.start()
    r.client_data(A.PROTOCOL_HEADER)
    r.broker_connected()
    r.broker_data(START)
    r.client_data(START_OK)
    return r, out


def start_ok_sent(out: Output) -> A.ConnectionStartOk:
    frames = A.FrameReader().feed(out.bytes_to("broker")[len(A.PROTOCOL_HEADER):])
    method = A.decode_method(frames[0].payload)
    assert isinstance(method, A.ConnectionStartOk)
    return method


def test_start_ok_is_held_until_the_realm_accepts_then_carries_the_user() -> None:
    r, out = authenticating(broker_credentials=("gateway", "broker-secret"))
    assert out.calls[-1] == ("authenticate", ("guest", "guest"))
    assert out.bytes_to("broker") == A.PROTOCOL_HEADER  # nothing more yet
    r.authenticated("alice")
    method = start_ok_sent(out)
    assert method.client_properties[USER_KEY] == "alice"
    assert A.sasl_credentials(method) == ("gateway", "broker-secret")  # promoted


def test_a_clients_own_user_claim_never_reaches_the_broker_without_a_realm() -> None:
    r, out = relay()
    r.client_data(A.PROTOCOL_HEADER)
    r.broker_connected()
    r.broker_data(START)
    r.client_data(A.method_frame(0, A.ConnectionStartOk(
        {"product": "t", USER_KEY: "admin"}, "PLAIN", b"\0guest\0guest", "en_US")))
    method = start_ok_sent(out)
    assert USER_KEY not in method.client_properties
    assert method.client_properties["product"] == "t"


def test_a_refused_login_is_access_refused_like_rabbitmq() -> None:
    r, out = authenticating()
    r.auth_refused("Login was refused using authentication mechanism PLAIN")
    close = A.decode_method(A.FrameReader().feed(out.calls[-1][1])[0].payload)
    assert isinstance(close, A.ConnectionClose) and close.reply_code == A.ACCESS_REFUSED
    assert "ACCESS_REFUSED - Login was refused" in close.reply_text
    assert out.bytes_to("broker") == A.PROTOCOL_HEADER  # the broker never saw the client's


def test_an_unsupported_mechanism_is_refused_without_asking_the_realm() -> None:
    out = AuthOutput()
    r = AmqpRelay(out, RelaySettings(), client_address="c", websocket=True, authenticate=True)
    r.start()
    r.client_data(A.PROTOCOL_HEADER)
    r.broker_connected()
    r.broker_data(START)
    r.client_data(A.method_frame(0, A.ConnectionStartOk({}, "EXTERNAL", b"", "en_US")))
    assert "authenticate" not in out.names()
    close = A.decode_method(A.FrameReader().feed(out.bytes_to("client")[len(START):])[0].payload)
    assert isinstance(close, A.ConnectionClose) and close.reply_code == A.ACCESS_REFUSED


def test_channel_max_above_the_brokers_offer_is_refused() -> None:
    r, out = relay()
    r.client_data(A.PROTOCOL_HEADER)
    r.broker_connected()
    r.broker_data(START)
    r.client_data(START_OK)
    r.broker_data(TUNE)  # channel-max 2047
    r.client_data(A.method_frame(0, A.ConnectionTuneOk(65535, 0, 60)))
    close = A.decode_method(A.FrameReader().feed(out.calls[-1][1])[0].payload)
    assert isinstance(close, A.ConnectionClose) and close.reply_code == A.NOT_ALLOWED
    assert "channel-max 65535 is above the 2047 the broker offered" in close.reply_text
