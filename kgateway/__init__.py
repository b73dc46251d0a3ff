"""kgateway: a WebSocket gateway for message brokers and TCP services, in the mould of Kaazing."""

__version__ = "0.1.0"
