"""Service ``status``: a live page for the people who run the gateway.

    GET /status             -> 302 /status/
    GET /status/            -> the page (status_page/index.html), which polls:
    GET /status/status.json -> {"gateway": {...}, "health": "degraded", "services": [...],
                                "connections": [...], "errors": [...]}
    GET /status/status.js   -> the page's script

What the page shows, refreshed every two seconds: the gateway (pid, worker, version, uptime,
draining), every service with its accepts and connects, its open connections, bytes and
refusals, the state of its back ends (proxy targets, brokers, Enterprise Shield reverse
connections) and its messaging counters; the open client connections (client address, age,
bytes so far, back end); and the last warnings and errors the gateway logged.

The page shows client addresses and errors: an accept other than loopback (``localhost``,
127.0.0.1, ``[::1]``) needs a ``<realm-name>`` (README, "Authentication and authorization"),
else the config is refused: fail-closed, the page is never public by accident. Its look comes from the tutorials'
``style.css`` one folder up (``../style.css``), served when the status page shares its port
with the tutorials' directory service, as in ``etc/gateway.xml``; the page works without it.
Its files ship inside the package (``status_page/``): no CDN, nothing to install.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from importlib import resources
from typing import Any

from twisted.web import resource, util
from twisted.web.iweb import IRequest
from zope.interface import implementer

from kgateway import __version__
from kgateway.config import ConfigError, Problem, ServiceConfig, parse_positive_int
from kgateway.interfaces import IHTTPService, IMessageStats
from kgateway.services.base import (
    GatewayStatus,
    PropertySpec,
    ServiceBase,
    ServiceType,
    check_properties,
)
from kgateway.services.health import assess

PROPERTIES = {
    # open connections listed (the oldest first); the page says how many more there are
    "connections.shown": PropertySpec(parse_positive_int, 200),
}

_FILES = {
    b"": ("index.html", b"text/html; charset=utf-8"),
    b"index.html": ("index.html", b"text/html; charset=utf-8"),
    b"status.js": ("status.js", b"text/javascript; charset=utf-8"),
}


def _asset(name: str) -> bytes:
    return resources.files("kgateway.services").joinpath("status_page", name).read_bytes()


def report(gateway: GatewayStatus, shown: int = 200) -> dict[str, Any]:
    """What the page shows, as JSON-ready data (see the module docstring)."""
    tracker = gateway.tracker
    now, now_wall = tracker.clock(), tracker.wall()
    state, backends, down, _ = assess(gateway)
    counts = tracker.counts()
    received, sent = tracker.received, tracker.sent
    services = []
    for name, svc in gateway.services.items():
        config = svc.config
        entry: dict[str, Any] = {
            "name": name,
            "type": config.type,
            "accepts": [str(uri) for uri in config.accepts],
            "connects": [str(uri) for uri in config.connects],
            "connections": counts.get(name, 0),
            "accepted": tracker.accepted.get(name, 0),
            "received": received.get(name, 0),
            "sent": sent.get(name, 0),
            "refused": dict(tracker.refused.get(name, {})),
            "backends": backends.get(name, {}),
            "secured": config.realm_name is not None,
        }
        if IMessageStats.providedBy(svc):
            entry["messages"] = svc.message_stats()
        services.append(entry)
    records = sorted(tracker.records.values(), key=lambda r: r.started)
    connections = [{
        "service": r.service,
        "client": r.remote,
        "age": round(now - r.started, 3),
        "open": r.handshake is not None,
        "received": r.received,
        "sent": r.sent,
        "backend": r.backend,
    } for r in records[:shown]]
    return {
        "gateway": {
            "pid": os.getpid(),
            "worker": gateway.worker,
            "version": __version__,
            "started": gateway.started,
            "uptime": round(now_wall - gateway.started, 1),
            "now": now_wall,
            "draining": gateway.draining,
        },
        "health": state,
        "down": down,
        "services": services,
        "connections": connections,
        "connections_total": len(records),
        "shield": gateway.shield_ready(),
        "errors": gateway.recent.recent(),
    }


class StatusResource(resource.Resource):
    isLeaf = True

    def __init__(self, service: StatusService) -> None:
        super().__init__()
        self.service = service
        self._files: dict[str, bytes] = {}

    def render_GET(self, request: IRequest) -> bytes:
        postpath = request.postpath or []
        if not postpath:  # /status: relative links need the slash
            target = request.uri.split(b"?", 1)[0] + b"/"
            return util.redirectTo(target, request)
        name = postpath[0] if len(postpath) == 1 else None
        request.setHeader(b"cache-control", b"no-store")
        # The page embeds nothing from elsewhere (script and style from this gateway only).
        request.setHeader(b"content-security-policy",
                          b"default-src 'self'; img-src 'self' data:")
        request.setHeader(b"x-content-type-options", b"nosniff")
        if name == b"status.json":
            request.setHeader(b"content-type", b"application/json")
            data = report(self.service.status, self.service.shown)
            return json.dumps(data, sort_keys=True).encode() + b"\n"
        if name in _FILES:
            file, content_type = _FILES[name]
            body = self._files.get(file)
            if body is None:
                body = self._files[file] = _asset(file)
            request.setHeader(b"content-type", content_type)
            return body
        request.setResponseCode(404)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"404 Not Found\n"


@implementer(IHTTPService)
class StatusService(ServiceBase):
    def __init__(self, config: ServiceConfig, status: GatewayStatus) -> None:
        super().__init__(config)
        self.status = status
        self.shown: int = config.settings["connections.shown"]
        self.resource = StatusResource(self)

    def http_resource(self) -> resource.IResource:
        return self.resource


def _check(config: ServiceConfig, resolve: object) -> Mapping[str, Any]:
    values = check_properties(config, PROPERTIES)
    public = [str(uri) for uri in config.accepts if not uri.is_loopback]
    if public and config.realm_name is None:
        raise ConfigError([Problem(config.file, config.line, (
            f"service {config.name!r}: the status page shows client addresses and errors: "
            f"{', '.join(public)} is reachable from other machines, so add a <realm-name> "
            "(or accept on localhost only)"))])
    return values


SERVICE_TYPE = ServiceType(
    name="status",
    accept_schemes=frozenset({"http", "https"}),
    properties=PROPERTIES,
    custom_check=_check,
    build=lambda context: StatusService(context.config, context.status),
)
