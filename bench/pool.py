"""Pools: 1 vs 2 workers on one port, and how fast a dead pool member stops getting clients.

    100 WebSocket clients (one epoll loop, pre-built frames)  --> gateway --workers 1 | 2 (echo)
    8 connectors (handshake, hang up, again)           --> same

    clients --> HAProxy (roundrobin, GET /health every 1s, fall 2) --> g1, g2, g3
                SIGKILL g2 / SIGTERM g3: time until HAProxy logs "is DOWN"

The load clients do almost no work per byte (frames are built once, with a zero mask, and
replies are counted, not parsed) so that the gateway, not the client, is what is measured;
but they share this machine's cores with it, which caps what a second worker can add.
Run: .venv/bin/python -m bench.pool [--seconds 5]
"""

from __future__ import annotations

import argparse
import base64
import os
import selectors
import signal
import socket
import statistics
import struct
import threading
import time
from typing import Any

from bench.common import write_results
from tests.balancers import HAProxy, PoolGateway, servers
from tests.helpers import free_port, gateway_xml, service_xml

CONNECTIONS = 100
MESSAGE = 1024
BATCH = 16  # frames per write: one syscall moves 16 messages each way


def _gateway(port: int, workers: int, health: bool = False, name: str = "bench") -> PoolGateway:
    services = [service_xml("echo", f"ws://127.0.0.1:{port}/echo", name="echo")]
    if health:
        services.append(service_xml("health", f"http://127.0.0.1:{port}/health",
                                    name="health"))
    options = ["--drain-grace", "1", "--drain-timeout", "1"]
    if workers > 1:
        options += ["--workers", str(workers)]
    gw = PoolGateway(gateway_xml(services), options=options, name=name)
    gw.start(wait_for=f"kgateway ready: {workers} workers" if workers > 1 else "kgateway ready")
    return gw


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of *pid* and its children (the workers), so far."""
    pids = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids += [int(p) for p in f.read().split()]
    except OSError:
        pass
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime in clock ticks
        except OSError:
            pass
    return total / os.sysconf("SC_CLK_TCK")


def _handshake(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(f"GET /echo HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                 f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n".encode())
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        response += chunk
    if not response.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(response.split(b"\r\n")[0].decode())
    return sock


def _frames() -> tuple[bytes, int]:
    # A client frame must be masked; a zero mask leaves the payload as it is.
    frame = bytes([0x82, 0x80 | 126]) + struct.pack("!H", MESSAGE) + b"\0\0\0\0" + \
        b"x" * MESSAGE
    reply = 4 + MESSAGE  # server frames: 0x82, 126, 2-byte length, payload
    return frame * BATCH, reply * BATCH


def throughput(port: int, seconds: float, pid: int) -> dict[str, float]:
    """Messages echoed per second, 100 connections each with one batch in flight.

    One thread drives every connection through epoll: threads would spend the client's
    time handing the GIL around instead of moving bytes.
    """
    batch, expected = _frames()
    socks = [_handshake(port) for _ in range(CONNECTIONS)]
    selector = selectors.DefaultSelector()
    left = {}
    for sock in socks:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        sock.sendall(batch)  # 16 KiB fits in the socket buffer: never blocks
        left[sock] = expected
    echoed = 0
    marks: list[tuple[float, int]] = []
    start = time.perf_counter()
    deadline = start + 1.0 + seconds  # the first second is a warm-up
    while (now := time.perf_counter()) < deadline:
        if not marks and now >= start + 1.0:
            marks.append((now, echoed))
            cpu0 = _cpu_seconds(pid)
        for key, _ in selector.select(0.5):
            sock = key.fileobj  # type: ignore[assignment]
            chunk = sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("the gateway closed a load connection")
            left[sock] -= len(chunk)
            if left[sock] == 0:
                echoed += BATCH
                left[sock] = expected
                sock.sendall(batch)
    marks.append((time.perf_counter(), echoed))
    cpu = _cpu_seconds(pid) - cpu0
    for sock in socks:
        selector.unregister(sock)
        sock.close()
    (t0, n0), (t1, n1) = marks
    rate = (n1 - n0) / (t1 - t0)
    return {"messages_per_s": rate, "mib_per_s": rate * MESSAGE / 2**20,
            "gateway_cores": cpu / (t1 - t0), "messages_per_cpu_s": (n1 - n0) / cpu}


def connection_rate(port: int, seconds: float, pid: int, threads: int = 8) -> dict[str, float]:
    """Completed WebSocket handshakes per second (connect, 101, hang up)."""
    done = [0] * threads
    stop = threading.Event()

    def run(i: int) -> None:
        while not stop.is_set():
            sock = _handshake(port)
            sock.close()
            done[i] += 1

    workers = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(threads)]
    for t in workers:
        t.start()
    stop.wait(0.5)
    before, start, cpu0 = sum(done), time.perf_counter(), _cpu_seconds(pid)
    stop.wait(seconds)
    after, elapsed, cpu = sum(done), time.perf_counter() - start, _cpu_seconds(pid) - cpu0
    stop.set()
    for t in workers:
        t.join(10)
    return {"handshakes_per_s": (after - before) / elapsed,
            "handshake_gateway_cores": cpu / elapsed}


def _seconds(duration: str) -> float:
    return float(duration[:-2]) / 1000 if duration.endswith("ms") else float(duration[:-1])


def dead_member(check_inter: str = "1s") -> dict[str, float]:
    """Seconds from SIGKILL (crash) and SIGTERM (drain) to HAProxy's "is DOWN"."""
    ports = [free_port() for _ in range(3)]
    gateways = [_gateway(p, 1, health=True, name=f"g{i}") for i, p in enumerate(ports, 1)]
    front = free_port()
    haproxy = HAProxy("pool.cfg.in", bind=f"127.0.0.1:{front}", check_inter=check_inter,
                      servers=servers(ports), extra="").start()
    failures = 0
    stop = threading.Event()

    def clients() -> None:  # new clients all along: do any of them fail?
        nonlocal failures
        while not stop.is_set():
            try:
                _handshake(front).close()
            except OSError:
                failures += 1
            stop.wait(0.02)

    load = threading.Thread(target=clients, daemon=True)
    load.start()
    # HAProxy starts each server one failed check from DOWN; after rise + fall checks a
    # server is as healthy as it gets and needs "fall" failures in a row to go down.
    stop.wait(4 * _seconds(check_inter))
    try:
        start = time.perf_counter()
        gateways[1].stop(signal.SIGKILL)
        haproxy.log.wait_for(r"gateways/g2 is DOWN", timeout=60)
        killed = time.perf_counter() - start
        assert gateways[2].proc is not None
        start = time.perf_counter()
        gateways[2].proc.send_signal(signal.SIGTERM)
        haproxy.log.wait_for(r"gateways/g3 is DOWN", timeout=60)
        drained = time.perf_counter() - start
    finally:
        stop.set()
        load.join(10)
        haproxy.stop()
        for gw in gateways:
            gw.stop()
    return {"sigkill_to_down_s": killed, "sigterm_to_down_s": drained,
            "failed_new_clients": failures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3,
                        help="1 and 2 workers alternate this many times; medians are kept")
    args = parser.parse_args()
    figures: dict[str, Any] = {"connections": CONNECTIONS, "message_bytes": MESSAGE}
    runs: dict[int, list[dict[str, float]]] = {1: [], 2: []}
    for _ in range(args.rounds):
        for workers in (1, 2):  # alternating, so that other load on the host hits both alike
            port = free_port()
            gw = _gateway(port, workers)
            try:
                runs[workers].append({**throughput(port, args.seconds, gw.pid),
                                      **connection_rate(port, args.seconds, gw.pid)})
            finally:
                gw.stop()
    for workers, results in runs.items():
        figures[f"workers_{workers}"] = {
            key: statistics.median(r[key] for r in results) for key in results[0]}
        figures[f"workers_{workers}_runs"] = results
    one, two = figures["workers_1"], figures["workers_2"]
    figures["throughput_ratio"] = two["messages_per_s"] / one["messages_per_s"]
    figures["handshake_ratio"] = two["handshakes_per_s"] / one["handshakes_per_s"]
    figures["dead_member"] = dead_member()
    dead = figures["dead_member"]
    table = [
        f"Medians of {args.rounds} alternating rounds of {args.seconds:g} s each.",
        "",
        f"| workers | echo msgs/s ({CONNECTIONS} conns, {MESSAGE} B) | MiB/s | gateway cores "
        "used | msgs per gateway CPU-s | handshakes/s | gateway cores used |",
        "|---|---|---|---|---|---|---|",
        *(f"| {w} | {f['messages_per_s']:,.0f} | {f['mib_per_s']:.1f} | "
          f"{f['gateway_cores']:.2f} | {f['messages_per_cpu_s']:,.0f} | "
          f"{f['handshakes_per_s']:,.0f} | {f['handshake_gateway_cores']:.2f} |"
          for w, f in ((w, figures[f"workers_{w}"]) for w in (1, 2))),
        "",
        f"2 workers vs 1: throughput x{figures['throughput_ratio']:.2f}, handshakes "
        f"x{figures['handshake_ratio']:.2f} (goal x1.7; {os.cpu_count()} cores shared with "
        f"the load clients; load average {os.getloadavg()[0]:.1f} at the end)",
        "",
        "Dead pool member behind HAProxy (inter 1s, fall 2, GET /health):",
        f"- SIGKILL -> marked DOWN after {dead['sigkill_to_down_s']:.2f} s",
        f"- SIGTERM (health 503 at once) -> DOWN after {dead['sigterm_to_down_s']:.2f} s",
        f"- new clients refused meanwhile: {dead['failed_new_clients']} "
        "(HAProxy redispatches a failed connect)",
    ]
    write_results("pool", f"python -m bench.pool --seconds {args.seconds:g} --rounds "
                  f"{args.rounds}", figures, table)


if __name__ == "__main__":
    main()
