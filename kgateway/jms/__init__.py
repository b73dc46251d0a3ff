"""The protocol-aware core of the ``jms`` service: STOMP-over-WebSocket clients on a JMS
broker's topics and queues. It imports transport, config, protocols, interfaces, timers.

    browsers, stomp.py ...            kgateway                              ActiveMQ
    STOMP 1.0-1.2 over ws/wss   +------------------------------+  STOMP 1.2 over TCP
    --------------------------> | JmsSession (per client)      |  a few gateway connections
    --------------------------> |   destinations.py            | =========================>
    --------------------------> |   fanout.py -> broker.py     |
                                +------------------------------+

    destinations.py   client names (/topic/X) <-> JNDI-style lookup formats <-> physical names
    rules.py          which names a client may SUBSCRIBE/SEND to: plain by default, more by
                      <destination-rule> (per role); pure
    broker.py         BrokerConnection: the gateway's own STOMP connections (reconnect with
                      back-off, fail-over over several brokers, re-subscription, receipts,
                      an outbox, back-pressure)
    provider.py       JNDI provider URLs (OpenWire, failover:(...)) -> the brokers' STOMP
                      connectors
    fanout.py         TopicFanout: one broker subscription per (topic, selector), shared
    session.py        JmsSession: the per-client state machine, and JmsHost, what it needs
                      of its service

``kgateway.services.jms`` is the service face (properties, settings, ServiceType).
"""
