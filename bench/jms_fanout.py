"""jms fan-out: 1 publisher -> N WebSocket subscribers on one topic, gateway vs Web-STOMP.

    publisher --ws--> target --> broker --> target --ws--> N subscribers (asyncio, P processes)

Targets, measured in the same run, interleaved ``--rounds`` times (the median counts):

    gateway   ws://127.0.0.1:PORT/jms: kgateway's jms service -> ActiveMQ (one broker
              subscription for all N, the MESSAGE encoded once, written N times)
    direct    ws://127.0.0.1:15674/ws: RabbitMQ's Web-STOMP plugin (N broker subscriptions)

For N in 10, 100, 1,000 the publisher sends ``messages(N)`` messages of ``--size`` bytes as
fast as its WebSocket allows; every subscriber counts its MESSAGE frames. Deliveries/s =
all MESSAGE frames received / (last receive - first send). Lost deliveries are reported.
The subscribers run in ``--procs`` processes so the client side is not one core's limit;
on 2 cores the gateway, the broker and the clients all compete, so read the figures as a
comparison in one run, not as capacity.

Needs ActiveMQ (scripts/activemq.sh start) and RabbitMQ with Web-STOMP
(scripts/rabbitmq.sh start). Writes bench/out/jms_fanout.{json,md}.

    .venv/bin/python bench/jms_fanout.py [--rounds 2] [--size 128] [--procs 2]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any

import websockets
from websockets.typing import Subprotocol

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.common import write_results  # noqa: E402
from tests.helpers import GatewayProcess, free_port, gateway_xml, service_xml  # noqa: E402

RABBIT_URL = "ws://127.0.0.1:15674/ws"
FANOUTS = (10, 100, 1000)
IDLE = 20.0  # a subscriber gives up after this long without a message
STOMP12 = Subprotocol("v12.stomp")


def messages_for(n: int) -> int:
    # About 100-200k deliveries per measurement: long enough to be steady, short enough
    # to run three fan-outs x two targets x rounds in a few minutes.
    return {10: 10000, 100: 1500, 1000: 200}.get(n, max(100, 100000 // n))


def connect_frame(login: bool) -> str:
    auth = "login:guest\npasscode:guest\n" if login else ""
    return f"CONNECT\naccept-version:1.2\nhost:/\n{auth}heart-beat:0,0\n\n\0"


async def _subscriber(url: str, topic: str, login: bool, expect: int,
                      ready: asyncio.Event, counter: list[int], results: list[Any],
                      started: asyncio.Event) -> None:
    seen = 0
    last = 0.0
    try:
        seen, last = await _receive(url, topic, login, expect, ready, counter, started)
    except (OSError, websockets.ConnectionClosed) as e:
        print(f"subscriber failed: {e!r}", file=sys.stderr)
    results.append((seen, last))


async def _receive(url: str, topic: str, login: bool, expect: int, ready: asyncio.Event,
                   counter: list[int], started: asyncio.Event) -> tuple[int, float]:
    async with websockets.connect(url, subprotocols=[STOMP12], max_queue=None,
                                  open_timeout=60, ping_interval=None) as ws:
        await ws.send(connect_frame(login))
        await ws.send(f"SUBSCRIBE\ndestination:{topic}\nid:1\nack:auto\nreceipt:r\n\n\0")
        seen = 0
        last = 0.0
        while seen < expect:
            try:
                data = await asyncio.wait_for(ws.recv(), IDLE if started.is_set() else 120)
            except TimeoutError:
                break
            text = data if isinstance(data, str) else data.decode("utf-8", "replace")
            if "RECEIPT" in text and not ready.is_set():
                counter[0] += 1
                if counter[0] == counter[1]:
                    ready.set()
            n = text.count("MESSAGE\n")
            if n:
                seen += n
                last = time.monotonic()
        return seen, last


def subscriber_process(url: str, topic: str, login: bool, count: int, expect: int,
                       ready_q: Any, go: Any, out_q: Any) -> None:
    async def main() -> None:
        ready = asyncio.Event()
        started = asyncio.Event()
        counter = [0, count]
        results: list[Any] = []
        tasks = []
        for i in range(count):
            tasks.append(asyncio.create_task(
                _subscriber(url, topic, login, expect, ready, counter, results, started)))
            if i % 50 == 49:
                await asyncio.sleep(0)  # let handshakes progress; not synchronisation
        await asyncio.wait_for(ready.wait(), 120)
        ready_q.put(count)
        await asyncio.to_thread(go.wait)
        started.set()
        await asyncio.gather(*tasks)
        out_q.put(results)

    asyncio.run(main())


async def publish(url: str, topic: str, login: bool, count: int, size: int) -> float:
    body = "x" * size
    async with websockets.connect(url, subprotocols=[STOMP12], ping_interval=None) as ws:
        await ws.send(connect_frame(login))
        await ws.recv()  # CONNECTED
        started = time.monotonic()
        frame = f"SEND\ndestination:{topic}\n\n{body}\0"
        for _ in range(count):
            await ws.send(frame)
        await ws.send(f"SEND\ndestination:{topic}.end\nreceipt:done\n\n\0")
        while "RECEIPT" not in str(await ws.recv()):
            pass
        return started


def measure(url: str, login: bool, n: int, size: int, procs: int) -> dict[str, Any]:
    topic = f"/topic/bench.{uuid.uuid4().hex[:8]}"
    expect = messages_for(n)
    ctx = mp.get_context("fork")
    ready_q, out_q, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    per = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
    workers = [ctx.Process(target=subscriber_process, daemon=True,
                           args=(url, topic, login, k, expect, ready_q, go, out_q))
               for k in per if k]
    for w in workers:
        w.start()
    try:
        for _ in workers:
            ready_q.get(timeout=180)
        go.set()
        started = asyncio.run(publish(url, topic, login, expect, size))
        results = [r for _ in workers for r in out_q.get(timeout=600)]
    finally:
        for w in workers:
            w.join(30)
            if w.is_alive():
                w.terminate()
    delivered = sum(seen for seen, _ in results)
    last = max(t for _, t in results)
    seconds = last - started
    return {"subscribers": n, "messages": expect, "deliveries": delivered,
            "lost": n * expect - delivered, "seconds": round(seconds, 3),
            "deliveries_per_s": round(delivered / seconds) if seconds > 0 else 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--fanouts", default=",".join(map(str, FANOUTS)))
    args = parser.parse_args()
    fanouts = [int(x) for x in args.fanouts.split(",")]
    load_before = os.getloadavg()[0]
    # SIGTERM runs the finally below, so the gateway process is never left behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20000), hard))
    for script in ("activemq.sh", "rabbitmq.sh"):
        subprocess.run([os.path.join(ROOT, "scripts", script), "start"], check=True,
                       stdout=subprocess.DEVNULL, timeout=300)
    port = free_port()
    gateway = GatewayProcess(gateway_xml([service_xml(
        "jms", f"ws://127.0.0.1:{port}/jms", "stomp://127.0.0.1:61613", name="jms",
        # Python subscribers read slower than the gateway writes: give them room, so
        # the figure is throughput, not the slow-consumer policy.
        properties="<maximum.pending.bytes>64MiB</maximum.pending.bytes>")]),
        name="bench-jms").start()
    gateway.wait_for("connected to broker", 30)
    targets = {"gateway": (f"ws://127.0.0.1:{port}/jms", False), "direct": (RABBIT_URL, True)}
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {t: {n: [] for n in fanouts}
                                                        for t in targets}
    try:
        for _ in range(args.rounds):
            for n in fanouts:
                for name, (url, login) in targets.items():
                    for attempt in (1, 2, 3):
                        try:
                            result = measure(url, login, n, args.size, args.procs)
                        except Exception as e:
                            # Brokers shared with other work get restarted now and then:
                            # measure again rather than report a broken run.
                            print(f"{name} {n}: attempt {attempt} failed: {e!r}", flush=True)
                            continue
                        print(f"{name:8} {n:5} subscribers: {result}", flush=True)
                        runs[name][n].append(result)
                        break
    finally:
        gateway.stop()
    figures: dict[str, Any] = {"load_average_before": load_before}
    table = ["| subscribers | messages | gateway deliveries/s | Web-STOMP deliveries/s | "
             "gateway/direct | lost (gw / direct) |", "|---:|---:|---:|---:|---:|---:|"]
    for n in fanouts:
        gw = statistics.median([r["deliveries_per_s"] for r in runs["gateway"][n]] or [0])
        direct = statistics.median([r["deliveries_per_s"] for r in runs["direct"][n]] or [0])
        lost = (sum(r["lost"] for r in runs["gateway"][n]),
                sum(r["lost"] for r in runs["direct"][n]))
        figures[str(n)] = {"gateway_deliveries_per_s": gw, "direct_deliveries_per_s": direct,
                           "runs": {t: runs[t][n] for t in targets}}
        table.append(f"| {n} | {messages_for(n)} | {gw:,.0f} | {direct:,.0f} | "
                     f"{gw / direct if direct else 0:.2f} | {lost[0]} / {lost[1]} |")
    table += ["", f"Median of {args.rounds} rounds; {args.size}-byte text bodies; subscribers in "
              f"{args.procs} asyncio processes; gateway: 1 broker subscription per topic; "
              "Web-STOMP: one per subscriber.",
              f"1-minute load average before/after: {load_before:.1f} / "
              f"{os.getloadavg()[0]:.1f} (2 cores; other work on the machine skews both "
              "targets alike)."]
    write_results("jms_fanout", "python bench/jms_fanout.py " + " ".join(sys.argv[1:]),
                  figures, table)


if __name__ == "__main__":
    main()
