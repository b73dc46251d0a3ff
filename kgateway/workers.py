"""``--workers N``: N gateway processes sharing every listening port, so a host uses all cores.

    twistd kgateway --workers 2            (the supervisor: binds nothing, serves nothing)
      |-- twistd kgateway --worker 1  --+   each binds every accept with SO_REUSEPORT;
      '-- twistd kgateway --worker 2  --+-- the kernel spreads new connections over them

Each worker is a complete gateway (its own health, connection counts and drain) and writes
its log to the supervisor's own stdout/stderr (inherited: no copying through the supervisor,
which would cost a core's time at thousands of connections per second); its lines say
``worker N`` where it starts and is ready. Each worker tells the supervisor it is ready on an
inherited pipe (fd 3, named by ``KGATEWAY_READY_FD``); the supervisor says ``kgateway ready:
N workers`` once all are (and tells systemd ``READY=1``: kgateway.systemd), forwards
SIGTERM (and SIGINT) to them, waits for their drains and exits when they have ended. SIGHUP
is forwarded too: each worker reloads its configuration. If every worker exits on its own
(a port it cannot bind), the supervisor exits with status 1.

Some configurations cannot run as several workers (:func:`workers_problems`, checked by the
supervisor before it starts any worker and by ``kgateway check --workers N``):

* an accept on port 0: each worker would get a different port;
* the DMZ side of Enterprise Shield (a ``reverse+wss://`` connect): its backplane port
  would be shared by the workers, and the kernel hands each reverse connection to any of
  them, so the worker holding a waiting public client need not be the one a reverse
  connection reaches: a client could wait for a connection another worker got. Pairing
  across processes would need a shared broker of reverse connections; the DMZ side is
  refused instead (run it as one process; several DMZ gateways behind a balancer, each with
  its own backplane port, is the Shield HA topology). The internal side (a
  ``reverse+wss://`` accept) runs with ``--workers``: each worker dials its own reverse
  connections (N times as many), every one of which pairs on the one-process DMZ.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Any

from twisted.application import service
from twisted.internet import defer, error, task
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger()

#: the environment variable naming the descriptor on which a worker says it is ready
READY_FD_ENV = "KGATEWAY_READY_FD"
_READY_FD = 3


def notify_ready() -> None:
    """In a worker: tell the supervisor this gateway is listening and serving."""
    fd = os.environ.pop(READY_FD_ENV, None)
    if fd is None:
        return
    try:
        os.write(int(fd), b"ready\n")
        os.close(int(fd))
    except OSError:
        log.failure("cannot tell the supervisor this worker is ready")


def workers_problems(config: Any, workers: int) -> list[str]:
    """Why *config* (a ``GatewayConfig``: this floor-0 module does not import it) cannot
    run as *workers* processes (see the module docstring); empty if it can."""
    if workers <= 1:
        return []
    problems = []
    for svc in config.services:
        for uri in svc.accepts:
            if uri.port == 0:
                problems.append(f"service {svc.name!r}: --workers needs fixed ports, not {uri}")
        for uri in svc.connects:
            if uri.is_reverse:
                problems.append(
                    f"service {svc.name!r}: --workers cannot run the DMZ side of Enterprise "
                    f"Shield ({uri}): the workers would share its backplane port and a "
                    "reverse connection could reach a worker other than the one whose "
                    "client waits for it; run this gateway as one process")
    return problems


class ReusePortServerEndpoint:
    """A TCP server endpoint binding with SO_REUSEPORT, so sibling workers share the port."""

    def __init__(self, reactor: Any, family: int, port: int, interface: str,
                 backlog: int = 1024) -> None:
        self.reactor = reactor
        self.family = family
        self.port = port
        self.interface = interface
        self.backlog = backlog

    def listen(self, factory: Any) -> defer.Deferred[IListeningPort]:
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((self.interface, self.port))
            sock.listen(self.backlog)
            sock.setblocking(False)
            # adoptStreamPort duplicates the descriptor: ours is closed below either way.
            port = self.reactor.adoptStreamPort(sock.fileno(), self.family, factory)
        except OSError as e:
            return defer.fail(error.CannotListenError(self.interface, self.port, e))
        finally:
            sock.close()
        return defer.succeed(port)


class _Worker(ProcessProtocol):
    def __init__(self, supervisor: WorkerSupervisor, number: int) -> None:
        self.supervisor = supervisor
        self.number = number
        self.buffer = b""
        self.ended = False

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        self.buffer += data
        if childFD == _READY_FD and b"ready\n" in self.buffer:
            self.buffer = b""
            self.supervisor.worker_ready(self.number)

    def processEnded(self, reason: Failure) -> None:
        self.ended = True
        self.supervisor.worker_ended(self.number, reason)


class WorkerSupervisor(service.Service):
    """Runs *count* workers, each ``argv + ["--worker", N]``."""

    def __init__(self, reactor: Any, argv: Sequence[str], count: int,
                 notifier: Any = None) -> None:
        self.reactor = reactor
        #: kgateway.systemd.Notifier (None: no systemd)
        self.notifier = notifier
        self._watchdog: task.LoopingCall | None = None
        self.argv = list(argv)
        self.count = count
        self.workers: dict[int, tuple[_Worker, Any]] = {}
        self.ready: set[int] = set()
        self.stopping = False
        self.failed = False
        self._all_ended: defer.Deferred[None] = defer.Deferred()

    def startService(self) -> None:
        super().startService()
        self.reactor.callWhenRunning(self._spawn_all)
        self.reactor.callWhenRunning(self._install_sighup)
        self.reactor.addSystemEventTrigger("after", "shutdown", self._exit_status)

    def _notify(self, *fields: str) -> None:
        if self.notifier is not None:
            self.notifier.notify(*fields)

    def _install_sighup(self) -> None:
        signal.signal(signal.SIGHUP,
                      lambda number, frame: self.reactor.callFromThread(self.forward, "HUP"))

    def forward(self, name: str) -> None:
        """Send signal *name* to every running worker."""
        log.info("forwarding SIG{name} to the workers", name=name)
        for worker, transport in self.workers.values():
            if not worker.ended:
                try:
                    transport.signalProcess(name)
                except error.ProcessExitedAlready:
                    pass

    def _spawn_all(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", READY_FD_ENV: str(_READY_FD)}
        for number in range(1, self.count + 1):
            worker = _Worker(self, number)
            args = [sys.executable, *self.argv, "--worker", str(number)]
            transport = self.reactor.spawnProcess(worker, sys.executable, args, env=env,
                                                  childFDs={0: "w", 1: 1, 2: 2, _READY_FD: "r"})
            self.workers[number] = (worker, transport)
            log.info("started worker {worker} (pid {pid})", worker=number, pid=transport.pid)

    def worker_ready(self, number: int) -> None:
        self.ready.add(number)
        if len(self.ready) == self.count:
            log.info("kgateway ready: {count} workers (pids {pids})", count=self.count,
                     pids=", ".join(str(t.pid) for _, t in self.workers.values()))
            self._notify("READY=1", f"STATUS=serving with {self.count} workers",
                         f"MAINPID={os.getpid()}")
            interval = getattr(self.notifier, "watchdog_interval", None)
            if interval is not None and self._watchdog is None:
                self._watchdog = task.LoopingCall(self._notify, "WATCHDOG=1")
                self._watchdog.clock = self.reactor
                self._watchdog.start(interval, now=True)

    def worker_ended(self, number: int, reason: Failure) -> None:
        code = getattr(reason.value, "exitCode", None)
        signal = getattr(reason.value, "signal", None)
        log.info("worker {worker} ended (exit status {code}, signal {signal})", worker=number,
                 code=code, signal=signal)
        if all(w.ended for w, _ in self.workers.values()):
            if not self.stopping:
                log.error("every worker has ended: stopping")
                self.failed = True
                self.reactor.stop()
            if not self._all_ended.called:
                self._all_ended.callback(None)

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        self.stopping = True
        self._notify("STOPPING=1", "STATUS=stopping: the workers drain")
        for worker, transport in self.workers.values():
            if not worker.ended:
                try:
                    transport.signalProcess("TERM")
                except error.ProcessExitedAlready:
                    pass
        if not self.workers or all(w.ended for w, _ in self.workers.values()):
            return defer.succeed(None)
        log.info("forwarded SIGTERM to {count} workers; waiting for their drains",
                 count=sum(not w.ended for w, _ in self.workers.values()))
        return self._all_ended

    def _exit_status(self) -> None:
        if self.failed:
            # twistd would exit 0 after a reactor.stop(): say that the workers could not run.
            os._exit(1)
