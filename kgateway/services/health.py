"""Service ``health``: what a load balancer's monitor polls (HAProxy ``option httpchk``,
an F5 BIG-IP HTTP monitor, nginx Plus ``health_check``).

    GET /health  ->  200 {"status": "ok", ...}            serving
                     503 {"status": "draining", ...}      SIGTERM received: stop sending clients
                     503 {"status": "unavailable", ...}   require.backends and a service has
                                                          no reachable <connect> target

The body, for people and scripts (the balancer only needs the status code):

    {"status": "ok", "pid": 4242, "worker": 1, "connections": 12,
     "services": {"echo": {"type": "echo", "connections": 12}, ...},
     "backends": {"relay": {"tcp://10.0.0.5:5672": {"up": true, "active": 3}}}}

Counts are this process's: with ``--workers N`` each worker answers for itself (``worker``
and ``pid`` say which), as each is a separate pool member from the balancer's point of view.
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.web import resource
from twisted.web.iweb import IRequest
from zope.interface import implementer

from kgateway.config import ServiceConfig, parse_bool
from kgateway.interfaces import IBackendStatus, IHTTPService
from kgateway.services.base import GatewayStatus, PropertySpec, ServiceBase, ServiceType

PROPERTIES = {
    # 503 when any service with <connect> targets has none reachable
    "require.backends": PropertySpec(parse_bool, False),
}


class HealthResource(resource.Resource):
    isLeaf = True

    def __init__(self, service: HealthService) -> None:
        super().__init__()
        self.service = service

    def render_GET(self, request: IRequest) -> bytes:
        code, report = self.service.report()
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return json.dumps(report, sort_keys=True).encode() + b"\n"


@implementer(IHTTPService)
class HealthService(ServiceBase):
    def __init__(self, config: ServiceConfig, status: GatewayStatus) -> None:
        super().__init__(config)
        self.require_backends = bool(config.settings["require.backends"])
        self.status = status
        self.resource = HealthResource(self)

    def report(self) -> tuple[int, dict[str, Any]]:
        gateway = self.status
        counts = gateway.tracker.counts()
        services: dict[str, Any] = {}
        backends: dict[str, Any] = {}
        unreachable = []
        for name, svc in gateway.services.items():
            services[name] = {"type": svc.config.type, "connections": counts.get(name, 0)}
            if IBackendStatus.providedBy(svc):
                backends[name] = svc.backend_status()
                if not svc.backend_reachable():
                    unreachable.append(name)
        if gateway.draining:
            state = "draining"
        elif self.require_backends and unreachable:
            state = "unavailable"
        else:
            state = "ok"
        report: dict[str, Any] = {
            "status": state,
            "pid": os.getpid(),
            "worker": gateway.worker,
            "connections": sum(counts.values()),
            "services": services,
            "backends": backends,
        }
        if unreachable:
            report["unreachable"] = unreachable
        return (200 if state == "ok" else 503), report

    def http_resource(self) -> resource.IResource:
        return self.resource


SERVICE_TYPE = ServiceType(
    name="health",
    accept_schemes=frozenset({"http", "https"}),
    properties=PROPERTIES,
    build=lambda context: HealthService(context.config, context.status),
)
