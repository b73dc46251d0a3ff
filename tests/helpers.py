"""Shared test support: real twistd gateways, free ports, test certificates.

Nothing here sleeps to synchronise: processes are awaited by their log lines, sockets by
their own blocking calls with timeouts.
"""

from __future__ import annotations

import atexit
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
TWISTD = os.path.join(BIN, "twistd")
NS = "http://xmlns.kaazing.org/2016/06/gateway"


def free_port() -> int:
    """A port nobody listens on right now (the kernel's pick for port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gateway_xml(services: Iterable[str], security: str = "", properties: str = "") -> str:
    return (f'<?xml version="1.0"?>\n<gateway-config xmlns="{NS}">\n{properties}\n{security}\n'
            + "\n".join(services) + "\n</gateway-config>\n")


def service_xml(type_: str, accept: str | Sequence[str], connect: str | Sequence[str] = (),
                name: str | None = None, properties: str = "", extra: str = "") -> str:
    accepts = [accept] if isinstance(accept, str) else list(accept)
    connects = [connect] if isinstance(connect, str) else list(connect)
    return "<service>" + (f"<name>{name}</name>" if name else "") + "".join(
        f"<accept>{a}</accept>" for a in accepts) + "".join(
        f"<connect>{c}</connect>" for c in connects) + f"<type>{type_}</type>" + (
        f"<properties>{properties}</properties>" if properties else "") + extra + "</service>"


@dataclass
class Certs:
    folder: str
    ca: str
    cert: str
    key: str

    def security_xml(self) -> str:
        return (f"<security><keystore><certificate-file>{self.cert}</certificate-file>"
                f"<key-file>{self.key}</key-file></keystore>"
                f"<truststore><file>{self.ca}</file></truststore></security>")


def make_certs(folder: str) -> Certs:
    from kgateway.certs import make_certificate

    cert, key = make_certificate(folder, "localhost", ["127.0.0.1"])
    return Certs(folder, os.path.join(folder, "ca.pem"), cert, key)


_STARTED: list[GatewayProcess] = []


@atexit.register
def _stop_leftovers() -> None:
    """A test that failed before stopping its gateways must not leave them running."""
    for process in _STARTED:
        if process.proc is not None and process.proc.poll() is None:
            process.proc.kill()


class GatewayProcess:
    """A real ``twistd -n kgateway`` process, awaited by its log lines."""

    def __init__(self, config: str, *, defines: Sequence[str] = (), args: Sequence[str] = (),
                 name: str = "gateway",
                 cwd: str | None = None, env: dict[str, str] | None = None) -> None:
        self.folder = tempfile.mkdtemp(prefix=f"kg-{name}-")
        if config.lstrip().startswith("<"):
            self.config = os.path.join(self.folder, "gateway.xml")
            with open(self.config, "w") as f:
                f.write(config)
        else:
            self.config = config
        self.defines = list(defines)
        self.args = list(args)  # more kgateway options, e.g. ["--drain-grace", "0"]
        self.cwd = cwd or self.folder
        # Unbuffered, so the last lines before a signal-driven exit reach the test.
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.proc: subprocess.Popen[str] | None = None
        self._eof = False

    def command(self) -> list[str]:
        args = [TWISTD, "-n", "--pidfile=", "kgateway", "-c", self.config]
        for d in self.defines:
            args += ["-D", d]
        return args + self.args

    def start(self, wait_for: str | None = "kgateway ready", timeout: float = 30) -> GatewayProcess:
        self.proc = subprocess.Popen(self.command(), cwd=self.cwd, env=self.env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        _STARTED.append(self)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if wait_for:
            self.wait_for(wait_for, timeout)
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float = 20, start: int = 0) -> re.Match[str]:
        """Block until a log line matches *pattern* (a regex); fail with the log if not."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = start
        with self._changed:
            while True:
                for line in self.lines[seen:]:
                    m = regex.search(line)
                    if m:
                        return m
                seen = len(self.lines)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._eof:
                    raise AssertionError(f"no log line matching {pattern!r} within {timeout}s"
                                         f"\n--- log ---\n{self.log()}")
                self._changed.wait(min(remaining, 0.5))

    def log(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def mark(self) -> int:
        with self._changed:
            return len(self.lines)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss_kib(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError(f"no VmRSS: the gateway exited\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def restart(self, sig: int = signal.SIGTERM) -> GatewayProcess:
        """Stop the process, forget its log once every line of it is read, start it again."""
        self.stop(sig)
        self._reader.join(15)  # else the old reader's end-of-file would end the new wait
        with self._changed:
            self.proc, self.lines, self._eof = None, [], False
        return self.start()

    def __enter__(self) -> GatewayProcess:
        return self if self.proc is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def connect_tcp(port: int, *, tls_ca: str | None = None, timeout: float = 10) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if tls_ca:
        import ssl

        ctx = ssl.create_default_context(cafile=tls_ca)
        return ctx.wrap_socket(sock, server_hostname="localhost")
    return sock


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        chunk = sock.recv(min(n, 1 << 20))
        if not chunk:
            raise AssertionError(f"connection closed with {n} bytes still expected")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)
