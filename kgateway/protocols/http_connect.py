"""HTTP CONNECT (RFC 9110 section 9.3.6), sans-IO: the request a client sends a proxy to
open a tunnel, and a parser for the proxy's answer. Bytes in, a result out; no Twisted.

    client                                   proxy (tinyproxy, squid...)
      CONNECT db.example:5432 HTTP/1.1\\r\\n  -->
      Host: db.example:5432\\r\\n
      Proxy-Authorization: Basic dXNlcjpwdw==\\r\\n     (with credentials)
      \\r\\n
                                         <--  HTTP/1.1 200 Connection established\\r\\n
                                              (headers)\\r\\n\\r\\n
      ...the tunnel: bytes both ways, TLS inside it end to end...

Any 2xx opens the tunnel; anything after the blank line already belongs to it (``rest``).
Other answers become a :class:`TunnelRefused` whose message says what went wrong in words
fit for a close reason (``proxy authentication required``); the proxy's own text is kept
short. The head of the answer is bounded (:data:`MAX_HEAD`), so a proxy that never ends its
headers cannot make the gateway buffer without bound.

Hand-written rather than borrowed: h11 would parse the head, but a CONNECT answer is a
status line and headers with nothing after them to frame, and this is the whole of it.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

#: the most bytes of status line and headers we accept from a proxy
MAX_HEAD = 16 * 1024


class TunnelRefused(Exception):
    """The proxy did not open the tunnel; the message says why (no credentials in it)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def format_authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def connect_request(host: str, port: int,
                    credentials: tuple[str, str] | None = None) -> bytes:
    """The CONNECT request for *host*:*port*, with Basic credentials if given."""
    authority = format_authority(host, port)
    if any(c in authority for c in "\r\n "):
        raise ValueError(f"not a host name: {host!r}")
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if credentials is not None:
        user, password = credentials
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        lines.append(f"Proxy-Authorization: Basic {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


@dataclass(frozen=True)
class Established:
    """The tunnel is open; *rest* is the first of the tunnelled bytes, if any came along."""

    status: int
    rest: bytes


def _short(text: str, limit: int = 40) -> str:
    text = "".join(c for c in text if c.isprintable()).strip()
    return text if len(text) <= limit else text[:limit - 3] + "..."


def explain(status: int, reason: str, target: str, sent_credentials: bool) -> str:
    """A refusal in words, for logs and close frames."""
    said = f"{status} {_short(reason)}".rstrip()
    if status == 407:
        if sent_credentials:
            return f"proxy authentication failed: credentials refused ({said})"
        return f"proxy authentication required ({said})"
    if status == 401:  # tinyproxy answers 401 to a wrong password
        return f"proxy authentication failed: credentials refused ({said})"
    if status == 403:
        return f"proxy refused to connect to {target} ({said})"
    if status in (502, 503, 504):
        return f"proxy cannot reach {target} ({said})"
    if status == 405:
        return f"proxy does not allow CONNECT ({said})"
    return f"proxy refused the tunnel to {target} ({said})"


class ConnectResponseParser:
    """Feed the proxy's bytes; get an :class:`Established` once the head is complete, or a
    :class:`TunnelRefused` raised. Feeding after the answer is a programming error."""

    def __init__(self, target: str, sent_credentials: bool) -> None:
        self.target = target
        self.sent_credentials = sent_credentials
        self._buffer = bytearray()
        self.done = False

    def feed(self, data: bytes) -> Established | None:
        if self.done:
            raise RuntimeError("the proxy's answer is already complete")
        # Search only where the terminator can newly appear.
        start = max(0, len(self._buffer) - 3)
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n", start)
        if end < 0:
            if len(self._buffer) > MAX_HEAD:
                self.done = True
                raise TunnelRefused(f"proxy answer too long (over {MAX_HEAD} bytes of "
                                    "headers)")
            return None
        self.done = True
        head = bytes(self._buffer[:end])
        rest = bytes(self._buffer[end + 4:])
        if end > MAX_HEAD:
            raise TunnelRefused(f"proxy answer too long (over {MAX_HEAD} bytes of headers)")
        status, reason = self._status_line(head.split(b"\r\n", 1)[0])
        if 200 <= status < 300:
            return Established(status, rest)
        raise TunnelRefused(explain(status, reason, self.target, self.sent_credentials),
                            status)

    def eof(self) -> None:
        """The proxy closed the connection: always a refusal unless the tunnel was open."""
        if not self.done:
            self.done = True
            raise TunnelRefused("proxy closed the connection before answering CONNECT")

    @staticmethod
    def _status_line(line: bytes) -> tuple[int, str]:
        text = line.decode("latin-1")
        parts = text.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not (
                len(parts[1]) == 3 and parts[1].isdigit()):
            raise TunnelRefused(f"not an HTTP proxy: it answered {_short(text)!r}")
        return int(parts[1]), parts[2] if len(parts) > 2 else ""
