"""Readiness probes for the scripts in scripts/ (through lib.sh): does a port speak the
protocol, not merely accept a connection?

    python3 scripts/probe.py amqp|stomp|proxy HOST PORT     (exit 0: ready)

amqp: an AMQP 0-9-1 header is answered with Connection.Start. stomp: a CONNECT is
answered with CONNECTED. proxy: an HTTP proxy answers a CONNECT without credentials with
407. Standard library only: the scripts run before any virtualenv exists.
"""

import socket
import sys
from collections.abc import Callable


def exchange(host: str, port: int, send: bytes, enough: Callable[[bytes], bool],
             goodbye: bytes = b"") -> bytes:
    """Send, then read until enough(buffer) or the peer closes, then send goodbye (if any);
    b"" if it cannot connect."""
    try:
        with socket.create_connection((host, port), timeout=2) as s:
            s.sendall(send)
            buf = b""
            while not enough(buf):
                chunk = s.recv(4096)
                if not chunk:
                    break
                buf += chunk
            if goodbye:
                s.sendall(goodbye)
            return buf
    except OSError:
        return b""


def amqp(host: str, port: int) -> bool:
    buf = exchange(host, port, b"AMQP\x00\x00\x09\x01", lambda b: len(b) >= 11)
    # a method frame (type 1) on channel 0: class 10 (connection), method 10 (start)
    return buf[:1] == b"\x01" and buf[7:11] == b"\x00\x0a\x00\x0a"


def stomp(host: str, port: int) -> bool:
    buf = exchange(host, port, b"CONNECT\naccept-version:1.0,1.1,1.2\nhost:localhost\n\n\x00",
                   lambda b: b"\x00" in b, goodbye=b"DISCONNECT\n\n\x00")
    return buf.lstrip(b"\r\n").startswith(b"CONNECTED")


def proxy(host: str, port: int) -> bool:
    buf = exchange(host, port, b"CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n",
                   lambda b: b"\r\n" in b)
    return buf.split(b" ")[1:2] == [b"407"]


if __name__ == "__main__":
    kind, host, port = sys.argv[1:4]
    sys.exit(0 if {"amqp": amqp, "stomp": stomp, "proxy": proxy}[kind](host, int(port)) else 1)
