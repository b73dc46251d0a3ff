"""Proxy throughput: one connection, 64 KiB messages, through the gateway vs direct TCP.

    client --tcp------------------------------> sink            (direct)
    client --tcp--> gateway (proxy) --tcp-----> sink            (tcp -> tcp)
    client --ws---> gateway (proxy) --tcp-----> sink            (ws -> tcp, 64 KiB messages)
    client --wss--> gateway (proxy) --tcp-----> sink            (wss -> tcp)

The sink is a separate process that counts bytes and answers "ok" once it has them all, so
the time covers delivery, not just queueing. Run: .venv/bin/python -m bench.proxy_throughput

``--fast-path`` compares the WebSocket fast data path (``kgateway.transport.fastws``) with
Autobahn's (accept-option ``ws.fast.path`` false), on one gateway, runs alternating:

    raw client --ws--> gateway (proxy) --tcp--> sink      64 KiB messages: MiB/s
    raw client --ws--> gateway (proxy) --tcp--> sink      256 B messages: messages/s
    client <--ws-- gateway (proxy) <--tcp-- source        the source writes 64 KiB: MiB/s

The client sends pre-masked frames in 256 KiB batches and reads with the codec, so that the
gateway, not the client, is what runs out of CPU. The machine has 2 shared cores: rates
swing with the load; the gateway's CPU time per message (from /proc) is the steadier figure.
Published results: bench/published/proxy_fastpath.md (a run writes bench/out/).
"""

from __future__ import annotations

import argparse
import base64
import multiprocessing
import os
import socket
import ssl
import statistics
import tempfile
import time
from typing import Any

from websockets.sync.client import connect as ws_connect

from bench.common import median_of, write_results
from kgateway.protocols.websocket import Chunk, Opcode, Role, WebSocketCodec, encode_frame
from tests.helpers import GatewayProcess, free_port, gateway_xml, make_certs, service_xml

MESSAGE = 64 * 1024


def _sink(port: int, total: int, ready: Any) -> None:
    server = socket.create_server(("127.0.0.1", port))
    ready.set()
    while True:
        conn, _ = server.accept()
        got = 0
        while got < total:
            chunk = conn.recv(1 << 20)
            if not chunk:
                break
            got += len(chunk)
        conn.sendall(b"ok")
        conn.close()


def _tcp_run(port: int, total: int, tls_ca: str | None = None) -> float:
    payload = b"x" * MESSAGE
    sock = socket.create_connection(("127.0.0.1", port))
    if tls_ca:
        sock = ssl.create_default_context(cafile=tls_ca).wrap_socket(sock,
                                                                      server_hostname="localhost")
    start = time.perf_counter()
    for _ in range(total // MESSAGE):
        sock.sendall(payload)
    assert sock.recv(2) == b"ok"
    elapsed = time.perf_counter() - start
    sock.close()
    return total / elapsed / 2**20


def _ws_run(url: str, total: int, tls_ca: str | None = None) -> float:
    payload = b"x" * MESSAGE
    context = ssl.create_default_context(cafile=tls_ca) if tls_ca else None
    with ws_connect(url, ssl=context, max_size=None, compression=None) as ws:
        start = time.perf_counter()
        for _ in range(total // MESSAGE):
            ws.send(payload)
        assert ws.recv() == b"ok"
        return total / (time.perf_counter() - start) / 2**20


def _source(port: int, total: int, ready: Any) -> None:
    """Writes *total* bytes in 64 KiB writes to each connection, then closes it."""
    server = socket.create_server(("127.0.0.1", port))
    ready.set()
    chunk = b"y" * MESSAGE
    while True:
        conn, _ = server.accept()
        for _ in range(total // MESSAGE):
            conn.sendall(chunk)
        conn.close()


def _handshake(port: int, path: str) -> tuple[socket.socket, bytes]:
    """A WebSocket client by hand: the socket after the 101, and any octets after it."""
    sock = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16))
    sock.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                 b"Sec-WebSocket-Version: 13\r\n\r\n" % (path.encode(), port, key))
    buf = b""
    while b"\r\n\r\n" not in buf:
        more = sock.recv(65536)
        assert more, "handshake refused"
        buf += more
    head, rest = buf.split(b"\r\n\r\n", 1)
    assert b" 101 " in head.split(b"\r\n")[0], head
    return sock, rest


def _raw_upstream(port: int, path: str, size: int, count: int) -> float:
    """Send *count* binary messages of *size* octets; the rate in messages per second."""
    frame = b"".join(encode_frame(Opcode.BINARY, b"u" * size, True, b"\x11\x22\x33\x44"))
    per_batch = max(1, (256 * 1024) // len(frame))
    batch = frame * per_batch
    sock, _ = _handshake(port, path)
    start = time.perf_counter()
    sent = 0
    while sent + per_batch <= count:
        sock.sendall(batch)
        sent += per_batch
    if count - sent:
        sock.sendall(frame * (count - sent))
    reply = b""
    while len(reply) < 4:  # the sink's "ok", as one unmasked binary frame
        more = sock.recv(16)
        assert more, "the gateway closed before the sink answered"
        reply += more
    elapsed = time.perf_counter() - start
    assert reply.startswith(b"\x82\x02ok"), reply
    sock.close()
    return count / elapsed


def _raw_downstream(port: int, path: str, total: int) -> float:
    """Read *total* payload octets from the source through the gateway; MiB/s."""
    sock, rest = _handshake(port, path)
    codec = WebSocketCodec(Role.CLIENT, stream=True)
    start = time.perf_counter()
    got = 0
    data = rest
    while got < total:
        for event in codec.receive_data(data):
            if isinstance(event, Chunk):
                got += len(event.data)
        if got >= total:
            break
        data = sock.recv(1 << 20)
        assert data, f"closed after {got} octets"
    elapsed = time.perf_counter() - start
    sock.close()
    return total / elapsed / 2**20


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process *pid* so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fast_path(args: argparse.Namespace) -> None:
    """Fast data path against Autobahn's, one gateway, alternating runs."""
    total = args.mib * 2**20
    small = args.messages * 256
    ports = {name: free_port() for name in ("up64", "up256", "down")}
    events = {name: multiprocessing.Event() for name in ports}
    procs = [
        multiprocessing.Process(target=_sink, args=(ports["up64"], total, events["up64"]),
                                daemon=True),
        multiprocessing.Process(target=_sink, args=(ports["up256"], small, events["up256"]),
                                daemon=True),
        multiprocessing.Process(target=_source, args=(ports["down"], total, events["down"]),
                                daemon=True),
    ]
    for proc in procs:
        proc.start()
    for event in events.values():
        event.wait(10)
    http = free_port()
    services = []
    for fast in (True, False):
        options = f"<accept-options><ws.fast.path>{str(fast).lower()}</ws.fast.path>" \
                  "</accept-options>"
        for name, port in ports.items():
            services.append(service_xml("proxy", f"ws://127.0.0.1:{http}/{name}-{fast}",
                                        f"tcp://127.0.0.1:{port}", name=f"{name}-{fast}",
                                        extra=options))
    # name -> (run, units per run, what a unit is): the rate, and the gateway's CPU per unit
    cases = {
        "ws -> tcp, 64 KiB messages (MiB/s)":
            (lambda fast: _raw_upstream(http, f"/up64-{fast}", MESSAGE, total // MESSAGE)
             * MESSAGE / 2**20, total // MESSAGE, "64 KiB message"),
        "ws -> tcp, 256 B messages (messages/s)":
            (lambda fast: _raw_upstream(http, f"/up256-{fast}", 256, args.messages),
             args.messages, "256 B message"),
        "tcp -> ws, 64 KiB writes (MiB/s)":
            (lambda fast: _raw_downstream(http, f"/down-{fast}", total), total // MESSAGE,
             "64 KiB"),
    }
    rates: dict[str, dict[bool, list[float]]] = {name: {True: [], False: []} for name in cases}
    cpus: dict[str, dict[bool, list[float]]] = {name: {True: [], False: []} for name in cases}
    with GatewayProcess(gateway_xml(services), name="bench-fastpath") as gw:
        for i in range(args.runs):
            for name, (run, units, _) in cases.items():
                for fast in ((True, False) if i % 2 == 0 else (False, True)):
                    before = _cpu_seconds(gw.pid)
                    rates[name][fast].append(run(fast))
                    cpus[name][fast].append((_cpu_seconds(gw.pid) - before) / units * 1e6)
    for proc in procs:
        proc.terminate()
    figures: dict[str, Any] = {"mib_per_run": args.mib, "small_messages": args.messages}
    table = [f"| case | Autobahn (median of {args.runs}) | fast path | ratio | runs "
             "(Autobahn / fast) | gateway CPU us per unit (Autobahn / fast) |",
             "|---|---|---|---|---|---|"]
    for name, by in rates.items():
        slow, fast_ = statistics.median(by[False]), statistics.median(by[True])
        cpu_slow, cpu_fast = statistics.median(cpus[name][False]), \
            statistics.median(cpus[name][True])
        unit = cases[name][2]
        figures[name] = {"autobahn": round(slow, 1), "fast": round(fast_, 1),
                         "ratio": round(fast_ / slow, 2),
                         "runs_autobahn": [round(v, 1) for v in by[False]],
                         "runs_fast": [round(v, 1) for v in by[True]],
                         f"cpu_us_per_{unit}": {"autobahn": round(cpu_slow, 2),
                                                 "fast": round(cpu_fast, 2)}}
        table.append(f"| {name} | {slow:,.0f} | {fast_:,.0f} | {fast_ / slow:.2f} | "
                     f"{', '.join(f'{v:,.0f}' for v in by[False])} / "
                     f"{', '.join(f'{v:,.0f}' for v in by[True])} | "
                     f"{cpu_slow:,.1f} / {cpu_fast:,.1f} per {unit} |")
    write_results("proxy_fastpath",
                  ".venv/bin/python -m bench.proxy_throughput --fast-path "
                  f"--mib {args.mib} --messages {args.messages} --runs {args.runs}", figures, table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, default=256, help="MiB per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--fast-path", action="store_true",
                        help="compare the WebSocket fast data path with Autobahn's")
    parser.add_argument("--messages", type=int, default=300_000,
                        help="--fast-path: 256 B messages per run")
    args = parser.parse_args()
    if args.fast_path:
        fast_path(args)
        return
    total = args.mib * 2**20
    sink_port = free_port()
    ready = multiprocessing.Event()
    sink = multiprocessing.Process(target=_sink, args=(sink_port, total, ready), daemon=True)
    sink.start()
    ready.wait(10)
    certs = make_certs(tempfile.mkdtemp(prefix="bench-certs-"))
    tcp, ws, wss = free_port(), free_port(), free_port()
    target = f"tcp://127.0.0.1:{sink_port}"
    config = gateway_xml([
        service_xml("proxy", f"tcp://127.0.0.1:{tcp}", target, name="tcp"),
        service_xml("proxy", f"ws://127.0.0.1:{ws}/p", target, name="ws"),
        service_xml("proxy", f"wss://localhost:{wss}/p", target, name="wss"),
    ], certs.security_xml())
    figures: dict[str, dict[str, Any]] = {}
    with GatewayProcess(config, name="bench"):
        cases = {
            "direct tcp": lambda: _tcp_run(sink_port, total),
            "gateway tcp -> tcp": lambda: _tcp_run(tcp, total),
            "gateway ws -> tcp": lambda: _ws_run(f"ws://127.0.0.1:{ws}/p", total),
            "gateway wss -> tcp": lambda: _ws_run(f"wss://localhost:{wss}/p", total, certs.ca),
        }
        for name, run in cases.items():
            median, values = median_of(args.runs, run)
            figures[name] = {"mib_per_s": round(median, 1), "runs": [round(v, 1) for v in values]}
    sink.terminate()
    direct = figures["direct tcp"]["mib_per_s"]
    table = [f"| path | MiB/s (median of {args.runs}) | ratio to direct |", "|---|---|---|"]
    for name, fig in figures.items():
        fig["ratio_to_direct"] = round(fig["mib_per_s"] / direct, 3)
        table.append(f"| {name} | {fig['mib_per_s']} | {fig['ratio_to_direct']} |")
    write_results("proxy_throughput", "make bench  # or: .venv/bin/python -m bench.proxy_throughput",
                  {"message_bytes": MESSAGE, "mib_per_run": args.mib, **figures}, table)


if __name__ == "__main__":
    main()
