"""systemd's notify protocol: tell the service manager the gateway is ready, reloading,
stopping, alive (the watchdog), and what it is doing (``STATUS=``).

    Type=notify units (etc/systemd/kgateway.service) get $NOTIFY_SOCKET: a unix datagram
    socket; each message is newline-separated ``KEY=value`` lines (``READY=1``,
    ``RELOADING=1``, ``STOPPING=1``, ``STATUS=...``, ``WATCHDOG=1``). A path starting
    with ``@`` names a socket in the abstract namespace (a leading NUL byte).

Written by hand (a dozen lines over the standard library's socket module) rather than with
``systemd-python``, which needs libsystemd's headers to build, or ``sdnotify``, unmaintained
since 2017 and without the watchdog's environment handling. Without $NOTIFY_SOCKET (a
terminal, tests, another supervisor) every call does nothing.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from twisted.logger import Logger

log = Logger()


class Notifier:
    """Sends sd_notify(3) messages to $NOTIFY_SOCKET, if the environment names one."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET", "")
        self.address: str | bytes | None = None
        if path.startswith("@"):
            self.address = b"\0" + path[1:].encode()
        elif path.startswith("/"):
            self.address = path
        #: half of $WATCHDOG_USEC in seconds, when the watchdog is on for this process
        self.watchdog_interval: float | None = None
        usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_interval = int(usec) / 2e6
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *fields: str) -> bool:
        """Send *fields* (``"READY=1"``, ``"STATUS=serving"``...) as one datagram."""
        if self.address is None:
            return False
        message = "\n".join(fields).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.connect(self.address)
                s.sendall(message)
        except OSError as e:
            if not self._warned:  # once: a watchdog would repeat it every few seconds
                self._warned = True
                log.warn("systemd notify socket {path}: {error}", path=self.address,
                         error=e.strerror or str(e))
            return False
        return True

    def forget_environment(self) -> None:
        """Unset $NOTIFY_SOCKET and the watchdog's variables, so children (--workers) do
        not talk to systemd themselves."""
        for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            os.environ.pop(name, None)
