"""The running gateway: builds the services and their listeners, starts, drains and stops.

    GatewayConfig --GatewayService()--> services (one per <service>, given the Connector)
                                        listeners (listeners.py: one socket per address)
                                        Enterprise Shield: backplanes (DMZ side) in the
                                        Connector, reverse connectors (internal side)
    privilegedStartService: bind every listener, or ListenError at once
    startService: start services, reverse connectors; log "kgateway ready"
    stopService: drain (DrainSettings), stop reverse connectors, listeners and services

Everything process-wide hangs on this object (the tracker, the status health and metrics
read, the Connector with its Backplanes), not on module globals: tests build as many
gateways as they like.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger

from kgateway.auth.gate import Constraint, Gate
from kgateway.auth.portal import build_portal
from kgateway.config import GatewayConfig
from kgateway.connector import Connector
from kgateway.listeners import Listeners
from kgateway.services import SERVICE_TYPES
from kgateway.services.base import GatewayStatus, ServiceContext
from kgateway.shield.dmz import Backplane
from kgateway.shield.internal import ReverseConnector
from kgateway.transport.tls import more_identities, security_identity
from kgateway.transport.tracker import ConnectionTracker
from kgateway.workers import notify_ready

log = Logger()

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
    """Binds every listener, then starts the services; drains and stops them in reverse.

    Raises ``TLSConfigError`` (a keystore that cannot be loaded) or ``AuthConfigError`` (a
    password file or key of a realm that cannot be read) while being built, and
    ``ListenError`` from ``privilegedStartService``; ``kgateway.tap`` turns both into
    twistd's error exit.
    """

    def __init__(self, reactor: Any, config: GatewayConfig, *,
                 drain: DrainSettings = DrainSettings(), worker: int | None = None,
                 tracker: ConnectionTracker | None = None,
                 connector: Connector | None = None) -> None:
        super().__init__()
        self.reactor = reactor
        self.config = config
        self.drain = drain
        self.worker = worker  # with --workers: this worker's number; ports use SO_REUSEPORT
        self.tracker = tracker if tracker is not None else ConnectionTracker()
        security = config.security
        identity = security_identity(security) if security.has_identity else None
        self.connector = connector if connector is not None else Connector(
            reactor, truststore=security.truststore_file, identity=identity)
        self.status = GatewayStatus(self.tracker, worker)
        self.listeners = Listeners(reactor, security, identity, self.tracker,
                                   reuse_port=worker is not None,
                                   alternatives=more_identities(security))
        # Enterprise Shield, internal side: reverse connections dialled out to the DMZ
        self.reverse: list[ReverseConnector] = []
        # One Portal per realm; reads password files and keys now (AuthConfigError if one
        # is unusable), connects to nothing.
        portals = {name: build_portal(realm.settings, reactor)
                   for name, realm in security.realms.items()}
        for svc_config in config.services:
            gate = None
            if svc_config.realm_name is not None:
                realm = security.realms[svc_config.realm_name]
                gate = Gate(portals[realm.name], realm.name, realm.settings.challenge_scheme,
                            realm.sources, Constraint(frozenset(svc_config.required_roles),
                                                      svc_config.require_valid_user),
                            optional=SERVICE_TYPES[svc_config.type].protocol_auth)
            context = ServiceContext(reactor, svc_config, config, self.connector, self.status,
                                     gate)
            svc = SERVICE_TYPES[svc_config.type].build(context)
            self.status.services[svc_config.name] = svc
            for uri in svc_config.accepts:
                if uri.is_reverse:
                    assert identity is not None, "config.checks: Shield needs a keystore"
                    self.reverse.append(ReverseConnector(
                        reactor, svc, uri, identity, security.truststore_file or "",
                        self.tracker))
                else:
                    self.listeners.add_accept(svc, uri, gate)
            for uri in svc_config.connects:
                if uri.is_reverse:  # the DMZ side: a backplane listener and its pool
                    backplane = Backplane(reactor, svc_config.name, uri)
                    self.connector.backplanes.add(backplane)
                    self.listeners.add_backplane(backplane, svc_config)

    @property
    def draining(self) -> bool:
        return self.status.draining

    def privilegedStartService(self) -> None:
        self.listeners.bind()
        super().privilegedStartService()

    def startService(self) -> None:
        super().startService()
        for svc in self.status.services.values():
            svc.start()
        for connector in self.reverse:
            self.reactor.callWhenRunning(connector.start)
        # "ready" once the reactor runs: connections are served and SIGTERM handled from then.
        self.reactor.callWhenRunning(self._ready)

    def _ready(self) -> None:
        log.info("kgateway ready: {count} services from {file}{worker}",
                 count=len(self.status.services), file=self.config.file,
                 worker=f" (worker {self.worker}, pid {os.getpid()})" if self.worker else "")
        if self.worker is not None:
            notify_ready()

    @defer.inlineCallbacks
    def _drain(self) -> Any:
        """The graceful part of a stop (SIGTERM): see DrainSettings and README."""
        self.status.draining = True
        grace = self.drain.grace
        if grace is None:
            has_health = any(s.config.type == "health" for s in self.status.services.values())
            grace = DEFAULT_DRAIN_GRACE if has_health else 0.0
        if grace > 0:
            log.info("draining: health reports 503; accepting new connections for {grace:g}s "
                     "more", grace=grace)
            yield task.deferLater(self.reactor, grace, lambda: None)
        yield self.listeners.close()
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
        if not self.status.draining:
            yield self._drain()
        for connector in self.reverse:
            connector.stop()
        self.connector.backplanes.close()
        yield self.listeners.close()
        for svc in self.status.services.values():
            yield defer.maybeDeferred(svc.stop)
        yield super().stopService()
        log.info("kgateway stopped")
