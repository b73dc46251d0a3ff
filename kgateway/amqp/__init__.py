"""The protocol-aware core of the ``amqp.proxy`` service. It imports transport,
config, protocols, interfaces and timers.

    relay.py     AmqpRelay: the sans-IO relay of one client (handshake, vhost, framing)
    session.py   AmqpSession: its Twisted driver (links, broker connect, timers, throttles)

The service face (properties, ServiceType) is ``kgateway.services.amqp``.
"""
