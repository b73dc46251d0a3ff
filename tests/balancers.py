"""Real HAProxy and nginx for pool tests and benchmarks, from etc/examples/{haproxy,nginx}.

    clients --> HAProxy (haproxy -D, pidfile in a temp folder) --> kgateway processes
                   |                 or nginx (daemon on, pidfile)
                   +--syslog/UDP--> SyslogReceiver: "Server gateways/g2 is DOWN" events

Tests wait for HAProxy's own state-change log lines instead of sleeping; both are stopped by
the PID they wrote (and a pidfd to see them go), never by name.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from string import Template

from tests.helpers import ROOT, TWISTD, GatewayProcess

EXAMPLES = os.path.join(ROOT, "etc", "examples")
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def haproxy_available() -> bool:
    return os.path.exists(HAPROXY)


def nginx_available() -> bool:
    return os.path.exists(NGINX)


class _AtTemplate(Template):
    """``@@name`` placeholders: nginx's own variables use ``$``."""

    delimiter = "@@"


def _stop_pid(pid: int, timeout: float) -> None:
    """SIGTERM a daemon that is not our child; return once it has gone."""
    try:
        # A pidfd becomes readable when the process ends, child of ours or not.
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        os.kill(pid, signal.SIGTERM)
        select.select([pidfd], [], [], timeout)
    finally:
        os.close(pidfd)


class SyslogReceiver:
    """HAProxy's log target: a UDP socket on loopback, read as lines are awaited."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.lines: list[str] = []

    def wait_for(self, pattern: str, timeout: float = 20) -> re.Match[str]:
        regex = re.compile(pattern)
        for line in self.lines:
            m = regex.search(line)
            if m:
                self.lines.remove(line)
                return m
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"HAProxy never logged {pattern!r}; it logged:\n"
                                     + "\n".join(self.lines))
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            line = data.decode("utf-8", "replace")
            m = regex.search(line)
            if m:
                return m
            self.lines.append(line)

    def close(self) -> None:
        self.sock.close()


class HAProxy:
    """``haproxy -D -f CFG`` from a template; ``stop()`` signals the PID from its pidfile."""

    def __init__(self, template: str, **values: object) -> None:
        self.folder = tempfile.mkdtemp(prefix="kg-haproxy-")
        self.log = SyslogReceiver()
        self.pidfile = os.path.join(self.folder, "haproxy.pid")
        with open(os.path.join(EXAMPLES, "haproxy", template)) as f:
            text = Template(f.read()).substitute(
                pidfile=self.pidfile, log_target=f"127.0.0.1:{self.log.port}",
                **{k: str(v) for k, v in values.items()})
        self.config = os.path.join(self.folder, "haproxy.cfg")
        with open(self.config, "w") as f:
            f.write(text)
        self.pid: int | None = None

    def start(self) -> HAProxy:
        # -D returns once the daemon has bound its sockets and written its pidfile.
        subprocess.run([HAPROXY, "-D", "-f", self.config], check=True, timeout=30)
        with open(self.pidfile) as f:
            self.pid = int(f.read().split()[0])
        return self

    def stop(self, timeout: float = 10) -> None:
        if self.pid is None:
            return
        pid, self.pid = self.pid, None
        _stop_pid(pid, timeout)
        self.log.close()

    def __enter__(self) -> HAProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Nginx:
    """nginx from etc/examples/nginx/nginx.conf.in, in the foreground as our child process.

    Its error log goes to our pipe: "start worker process" says it has bound and serves.
    """

    def __init__(self, bind: str, servers: str) -> None:
        self.folder = tempfile.mkdtemp(prefix="kg-nginx-")
        with open(os.path.join(EXAMPLES, "nginx", "nginx.conf.in")) as f:
            text = _AtTemplate(f.read()).substitute(
                pidfile=os.path.join(self.folder, "nginx.pid"), error_log="stderr",
                bind=bind, servers=servers)
        self.config = os.path.join(self.folder, "nginx.conf")
        with open(self.config, "w") as f:
            f.write(text)
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []

    def start(self, timeout: float = 30) -> Nginx:
        self.proc = subprocess.Popen([NGINX, "-p", self.folder, "-c", self.config,
                                      "-g", "daemon off;"], stderr=subprocess.PIPE, text=True)
        ready = threading.Event()

        def read() -> None:
            assert self.proc is not None and self.proc.stderr is not None
            for line in self.proc.stderr:
                self.lines.append(line.rstrip("\n"))
                if "start worker process" in line:
                    ready.set()
            ready.set()  # exited: start() reports it

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(timeout) or self.proc.poll() is not None:
            raise AssertionError("nginx did not start:\n" + "\n".join(self.lines))
        return self

    def stop(self, timeout: float = 10) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout)

    def __enter__(self) -> Nginx:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def servers(ports: Sequence[int], options: str = "check") -> str:
    return "\n".join(f"    server g{i} 127.0.0.1:{port} {options}"
                     for i, port in enumerate(ports, 1))


class PoolGateway(GatewayProcess):
    """A gateway with twistd-level options: --workers, --drain-grace, --drain-timeout."""

    def __init__(self, config: str, *, options: Sequence[str] = (), **kwargs: object) -> None:
        super().__init__(config, **kwargs)  # type: ignore[arg-type]
        self.options = list(options)

    def command(self) -> list[str]:
        args = super().command()
        return [TWISTD, *args[1:4], *self.options, *args[4:]]
