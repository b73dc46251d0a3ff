"""jms subscription floods: what 100,000 SUBSCRIBEs cost the gateway and ActiveMQ now.

The security review's attack: one WebSocket sent 100,000 SUBSCRIBEs to distinct topics;
ActiveMQ died of OutOfMemoryError and every jms client stalled for minutes. With the limits
(docs/jms.md "Limits": maximum.subscriptions 1000 per connection, maximum.broker.subscriptions
2000 per service, maximum.inflight.frames 32 per client, maximum.pending.subscribes 64 per
service) this replays, against a gateway with the default limits and the real ActiveMQ:

    one-connection    1 WebSocket, 100,000 SUBSCRIBEs to distinct topics
    one-topic         1 WebSocket, 100,000 SUBSCRIBEs to one topic (distinct ids)
    many-connections  100 WebSockets x 1,001 SUBSCRIBEs to distinct topics (100,100 in all)

and for each reports: how each flood ended (the ERROR frames), its duration, the peak RSS of
the gateway and of ActiveMQ (sampled every 50 ms), and the round trips of a witness client
publishing to itself on the same gateway meanwhile (the worst one says whether the others
were still served).

Needs ActiveMQ (scripts/activemq.sh start). Writes bench/results/jms_subscribe_flood.{json,md}.

    .venv/bin/python bench/jms_subscribe_flood.py [one-connection one-topic many-connections]

ActiveMQ must stay up for the whole run: a broker restart in the middle (the shared broker
of a busy machine) shows as lost witness messages and a 30 s worst round trip.
"""

from __future__ import annotations

import asyncio
import collections
import os
import re
import resource
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import websockets
from websockets.typing import Subprotocol

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.common import write_results  # noqa: E402
from tests.helpers import GatewayProcess, free_port, gateway_xml, service_xml  # noqa: E402

STOMP12 = Subprotocol("v12.stomp")
CONNECT = "CONNECT\naccept-version:1.2\nhost:/\nheart-beat:0,0\n\n\0"


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def activemq_pid() -> int:
    status = subprocess.run([os.path.join(ROOT, "scripts", "activemq.sh"), "status"],
                            capture_output=True, text=True, timeout=30)
    out = status.stdout + status.stderr
    m = re.search(r"pid (\d+)", out)
    if not m:
        raise SystemExit(f"ActiveMQ is not running: {out.strip()}")
    return int(m.group(1))


def heap_used_mib(pid: int) -> float | None:
    """The JVM's used heap (young + old), from ``jstat -gc``; None without jstat."""
    try:
        out = subprocess.run(["jstat", "-gc", str(pid)], capture_output=True, text=True,
                             timeout=30).stdout.split("\n")
        row = dict(zip(out[0].split(), out[1].split(), strict=False))
        return round(sum(float(row[k]) for k in ("S0U", "S1U", "EU", "OU")) / 1024, 1)
    except (OSError, subprocess.SubprocessError, IndexError, KeyError, ValueError):
        return None


class Sampler:
    """Peak RSS of some processes, sampled on a thread until stopped."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.peak = {name: rss_kib(pid) for name, pid in pids.items()}
        self.start = dict(self.peak)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak[name], rss_kib(pid))

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join()
        end = {name: rss_kib(pid) for name, pid in self.pids.items()}
        return {name: {"before_mib": self.start[name] / 1024, "peak_mib": self.peak[name] / 1024,
                       "after_mib": end[name] / 1024} for name in self.pids}


async def witness(url: str, stop: asyncio.Event, lost: list[int]) -> list[float]:
    """Publish to itself with a receipt and wait for the message, until *stop*."""
    topic = f"/topic/witness.{uuid.uuid4().hex[:8]}"
    rounds: list[float] = []
    async with websockets.connect(url, subprotocols=[STOMP12], max_queue=None,
                                  ping_interval=None) as ws:
        await ws.send(CONNECT)
        await ws.recv()
        await ws.send(f"SUBSCRIBE\ndestination:{topic}\nid:1\nreceipt:s\n\n\0")
        await ws.recv()
        n = 0
        while not stop.is_set() or n < 3:
            started = time.monotonic()
            await ws.send(f"SEND\ndestination:{topic}\n\n{n}\0")
            try:
                while True:
                    data = await asyncio.wait_for(ws.recv(), 30)
                    text = data if isinstance(data, str) else data.decode()
                    if text.startswith("MESSAGE") and text.endswith(f"\n\n{n}\0"):
                        break
            except TimeoutError:
                lost.append(n)  # a topic message sent while the broker was away is lost
            rounds.append(time.monotonic() - started)
            n += 1
    return rounds


async def flooder(url: str, frames: list[str], per_message: int = 500) -> list[str]:
    """Send *frames* in batches; return the ERROR messages the gateway answered with."""
    errors: list[str] = []
    async with websockets.connect(url, subprotocols=[STOMP12], max_queue=None,
                                  ping_interval=None, open_timeout=60) as ws:
        await ws.send(CONNECT)
        await ws.recv()

        async def send() -> None:
            try:
                for i in range(0, len(frames), per_message):
                    await ws.send("".join(frames[i:i + per_message]))
            except websockets.ConnectionClosed:
                pass

        sender = asyncio.create_task(send())
        try:
            async for data in ws:
                text = data if isinstance(data, str) else data.decode()
                for m in re.finditer(r"^ERROR\n(?:[^\n]+\n)*?message:([^\n]*)", text, re.M):
                    errors.append(m.group(1).replace("\\c", ":"))
        except websockets.ConnectionClosed:
            pass
        await sender
    return errors


def subscribes(prefix: str, count: int, distinct: bool = True) -> list[str]:
    return [f"SUBSCRIBE\ndestination:/topic/{prefix}{'.' + str(n) if distinct else ''}\n"
            f"id:{n}\n\n\0" for n in range(count)]


async def scenario(url: str, name: str) -> dict[str, Any]:
    tag = f"flood.{uuid.uuid4().hex[:8]}"
    if name == "one-connection":
        jobs = [subscribes(tag, 100_000)]
    elif name == "one-topic":
        jobs = [subscribes(tag, 100_000, distinct=False)]
    else:
        jobs = [subscribes(f"{tag}.c{c}", 1001) for c in range(100)]
    stop = asyncio.Event()
    lost: list[int] = []
    watch = asyncio.create_task(witness(url, stop, lost))
    started = time.monotonic()
    results = await asyncio.gather(*(flooder(url, frames) for frames in jobs))
    took = time.monotonic() - started
    stop.set()
    rounds = await watch
    ended = collections.Counter(e for errors in results for e in errors)
    return {"subscribes": sum(len(j) for j in jobs), "connections": len(jobs),
            "seconds": round(took, 2), "errors": dict(ended),
            "witness_rounds": len(rounds), "witness_worst_s": round(max(rounds), 3),
            "witness_lost": len(lost),
            "witness_median_s": round(sorted(rounds)[len(rounds) // 2], 4)}


def main() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20000), hard))
    port = free_port()
    xml = gateway_xml([service_xml("jms", f"ws://localhost:{port}/jms",
                                   "stomp://127.0.0.1:61613", name="jms")])
    gw = GatewayProcess(xml, name="flood").start()
    gw.wait_for(r"connected to broker .*jms#1", 20)
    url = f"ws://127.0.0.1:{port}/jms"
    figures: dict[str, Any] = {}
    scenarios = sys.argv[1:] or ["one-connection", "one-topic", "many-connections"]
    try:
        for name in scenarios:
            broker = activemq_pid()
            heap_before = heap_used_mib(broker)
            sampler = Sampler({"gateway": gw.pid, "activemq": broker})
            try:
                result = asyncio.run(asyncio.wait_for(scenario(url, name), 600))
            except (TimeoutError, OSError, websockets.WebSocketException):
                print("\n".join(gw.log().splitlines()[-30:]), file=sys.stderr)
                raise
            result["rss"] = sampler.stop()
            result["activemq_heap_used_mib"] = {"before": heap_before,
                                                "after": heap_used_mib(broker)}
            figures[name] = result
            print(name, result, flush=True)
    finally:
        gw.stop()
    table = ["| flood | SUBSCRIBEs | ended with | s | gateway RSS MiB before / peak / after "
             "| ActiveMQ RSS MiB before / peak / after | ActiveMQ heap used MiB before / after "
             "| witness worst / median round trip s |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in figures.items():
        g, a = r["rss"]["gateway"], r["rss"]["activemq"]
        ended = ", ".join(f"{n} x {m}" for m, n in r["errors"].items())
        table.append(f"| {name} ({r['connections']} conn.) | {r['subscribes']:,} | {ended} | "
                     f"{r['seconds']} | {g['before_mib']:.0f} / {g['peak_mib']:.0f} / "
                     f"{g['after_mib']:.0f} | {a['before_mib']:.0f} / {a['peak_mib']:.0f} / "
                     f"{a['after_mib']:.0f} | {r['activemq_heap_used_mib']['before']} / "
                     f"{r['activemq_heap_used_mib']['after']} | {r['witness_worst_s']} / "
                     f"{r['witness_median_s']} |")
    write_results("jms_subscribe_flood",
                  " ".join([".venv/bin/python bench/jms_subscribe_flood.py", *sys.argv[1:]]),
                  figures, table)


if __name__ == "__main__":
    main()
