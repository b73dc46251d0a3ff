"""Proxy throughput: one connection, 64 KiB messages, through the gateway vs direct TCP.

    client --tcp------------------------------> sink            (direct)
    client --tcp--> gateway (proxy) --tcp-----> sink            (tcp -> tcp)
    client --ws---> gateway (proxy) --tcp-----> sink            (ws -> tcp, 64 KiB messages)
    client --wss--> gateway (proxy) --tcp-----> sink            (wss -> tcp)

The sink is a separate process that counts bytes and answers "ok" once it has them all, so
the time covers delivery, not just queueing. Run: .venv/bin/python -m bench.proxy_throughput
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import ssl
import tempfile
import time
from typing import Any

from websockets.sync.client import connect as ws_connect

from bench.common import median_of, write_results
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, default=256, help="MiB per run")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
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
