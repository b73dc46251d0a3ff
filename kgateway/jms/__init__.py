"""The ``jms`` service: STOMP-over-WebSocket clients on a JMS broker's topics and queues.

    browsers, stomp.py ...            kgateway                              ActiveMQ
    STOMP 1.0-1.2 over ws/wss   +-------------------------+   STOMP 1.2 over TCP
    ---------------------------> | JmsSession (per client) |   a few gateway connections
    ---------------------------> |   destinations.py        | ===========================>
    ---------------------------> |   session.py  -> broker.py (BrokerPool, TopicFanout) |
                                 +-------------------------+

``destinations`` maps client names (``/topic/X``) through the JNDI-style lookup formats to
the broker's physical names; ``broker`` owns the gateway's own STOMP connections (reconnect
with back-off, re-subscription, receipts, shared topic subscriptions); ``session`` is the
per-client state machine. ``kgateway.services.jms`` registers the service type.
"""
