"""Listening sockets: the gateway's accepts grouped by (host, port), one socket each.

    Listeners.add_accept(service, uri) / add_backplane(...) while the gateway is built
    Listeners.bind()       every address of every listener, or ListenError at once
        endpoint stack:    TCP (SO_REUSEPORT with --workers) -> PROXY protocol -> TLS ->
                           Site(Router) for http/ws, StreamServerFactory for tcp/ssl,
                           or a UDPServerProtocol for udp
    Listeners.close()      stop listening (a drain's step 2, and stop)

WebSocket and HTTP services on one host and port share a socket and a Router (``web.py``);
``tcp://``/``ssl://``/``udp://`` accepts get a port each. The rules that make a set of
accepts valid (one transport, one TLS setting, one PROXY mode per port) are checked while
the configuration loads (``config.checks``); what is left here can only fail at bind time.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from twisted.internet import defer, endpoints
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import server

from kgateway.auth.gate import Gate
from kgateway.config import URI, Security, ServiceConfig, bind_address
from kgateway.interfaces import IGatewayService, IHTTPService
from kgateway.shield.dmz import Backplane, BackplaneFactory
from kgateway.transport import tls
from kgateway.transport.accept import GatewayWebSocketFactory, StreamServerFactory
from kgateway.transport.proxyproto import ProxyProtocolEndpoint
from kgateway.transport.tracker import ConnectionTracker
from kgateway.transport.udp import UDPServerProtocol
from kgateway.web import Router
from kgateway.workers import ReusePortServerEndpoint

log = Logger()


class ListenError(Exception):
    """A configured accept could not be bound (address in use, permission, TLS keystore...)."""


@dataclass
class Listener:
    """Everything that listens on one (host, port)."""

    host: str
    port: int
    transport: str  # "http" (and WebSocket), or a stream scheme "tcp"/"ssl", or "udp"
    tls: bool
    #: (ssl.verify-client, ssl.protocols, ssl.ciphers, ssl.crl) of the services on this port
    tls_settings: tuple[str, tuple[str, ...], str | None, str | None] = ("none", (), None, None)
    #: accept-option proxy.protocol, which every service on this port agrees on
    proxy_protocol: str = "none"
    router: Router | None = None
    stream_service: IGatewayService | None = None
    names: list[str] = field(default_factory=list)
    ports: list[IListeningPort] = field(default_factory=list)

    def describe(self) -> str:
        scheme = ("https" if self.tls else "http") if self.transport == "http" else \
            self.transport
        return f"{scheme}://{self.host}:{self.port}"


class Listeners:
    """The gateway's listeners, by (host, port)."""

    def __init__(self, reactor: Any, security: Security, identity: tls.Identity | None,
                 tracker: ConnectionTracker, reuse_port: bool = False,
                 alternatives: Sequence[tls.Identity] = ()) -> None:
        self.reactor = reactor
        self.security = security
        self.identity = identity
        #: the other <keystore>s' identities, chosen by SNI on every TLS port
        self.alternatives = alternatives
        self.tracker = tracker
        self.reuse_port = reuse_port  # --workers: siblings share each port
        self.by_address: dict[tuple[str, int], Listener] = {}

    def _listener(self, host: str, port: int, transport: str, tls_on: bool,
                  tls_settings: tuple[str, tuple[str, ...], str | None, str | None],
                  proxy_protocol: str) -> Listener:
        listener = self.by_address.get((host, port))
        if listener is None:
            listener = Listener(host, port, transport, tls_on, tls_settings, proxy_protocol)
            self.by_address[(host, port)] = listener
        return listener

    def add_accept(self, svc: IGatewayService, uri: URI, gate: Gate | None = None) -> None:
        config: ServiceConfig = svc.config
        options = config.accept_options
        host, port = bind_address(uri, options)
        listener = self._listener(
            host, port, "http" if uri.is_http else uri.scheme, uri.is_tls,
            (options["ssl.verify-client"], options["ssl.protocols"], options["ssl.ciphers"],
             options["ssl.crl"]),
            options["proxy.protocol"])
        listener.names.append(config.name)
        if not uri.is_http:
            listener.stream_service = svc
            return
        if listener.router is None:
            listener.router = Router()
        if uri.is_websocket:
            factory = GatewayWebSocketFactory(svc, uri, self.reactor, self.tracker, gate)
            listener.router.add_websocket(uri.path, WebSocketResource(factory))
        else:
            assert IHTTPService.providedBy(svc), f"{config.type} serves no HTTP"
            listener.router.add_folder(uri.path, svc.http_resource(), gate)

    def add_backplane(self, backplane: Backplane, config: ServiceConfig) -> None:
        """The DMZ side of a reverse+wss:// connect: a wss listener requiring client certs."""
        uri = backplane.uri
        listener = self._listener(uri.host, uri.port, "http", True,
                                  ("required", (), None, config.connect_options["ssl.crl"]),
                                  "none")
        listener.names.append(f"{config.name} (Enterprise Shield backplane)")
        if listener.router is None:
            listener.router = Router()
        factory = BackplaneFactory(backplane, config.connect_options, self.reactor)
        listener.router.add_websocket(uri.path, WebSocketResource(factory))

    # binding

    def bind(self) -> None:
        """Bind every listener on every address its host resolves to, or raise ListenError."""
        for listener in self.by_address.values():
            tls_options = self._tls_options(listener) if listener.tls else None
            for family, address in _addresses(listener.host, listener.port):
                result: list[Any] = []
                if listener.transport == "udp":
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
                    raise ListenError(_listen_failure(listener, address, outcome))
                assert outcome is not None, "TCP listening is synchronous"
                listener.ports.append(outcome)
                bound = outcome.getHost()
                log.info("listening on {scheme}://{host}:{port} for {services}",
                         scheme=listener.describe().split(":")[0], host=bound.host,
                         port=bound.port, services=", ".join(listener.names))

    @defer.inlineCallbacks
    def close(self) -> Any:
        """Stop listening everywhere (connections already accepted go on)."""
        for listener in self.by_address.values():
            ports, listener.ports = listener.ports, []
            for port in ports:
                yield port.stopListening()

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
        if self.identity is None:
            raise ListenError(f"{listener.describe()} needs <security><keystore>")
        verify, protocols, ciphers, crl = listener.tls_settings
        try:
            return tls.server_options(self.identity, protocols=protocols, ciphers=ciphers,
                                      verify_client=verify,
                                      ca_file=self.security.truststore_file, crl_file=crl,
                                      alternatives=self.alternatives)
        except tls.TLSConfigError as e:
            raise ListenError(f"{listener.describe()}: {e}") from e

    def _endpoint(self, listener: Listener, family: int, address: str,
                  tls_options: Any) -> Any:
        endpoint: Any
        if self.reuse_port:
            endpoint = ReusePortServerEndpoint(self.reactor, family, listener.port, address)
        elif family == socket.AF_INET6:
            endpoint = endpoints.TCP6ServerEndpoint(self.reactor, listener.port,
                                                    interface=address)
        else:
            endpoint = endpoints.TCP4ServerEndpoint(self.reactor, listener.port,
                                                    interface=address)
        # Outside TLS: a balancer's PROXY header precedes the TLS handshake. With "none" it
        # refuses clients forging a header (transport.proxyproto).
        endpoint = ProxyProtocolEndpoint(endpoint, listener.proxy_protocol, self.reactor,
                                         listener.describe())
        if tls_options is not None:
            endpoint = tls.TLSServerEndpoint(endpoint, tls_options, ", ".join(listener.names))
        return endpoint


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
