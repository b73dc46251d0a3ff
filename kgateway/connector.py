"""The Connector: how every service reaches its back ends, built once by the gateway.

    Connector.connect(uri, options, receiver, protocols=, client=)
        tcp:// ssl:// ws:// wss://  -> transport.connect.connect_stream (TLS: ClientTLS with
                                       the truststore and, with ssl.present-certificate, the
                                       gateway's identity as client certificate)
        udp://                      -> transport.udp.connect
        reverse+wss://              -> shield.dmz.Backplanes.take (Enterprise Shield)

A service gets the Connector in its constructor; tests pass a fake with the same
``connect`` (``IConnector``). The Connector also owns the DMZ gateway's Backplanes registry,
so nothing about reverse connections is process-global.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet import defer
from zope.interface import implementer

from kgateway.config import URI, Options
from kgateway.interfaces import ConnectError, IConnector, ILink, ILinkReceiver
from kgateway.shield.dmz import Backplanes
from kgateway.transport import udp
from kgateway.transport.connect import connect_stream
from kgateway.transport.tls import ClientTLS, Identity, TLSConfigError


@implementer(IConnector)
class Connector:
    """Reaches any back end on behalf of the gateway's services (see the module docstring)."""

    def __init__(self, reactor: Any, *, truststore: str | None = None,
                 identity: Identity | None = None,
                 backplanes: Backplanes | None = None) -> None:
        self.reactor = reactor
        #: <security><truststore>, the default CA bundle for TLS connects
        self.truststore = truststore
        #: <security><keystore>, presented where ssl.present-certificate asks for it
        self.identity = identity
        self.backplanes = backplanes if backplanes is not None else Backplanes()

    def client_tls(self, uri: URI, options: Options) -> ClientTLS:
        """The TLS checks and client certificate of a connect to *uri*."""
        identity = None
        if options["ssl.present-certificate"]:
            if self.identity is None:
                raise TLSConfigError("ssl.present-certificate needs <security><keystore>")
            identity = self.identity
        return ClientTLS(options["ssl.hostname"] or uri.host,
                         options["ssl.truststore"] or self.truststore, identity,
                         protocols=options["ssl.protocols"], ciphers=options["ssl.ciphers"],
                         crl_file=options["ssl.crl"])

    def connect(self, uri: URI, options: Options, receiver: ILinkReceiver, *,
                protocols: Sequence[str] = (), client: str = "") -> defer.Deferred[ILink]:
        if uri.is_reverse:
            return self.backplanes.take(uri, options, receiver, protocols, client)
        if uri.scheme == "udp":
            return udp.connect(self.reactor, uri, options, receiver)
        try:
            client_tls = self.client_tls(uri, options) if uri.is_tls else None
        except TLSConfigError as e:
            return defer.fail(ConnectError(f"TLS configuration: {e}"))
        return connect_stream(self.reactor, uri, options, receiver, protocols=protocols,
                              client_tls=client_tls)
