"""permessage-deflate (RFC 7692) on WebSocket accepts, off unless an accept-option asks.

    ws.permessage-deflate                 true: accept a client's permessage-deflate offer
    ws.permessage-deflate.window-bits     9..15: our compressor's window (memory per client)
    ws.permessage-deflate.context-takeover  false: both sides start each message afresh
                                          (client_no_context_takeover; ours too)

Autobahn does the compression (``PerMessageDeflateOffer``/``...OfferAccept``); this module
only turns the options into its accept function. The decompressor is bounded by
``ws.maximum.message.size``, so a small compressed message cannot inflate past the limit (a
"zip bomb" ends in close 1009 like any oversize message).

Memory: each connection keeps a zlib compressor and decompressor from its first message on
(zlib: about 2**(window-bits+2) + 2**(memLevel+9) bytes to compress, 2**window-bits to
inflate). Autobahn keeps the last ones even without context takeover (it only replaces them
per message), so ``window-bits`` is the lever: measured by ``bench/deflate_memory.py``
(bench/published/deflate_memory.md) at about 128 KiB per connection with 15 bits, 28 KiB with
10 bits, 6 KiB without compression.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateOfferAccept

from kgateway.config import Options


def deflate_acceptor(options: Options) -> Callable[[Sequence[Any]], Any] | None:
    """Autobahn's ``perMessageCompressionAccept`` for these accept-options, or None (off)."""
    if not options["ws.permessage-deflate"]:
        return None
    bits: int = options["ws.permessage-deflate.window-bits"]
    takeover: bool = options["ws.permessage-deflate.context-takeover"]
    limit: int = options["ws.maximum.message.size"]

    def accept(offers: Sequence[Any]) -> Any:
        for offer in offers:
            if not isinstance(offer, PerMessageDeflateOffer):
                continue
            if not takeover and not offer.accept_no_context_takeover:
                continue  # this client cannot reset its compressor: no compression for it
            window = bits if bits < 15 and offer.accept_max_window_bits else None
            return PerMessageDeflateOfferAccept(
                offer,
                request_no_context_takeover=not takeover,
                request_max_window_bits=window or 0,
                no_context_takeover=not takeover or offer.request_no_context_takeover,
                window_bits=min(bits, offer.request_max_window_bits or 15),
                mem_level=8 if bits >= 15 else max(1, bits - 7),
                max_message_size=limit or None,
            )
        return None

    return accept


def configure_deflate(factory: Any, options: Options) -> None:
    """Switch permessage-deflate on for *factory* if its accept-options ask for it."""
    accept = deflate_acceptor(options)
    if accept is not None:
        factory.setProtocolOptions(perMessageCompressionAccept=accept)
