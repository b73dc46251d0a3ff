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

from kgateway.config import ServiceConfig, parse_bool
from kgateway.services import (
    PathResolver,
    PropertySpec,
    ServiceBase,
    ServiceType,
    check_properties,
)

PROPERTIES = {
    "require.backends": PropertySpec(
        parse_bool, False,
        doc="503 when any service with <connect> targets has none reachable.",
    ),
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


class HealthService(ServiceBase):
    def __init__(self, config: ServiceConfig) -> None:
        super().__init__(config)
        self.require_backends = bool(config.settings["require.backends"])
        self.gateway: Any = None  # the GatewayService, given by bind_gateway()
        self.resource = HealthResource(self)

    def bind_gateway(self, gateway: Any) -> None:
        """Called by the GatewayService once every service is built."""
        self.gateway = gateway

    def report(self) -> tuple[int, dict[str, Any]]:
        gateway = self.gateway
        counts: dict[str, int] = gateway.tracker.counts() if gateway is not None else {}
        services: dict[str, Any] = {}
        backends: dict[str, Any] = {}
        unreachable = []
        for name, svc in (gateway.gateway_services.items() if gateway is not None else ()):
            services[name] = {"type": svc.config.type, "connections": counts.get(name, 0)}
            status = getattr(svc, "backend_status", None)
            if status is not None:
                backends[name] = status()
                if not svc.backend_reachable():
                    unreachable.append(name)
        if gateway is not None and gateway.draining:
            state = "draining"
        elif self.require_backends and unreachable:
            state = "unavailable"
        else:
            state = "ok"
        report: dict[str, Any] = {
            "status": state,
            "pid": os.getpid(),
            "worker": getattr(gateway, "worker", None),
            "connections": sum(counts.values()),
            "services": services,
            "backends": backends,
        }
        if unreachable:
            report["unreachable"] = unreachable
        return (200 if state == "ok" else 503), report

    def http_resource(self) -> resource.IResource:
        return self.resource


def _check(config: ServiceConfig, resolve: PathResolver) -> Any:
    return check_properties(config, PROPERTIES)


SERVICE_TYPE = ServiceType(
    name="health",
    accept_schemes=frozenset({"http", "https"}),
    connect_schemes=frozenset(),
    min_connects=0,
    max_connects=0,
    check=_check,
    build=lambda reactor, config, gateway: HealthService(config),
    doc="JSON health for load-balancer monitors: 200 serving, 503 draining or back ends down.",
)
