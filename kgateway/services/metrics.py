"""Service ``metrics``: this process's counters for Prometheus, through prometheus-client.

    GET /metrics  (Accept: text/plain or application/openmetrics-text, negotiated)
      kgateway_connections{service,type}                      open client connections
      kgateway_connections_accepted_total{service,type}
      kgateway_connections_refused_total{service,reason}      origin, auth, forbidden, tls,
                                                              proxy (and admission limits)
      kgateway_received_bytes_total / kgateway_sent_bytes_total{service,type}   live
      kgateway_connection_duration_seconds{service,type}      histogram, at close
      kgateway_handshake_duration_seconds{service,type}       histogram: request to open
                                                              (authentication, back-end connect)
      kgateway_backend_up{service,target}                     proxy targets, amqp.proxy and
                                                              jms brokers, Shield backplanes
      kgateway_backend_connect_failures_total{service,target}
      kgateway_shield_reverse_connections_ready{service,target}
      kgateway_jms_broker_subscriptions{service} / kgateway_jms_client_subscriptions{service}
      kgateway_jms_messages_delivered_total{service} / kgateway_jms_slow_consumers_total{service}
      kgateway_jms_buffered_bytes{service,target}             frames held while the broker is down
      kgateway_log_events_total{level}                        warnings and errors logged
      kgateway_draining, kgateway_info{version,worker}, process_* (ProcessCollector)

:class:`GatewayCollector` is a custom collector: nothing is counted twice, each scrape reads
the gateway's own counters (``ConnectionTracker``, the services' ``IBackendStatus`` and
``IMessageStats``, ``GatewayStatus``). Each metrics service has its own
``CollectorRegistry``, so tests (and several gateways in one process) never share one.

Labels are bounded sets only: service names, types, configured targets, fixed reasons and
levels. The client's address is deliberately not a label (one time series per client would
swamp any Prometheus); it is in the log, the access log and the status page. With
``--workers N`` each worker answers for itself, like the health service.

The resource is ours rather than ``prometheus_client.twisted.MetricsResource``: that one is a
WSGI resource run in the reactor's thread pool, and the gateway's counters may only be read
on the reactor thread.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry
from twisted.web import resource
from twisted.web.iweb import IRequest
from zope.interface import implementer

from kgateway import __version__
from kgateway.config import ServiceConfig
from kgateway.interfaces import IHTTPService, IMessageStats
from kgateway.services.base import GatewayStatus, ServiceBase, ServiceType
from kgateway.transport.tracker import Histogram


def _histogram(name: str, documentation: str, histograms: dict[str, Histogram],
               types: dict[str, str]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=["service", "type"])
    for service, histogram in sorted(histograms.items()):
        if service in types:
            family.add_metric([service, types[service]], histogram.cumulative(),
                              histogram.sum)
    return family


class GatewayCollector(Collector):
    """Reads a running gateway's counters at each scrape (see the module docstring)."""

    def __init__(self, gateway: GatewayStatus) -> None:
        self.gateway = gateway

    def collect(self) -> Iterator[Metric]:
        gateway = self.gateway
        tracker = gateway.tracker
        services = gateway.services
        types = {name: svc.config.type for name, svc in services.items()}

        def per_service(family: GaugeMetricFamily | CounterMetricFamily,
                        counts: dict[str, int]) -> GaugeMetricFamily | CounterMetricFamily:
            for name in sorted(services):
                family.add_metric([name, types[name]], counts.get(name, 0))
            return family

        yield per_service(GaugeMetricFamily(
            "kgateway_connections", "Client connections open now.",
            labels=["service", "type"]), tracker.counts())
        yield per_service(CounterMetricFamily(
            "kgateway_connections_accepted", "Client connections accepted since start.",
            labels=["service", "type"]), tracker.accepted)
        refused = CounterMetricFamily(
            "kgateway_connections_refused",
            "Clients refused before a session existed, by reason (origin, auth, forbidden, "
            "tls, proxy, limits).", labels=["service", "reason"])
        for name, reasons in sorted(tracker.refused.items()):
            for reason, count in sorted(reasons.items()):
                refused.add_metric([name, reason], count)
        yield refused
        yield per_service(CounterMetricFamily(
            "kgateway_received_bytes", "Bytes received from clients, counted as they arrive.",
            labels=["service", "type"]), tracker.received)
        yield per_service(CounterMetricFamily(
            "kgateway_sent_bytes", "Bytes sent to clients, counted as they are written.",
            labels=["service", "type"]), tracker.sent)
        yield _histogram("kgateway_connection_duration_seconds",
                         "How long client connections lasted, observed when they end.",
                         tracker.durations(), types)
        yield _histogram("kgateway_handshake_duration_seconds",
                         "From a client's request (WebSocket upgrade, TCP accept) to its "
                         "session being open: authentication and back-end connect included.",
                         tracker.handshakes(), types)
        yield from self._backends()
        yield from self._jms()
        events = CounterMetricFamily("kgateway_log_events",
                                     "Warnings and errors logged since start, by level.",
                                     labels=["level"])
        for level in ("warn", "error", "critical"):
            events.add_metric([level], gateway.recent.counts.get(level, 0))
        yield events
        yield GaugeMetricFamily("kgateway_draining", "1 from SIGTERM until the process ends.",
                                value=int(bool(gateway.draining)))
        info = InfoMetricFamily("kgateway", "Version and worker number of this process.")
        info.add_metric([], {"version": __version__,
                             "worker": "" if gateway.worker is None else str(gateway.worker)})
        yield info

    def _backends(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("kgateway_backend_up",
                               "1 while a back end (a <connect> target, a broker, a Shield "
                               "backplane) is considered reachable.",
                               labels=["service", "target"])
        failures = CounterMetricFamily("kgateway_backend_connect_failures",
                                       "Connects to a back end that failed since start.",
                                       labels=["service", "target"])
        ready = GaugeMetricFamily("kgateway_shield_reverse_connections_ready",
                                  "Reverse connections from internal gateways waiting for "
                                  "clients (Enterprise Shield, DMZ side).",
                                  labels=["service", "target"])
        buffered = GaugeMetricFamily("kgateway_jms_buffered_bytes",
                                     "Bytes of client frames the gateway holds until the "
                                     "broker is back.", labels=["service", "target"])
        for name, targets in sorted(self.gateway.backends().items()):
            for target, state in sorted(targets.items()):
                up.add_metric([name, target], int(bool(state.get("up"))))
                if "connect_failures" in state:
                    failures.add_metric([name, target], state["connect_failures"])
                if "ready" in state:
                    ready.add_metric([name, target], state["ready"])
                if "buffered" in state:
                    buffered.add_metric([name, target], state["buffered"])
        yield from (up, failures, ready, buffered)

    def _jms(self) -> Iterator[Metric]:
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            "broker_subscriptions": GaugeMetricFamily(
                "kgateway_jms_broker_subscriptions",
                "Topic subscriptions the gateway holds at the broker, shared by clients.",
                labels=["service"]),
            "client_subscriptions": GaugeMetricFamily(
                "kgateway_jms_client_subscriptions", "Subscriptions of the clients.",
                labels=["service"]),
            "messages_delivered": CounterMetricFamily(
                "kgateway_jms_messages_delivered", "MESSAGE frames written to clients.",
                labels=["service"]),
            "slow_consumers": CounterMetricFamily(
                "kgateway_jms_slow_consumers",
                "Clients disconnected for letting topic messages pile up "
                "(maximum.pending.bytes).", labels=["service"]),
        }
        for name, svc in sorted(self.gateway.services.items()):
            if IMessageStats.providedBy(svc):
                stats = svc.message_stats()
                for key, family in families.items():
                    family.add_metric([name], stats.get(key, 0))
        yield from families.values()


def registry(gateway: GatewayStatus, *, process: bool = True) -> CollectorRegistry:
    """A registry with the gateway's collector (and this process's process_* metrics)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(GatewayCollector(gateway))
    if process:
        ProcessCollector(registry=reg)
    return reg


class MetricsResource(resource.Resource):
    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self.registry = registry

    def render_GET(self, request: IRequest) -> bytes:
        accept = (request.getHeader(b"accept") or b"").decode("latin-1")
        encoder, content_type = choose_encoder(accept)
        request.setHeader(b"content-type", content_type.encode())
        request.setHeader(b"cache-control", b"no-store")
        return encoder(self.registry)


@implementer(IHTTPService)
class MetricsService(ServiceBase):
    def __init__(self, config: ServiceConfig, status: GatewayStatus) -> None:
        super().__init__(config)
        self.status = status
        self.registry = registry(status)
        self.resource = MetricsResource(self.registry)

    def http_resource(self) -> resource.IResource:
        return self.resource


SERVICE_TYPE = ServiceType(
    name="metrics",
    accept_schemes=frozenset({"http", "https"}),
    build=lambda context: MetricsService(context.config, context.status),
)
