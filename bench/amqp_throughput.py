"""amqp.proxy throughput and latency: pika through the gateway vs pika direct to RabbitMQ.

    publisher process --pika--> target --> RabbitMQ --> target --pika--> consumer process

Targets, measured in the same run, interleaved ``--rounds`` times (the median counts: on
2 cores RabbitMQ's busy-waiting schedulers, both pika processes and the gateway compete, and
single rounds vary by 2x):

    direct   127.0.0.1:5672 (RabbitMQ itself)
    tcp      amqp.proxy tcp accept (plain AMQP proxy)
    ws       proxy tcp accept -> ws://.../amqp -> amqp.proxy (the WebSocket path)

Two measurements per target:

* throughput: the publisher sends ``--messages`` messages as fast as pika can, the consumer
  (prefetch 1000, acks every 200, multiple) receives them; messages/s = count / (last
  receive - first send).
* latency: ``--latency-rate`` messages/s, paced, for ``--latency-seconds``; each body
  carries its send time (CLOCK_MONOTONIC is system-wide on Linux); p50/p99 publish->consume.

Needs RabbitMQ on 127.0.0.1:5672 (scripts/rabbitmq.sh start). Writes
bench/out/amqp.json and bench/out/amqp.md.

    .venv/bin/python bench/amqp_throughput.py [--messages 30000] [--size 256] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import struct
import sys
import time
import uuid
from typing import Any

import pika

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.helpers import GatewayProcess, free_port, gateway_xml, service_xml  # noqa: E402

STAMP = struct.Struct(">qI")  # send time (ns), sequence number


def _connect(port: int) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port,
                                                             heartbeat=0))


def consumer(port: int, queue: str, count: int, ready: Any, results: Any) -> None:
    conn = _connect(port)
    ch = conn.channel()
    ch.basic_qos(prefetch_count=1000)
    latencies: list[int] = []
    state = {"n": 0, "first": 0, "last": 0}

    def on_message(ch: Any, method: Any, props: Any, body: bytes) -> None:
        now = time.monotonic_ns()
        sent, _ = STAMP.unpack_from(body)
        latencies.append(now - sent)
        state["n"] += 1
        if state["n"] == 1:
            state["first"] = sent
        state["last"] = now
        if state["n"] % 200 == 0 or state["n"] == count:
            ch.basic_ack(method.delivery_tag, multiple=True)
        if state["n"] == count:
            ch.stop_consuming()

    ch.basic_consume(queue, on_message)
    ready.set()
    ch.start_consuming()
    conn.close()
    results.put({"latencies": latencies, "first": state["first"], "last": state["last"]})


def publisher(port: int, queue: str, count: int, size: int, rate: float | None) -> None:
    conn = _connect(port)
    ch = conn.channel()
    pad = b"x" * max(0, size - STAMP.size)
    start = time.monotonic()
    for i in range(count):
        if rate:
            due = start + i / rate
            while time.monotonic() < due:  # pacing the load, not synchronising a test
                conn.process_data_events(time_limit=max(0.0, due - time.monotonic()))
        ch.basic_publish("", queue, STAMP.pack(time.monotonic_ns(), i) + pad)
    conn.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(port: int, direct_port: int, count: int, size: int,
            rate: float | None = None, gateway_pid: int | None = None) -> dict[str, float]:
    queue = f"kg-bench-{uuid.uuid4().hex[:8]}"
    admin = _connect(direct_port)
    admin.channel().queue_declare(queue)
    ready: Any = mp.Event()
    results: Any = mp.Queue()
    cpu0 = cpu_seconds(gateway_pid) if gateway_pid else 0.0
    cons = mp.Process(target=consumer, args=(port, queue, count, ready, results))
    cons.start()
    if not ready.wait(30):
        raise RuntimeError("consumer did not start")
    pub = mp.Process(target=publisher, args=(port, queue, count, size, rate))
    pub.start()
    result = results.get(timeout=300)
    pub.join(60)
    cons.join(60)
    cpu = cpu_seconds(gateway_pid) - cpu0 if gateway_pid else 0.0
    admin.channel().queue_delete(queue)
    admin.close()
    lat = sorted(result["latencies"])
    elapsed = (result["last"] - result["first"]) / 1e9
    return {
        "gateway_cpu_us_per_msg": round(cpu / len(lat) * 1e6, 1),
        "messages": len(lat),
        "seconds": round(elapsed, 3),
        "msgs_per_s": round(len(lat) / elapsed, 1),
        "p50_ms": round(lat[len(lat) // 2] / 1e6, 3),
        "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] / 1e6, 3),
        "mean_ms": round(statistics.fmean(lat) / 1e6, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=30000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-rate", type=float, default=1000.0)
    parser.add_argument("--latency-seconds", type=float, default=3.0)
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "out", "amqp"))
    args = parser.parse_args()

    direct = 5672
    tcp, front, http = free_port(), free_port(), free_port()
    gateway = GatewayProcess(gateway_xml([
        service_xml("amqp.proxy", [f"tcp://127.0.0.1:{tcp}", f"ws://127.0.0.1:{http}/amqp"],
                    f"tcp://127.0.0.1:{direct}", name="amqp"),
        service_xml("proxy", f"tcp://127.0.0.1:{front}", f"ws://127.0.0.1:{http}/amqp",
                    name="front"),
    ]), name="bench").start()
    targets = {"direct": direct, "tcp": tcp, "ws": front}
    rounds: dict[str, list[dict[str, Any]]] = {t: [] for t in targets}
    try:
        for r in range(args.rounds):
            for name, port in targets.items():
                pid = None if name == "direct" else gateway.pid
                thr = measure(port, direct, args.messages, args.size, gateway_pid=pid)
                lat_count = int(args.latency_rate * args.latency_seconds)
                lat = measure(port, direct, lat_count, args.size, rate=args.latency_rate,
                              gateway_pid=pid)
                entry = {"throughput": thr, "latency": lat}
                rounds[name].append(entry)
                print(f"round {r + 1} {name:6s} {thr['msgs_per_s']:>9.0f} msg/s   paced "
                      f"p50 {lat['p50_ms']:.2f} ms  p99 {lat['p99_ms']:.2f} ms", flush=True)
    finally:
        gateway.stop()

    def median(entries: list[dict[str, Any]], key: str) -> dict[str, Any]:
        ordered = sorted(entries, key=lambda e: e[key])
        return ordered[len(ordered) // 2]

    best = {name: {
        "throughput": median([e["throughput"] for e in entries], "msgs_per_s"),
        "latency": median([e["latency"] for e in entries], "p50_ms"),
    } for name, entries in rounds.items()}
    base = best["direct"]
    ratios = {name: {
        "throughput": round(b["throughput"]["msgs_per_s"] / base["throughput"]["msgs_per_s"], 3),
        # latency ratio: direct / gateway, so that >= 0.8 reads "at least 80% as good"
        "p50": round(base["latency"]["p50_ms"] / b["latency"]["p50_ms"], 3),
        "p99": round(base["latency"]["p99_ms"] / b["latency"]["p99_ms"], 3),
    } for name, b in best.items() if name != "direct"}
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "pika": pika.__version__},
        "settings": vars(args) | {"out": None},
        "command": " ".join([os.path.relpath(sys.executable, ROOT), *sys.argv]),
        "rounds": rounds,
        "best": best,
        "ratio_vs_direct": ratios,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(report, f, indent=2)
    lines = [
        "# amqp.proxy vs RabbitMQ direct (pika)",
        "",
        f"{report['when']}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"pika {pika.__version__}; {args.messages} x {args.size} B messages for throughput, "
        f"{args.latency_rate:g} msg/s paced for latency; median of {args.rounds} rounds "
        "(every round is in amqp.json).",
        f"Command: `{report['command']}`",
        "",
        "| target | msgs/s | ratio | p50 ms | p99 ms | p50 ratio | p99 ratio "
        "| gateway CPU us/msg |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, b in best.items():
        q = ratios.get(name, {"throughput": 1.0, "p50": 1.0, "p99": 1.0})
        lines.append(f"| {name} | {b['throughput']['msgs_per_s']:.0f} | {q['throughput']:.2f} "
                     f"| {b['latency']['p50_ms']:.2f} | {b['latency']['p99_ms']:.2f} "
                     f"| {q['p50']:.2f} | {q['p99']:.2f} "
                     f"| {b['throughput']['gateway_cpu_us_per_msg']:.1f} |")
    lines += ["", "Latency ratios are direct/gateway (1.0 = as fast as direct).", ""]
    with open(args.out + ".md", "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
