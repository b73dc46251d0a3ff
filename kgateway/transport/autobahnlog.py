"""Autobahn's debug-only ``pformat`` calls, skipped while its debug logging is off.

Autobahn's ``WebSocketProtocol._connectionMade`` runs, for every connection,
``self.log.debug("\\n{attrs}", attrs=pformat(configAttrLog))``: the pretty-printed list of
its ~40 options is built eagerly and handed to a debug call that, at txaio's default log
level ("info"), does nothing. py-spy on a gateway under ``bench.relay --only handshakes``
put 20% of the gateway's CPU per proxied WebSocket handshake in that ``pformat``.

:func:`install` replaces the ``pformat`` name in ``autobahn.websocket.protocol`` (its only
users there are that debug line, ``startHandshake``'s debug line and ``Timings.__str__``)
with :func:`debug_pformat`, which pretty-prints as before when txaio's log level includes
debug and otherwise returns a short placeholder. Nothing else in Autobahn changes, and
with debug logging on (``txaio.set_global_log_level("debug")``) the lines are the same.
Autobahn offers no option for this, so it is patched here, once, by
``kgateway.transport.closecodes``, the module every WebSocket protocol of the gateway
derives from.
"""

from __future__ import annotations

import pprint
from typing import Any

import autobahn.websocket.protocol as _protocol
import txaio
from txaio.interfaces import log_levels

#: what ``pformat`` returns in Autobahn while its debug logging is off
SKIPPED = "(not formatted: Autobahn debug logging is off)"
_DEBUG = log_levels.index("debug")


def debug_pformat(obj: Any, *args: Any, **kwargs: Any) -> str:
    """``pprint.pformat`` if txaio logs debug lines, else :data:`SKIPPED`."""
    level: str = txaio.get_global_log_level()  # type: ignore[attr-defined]
    if log_levels.index(level) >= _DEBUG:
        return pprint.pformat(obj, *args, **kwargs)
    return SKIPPED


def install() -> None:
    """Point ``autobahn.websocket.protocol``'s ``pformat`` at :func:`debug_pformat` (idempotent)."""
    _protocol.pformat = debug_pformat  # type: ignore[assignment]
