"""Destination names: what clients write, what the JNDI lookup says, what the broker sees.

    client            lookup format (JNDI name)      physical        broker STOMP name
    /topic/prices --> dynamicTopics/prices ------> prices ------> /topic/prices
    /queue/orders --> dynamicQueues/orders ------> orders ------> /queue/orders
    /temp-queue/r --> (per client, never looked up)  kgw.tmp.<session>.r -> /queue/kgw.tmp...
    /temp-topic/r --> (per client)                  kgw.tmp.<session>.r -> /topic/kgw.tmp...

The lookup formats are the seed's ``context.lookup.topic.format`` and
``context.lookup.queue.format`` (``%s`` is the client's name). ActiveMQ's JNDI context
resolves ``dynamicTopics/X`` and ``dynamicQueues/X`` to the physical X, which is what its
STOMP connector calls ``/topic/X`` and ``/queue/X``; any other JNDI name is used as the
physical name unchanged, so a format such as ``prices.%s`` maps ``/topic/eur`` to the
physical topic ``prices.eur``. ``broker.topic.prefix`` / ``broker.queue.prefix`` say how the
broker spells physical names in STOMP (``/topic/`` and ``/queue/`` for ActiveMQ and
RabbitMQ). Messages coming back are mapped the other way, so clients only ever see their own
names. Temporary destinations are plain broker queues/topics with a per-client name, so two
clients' ``/temp-queue/reply`` never meet.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DestinationError", "Destination", "DestinationMap"]

# ActiveMQ's JNDI names for destinations created on demand.
_DYNAMIC = {"topic": "dynamicTopics/", "queue": "dynamicQueues/"}
TEMP_PREFIX = "kgw.tmp."


class DestinationError(ValueError):
    """A destination a client may not use; the message is fit for an ERROR frame."""


@dataclass(frozen=True)
class Destination:
    """A resolved client destination."""

    client: str  #: as the client wrote it: /topic/X
    kind: str  #: "topic" or "queue"
    broker: str  #: as the broker spells it: /topic/X
    temporary: bool = False

    @property
    def is_topic(self) -> bool:
        return self.kind == "topic"


def _check_name(name: str, client: str) -> None:
    if not name:
        raise DestinationError(f"destination {client!r} has no name after the prefix")
    if any(ord(c) < 0x20 for c in name):
        raise DestinationError(f"destination {client!r} contains control characters")
    if "," in name:
        # ActiveMQ reads a comma as a composite destination: one SEND to several places.
        raise DestinationError(f"destination {client!r}: composite destinations are not allowed")


@dataclass(frozen=True)
class DestinationMap:
    """The configured mapping, both ways. *session_tag* qualifies temporary names."""

    topic_format: str = "dynamicTopics/%s"
    queue_format: str = "dynamicQueues/%s"
    broker_topic_prefix: str = "/topic/"
    broker_queue_prefix: str = "/queue/"

    def physical(self, kind: str, name: str) -> str:
        """The physical name for client name *name* of *kind* (topic or queue)."""
        jndi = (self.topic_format if kind == "topic" else self.queue_format).replace("%s", name)
        dynamic = _DYNAMIC[kind]
        return jndi[len(dynamic):] if jndi.startswith(dynamic) else jndi

    def resolve(self, client: str, session_tag: str) -> Destination:
        """Map a client destination, or raise DestinationError saying what is wrong."""
        for prefix, kind, temp in (("/topic/", "topic", False), ("/queue/", "queue", False),
                                   ("/temp-queue/", "queue", True),
                                   ("/temp-topic/", "topic", True)):
            if client.startswith(prefix):
                name = client[len(prefix):]
                _check_name(name, client)
                if temp:
                    physical = f"{TEMP_PREFIX}{session_tag}.{name}"
                elif name.startswith(TEMP_PREFIX):
                    physical = name  # another client's temporary reply-to, as we showed it
                else:
                    physical = self.physical(kind, name)
                broker_prefix = (self.broker_topic_prefix if kind == "topic"
                                 else self.broker_queue_prefix)
                return Destination(client, kind, broker_prefix + physical, temp)
        raise DestinationError(
            f"unknown destination {client[:100]!r}: use /topic/NAME, /queue/NAME, "
            "/temp-queue/NAME or /temp-topic/NAME")

    def to_client(self, broker: str, session_tag: str) -> str:
        """The client's name for broker destination *broker* (inverse of resolve)."""
        for kind, prefix in (("topic", self.broker_topic_prefix),
                             ("queue", self.broker_queue_prefix)):
            if not broker.startswith(prefix):
                continue
            physical = broker[len(prefix):]
            own = f"{TEMP_PREFIX}{session_tag}."
            if physical.startswith(own):
                return f"/temp-{kind}/{physical[len(own):]}"
            fmt = self.topic_format if kind == "topic" else self.queue_format
            dynamic = _DYNAMIC[kind]
            jndi_fmt = fmt[len(dynamic):] if fmt.startswith(dynamic) else fmt
            head, sep, tail = jndi_fmt.partition("%s")
            if sep and physical.startswith(head) and physical.endswith(tail) and \
                    len(physical) >= len(head) + len(tail):
                return f"/{kind}/{physical[len(head):len(physical) - len(tail)]}"
            return f"/{kind}/{physical}"
        return broker
