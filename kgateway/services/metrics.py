"""Service ``metrics``: this process's counters in the Prometheus text format (0.0.4).

    GET /metrics  ->  kgateway_connections{service="echo",type="echo"} 3
                      kgateway_connections_accepted_total{service="echo",type="echo"} 120
                      kgateway_received_bytes_total{...} / kgateway_sent_bytes_total{...}
                      kgateway_backend_up{service="relay",target="tcp://10.0.0.5:5672"} 1
                      kgateway_draining 0
                      kgateway_info{version="0.1.0",worker="1"} 1

Labels are bounded sets only: service names, types and configured targets. The client's
address is deliberately not a label (one time series per client would swamp any Prometheus);
it is in the log and the access log. Bytes count connections that have ended. With
``--workers N`` each worker answers for itself, like the health service.
"""

from __future__ import annotations

from collections.abc import Iterator

from twisted.web import resource
from twisted.web.iweb import IRequest
from zope.interface import implementer

from kgateway import __version__
from kgateway.config import ServiceConfig
from kgateway.interfaces import IBackendStatus, IHTTPService
from kgateway.services.base import GatewayStatus, ServiceBase, ServiceType

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


def _labels(**labels: object) -> str:
    def escape(value: object) -> str:
        return str(value).replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n")

    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in labels.items()) + "}"


def render(gateway: GatewayStatus) -> str:
    """The exposition text for the gateway (its tracker, services and draining flag)."""
    tracker = gateway.tracker
    live = tracker.counts()
    services = gateway.services

    def family(name: str, kind: str, help_: str, samples: Iterator[tuple[str, object]]) -> str:
        lines = [f"# HELP {name} {help_}", f"# TYPE {name} {kind}"]
        lines += [f"{name}{labels} {value}" for labels, value in samples]
        return "\n".join(lines)

    def per_service(counts: dict[str, int]) -> Iterator[tuple[str, object]]:
        for name, svc in sorted(services.items()):
            yield _labels(service=name, type=svc.config.type), counts.get(name, 0)

    def backends() -> Iterator[tuple[str, object]]:
        for name, svc in sorted(services.items()):
            status = svc.backend_status() if IBackendStatus.providedBy(svc) else {}
            for target, state in sorted(status.items()):
                yield _labels(service=name, target=target), int(bool(state.get("up")))

    worker = gateway.worker if gateway.worker is not None else ""
    return "\n".join([
        family("kgateway_connections", "gauge", "Client connections open now.",
               per_service(live)),
        family("kgateway_connections_accepted_total", "counter",
               "Client connections accepted since start.", per_service(tracker.accepted)),
        family("kgateway_received_bytes_total", "counter",
               "Bytes received from clients, by connections that have ended.",
               per_service(tracker.received)),
        family("kgateway_sent_bytes_total", "counter",
               "Bytes sent to clients, by connections that have ended.",
               per_service(tracker.sent)),
        family("kgateway_backend_up", "gauge",
               "1 while a <connect> target is considered reachable.", backends()),
        family("kgateway_draining", "gauge", "1 from SIGTERM until the process ends.",
               iter([("", int(bool(gateway.draining)))])),
        family("kgateway_info", "gauge", "Version and worker number of this process.",
               iter([(_labels(version=__version__, worker=worker), 1)])),
    ]) + "\n"


class MetricsResource(resource.Resource):
    isLeaf = True

    def __init__(self, service: MetricsService) -> None:
        super().__init__()
        self.service = service

    def render_GET(self, request: IRequest) -> bytes:
        request.setHeader(b"content-type", CONTENT_TYPE)
        request.setHeader(b"cache-control", b"no-store")
        return render(self.service.status).encode()


@implementer(IHTTPService)
class MetricsService(ServiceBase):
    def __init__(self, config: ServiceConfig, status: GatewayStatus) -> None:
        super().__init__(config)
        self.status = status
        self.resource = MetricsResource(self)

    def http_resource(self) -> resource.IResource:
        return self.resource


SERVICE_TYPE = ServiceType(
    name="metrics",
    accept_schemes=frozenset({"http", "https"}),
    build=lambda context: MetricsService(context.config, context.status),
)
