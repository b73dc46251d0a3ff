"""Topic fan-out: one broker subscription per (topic, selector), shared by every client.

    BrokerConnection --MESSAGE--> TopicFanout --SharedMessage--> each member (a client
                                  subscription), encoded once per STOMP version and
                                  written with each member's own subscription id

Subscriptions are ref-counted per (topic, selector) and spread over the service's shared
connections by a stable hash of the topic, so one topic keeps its order. A topic with a
last-value cache (``<topic><cache.size>``) stays subscribed for good.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from twisted.logger import Logger

from kgateway.jms.broker import PER_SUBSCRIPTION, BrokerConnection, Subscription
from kgateway.protocols.stomp import Frame, PreparedFrame, is_text

log = Logger()


class TopicMember:
    """One client subscription to a shared topic, as the fan-out sees it."""

    def deliver(self, message: SharedMessage) -> None:
        raise NotImplementedError


class SharedMessage:
    """A broker MESSAGE with its per-subscription headers removed, encoded once per version."""

    __slots__ = ("frame", "_prepared", "text_ok")

    def __init__(self, frame: Frame) -> None:
        self.frame = frame
        self._prepared: dict[str, PreparedFrame] = {}
        self.text_ok = is_text(frame.body)

    def prepared(self, version: str) -> PreparedFrame:
        prepared = self._prepared.get(version)
        if prepared is None:
            prepared = self._prepared[version] = PreparedFrame(self.frame, version)
        return prepared


@dataclass
class SharedTopic:
    """One broker subscription serving every client on (destination, selector)."""

    key: tuple[str, str | None]
    connection: BrokerConnection
    subscription: Subscription | None = None
    members: dict[int, TopicMember] = field(default_factory=dict)
    waiting: list[Callable[[], None]] = field(default_factory=list)
    cache: deque[SharedMessage] | None = None
    permanent: bool = False
    to_client: Callable[[str], str] = str


@dataclass
class Deliveries:
    """What a jms service's clients were sent, since start (for metrics)."""

    #: MESSAGE frames written to clients (topic fan-out and queues)
    messages: int = 0
    #: clients disconnected as slow consumers (maximum.pending.bytes)
    slow_consumers: int = 0


class TopicFanout:
    """Shares broker topic subscriptions among clients, ref-counted per (topic, selector)."""

    def __init__(self, connections: Sequence[BrokerConnection],
                 caches: dict[str, int] | None = None) -> None:
        self.connections = list(connections)
        self.deliveries = Deliveries()
        self.topics: dict[tuple[str, str | None], SharedTopic] = {}
        #: broker destination -> last-value cache size
        self.caches = dict(caches or {})

    def _connection_for(self, key: tuple[str, str | None]) -> BrokerConnection:
        # Stable across runs so a topic's order is kept on one connection.
        index = sum(key[0].encode()) % len(self.connections)
        return self.connections[index]

    def start(self, to_client: Callable[[str], str]) -> None:
        """Subscribe the cached topics for good, so their caches fill before anyone asks."""
        for broker_dest in self.caches:
            topic = self._topic((broker_dest, None), to_client)
            topic.permanent = True

    def _topic(self, key: tuple[str, str | None],
               to_client: Callable[[str], str]) -> SharedTopic:
        topic = self.topics.get(key)
        if topic is not None:
            return topic
        topic = SharedTopic(key, self._connection_for(key), to_client=to_client)
        size = self.caches.get(key[0])
        if size and key[1] is None:
            topic.cache = deque(maxlen=size)
        self.topics[key] = topic
        headers = [("destination", key[0]), ("ack", "auto")]
        if key[1] is not None:
            headers.append(("selector", key[1]))

        def ready() -> None:
            waiting, topic.waiting = topic.waiting, []
            for callback in waiting:
                callback()

        def refused(message: str, detail: str) -> None:
            self.topics.pop(key, None)
            topic.subscription = None
            members, topic.members = topic.members, {}
            topic.waiting = []
            for member in members.values():
                member_refused = getattr(member, "refused", None)
                if member_refused is not None:
                    member_refused(message, detail)

        topic.subscription = topic.connection.subscribe(
            headers, lambda frame, epoch: self._message(topic, frame),
            on_error=refused, on_ready=ready)
        return topic

    def add(self, destination: str, selector: str | None, member: TopicMember,
            to_client: Callable[[str], str], on_ready: Callable[[], None]) -> SharedTopic:
        """Add *member*; *on_ready* runs once the broker subscription is confirmed."""
        topic = self._topic((destination, selector), to_client)
        topic.members[id(member)] = member
        if topic.subscription is not None and topic.subscription.ready:
            on_ready()
        else:
            topic.waiting.append(on_ready)
        if topic.cache:
            for message in list(topic.cache):
                member.deliver(message)
        return topic

    def subscriptions(self) -> tuple[int, int]:
        """(broker subscriptions, client subscriptions they serve) of the shared topics."""
        return len(self.topics), sum(len(t.members) for t in self.topics.values())

    def remove(self, topic: SharedTopic, member: TopicMember) -> None:
        topic.members.pop(id(member), None)
        if topic.members or topic.permanent:
            return
        if self.topics.get(topic.key) is topic:
            del self.topics[topic.key]
        if topic.subscription is not None:
            topic.connection.unsubscribe(topic.subscription.id)
            topic.subscription = None

    def _message(self, topic: SharedTopic, frame: Frame) -> None:
        headers = []
        for name, value in frame.headers:
            if name in PER_SUBSCRIPTION:
                continue
            if name == "destination":
                value = topic.to_client(value)
            headers.append((name, value))
        message = SharedMessage(Frame("MESSAGE", headers, frame.body))
        if topic.cache is not None:
            topic.cache.append(message)
        for member in list(topic.members.values()):
            try:
                member.deliver(message)
            except Exception:
                log.failure("jms: fan-out to one client failed")
