"""Service ``health``: what a load balancer's monitor polls (HAProxy ``option httpchk``,
an F5 BIG-IP HTTP monitor, nginx Plus ``health_check``).

    GET /health  ->  200 {"status": "ok", ...}            serving, every back end up
                     200 {"status": "degraded", ...}      serving, but a back end is down: a
                                                          proxy target, the amqp.proxy broker,
                                                          a jms broker connection (messages are
                                                          buffered), a DMZ gateway's reverse
                                                          connections (none ready)
                     503 {"status": "draining", ...}      SIGTERM received: stop sending clients
                     503 {"status": "unavailable", ...}   require.backends and a service has
                                                          no reachable back end

The body, for people and scripts (the balancer only needs the status code):

    {"status": "degraded", "pid": 4242, "worker": 1, "connections": 12,
     "services": {"echo": {"type": "echo", "connections": 12}, ...},
     "backends": {"relay": {"tcp://10.0.0.5:5672": {"up": true, "active": 3}},
                  "stomp": {"stomp://mq:61613": {"up": false, "error": "Connection refused",
                                                 "buffered": 2048, ...}}},
     "down": ["stomp"]}

``down`` lists the services with a back end down; ``unreachable`` those with none up.
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
from kgateway.interfaces import IHTTPService
from kgateway.services.base import GatewayStatus, PropertySpec, ServiceBase, ServiceType

PROPERTIES = {
    # 503 when any service with back ends (proxy, amqp.proxy, jms, a DMZ gateway's
    # reverse connections) has none up; else such a service only makes the status "degraded"
    "require.backends": PropertySpec(parse_bool, False),
}


def assess(gateway: GatewayStatus, require_backends: bool = False
           ) -> tuple[str, dict[str, Any], list[str], list[str]]:
    """(status, back ends per service, services with one down, services with none up).

    The status is draining, unavailable (only with *require_backends*), degraded or ok.
    """
    backends = gateway.backends()
    down, unreachable = [], []
    for name, targets in backends.items():
        ups = [bool(state.get("up")) for state in targets.values()]
        if not all(ups) or any(state.get("degraded") for state in targets.values()):
            down.append(name)
        if not any(ups):
            unreachable.append(name)
    if gateway.draining:
        state = "draining"
    elif require_backends and unreachable:
        state = "unavailable"
    elif down:
        state = "degraded"
    else:
        state = "ok"
    return state, backends, down, unreachable


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
        for name, svc in gateway.services.items():
            services[name] = {"type": svc.config.type, "connections": counts.get(name, 0)}
        state, backends, down, unreachable = assess(gateway, self.require_backends)
        report: dict[str, Any] = {
            "status": state,
            "pid": os.getpid(),
            "worker": gateway.worker,
            "connections": sum(counts.values()),
            "services": services,
            "backends": backends,
        }
        if down:
            report["down"] = down
        if unreachable:
            report["unreachable"] = unreachable
        return (503 if state in ("draining", "unavailable") else 200), report

    def http_resource(self) -> resource.IResource:
        return self.resource


SERVICE_TYPE = ServiceType(
    name="health",
    accept_schemes=frozenset({"http", "https"}),
    properties=PROPERTIES,
    build=lambda context: HealthService(context.config, context.status),
)
