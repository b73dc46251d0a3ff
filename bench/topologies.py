"""Topology costs: added latency and throughput of gateway chains; Shield recovery time.

    direct:   client --tcp--> server
    chain 1:  client --tcp--> G1 --tcp--> server
    chain 2:  client --tcp--> G1 --wss--> G2 --tcp--> server          (DMZ to trusted)
    chain 3:  client --tcp--> G1 --wss--> G2 --wss--> G3 --tcp--> server

Latency: round trips of 64-byte messages to a TCP echo server, one at a time; "added" is the
chain's percentile minus the direct one. Throughput: 64 KiB writes to a sink that answers
"ok" once it has them all (as in bench.proxy_throughput).

Recovery: an Enterprise Shield pair on loopback (DMZ gateway with a reverse+wss backplane,
internal gateway dialling out). The DMZ gateway is stopped and started again; measured from
its "kgateway ready" line to the first successful round trip through the pair, with the
default back-off (500 ms doubling up to 30 s) and a tight one (100 ms up to 1 s).

Run: .venv/bin/python -m bench.topologies
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import statistics
import tempfile
import threading
import time
from typing import Any

import websocket

from bench.common import write_results
from bench.proxy_throughput import MESSAGE, _sink, _tcp_run
from kgateway.certs import make_certificate
from tests.helpers import GatewayProcess, free_port, gateway_xml, service_xml

SMALL = 64


def _echo_server(port: int, ready: Any) -> None:
    server = socket.create_server(("127.0.0.1", port))
    server.listen(64)
    ready.set()

    def serve(conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while data := conn.recv(65536):
            conn.sendall(data)
        conn.close()

    while True:
        conn, _ = server.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


def _round_trips(port: int, count: int) -> list[float]:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    payload = b"x" * SMALL
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        sock.sendall(payload)
        got = 0
        while got < SMALL:
            got += len(sock.recv(SMALL - got))
        samples.append(time.perf_counter() - start)
    sock.close()
    return samples[count // 10:]  # the first ones warm up connections and caches


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def _security(folder: str, ca: str, name: str) -> str:
    cert, key = make_certificate(folder, name, ["127.0.0.1", "localhost"])
    return (f"<security><keystore><certificate-file>{cert}</certificate-file>"
            f"<key-file>{key}</key-file></keystore>"
            f"<truststore><file>{ca}</file></truststore></security>")


def _chain(length: int, target: str, folder: str, ca: str) -> tuple[list[GatewayProcess], int]:
    """Gateways G1..Gn: G1 accepts tcp, wss between them, Gn connects *target*."""
    ports = [free_port() for _ in range(length)]
    gateways = []
    for i in range(length - 1, -1, -1):
        accept = f"tcp://127.0.0.1:{ports[0]}" if i == 0 else f"wss://localhost:{ports[i]}/hop"
        connect = target if i == length - 1 else f"wss://localhost:{ports[i + 1]}/hop"
        gateways.append(GatewayProcess(gateway_xml(
            [service_xml("proxy", accept, connect, name=f"g{i + 1}")],
            _security(folder, ca, f"g{i + 1}")), name=f"g{i + 1}").start())
    return gateways, ports[0]


def _shield_recovery(folder: str, ca: str, tight: bool, runs: int) -> list[float]:
    public, backplane = free_port(), free_port()
    shield = f"reverse+wss://127.0.0.1:{backplane}/shield/echo"
    dmz = GatewayProcess(gateway_xml([service_xml(
        "proxy", f"ws://127.0.0.1:{public}/echo", shield, name="dmz")],
        _security(folder, ca, "dmz")), name="dmz")
    options = ("<accept-options><reverse.retry.initial.interval>100ms"
               "</reverse.retry.initial.interval><reverse.retry.maximum.interval>1sec"
               "</reverse.retry.maximum.interval></accept-options>") if tight else ""
    internal = GatewayProcess(gateway_xml([service_xml("echo", shield, name="internal",
                                                       extra=options)],
                                          _security(folder, ca, "internal")), name="internal")
    results = []
    with dmz, internal:
        internal.wait_for("reverse connection prepared")
        for _ in range(runs):
            mark = internal.mark()
            dmz.stop()
            internal.wait_for("reverse connection to .* failed", start=mark)
            dmz.restart()
            back = time.perf_counter()
            internal.wait_for("reverse connection prepared", start=mark, timeout=60)
            ws = websocket.create_connection(f"ws://127.0.0.1:{public}/echo", timeout=10)
            ws.send("ping")
            assert ws.recv() == "ping"
            results.append(time.perf_counter() - back)
            ws.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--round-trips", type=int, default=5000)
    parser.add_argument("--mib", type=int, default=128, help="MiB per throughput run")
    parser.add_argument("--restarts", type=int, default=3)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="bench-topologies-")
    make_certificate(folder, "ca-holder")
    ca = f"{folder}/ca.pem"
    echo_port, sink_port = free_port(), free_port()
    total = args.mib * 2**20
    ready_echo, ready_sink = multiprocessing.Event(), multiprocessing.Event()
    servers = [multiprocessing.Process(target=_echo_server, args=(echo_port, ready_echo),
                                       daemon=True),
               multiprocessing.Process(target=_sink, args=(sink_port, total, ready_sink),
                                       daemon=True)]
    for server in servers:
        server.start()
    ready_echo.wait(10)
    ready_sink.wait(10)

    figures: dict[str, Any] = {"message_bytes_latency": SMALL, "message_bytes_throughput": MESSAGE,
                               "mib_per_run": args.mib, "chains": {}}
    direct = _round_trips(echo_port, args.round_trips)
    base = {"p50_us": _percentile(direct, 50) * 1e6, "p99_us": _percentile(direct, 99) * 1e6}
    figures["direct"] = {**{k: round(v, 1) for k, v in base.items()},
                         "mib_per_s": round(_tcp_run(sink_port, total), 1)}
    for length in (1, 2, 3):
        echo_chain, echo_entry = _chain(length, f"tcp://127.0.0.1:{echo_port}", folder, ca)
        sink_chain, sink_entry = _chain(length, f"tcp://127.0.0.1:{sink_port}", folder, ca)
        try:
            samples = _round_trips(echo_entry, args.round_trips)
            p50, p99 = _percentile(samples, 50) * 1e6, _percentile(samples, 99) * 1e6
            throughput = statistics.median(_tcp_run(sink_entry, total) for _ in range(3))
        finally:
            for gw in echo_chain + sink_chain:
                gw.stop()
        figures["chains"][str(length)] = {
            "p50_us": round(p50, 1), "p99_us": round(p99, 1),
            "added_p50_us": round(p50 - base["p50_us"], 1),
            "added_p99_us": round(p99 - base["p99_us"], 1),
            "mib_per_s": round(throughput, 1),
        }
    for server in servers:
        server.terminate()
    recovery = {}
    for name, tight in (("default back-off (500ms..30s)", False), ("tight back-off (100ms..1s)",
                                                                  True)):
        values = _shield_recovery(folder, ca, tight, args.restarts)
        recovery[name] = {"median_s": round(statistics.median(values), 3),
                          "runs_s": [round(v, 3) for v in values]}
    figures["shield_recovery_after_dmz_restart"] = recovery

    table = ["| path | p50 RTT µs | p99 RTT µs | added p50 µs | added p99 µs | MiB/s |",
             "|---|---|---|---|---|---|",
             f"| direct tcp | {figures['direct']['p50_us']} | {figures['direct']['p99_us']} "
             f"| - | - | {figures['direct']['mib_per_s']} |"]
    for length, fig in figures["chains"].items():
        hops = "tcp" + " -> wss" * (int(length) - 1) + " -> tcp"
        table.append(f"| {length} gateway(s) ({hops}) | {fig['p50_us']} | {fig['p99_us']} | "
                     f"{fig['added_p50_us']} | {fig['added_p99_us']} | {fig['mib_per_s']} |")
    table += ["", "| Enterprise Shield: DMZ gateway restart -> service back | median s | runs |",
              "|---|---|---|"]
    for name, fig in recovery.items():
        table.append(f"| {name} | {fig['median_s']} | {fig['runs_s']} |")
    write_results("topologies", ".venv/bin/python -m bench.topologies", figures, table)


if __name__ == "__main__":
    main()
