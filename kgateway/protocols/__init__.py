"""Sans-IO wire-protocol codecs: bytes in, events (or bytes) out; no reactor, no sockets, no
clock. They import nothing of kgateway beyond this folder, and no Twisted.

    amqp/             AMQP 0-9-1: frames.py (header, frames, reply codes), fields.py (field
                      tables), methods.py (the connection class)
    stomp.py          STOMP 1.0-1.2 frames, parser, negotiation
    proxy_protocol.py HAProxy's PROXY protocol v1 and v2 headers
    shield_control.py Enterprise Shield's control messages between two gateways
    http_connect.py   HTTP CONNECT to a proxy: the request, the proxy's answer
    kaazing.py        Kaazing's extended handshake (x-kaazing-handshake) in WebSocket messages
    http_upgrade.py   a WebSocket upgrade request told from its first bytes (no parse)

Each module documents its wire format next to its code; tests feed them one byte at a time
and with Hypothesis.
"""
