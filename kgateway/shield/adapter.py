"""What both ends' Autobahn adapters give their pairing machine (pairing.py's outputs).

The DMZ's ``BackplaneProtocol`` and the internal gateway's ``ReverseClientProtocol`` answer
the machine's calls the same way: a control message is one binary WebSocket message, a
close is a close frame, a drop aborts the socket, and timers are the adapter's
``NamedTimers`` firing back into ``machine.timer_expired``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kgateway.protocols import shield_control as control
from kgateway.timers import NamedTimers


class MachineOutput:
    """Mixin for an Autobahn WebSocket protocol that drives a pairing machine (``self.machine``)."""

    timers: NamedTimers
    machine: Any
    # given by Autobahn's WebSocketProtocol, which the adapters derive from
    sendMessage: Callable[..., Any]
    sendCloseFrame: Callable[..., Any]
    dropConnection: Callable[..., Any]

    def send(self, message: control.Message) -> None:
        self.sendMessage(control.encode(message), isBinary=True)

    def close(self, code: int) -> None:
        self.sendCloseFrame(code)

    def drop(self) -> None:
        self.dropConnection(abort=True)

    def start_timer(self, name: str, seconds: float) -> None:
        self.timers.start(name, seconds, self.machine.timer_expired)

    def cancel_timer(self, name: str) -> None:
        self.timers.cancel(name)
