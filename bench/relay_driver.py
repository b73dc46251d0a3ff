"""The load driver of bench.relay: raw sockets, frames built once, its own CPU measured.

One process per call; bench.relay starts several for many connections. The driver does as
little as it can per byte, so that the relay, not the driver, is what is measured:

- client frames must be masked (RFC 6455 5.3); each message is masked once with one random
  key and the same masked bytes are sent again and again (the server unmasks every frame
  anyway), batched so that one send() moves ~256 KiB;
- replies are counted, never parsed (downstream figures count wire bytes: at most 10 header
  bytes per relayed read, under 0.3% with >= 4 KiB reads);
- no WebSocket library: websockets or websocket-client would spend more per message than
  the relays under test. The handshake is the fixed request below and a check for " 101 ".

Its CPU (user + system, resource.getrusage of itself) over the measurement window is
reported next to every figure. Protocol on stdin/stdout, one JSON line each way:

    driver -> {"ready": ...}      connections are open (handshakes done)
    go     -> {"bytes", "count", "start", "end", "cpu_s", ...}   after SECONDS of load
    close  -> the driver hangs up and exits

Modes: up (send), down (receive), handshakes (connect, 101, reset; C at a time), hold (open N
and keep them). Run by bench.relay: python -m bench.relay_driver '<json spec>'
"""

from __future__ import annotations

import base64
import json
import os
import resource
import selectors
import socket
import ssl
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Any

BATCH_BYTES = 256 * 1024
CHUNK_OPEN = 32  # handshakes started at once while opening many: under any listen backlog
LINGER_0 = struct.pack("ii", 1, 0)  # close() sends RST: no TIME_WAIT, no queue to drain


@dataclass
class Spec:
    mode: str  # up | down | handshakes | hold
    port: int
    path: str = "/"
    ws: bool = True  # False: plain TCP (the direct baseline)
    ca: str | None = None  # wss/TLS, verified against this CA
    connections: int = 1
    message: int = 64 * 1024
    seconds: float = 5.0  # the measured window
    warmup: float = 0.0  # load before the window: relays' buffers fill, or drain (down)
    tail: float = 0.0  # up: load after the window, which bench.relay measures at the sink
    extra: dict[str, Any] = field(default_factory=dict)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def client_frame(payload: bytes, key: bytes) -> bytes:
    """One binary frame, masked with *key*: header, key, payload XOR key (RFC 6455 5.2)."""
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x82, 0x80 | n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", 0x82, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", 0x82, 0x80 | 127, n)
    keystream = (key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(keystream, "big")).to_bytes(n, "big")
    return header + key + masked


def batch(spec: Spec) -> bytes:
    payload = bytes(range(256)) * (spec.message // 256) + bytes(spec.message % 256)
    unit = client_frame(payload, os.urandom(4)) if spec.ws else payload
    return unit * max(1, BATCH_BYTES // len(unit))


def request(spec: Spec) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (f"GET {spec.path} HTTP/1.1\r\nHost: 127.0.0.1:{spec.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n").encode()


def check_101(response: bytes) -> None:
    status = response.split(b"\r\n", 1)[0]
    if b" 101 " not in status + b" ":
        raise ConnectionError(f"handshake refused: {status.decode(errors='replace')}")


def open_many(spec: Spec, n: int) -> list[socket.socket]:
    """*n* connections, handshakes done; CHUNK_OPEN in flight at a time."""
    context = None
    if spec.ca:
        context = ssl.create_default_context(cafile=spec.ca)
    socks: list[socket.socket] = []
    for first in range(0, n, CHUNK_OPEN):
        chunk: list[socket.socket] = []
        for _ in range(min(CHUNK_OPEN, n - first)):
            sock = socket.create_connection(("127.0.0.1", spec.port), timeout=60)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if context is not None:
                sock = context.wrap_socket(sock, server_hostname="localhost")
            if spec.ws:
                sock.sendall(request(spec))
            chunk.append(sock)
        for sock in chunk:
            if spec.ws:
                response = b""
                while b"\r\n\r\n" not in response:
                    data = sock.recv(65536)
                    if not data:
                        raise ConnectionError("closed during the handshake")
                    response += data
                check_101(response)
            socks.append(sock)
    return socks


def up(spec: Spec, socks: list[socket.socket]) -> dict[str, Any]:
    data = batch(spec)
    sent = 0
    if len(socks) == 1:  # blocking: the cheapest loop there is, and it works over TLS too
        sock = socks[0]
        start, cpu0 = time.monotonic(), cpu_seconds()
        deadline = start + spec.warmup + spec.seconds + spec.tail
        while time.monotonic() < deadline:
            sock.sendall(data)
            sent += len(data)
    else:
        view = memoryview(data)
        offset = dict.fromkeys(socks, 0)
        selector = selectors.DefaultSelector()
        for sock in socks:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_WRITE, sock)
        start, cpu0 = time.monotonic(), cpu_seconds()
        deadline = start + spec.warmup + spec.seconds + spec.tail
        while time.monotonic() < deadline:
            for key, _ in selector.select(0.2):
                sock = key.data
                try:
                    n = sock.send(view[offset[sock]:])
                except BlockingIOError:
                    continue
                sent += n
                offset[sock] = (offset[sock] + n) % len(data)
        selector.close()
    end = time.monotonic()
    return {"bytes": sent, "start": start, "end": end, "cpu_s": cpu_seconds() - cpu0}


def down(spec: Spec, socks: list[socket.socket]) -> dict[str, Any]:
    buffer = bytearray(1 << 20)
    sock = socks[0]
    sock.settimeout(30)
    counting = time.monotonic() + spec.warmup  # what the relays had buffered is not counted
    deadline = counting + spec.seconds
    received = 0
    start = cpu0 = None
    while (now := time.monotonic()) < deadline:
        n = sock.recv_into(buffer)
        if not n:
            raise ConnectionError("the relay closed the downstream connection")
        if now >= counting:
            if start is None:
                start, cpu0 = now, cpu_seconds()
            received += n
    assert start is not None and cpu0 is not None
    return {"bytes": received, "start": start, "end": time.monotonic(),
            "cpu_s": cpu_seconds() - cpu0}


def handshakes(spec: Spec) -> dict[str, Any]:
    """Connect, send the upgrade, read the 101, reset; spec.connections in flight."""
    selector = selectors.DefaultSelector()
    buffers: dict[socket.socket, bytes] = {}

    def start_one() -> None:
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", spec.port))
        buffers[sock] = b""
        selector.register(sock, selectors.EVENT_WRITE, sock)

    done = 0
    start, cpu0 = time.monotonic(), cpu_seconds()
    deadline = start + spec.seconds
    for _ in range(spec.connections):
        start_one()
    while time.monotonic() < deadline:
        for key, events in selector.select(0.2):
            sock = key.data
            if events & selectors.EVENT_WRITE:
                error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if error:
                    raise ConnectionError(os.strerror(error))
                sock.send(request(spec))
                selector.modify(sock, selectors.EVENT_READ, sock)
                continue
            data = sock.recv(4096)
            if not data:
                raise ConnectionError("closed during the handshake")
            buffers[sock] += data
            if b"\r\n\r\n" in buffers[sock]:
                check_101(buffers.pop(sock))
                done += 1
                selector.unregister(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_0)
                sock.close()
                start_one()
    end = time.monotonic()
    cpu = cpu_seconds() - cpu0
    for sock in buffers:
        sock.close()
    return {"count": done, "start": start, "end": end, "cpu_s": cpu}


def say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main() -> None:
    spec = Spec(**json.loads(sys.argv[1]))
    socks: list[socket.socket] = []
    if spec.mode != "handshakes":
        t0 = time.monotonic()
        socks = open_many(spec, spec.connections)
        say({"ready": True, "connections": len(socks), "open_s": time.monotonic() - t0})
    else:
        say({"ready": True})
    if spec.mode != "hold":
        if sys.stdin.readline().strip() != "go":
            return
        if spec.mode == "up":
            say(up(spec, socks))
        elif spec.mode == "down":
            say(down(spec, socks))
        else:
            say(handshakes(spec))
    sys.stdin.readline()  # "close", or end of file
    for sock in socks:  # reset: what is still queued towards the relay is dropped, not drained
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_0)
        sock.close()


if __name__ == "__main__":
    main()
