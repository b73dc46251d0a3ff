"""Listening sockets: the gateway's accepts grouped by (host, port), one socket each.

    Listeners.add_accept(service, uri) / add_backplane(...) while the gateway is built
    Listeners.bind()       every address of every listener, or ListenError at once
        endpoint stack:    TCP (SO_REUSEPORT with --workers) -> PROXY protocol -> TLS ->
                           GatewaySite(Router) for http/ws, StreamServerFactory for tcp/ssl,
                           or a UDPServerProtocol for udp
        handshake bounds:  PROXY header 10 s, ssl.handshake.timeout on TLS, and
                           http.handshake.timeout for the whole HTTP request (one per port)
    Listeners.close()      stop listening (a drain's step 2, and stop)
    Listeners.adopt(old)   a reload: take over the sockets of *old* whose address and
                           shape (transport, TLS settings, PROXY mode) stay, pointing them
                           at the new Router/service and TLS context; returns the rest of
                           *old*, to close, before ``bind()`` binds what is new

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

from twisted.internet import defer, endpoints
from twisted.internet.interfaces import IListeningPort, IOpenSSLContextFactory
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from kgateway.auth.gate import Gate
from kgateway.config import ACCEPT_OPTIONS, URI, Security, ServiceConfig, bind_address
from kgateway.interfaces import IGatewayService, IHTTPService
from kgateway.shield.dmz import Backplane, BackplaneFactory
from kgateway.transport import tls
from kgateway.transport.accept import GatewayWebSocketFactory, StreamServerFactory
from kgateway.transport.handshake import GatewaySite
from kgateway.transport.proxyproto import ProxyProtocolEndpoint
from kgateway.transport.tracker import PROXY, TLS, ConnectionTracker
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
    #: accept-options http.handshake.timeout and ssl.handshake.timeout, one per port
    http_handshake_timeout: float = ACCEPT_OPTIONS["http.handshake.timeout"][1]
    tls_handshake_timeout: float = ACCEPT_OPTIONS["ssl.handshake.timeout"][1]
    router: Router | None = None
    stream_service: IGatewayService | None = None
    names: list[str] = field(default_factory=list)
    ports: list[IListeningPort] = field(default_factory=list)
    #: what the ports serve (a Site, a StreamServerFactory, a UDPServerProtocol) and the
    #: TLS context holder: a reload points them at the new configuration
    factory: Any = None
    tls_context: _ReloadableTLS | None = None

    def shape(self) -> tuple[Any, ...]:
        """What a reload cannot change on a bound socket."""
        return (self.transport, self.tls, self.tls_settings, self.proxy_protocol)

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
        listener.http_handshake_timeout = options["http.handshake.timeout"]
        listener.tls_handshake_timeout = options["ssl.handshake.timeout"]
        if not uri.is_http:
            listener.stream_service = svc
            return
        if listener.router is None:
            listener.router = Router(self.tracker.refuse)
        if uri.is_websocket:
            factory = GatewayWebSocketFactory(svc, uri, self.reactor, self.tracker, gate)
            listener.router.add_websocket(uri.path, factory)
        else:
            assert IHTTPService.providedBy(svc), f"{config.type} serves no HTTP"
            listener.router.add_folder(uri.path, svc.http_resource(), gate, config.name)

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
        listener.router.add_websocket(uri.path, factory)

    # binding

    def adopt(self, old: Listeners) -> list[Listener]:
        """Take over *old*'s bound sockets where the address and shape stay (a reload).

        Their connections are not touched: only new ones reach the new Router, service or
        TLS context (certificates re-read). Returns the old listeners to close (addresses
        that go, or whose transport, TLS settings or PROXY mode change)."""
        leftover = []
        for address, previous in old.by_address.items():
            listener = self.by_address.get(address)
            if listener is None or listener.shape() != previous.shape() or not previous.ports:
                leftover.append(previous)
                continue
            listener.ports, previous.ports = previous.ports, []
            listener.factory = previous.factory
            listener.tls_context = previous.tls_context
            self._retarget(listener)
            if listener.tls_context is not None:
                listener.tls_context.options = self._tls_options(listener)
        return leftover

    def _retarget(self, listener: Listener) -> None:
        factory = listener.factory
        if listener.router is not None:
            factory.resource = listener.router
        else:
            assert listener.stream_service is not None
            factory.service = listener.stream_service
            if listener.transport == "udp":
                factory.timeout = listener.stream_service.config.accept_options[
                    "udp.idle.timeout"]

    def bind(self) -> None:
        """Bind every listener on every address its host resolves to, or raise ListenError.

        Listeners already bound (taken over by ``adopt``) are left as they are."""
        for listener in self.by_address.values():
            if listener.ports:
                continue
            tls_options = self._tls_options(listener) if listener.tls else None
            if tls_options is not None:
                listener.tls_context = _ReloadableTLS(tls_options)
                tls_options = listener.tls_context
            for family, address in _addresses(listener.host, listener.port):
                result: list[Any] = []
                if listener.factory is None:
                    listener.factory = self._factory(listener)
                if listener.transport == "udp":
                    try:
                        result.append(self.reactor.listenUDP(
                            listener.port, listener.factory, interface=address))
                    except Exception:
                        result.append(Failure())
                else:
                    endpoint = self._endpoint(listener, family, address, tls_options)
                    endpoint.listen(listener.factory).addBoth(result.append)
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
    def close(self, only: list[Listener] | None = None) -> Any:
        """Stop listening everywhere, or on *only* these (connections already accepted go
        on)."""
        for listener in list(self.by_address.values()) if only is None else only:
            ports, listener.ports = listener.ports, []
            for port in ports:
                yield port.stopListening()
                log.info("stopped listening on {address} for {services}",
                         address=listener.describe(), services=", ".join(listener.names))

    def _factory(self, listener: Listener) -> Any:
        if listener.router is not None:
            return GatewaySite(listener.router, self.reactor, listener.http_handshake_timeout,
                               self.tracker, self.tracker.refusal_log(self.reactor.seconds),
                               ", ".join(listener.names))
        assert listener.stream_service is not None
        if listener.transport == "udp":
            return UDPServerProtocol(self.reactor, listener.stream_service, self.tracker)
        return StreamServerFactory(listener.stream_service, self.tracker, self.reactor.seconds)

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
        # Refused before a path picks a service: counted for the port's services together.
        services = ",".join(listener.names)
        endpoint = ProxyProtocolEndpoint(endpoint, listener.proxy_protocol, self.reactor,
                                         listener.describe(),
                                         lambda: self.tracker.refuse(services, PROXY))
        if tls_options is not None:
            endpoint = tls.TLSServerEndpoint(
                endpoint, tls_options, ", ".join(listener.names), reactor=self.reactor,
                handshake_timeout=listener.tls_handshake_timeout, counts=self.tracker,
                refusal_log=self.tracker.refusal_log(self.reactor.seconds),
                on_refused=lambda: self.tracker.refuse(services, TLS))
        return endpoint


@implementer(IOpenSSLContextFactory)
class _ReloadableTLS:
    """A listener's TLS context, replaced by a reload (certificates re-read): each new
    connection asks for the current one (TLSMemoryBIOFactory calls getContext() per
    connection); connections already open keep theirs."""

    def __init__(self, options: Any) -> None:
        self.options = options

    def getContext(self) -> Any:
        return self.options.getContext()


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
