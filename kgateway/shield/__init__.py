"""Enterprise Shield: reverse connectivity between an internal gateway and a DMZ gateway.
It imports transport, config, protocols, interfaces and timers.

The internal gateway opens NO listening socket towards the DMZ. It dials OUT, over mutually
authenticated TLS, to the DMZ gateway's backplane and keeps ``reverse.prepared.connection
.count`` idle WebSocket connections there; the DMZ gateway pairs each public client with one.

    public client --wss--> [DMZ gateway] proxy: connect reverse+wss://dmz:1443/shield/echo
                                |   backplane listener on dmz:1443 (TLS, client cert required)
                                |   pool of prepared reverse connections, per path
                  firewall: nothing inbound to the trusted network
                                ^   dialled out by the internal gateway, kept alive with PINGs
    broker <--tcp-- [internal gateway] proxy: accept reverse+wss://dmz:1443/shield/echo

One URI names the same backplane on both sides: the DMZ gateway *connects* its clients
through it, the internal gateway *accepts* its clients from it.

    pairing.py    the sans-IO pairing machines of both ends (phases, keep-alive, watchdog)
    adapter.py    MachineOutput: how both Autobahn adapters answer their machine's calls
    dmz.py        Backplanes (the registry the gateway owns), Backplane (a pool per path),
                  BackplaneProtocol: the thin Autobahn adapter of the DMZ end
    internal.py   ReverseConnector (keeps the pool full, back-off), ReverseClientProtocol

The control messages' wire format is in ``kgateway.protocols.shield_control``.
"""
