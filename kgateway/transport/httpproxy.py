"""Connects through a corporate HTTP proxy: an endpoint that opens a CONNECT tunnel.

    dial_endpoint(reactor, host, port, options, timeout)
        no http.proxy   -> HostnameEndpoint(host, port), or TCP4/TCP6ClientEndpoint when
                           host is an IP address (no resolver thread, no per-connect class:
                           HostnameEndpoint cost ~17% of a proxied WebSocket handshake's CPU)
        http.proxy set  -> HTTPTunnelEndpoint(HostnameEndpoint(proxy), host, port, credentials)

    gateway --TCP--> proxy:3128   "CONNECT host:port" (+ Basic credentials)
                                  <-- 200: from here on the connection is the tunnel
            ======== TLS (wrapClientTLS outside this endpoint: the real host name is checked,
                     end to end; the proxy sees only ciphertext) ========

The endpoint's Deferred fires with the caller's protocol once the proxy said 2xx, so
``wrapClientTLS(creator, HTTPTunnelEndpoint(...))`` starts TLS inside the tunnel exactly as
it would over a direct connection. A refusal fails it with ConnectError in words fit for a
close reason (407 -> ``proxy authentication required``; codes in
``kgateway.protocols.http_connect``). The credentials (``http.proxy.credentials.file``,
first line ``user:password``) are read at each dial, so a rotated file takes effect without
a restart, and never appear in a log line or error.

Written by hand because Twisted has no CONNECT-tunnel endpoint: ``twisted.web.client``'s
ProxyAgent sends plain HTTP requests to a proxy (absolute URIs), not tunnels, and
``twisted.internet.endpoints`` offers TCP, TLS, UNIX and (with txtorcon) SOCKS, not HTTP
CONNECT. The wire format is the sans-IO ``kgateway.protocols.http_connect``; this module
only adapts it, like txtorcon's SOCKS endpoint.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from kgateway.config import Options
from kgateway.interfaces import ConnectError
from kgateway.protocols.http_connect import (
    ConnectResponseParser,
    TunnelRefused,
    connect_request,
    format_authority,
)


def read_credentials(path: str) -> tuple[str, str]:
    """``user:password`` from the first line of *path*; errors never quote the file."""
    try:
        with open(path, encoding="utf-8") as f:
            line = f.readline().rstrip("\r\n")
    except OSError as e:
        raise ConnectError(f"http.proxy.credentials.file {path}: {e.strerror}") from None
    user, sep, password = line.partition(":")
    if not sep or not user:
        raise ConnectError(f"http.proxy.credentials.file {path}: the first line must be "
                           "user:password")
    return user, password


class _TunnelProtocol(Protocol):
    """Speaks CONNECT, then becomes a pass-through to the caller's protocol."""

    def __init__(self, endpoint: HTTPTunnelEndpoint, factory: IProtocolFactory,
                 result: defer.Deferred[IProtocol]) -> None:
        self.endpoint = endpoint
        self.factory = factory
        self.result = result
        self.parser = ConnectResponseParser(endpoint.target, endpoint.credentials is not None)
        self.wrapped: IProtocol | None = None

    def connectionMade(self) -> None:
        endpoint = self.endpoint
        self.transport.write(  # type: ignore[union-attr]
            connect_request(endpoint.host, endpoint.port, endpoint.credentials))

    def dataReceived(self, data: bytes) -> None:
        if self.wrapped is not None:
            self.wrapped.dataReceived(data)
            return
        if self.result.called:  # cancelled while the proxy was answering
            return
        try:
            answer = self.parser.feed(data)
        except TunnelRefused as e:
            self._fail(f"{e} [proxy {self.endpoint.proxy_name}]")
            return
        if answer is None:
            return
        transport: Any = self.transport
        wrapped = self.factory.buildProtocol(transport.getPeer())
        if wrapped is None:
            self._fail("the connection was refused by its own factory")
            return
        self.wrapped = wrapped
        wrapped.makeConnection(transport)
        self.result.callback(wrapped)
        if answer.rest:
            wrapped.dataReceived(answer.rest)

    def _fail(self, message: str) -> None:
        if not self.result.called:
            self.result.errback(ConnectError(message))
        self.transport.abortConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if self.wrapped is not None:
            self.wrapped.connectionLost(reason)
            return
        if self.result.called:
            return
        try:
            self.parser.eof()
        except TunnelRefused as e:
            self.result.errback(ConnectError(f"{e} [proxy {self.endpoint.proxy_name}]"))


class _TunnelFactory(Factory):
    noisy = False

    def __init__(self, endpoint: HTTPTunnelEndpoint, factory: IProtocolFactory,
                 result: defer.Deferred[IProtocol]) -> None:
        self.args = (endpoint, factory, result)
        self.built: _TunnelProtocol | None = None

    def buildProtocol(self, addr: Any) -> _TunnelProtocol:
        self.built = _TunnelProtocol(*self.args)
        return self.built


@implementer(IStreamClientEndpoint)
class HTTPTunnelEndpoint:
    """Reach *host*:*port* through an HTTP proxy reached by *proxy* (any client endpoint)."""

    def __init__(self, proxy: IStreamClientEndpoint, host: str, port: int,
                 credentials: tuple[str, str] | None = None, proxy_name: str = "") -> None:
        self.proxy = proxy
        self.host = host
        self.port = port
        self.credentials = credentials
        self.target = format_authority(host, port)
        self.proxy_name = proxy_name or repr(proxy)

    def connect(self, protocolFactory: IProtocolFactory) -> defer.Deferred[IProtocol]:
        attempt: defer.Deferred[Any] | None = None

        def cancel(d: defer.Deferred[IProtocol]) -> None:
            if attempt is not None and not attempt.called:
                attempt.cancel()
            elif factory.built is not None and factory.built.transport is not None:
                factory.built.transport.abortConnection()  # type: ignore[attr-defined]

        result: defer.Deferred[IProtocol] = defer.Deferred(cancel)
        factory = _TunnelFactory(self, protocolFactory, result)

        def unreachable(reason: Failure) -> None:
            if reason.check(defer.CancelledError) or result.called:
                return
            result.errback(ConnectError(
                f"cannot reach proxy {self.proxy_name}: {reason.getErrorMessage()}"))

        attempt = self.proxy.connect(factory)
        attempt.addErrback(unreachable)
        return result


def direct_endpoint(reactor: Any, host: str, port: int,
                    timeout: float) -> IStreamClientEndpoint:
    """A plain TCP endpoint to *host*:*port*: an IP address is dialled as it is, a name goes
    through HostnameEndpoint (resolution in the reactor's resolver, happy eyeballs)."""
    if isIPAddress(host):
        return TCP4ClientEndpoint(reactor, host, port, timeout=timeout)
    if isIPv6Address(host):
        return TCP6ClientEndpoint(reactor, host, port, timeout=timeout)
    return HostnameEndpoint(reactor, host, port, timeout=timeout)


def dial_endpoint(reactor: Any, host: str, port: int, options: Options,
                  timeout: float) -> IStreamClientEndpoint:
    """Where a connect to *host*:*port* dials: directly, or through ``http.proxy``.

    Raises ConnectError when the credentials file cannot be read.
    """
    proxy = options.get("http.proxy")
    if proxy is None:
        return direct_endpoint(reactor, host, port, timeout)
    proxy_host, proxy_port = proxy
    path = options.get("http.proxy.credentials.file")
    credentials = read_credentials(path) if path else None
    return HTTPTunnelEndpoint(direct_endpoint(reactor, proxy_host, proxy_port, timeout),
                              host, port, credentials,
                              proxy_name=format_authority(proxy_host, proxy_port))
