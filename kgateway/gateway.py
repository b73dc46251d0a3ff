"""The running gateway: one listening socket per address, shared by every service on it.

    GatewayConfig --build_gateway()--> GatewayService (a MultiService)
        listeners:  http 127.0.0.1:8000  -> Router  /      directory (prefix match)
                                                    /echo  echo      (WebSocket, exact path)
                                                    /amqp  amqp.proxy
                    tcp  127.0.0.1:5000  -> StreamServerFactory(proxy service)
        services:   started after the listeners are bound, stopped after they close

Plain HTTP to a WebSocket path gets 426 Upgrade Required; an unknown path gets 404.
Binding happens in privilegedStartService and a failure raises ListenError at once, so
``twistd`` exits non-zero with the reason instead of running half a gateway.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass, field
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from twisted.application import service
from twisted.internet import defer, endpoints
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.web import pages, resource, server
from twisted.web.iweb import IRequest

from kgateway import tls
from kgateway.config import URI, GatewayConfig, ServiceConfig, bind_address
from kgateway.interfaces import IGatewayService
from kgateway.links import GatewayWebSocketFactory, StreamServerFactory
from kgateway.services import SERVICE_TYPES

log = Logger()


class ListenError(Exception):
    """A configured accept could not be bound (address in use, permission...)."""


_NOT_FOUND = pages.notFound("Not Found", "No service at this path.")


class Router(resource.Resource):
    """Picks the service for a request by its path, on a port shared by several services."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.websockets: dict[bytes, resource.IResource] = {}
        self.folders: list[tuple[list[bytes], resource.IResource]] = []

    def add_websocket(self, path: str, target: resource.IResource) -> None:
        self.websockets[path.encode()] = target

    def add_folder(self, path: str, target: resource.IResource) -> None:
        segments = [s.encode() for s in path.strip("/").split("/") if s]
        self.folders.append((segments, target))
        self.folders.sort(key=lambda item: -len(item[0]))

    def render(self, request: IRequest) -> bytes | int:
        path = request.path
        target = self.websockets.get(path)
        if target is not None:
            upgrade = (request.getHeader(b"upgrade") or b"").lower()
            if upgrade != b"websocket":
                request.setResponseCode(426, b"Upgrade Required")
                request.setHeader(b"upgrade", b"websocket")
                request.setHeader(b"content-type", b"text/plain; charset=utf-8")
                return b"426 Upgrade Required: this is a WebSocket endpoint.\n"
            return target.render(request)
        segments = request.postpath
        for prefix, folder in self.folders:
            if segments[: len(prefix)] == prefix:
                request.prepath, request.postpath = prefix[:], segments[len(prefix):]
                if not request.postpath:
                    # "/app" for a folder at "/app/": let static.File redirect to "/app/".
                    request.postpath = []
                child = resource.getChildForRequest(folder, request)
                return child.render(request)
        return _NOT_FOUND.render(request)


@dataclass
class Listener:
    """Everything that listens on one (host, port)."""

    host: str
    port: int
    scheme_family: str  # "http" or a stream scheme ("tcp", "ssl")
    tls: bool
    router: Router | None = None
    stream_service: IGatewayService | None = None
    names: list[str] = field(default_factory=list)
    ports: list[IListeningPort] = field(default_factory=list)

    def describe(self) -> str:
        scheme = ("https" if self.tls else "http") if self.scheme_family == "http" else \
            self.scheme_family
        return f"{scheme}://{self.host}:{self.port}"


def _addresses(host: str, port: int) -> list[tuple[int, str]]:
    """Every address *host* resolves to: Kaazing-style hostnames bind all of them."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ListenError(f"cannot resolve {host!r}: {e.strerror}") from e
    seen: list[tuple[int, str]] = []
    for family, _, _, _, sockaddr in infos:
        item = (int(family), str(sockaddr[0]))
        if item not in seen:
            seen.append(item)
    # With port 0 each address would get a different port: bind only the first.
    return seen[:1] if port == 0 else seen


class GatewayService(service.MultiService):
    """Binds every listener, then starts the services; stops them in reverse."""

    def __init__(self, reactor: Any, config: GatewayConfig) -> None:
        super().__init__()
        self.reactor = reactor
        self.config = config
        self.gateway_services: dict[str, IGatewayService] = {}
        self.listeners: dict[tuple[str, int], Listener] = {}
        for svc_config in config.services:
            kind = SERVICE_TYPES[svc_config.type]
            svc = kind.build(reactor, svc_config, config)
            self.gateway_services[svc_config.name] = svc
            for uri in svc_config.accepts:
                self._add_accept(svc, svc_config, uri)

    def _add_accept(self, svc: IGatewayService, svc_config: ServiceConfig, uri: URI) -> None:
        host, port = bind_address(uri, svc_config.accept_options)
        listener = self.listeners.get((host, port))
        if listener is None:
            family = "http" if uri.is_http else uri.scheme
            listener = Listener(host, port, family, uri.is_tls)
            self.listeners[(host, port)] = listener
        listener.names.append(svc_config.name)
        if uri.is_http:
            if listener.router is None:
                listener.router = Router()
            if uri.is_websocket:
                factory = GatewayWebSocketFactory(svc, uri, reactor=self.reactor)
                listener.router.add_websocket(uri.path, WebSocketResource(factory))
            else:
                listener.router.add_folder(uri.path, svc.http_resource())  # type: ignore[attr-defined]
        else:
            listener.stream_service = svc

    # listening

    def _factory(self, listener: Listener) -> Any:
        if listener.router is not None:
            site = server.Site(listener.router)
            site.displayTracebacks = False
            site.noisy = False
            return site
        assert listener.stream_service is not None
        return StreamServerFactory(listener.stream_service)

    def _endpoint(self, listener: Listener, family: int, address: str) -> Any:
        if family == socket.AF_INET6:
            endpoint: Any = endpoints.TCP6ServerEndpoint(self.reactor, listener.port,
                                                         interface=address)
        else:
            endpoint = endpoints.TCP4ServerEndpoint(self.reactor, listener.port,
                                                    interface=address)
        if listener.tls:
            security = self.config.security
            if security.certificate_file is None or security.key_file is None:
                raise SystemExit(f"kgateway: {listener.describe()} needs <security><keystore>")
            try:
                options = tls.server_options(security.certificate_file, security.key_file)
            except tls.TLSConfigError as e:
                raise SystemExit(f"kgateway: {listener.describe()}: {e}") from e
            endpoint = _TLSServerEndpoint(endpoint, options)
        return endpoint

    def privilegedStartService(self) -> None:
        for listener in self.listeners.values():
            for family, address in _addresses(listener.host, listener.port):
                endpoint = self._endpoint(listener, family, address)
                result: list[Any] = []
                endpoint.listen(self._factory(listener)).addBoth(result.append)
                outcome = result[0] if result else None
                if isinstance(outcome, Failure):
                    message = _listen_failure(listener, address, outcome)
                    # twistd turns SystemExit(str) into that line on stderr and exit status 1.
                    raise SystemExit(f"kgateway: {message}")
                assert outcome is not None, "TCP listening is synchronous"
                listener.ports.append(outcome)
                bound = outcome.getHost()
                log.info("listening on {scheme}://{host}:{port} for {services}",
                         scheme=listener.describe().split(":")[0], host=bound.host,
                         port=bound.port, services=", ".join(listener.names))
        super().privilegedStartService()

    def startService(self) -> None:
        super().startService()
        for svc in self.gateway_services.values():
            svc.start()
        # "ready" once the reactor runs: connections are served and SIGTERM handled from then.
        self.reactor.callWhenRunning(log.info, "kgateway ready: {count} services from {file}",
                                     count=len(self.gateway_services), file=self.config.file)

    @defer.inlineCallbacks
    def stopService(self) -> Any:
        for listener in self.listeners.values():
            for port in listener.ports:
                yield port.stopListening()
            listener.ports.clear()
        for svc in self.gateway_services.values():
            yield defer.maybeDeferred(svc.stop)
        yield super().stopService()
        log.info("kgateway stopped")


def _listen_failure(listener: Listener, address: str, failure: Failure) -> str:
    value = failure.value
    cause = getattr(value, "socketError", None) or value
    code = getattr(cause, "errno", None)
    if code == errno.EADDRINUSE:
        why = "address already in use"
    elif code == errno.EACCES:
        why = "permission denied (ports below 1024 need privileges)"
    elif code == errno.EADDRNOTAVAIL:
        why = "no such local address"
    else:
        why = failure.getErrorMessage()
    return (f"cannot listen on {address}:{listener.port} "
            f"(services {', '.join(listener.names)}): {why}")


class _TLSServerEndpoint:
    """Wraps a TCP server endpoint in TLS (Twisted has wrapClientTLS but no server twin)."""

    def __init__(self, endpoint: Any, options: Any) -> None:
        self.endpoint = endpoint
        self.options = options

    def listen(self, factory: Any) -> defer.Deferred[IListeningPort]:
        return self.endpoint.listen(
            TLSMemoryBIOFactory(self.options, False, factory)
        )


def build_gateway(reactor: Any, config: GatewayConfig) -> GatewayService:
    return GatewayService(reactor, config)
