"""Twisted and Autobahn adapters: bytes and messages in, ISession / ILinkReceiver calls out.
It imports config, protocols, auth, interfaces and timers only.

    links.py        ILink over a Twisted or Autobahn protocol: StreamLink, WebSocketLink
    accept.py       accepted clients: StreamServerProtocol, GatewayWebSocketProtocol, origins
    fastws.py       the WebSocket fast data path: after Autobahn's handshake, a relay client's
                    frames go through kgateway.protocols.websocket (FastWebSocketLink)
    connect.py      links the gateway opens (tcp, ssl, ws, wss): usable only once TCP, TLS
                    and the WebSocket handshake are all done
    udp.py          udp accepts (a session per client address) and connected udp links
    tracker.py      live client connections per service, the access log, admission counts
    admission.py    connection limits per service and client host, handshake rate (pure)
    handshake.py    the HTTP phase of ws/http accepts bounded by http.handshake.timeout;
                    upgrades handed to Autobahn without twisted.web
    proxyproto.py   the PROXY protocol wrapper on listening sockets (under TLS)
    forwarded.py    Forwarded / X-Forwarded-For -> the client address (pure)
    tls.py          the gateway's identity, server and client TLS, ClientTLS.explain(),
                    SNI over several keystores, CRL checks, certificate names
    closecodes.py   Autobahn protocols that accept every close code a gateway relays (1014)
    httpproxy.py    connects through an HTTP CONNECT proxy (http.proxy): a tunnel endpoint
    kaazing.py      the x-kaazing-handshake extended handshake in front of a session
    compression.py  permessage-deflate on accepts (accept-options ws.permessage-deflate*)

Which back end a service reaches, and how (including Enterprise Shield's reverse+wss),
is the Connector's business (``kgateway.connector``), a floor above.
"""
