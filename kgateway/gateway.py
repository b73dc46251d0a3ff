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
import os
import socket
from dataclasses import dataclass, field
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from OpenSSL import SSL
from twisted.application import service
from twisted.internet import defer, endpoints, task
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from twisted.web import pages, resource, server
from twisted.web.iweb import IRequest

from kgateway import shield, tls
from kgateway.clientaddr import ProxyProtocolEndpoint
from kgateway.config import URI, GatewayConfig, ServiceConfig, bind_address
from kgateway.interfaces import IGatewayService
from kgateway.links import (
    TRACKER,
    ConnectionTracker,
    GatewayWebSocketFactory,
    StreamServerFactory,
    format_address,
)
from kgateway.services import SERVICE_TYPES
from kgateway.udp import UDPServerProtocol

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
    scheme_family: str  # "http" or a stream scheme ("tcp", "ssl") or "udp"
    tls: bool
    #: (ssl.verify-client, ssl.protocols, ssl.ciphers) of the services on this port
    tls_settings: tuple[str, tuple[str, ...], str | None] = ("none", (), None)
    router: Router | None = None
    stream_service: IGatewayService | None = None
    names: list[str] = field(default_factory=list)
    ports: list[IListeningPort] = field(default_factory=list)
    #: accept-option proxy.protocol, which every service on this port must agree on
    proxy_protocol: str = "none"

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


#: the drain's grace period when a health service is configured and --drain-grace is not given
DEFAULT_DRAIN_GRACE = 5.0
#: how long closing connections get to finish their close handshakes before being cut
CLOSE_WAIT = 5.0


@dataclass(frozen=True)
class DrainSettings:
    """SIGTERM: health 503 -> *grace* s still accepting -> listeners closed -> *timeout* s for
    connections to end by themselves -> going_away() and close 1001 for the rest."""

    grace: float | None = None  # None: DEFAULT_DRAIN_GRACE with a health service, else 0
    timeout: float = 10.0


class GatewayService(service.MultiService):
    """Binds every listener, then starts the services; drains and stops them in reverse."""

    def __init__(self, reactor: Any, config: GatewayConfig, *,
                 drain: DrainSettings = DrainSettings(), worker: int | None = None,
                 tracker: ConnectionTracker = TRACKER) -> None:
        super().__init__()
        self.reactor = reactor
        self.config = config
        self.drain = drain
        self.worker = worker  # with --workers: this worker's number; ports use SO_REUSEPORT
        self.tracker = tracker
        self.draining = False
        self.gateway_services: dict[str, IGatewayService] = {}
        self.listeners: dict[tuple[str, int], Listener] = {}
        # Enterprise Shield: pools of reverse connections (DMZ side), dialers (internal side)
        self.backplanes: list[shield.Backplane] = []
        self.reverse: list[shield.ReverseConnector] = []
        for svc_config in config.services:
            kind = SERVICE_TYPES[svc_config.type]
            svc = kind.build(reactor, svc_config, config)
            self.gateway_services[svc_config.name] = svc
            for uri in svc_config.accepts:
                if uri.is_reverse:
                    try:
                        identity = tls.security_identity(config.security)
                    except tls.TLSConfigError as e:
                        raise SystemExit(f"kgateway: {svc_config.name}: {e}") from e
                    self.reverse.append(shield.ReverseConnector(
                        reactor, svc, uri, identity, config.security.truststore_file or "",
                        tracker))
                else:
                    self._add_accept(svc, svc_config, uri)
            for uri in svc_config.connects:
                if uri.is_reverse:
                    self._add_backplane(svc_config, uri)
        for svc in self.gateway_services.values():
            bind = getattr(svc, "bind_gateway", None)  # e.g. health: counts, draining
            if bind is not None:
                bind(self)

    def _add_backplane(self, svc_config: ServiceConfig, uri: URI) -> None:
        """The DMZ side of a reverse+wss:// connect: a wss listener requiring client certs."""
        backplane = shield.Backplane(self.reactor, svc_config.name, uri)
        self.backplanes.append(backplane)
        listener = self.listeners.get((uri.host, uri.port))
        if listener is None:
            listener = Listener(uri.host, uri.port, "http", True, ("required", (), None))
            self.listeners[(uri.host, uri.port)] = listener
        listener.names.append(f"{svc_config.name} (Enterprise Shield backplane)")
        if listener.router is None:
            listener.router = Router()
        factory = shield.BackplaneFactory(backplane, svc_config.connect_options, self.reactor)
        listener.router.add_websocket(uri.path, WebSocketResource(factory))

    def _add_accept(self, svc: IGatewayService, svc_config: ServiceConfig, uri: URI) -> None:
        host, port = bind_address(uri, svc_config.accept_options)
        listener = self.listeners.get((host, port))
        if listener is None:
            family = "http" if uri.is_http else uri.scheme
            options = svc_config.accept_options
            listener = Listener(host, port, family, uri.is_tls, (
                options["ssl.verify-client"], options["ssl.protocols"], options["ssl.ciphers"]))
            self.listeners[(host, port)] = listener
            listener.proxy_protocol = svc_config.accept_options.get("proxy.protocol", "none")
        elif listener.proxy_protocol != svc_config.accept_options.get("proxy.protocol", "none"):
            raise SystemExit(f"kgateway: {uri} shares port {port} with {listener.names[0]!r} "
                             "but not its accept-option proxy.protocol: the PROXY header comes "
                             "before the request, so one port has one setting")
        listener.names.append(svc_config.name)
        if uri.is_http:
            if listener.router is None:
                listener.router = Router()
            if uri.is_websocket:
                factory = GatewayWebSocketFactory(svc, uri, reactor=self.reactor,
                                                  tracker=self.tracker)
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
        return StreamServerFactory(listener.stream_service, self.tracker)

    def _tls_options(self, listener: Listener) -> Any:
        """The TLS context of a listener's port: one for all its addresses."""
        security = self.config.security
        if not security.has_identity:
            raise SystemExit(f"kgateway: {listener.describe()} needs <security><keystore>")
        verify, protocols, ciphers = listener.tls_settings
        try:
            return tls.server_options(
                tls.security_identity(security), protocols=protocols, ciphers=ciphers,
                verify_client=verify, ca_file=security.truststore_file)
        except tls.TLSConfigError as e:
            raise SystemExit(f"kgateway: {listener.describe()}: {e}") from e

    def _endpoint(self, listener: Listener, family: int, address: str,
                  tls_options: Any) -> Any:
        if self.worker is not None:
            from kgateway.workers import ReusePortServerEndpoint

            endpoint: Any = ReusePortServerEndpoint(self.reactor, family, listener.port, address)
        elif family == socket.AF_INET6:
            endpoint = endpoints.TCP6ServerEndpoint(self.reactor, listener.port,
                                                         interface=address)
        else:
            endpoint = endpoints.TCP4ServerEndpoint(self.reactor, listener.port,
                                                    interface=address)
        # Outside TLS: a balancer's PROXY header precedes the TLS handshake. With "none" it
        # refuses clients forging a header (kgateway.clientaddr).
        endpoint = ProxyProtocolEndpoint(endpoint, listener.proxy_protocol, self.reactor,
                                         listener.describe())
        if tls_options is not None:
            endpoint = _TLSServerEndpoint(endpoint, tls_options, ", ".join(listener.names))
        return endpoint

    def privilegedStartService(self) -> None:
        for listener in self.listeners.values():
            tls_options = self._tls_options(listener) if listener.tls else None
            for family, address in _addresses(listener.host, listener.port):
                result: list[Any] = []
                if listener.scheme_family == "udp":
                    assert listener.stream_service is not None
                    try:
                        result.append(self.reactor.listenUDP(
                            listener.port, UDPServerProtocol(self.reactor,
                                                             listener.stream_service,
                                                             self.tracker),
                            interface=address))
                    except Exception:
                        result.append(Failure())
                else:
                    endpoint = self._endpoint(listener, family, address, tls_options)
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
        for backplane in self.backplanes:
            shield.register(backplane)
        for connector in self.reverse:
            self.reactor.callWhenRunning(connector.start)
        # "ready" once the reactor runs: connections are served and SIGTERM handled from then.
        self.reactor.callWhenRunning(self._ready)

    def _ready(self) -> None:
        log.info("kgateway ready: {count} services from {file}{worker}",
                 count=len(self.gateway_services), file=self.config.file,
                 worker=f" (worker {self.worker}, pid {os.getpid()})" if self.worker else "")
        if self.worker is not None:
            from kgateway.workers import notify_ready

            notify_ready()

    @defer.inlineCallbacks
    def _drain(self) -> Any:
        """The graceful part of a stop (SIGTERM): see DrainSettings and README."""
        self.draining = True
        grace = self.drain.grace
        if grace is None:
            has_health = any(s.config.type == "health" for s in self.gateway_services.values())
            grace = DEFAULT_DRAIN_GRACE if has_health else 0.0
        if grace > 0:
            log.info("draining: health reports 503; accepting new connections for {grace:g}s "
                     "more", grace=grace)
            yield task.deferLater(self.reactor, grace, lambda: None)
        for listener in self.listeners.values():
            for port in listener.ports:
                yield port.stopListening()
            listener.ports.clear()
        left = self.tracker.total()
        if not left:
            return
        log.info("draining: listeners closed; {count} connections have {timeout:g}s to end",
                 count=left, timeout=self.drain.timeout)
        if (yield self._idle_within(self.drain.timeout)):
            return
        connections = self.tracker.connections()
        log.info("draining: time is up; closing {count} connections with 1001 Going Away",
                 count=len(connections))
        for connection in connections:
            try:
                connection.going_away()
            except Exception:
                log.failure("going_away() failed for {connection}", connection=connection)
        if not (yield self._idle_within(CLOSE_WAIT)):
            for connection in self.tracker.connections():
                connection.abort()

    def _idle_within(self, timeout: float) -> defer.Deferred[bool]:
        d = self.tracker.when_idle()
        d.addTimeout(timeout, self.reactor)
        return d.addCallbacks(lambda _: True, lambda f: f.trap(defer.TimeoutError) and False)

    @defer.inlineCallbacks
    def stopService(self) -> Any:
        if not self.draining:
            yield self._drain()
        for connector in self.reverse:
            connector.stop()
        for backplane in self.backplanes:
            shield.unregister(backplane)
            backplane.close()
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

    def __init__(self, endpoint: Any, options: Any, services: str = "") -> None:
        self.endpoint = endpoint
        self.options = options
        self.services = services

    def listen(self, factory: Any) -> defer.Deferred[IListeningPort]:
        tls_factory = _LoggingTLSFactory(self.options, False, factory)
        tls_factory.services = self.services
        return self.endpoint.listen(tls_factory)


class _LoggingTLSProtocol(TLSMemoryBIOProtocol):
    """Says in the log why a client's TLS handshake was refused, and for which services."""

    factory: _LoggingTLSFactory

    def _tlsShutdownFinished(self, reason: Failure | None) -> None:
        if reason is not None and isinstance(reason.value, SSL.Error) \
                and not self._handshakeDone:
            transport: Any = self.transport
            why = tls.client_verify_error(self._tlsConnection) or \
                tls.describe_ssl_error(reason.value, server_side=True)
            log.info("TLS client {peer} refused by {services}: {reason}",
                     peer=format_address(transport.getPeer()),
                     services=self.factory.services, reason=why)
        super()._tlsShutdownFinished(reason)


class _LoggingTLSFactory(TLSMemoryBIOFactory):
    protocol = _LoggingTLSProtocol
    services = ""


def build_gateway(reactor: Any, config: GatewayConfig, **kwargs: Any) -> GatewayService:
    """*kwargs*: GatewayService's drain, worker and tracker."""
    return GatewayService(reactor, config, **kwargs)
