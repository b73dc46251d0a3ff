"""The running gateway: builds the services and their listeners, starts, drains and stops.

    GatewayConfig --GatewayService()--> services (one per <service>, given the Connector)
                                        listeners (listeners.py: one socket per address)
                                        Enterprise Shield: backplanes (DMZ side) in the
                                        Connector, reverse connectors (internal side)
    privilegedStartService: bind every listener, or ListenError at once
    startService: start services, reverse connectors; log "kgateway ready", tell systemd
                  READY=1 (kgateway.systemd), start its watchdog pings
    reload() (SIGHUP): re-read and check the file; keep everything if it is invalid (each
                  problem logged); else build what was added or changed, take over the
                  sockets whose address stays, close what went (see ``reload``)
    stopService: drain (DrainSettings; STOPPING=1), stop reverse connectors, listeners and
                 services; after SIGINT (Ctrl-C in a terminal) no grace and no waiting

Everything process-wide hangs on this object (the tracker, the status health and metrics
read, the Connector with its Backplanes), not on module globals: tests build as many
gateways as they like.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger, globalLogPublisher

from kgateway.auth.gate import Constraint, Gate
from kgateway.auth.portal import build_portal
from kgateway.auth.settings import AuthConfigError
from kgateway.config import ConfigError, GatewayConfig, ServiceConfig
from kgateway.connector import Connector
from kgateway.interfaces import IGatewayService
from kgateway.listeners import ListenError, Listeners
from kgateway.services import SERVICE_TYPES
from kgateway.services.base import GatewayStatus, ServiceContext
from kgateway.shield.dmz import Backplane
from kgateway.shield.internal import ReverseConnector
from kgateway.systemd import Notifier
from kgateway.transport.tls import TLSConfigError, more_identities, security_identity
from kgateway.transport.tracker import ConnectionTracker
from kgateway.workers import notify_ready

log = Logger()

#: the drain's grace period when a health service is configured and --drain-grace is not given
DEFAULT_DRAIN_GRACE = 5.0
#: how long closing connections get to finish their close handshakes before being cut
CLOSE_WAIT = 5.0
#: the same after SIGINT (Ctrl-C): a developer waits for nobody
INTERRUPT_CLOSE_WAIT = 1.0


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
                 connector: Connector | None = None,
                 loader: Callable[[], GatewayConfig] | None = None,
                 notifier: Notifier | None = None,
                 signals: bool = False) -> None:
        super().__init__()
        self.reactor = reactor
        self.config = config
        self.drain = drain
        self.worker = worker  # with --workers: this worker's number; ports use SO_REUSEPORT
        #: re-reads the configuration for a reload (SIGHUP); None: reloads are refused
        self.loader = loader
        #: systemd's notify socket (a no-op without $NOTIFY_SOCKET)
        self.notifier = notifier if notifier is not None else Notifier({})
        #: install SIGHUP (reload) and SIGINT (stop at once) handlers when running (twistd)
        self.signals = signals
        #: SIGINT: stop without drain grace or waiting for connections
        self.interrupted = False
        self._watchdog: task.LoopingCall | None = None
        self._reloading = False
        self.tracker = tracker if tracker is not None else ConnectionTracker()
        security = config.security
        identity = security_identity(security) if security.has_identity else None
        self.connector = connector if connector is not None else Connector(
            reactor, truststore=security.truststore_file, identity=identity)
        self.status = GatewayStatus(self.tracker, worker, backplanes=self.connector.backplanes)
        self.listeners = Listeners(reactor, security, identity, self.tracker,
                                   reuse_port=worker is not None,
                                   alternatives=more_identities(security))
        # Enterprise Shield, internal side: reverse connections dialled out to the DMZ,
        # by service name
        self.reverse_by_service: dict[str, list[ReverseConnector]] = {}
        #: the DMZ side's backplanes, by service name (kept as they are by a reload)
        self.backplanes: dict[str, list[Backplane]] = {}
        # One Portal per realm; reads password files and keys now (AuthConfigError if one
        # is unusable), connects to nothing.
        portals = self._portals(config)
        for svc_config in config.services:
            svc = self._build_service(config, svc_config, portals)
            self.status.services[svc_config.name] = svc
            self.reverse_by_service[svc_config.name] = self._reverse_connectors(
                svc, svc_config, identity)
            backplanes = []
            for uri in svc_config.connects:
                if uri.is_reverse:  # the DMZ side: a backplane listener and its pool
                    backplane = Backplane(reactor, svc_config.name, uri)
                    self.connector.backplanes.add(backplane)
                    backplanes.append(backplane)
            self.backplanes[svc_config.name] = backplanes
            self._add_listeners(self.listeners, svc, svc_config, portals, config)

    @property
    def reverse(self) -> list[ReverseConnector]:
        return [c for conns in self.reverse_by_service.values() for c in conns]

    def _portals(self, config: GatewayConfig) -> dict[str, Any]:
        return {name: build_portal(realm.settings, self.reactor)
                for name, realm in config.security.realms.items()}

    def _gate(self, config: GatewayConfig, svc_config: ServiceConfig,
              portals: Mapping[str, Any]) -> Gate | None:
        if svc_config.realm_name is None:
            return None
        realm = config.security.realms[svc_config.realm_name]
        return Gate(portals[realm.name], realm.name, realm.settings.challenge_scheme,
                    realm.sources, Constraint(frozenset(svc_config.required_roles),
                                              svc_config.require_valid_user),
                    optional=SERVICE_TYPES[svc_config.type].protocol_auth)

    def _build_service(self, config: GatewayConfig, svc_config: ServiceConfig,
                       portals: Mapping[str, Any]) -> IGatewayService:
        context = ServiceContext(self.reactor, svc_config, config, self.connector,
                                 self.status, self._gate(config, svc_config, portals))
        svc: IGatewayService = SERVICE_TYPES[svc_config.type].build(context)
        return svc

    def _reverse_connectors(self, svc: IGatewayService, svc_config: ServiceConfig,
                            identity: Any) -> list[ReverseConnector]:
        connectors = []
        for uri in svc_config.accepts:
            if uri.is_reverse:
                assert identity is not None, "config.checks: Shield needs a keystore"
                connectors.append(ReverseConnector(
                    self.reactor, svc, uri, identity,
                    self.connector.truststore or "", self.tracker))
        return connectors

    def _add_listeners(self, listeners: Listeners, svc: IGatewayService,
                       svc_config: ServiceConfig, portals: Mapping[str, Any],
                       config: GatewayConfig) -> None:
        gate = self._gate(config, svc_config, portals)
        for uri in svc_config.accepts:
            if not uri.is_reverse:
                listeners.add_accept(svc, uri, gate)
        for backplane in self.backplanes.get(svc_config.name, []):
            listeners.add_backplane(backplane, svc_config)

    @property
    def draining(self) -> bool:
        return self.status.draining

    def privilegedStartService(self) -> None:
        self.listeners.bind()
        super().privilegedStartService()

    def startService(self) -> None:
        # The status page's recent warnings and errors, while this gateway runs.
        globalLogPublisher.addObserver(self.status.recent)
        super().startService()
        for svc in self.status.services.values():
            svc.start()
        for connector in self.reverse:
            self.reactor.callWhenRunning(connector.start)
        # "ready" once the reactor runs: connections are served and SIGTERM handled from then.
        self.reactor.callWhenRunning(self._ready)

    def _ready(self) -> None:
        if self.signals:
            self._install_signal_handlers()
        log.info("kgateway ready: {count} services from {file}{worker}",
                 count=len(self.status.services), file=self.config.file,
                 worker=f" (worker {self.worker}, pid {os.getpid()})" if self.worker else "")
        if self.worker is not None:
            notify_ready()
        self.notifier.notify("READY=1", f"STATUS={self._status_line()}",
                             f"MAINPID={os.getpid()}")
        interval = self.notifier.watchdog_interval
        if interval is not None and self._watchdog is None:
            self._watchdog = task.LoopingCall(self.notifier.notify, "WATCHDOG=1")
            self._watchdog.clock = self.reactor
            self._watchdog.start(interval, now=True)
            log.info("systemd watchdog: pinging every {interval:g}s", interval=interval)

    def _status_line(self) -> str:
        return (f"serving {len(self.status.services)} services, "
                f"{self.tracker.total()} connections")

    def _install_signal_handlers(self) -> None:
        """SIGHUP reloads; SIGINT (Ctrl-C) stops at once; SIGTERM stops with a drain
        (Twisted's). Installed once the reactor runs, over Twisted's own. A second SIGTERM
        or SIGINT while stopping is noted, not passed on: Twisted's would stop the reactor
        again and log a ReactorNotRunning traceback."""
        stopping = False

        def hup(number: int, frame: Any) -> None:
            self.reactor.callFromThread(self.reload)

        def stop(number: int, frame: Any) -> None:
            nonlocal stopping
            if number == signal.SIGINT:
                self.interrupted = True
            if stopping:
                self.reactor.callFromThread(log.info, "{signal} while stopping: already "
                                            "stopping", signal=signal.Signals(number).name)
                return
            stopping = True
            if number == signal.SIGINT:
                self.reactor.sigInt(number, frame)  # Twisted's: stop, re-raise at exit
            else:
                self.reactor.sigTerm(number, frame)

        signal.signal(signal.SIGHUP, hup)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)

    # reload (SIGHUP)

    @defer.inlineCallbacks
    def reload(self) -> Any:
        """Re-read the configuration and apply it without a restart.

        An invalid file (or certificates, keys, password files that cannot be read) keeps
        the running configuration; every problem is logged. Otherwise: services whose
        configuration is unchanged keep their objects and connections; added ones are
        built and start accepting; removed ones stop accepting and their connections are
        closed with 1001 Going Away (changed ones too, then they accept with the new
        configuration); sockets whose address and TLS/PROXY settings stay are kept (no
        connection refused meanwhile) and point at the new services, with certificates
        re-read; other sockets are closed or bound. Enterprise Shield backplanes (a
        ``reverse+wss://`` connect) cannot be added, removed or changed by a reload."""
        if self.loader is None:
            log.warn("reload: not supported here (no configuration loader); ignored")
            return False
        if self._reloading or self.status.draining:
            log.warn("reload: ignored ({why})",
                     why="a reload is running" if self._reloading else "draining")
            return False
        self._reloading = True
        self.notifier.notify("RELOADING=1", "STATUS=reloading the configuration",
                             f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            applied = yield self._reload()
        except Exception:
            log.failure("reload failed; the configuration in use may be partly applied")
            applied = False
        finally:
            self._reloading = False
            self.notifier.notify("READY=1", f"STATUS={self._status_line()}")
        return applied

    @defer.inlineCallbacks
    def _reload(self) -> Any:
        assert self.loader is not None
        file = self.config.file
        log.info("reload: reading {file}", file=file)
        try:
            new = self.loader()
        except ConfigError as e:
            for problem in e.problems:
                log.error("reload refused: {problem}", problem=str(problem))
            log.error("reload refused: {count} problem(s) in {file}; the running "
                      "configuration stays", count=len(e.problems), file=file)
            return False
        old = self.config
        old_by_name = {s.name: s for s in old.services}
        new_by_name = {s.name: s for s in new.services}
        unchanged = {name for name, s in new_by_name.items() if name in old_by_name
                     and _signature(s, new) == _signature(old_by_name[name], old)}
        changed = {n for n in new_by_name if n in old_by_name} - unchanged
        added = set(new_by_name) - set(old_by_name)
        removed = set(old_by_name) - set(new_by_name)
        shield = sorted(n for n in (changed | added | removed) if any(
            u.is_reverse for s in (new_by_name.get(n), old_by_name.get(n)) if s is not None
            for u in s.connects))
        if shield:
            log.error("reload refused: Enterprise Shield backplane services cannot change "
                      "without a restart: {names}; the running configuration stays",
                      names=", ".join(shield))
            return False
        # Build everything new before touching anything running.
        try:
            security = new.security
            identity = security_identity(security) if security.has_identity else None
            portals = self._portals(new)
            built = {name: self._build_service(new, new_by_name[name], portals)
                     for name in sorted(changed | added)}
        except (TLSConfigError, AuthConfigError) as e:
            log.error("reload refused: {error}; the running configuration stays", error=str(e))
            return False
        services = {name: built.get(name) or self.status.services[name]
                    for name in new_by_name}
        listeners = Listeners(self.reactor, security, identity, self.tracker,
                              reuse_port=self.worker is not None)
        for svc_config in new.services:
            self._add_listeners(listeners, services[svc_config.name], svc_config, portals, new)
        try:
            leftover = listeners.adopt(self.listeners)
        except ListenError as e:  # a TLS context of a kept port
            log.error("reload refused: {error}; the running configuration stays", error=str(e))
            return False
        # From here on, the new configuration is applied.
        gone = changed | removed
        old_services = {name: self.status.services[name] for name in gone}
        doomed = [c for name in sorted(gone) for c in self.tracker.live.get(name, ())]
        yield self.listeners.close(leftover)
        self.listeners = listeners
        self.config = new
        self.connector.truststore = security.truststore_file
        self.connector.identity = identity
        self.status.services = dict(services)
        for name in sorted(gone):
            for connector in self.reverse_by_service.pop(name, []):
                connector.stop()
        try:
            listeners.bind()
        except ListenError as e:
            log.error("reload: {error}; the services on that address are not served",
                      error=str(e))
        if doomed:
            log.info("reload: closing {count} connections of removed or changed services "
                     "with 1001 Going Away", count=len(doomed))
        for connection in doomed:
            try:
                connection.going_away()
            except Exception:
                log.failure("going_away() failed for {connection}", connection=connection)
        for name, old_svc in sorted(old_services.items()):
            try:
                yield defer.maybeDeferred(old_svc.stop)
            except Exception:
                log.failure("stopping the old {name} failed", name=name)
        for name in sorted(changed | added):
            services[name].start()
            self.reverse_by_service[name] = self._reverse_connectors(
                services[name], new_by_name[name], identity)
            for connector in self.reverse_by_service[name]:
                connector.start()
        log.info("reload: {file} applied: {added} added, {changed} changed, {removed} "
                 "removed, {kept} unchanged{worker}", file=new.file,
                 added=_names(added), changed=_names(changed), removed=_names(removed),
                 kept=len(unchanged), worker=f" (worker {self.worker})" if self.worker else "")
        return True

    @defer.inlineCallbacks
    def _drain(self) -> Any:
        """The graceful part of a stop (SIGTERM): see DrainSettings and README. After
        SIGINT: no grace, no waiting; open connections get 1001 at once."""
        self.status.draining = True
        # The watchdog goes on pinging: a drain is the gateway working (TimeoutStopSec
        # bounds it), not a hang.
        grace = self.drain.grace
        if grace is None:
            has_health = any(s.config.type == "health" for s in self.status.services.values())
            grace = DEFAULT_DRAIN_GRACE if has_health else 0.0
        timeout, close_wait = self.drain.timeout, CLOSE_WAIT
        if self.interrupted:
            grace, timeout, close_wait = 0.0, 0.0, INTERRUPT_CLOSE_WAIT
            log.info("interrupted (SIGINT): stopping now, without a drain")
        self.notifier.notify("STOPPING=1", f"STATUS=draining: {self.tracker.total()} "
                             f"connections, {grace:g}s grace, {timeout:g}s for them to end")
        if grace > 0:
            log.info("draining: health reports 503; accepting new connections for {grace:g}s "
                     "more", grace=grace)
            yield task.deferLater(self.reactor, grace, lambda: None)
        yield self.listeners.close()
        left = self.tracker.total()
        if not left:
            return
        if timeout > 0:
            log.info("draining: listeners closed; {count} connections have {timeout:g}s to "
                     "end", count=left, timeout=timeout)
            if (yield self._idle_within(timeout)):
                return
        connections = self.tracker.connections()
        log.info("draining: {why}; closing {count} connections with 1001 Going Away",
                 why="stopping now" if self.interrupted else "time is up",
                 count=len(connections))
        for connection in connections:
            try:
                connection.going_away()
            except Exception:
                log.failure("going_away() failed for {connection}", connection=connection)
        if not (yield self._idle_within(close_wait)):
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
        globalLogPublisher.removeObserver(self.status.recent)


def _names(names: set[str]) -> str:
    return f"{len(names)} ({', '.join(sorted(names))})" if names else "0"


def _signature(svc: ServiceConfig, config: GatewayConfig) -> Any:
    """What makes a service the same across a reload: its configuration without line
    numbers (a service added above it moves them), and its realm's settings."""
    realm = config.security.realms.get(svc.realm_name) if svc.realm_name else None
    return (_plain(svc), _plain(realm))


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (type(value).__name__,) + tuple(
            (f.name, _plain(getattr(value, f.name))) for f in dataclasses.fields(value)
            if f.name not in ("line", "file"))
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _plain(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple, frozenset, set)):
        items = [_plain(v) for v in value]
        return tuple(sorted(items, key=repr)) if isinstance(value, (set, frozenset)) \
            else tuple(items)
    return value
