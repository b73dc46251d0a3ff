"""Data-path benchmark: kgateway's proxy against websockify, a naive relay and direct TCP.

    drivers --ws|wss--> kgateway   (twistd -n kgateway, service proxy)  --tcp--> sink | source
                    --> websockify 0.13 (its own process; one per connection)   (bench.relay_backend)
                    --> naive relay (bench.naive_relay: Autobahn + Twisted, no gateway)
            --tcp-----------------------------------------------------------> (direct)

Everything runs on loopback and is started here. Each scenario starts its back end and
every system once; then each round measures every system in turn (A B C A B C A B C) so that
other load on the machine hits all of them alike, and the medians of the rounds are kept.
The load drivers (bench.relay_driver, raw sockets, frames built once) report their own CPU,
which is printed next to every figure as % of one core: a driver near 100% of a core would
be the bottleneck, not the system. The systems' CPU (their process tree, from /proc) and
the back end's are recorded too: in relay.md's second table and in relay.json.

Written by hand rather than with a load tool: wrk, ab and the like speak HTTP, not
WebSocket frames, and the WebSocket benchmarking tools parse every frame they get back; the
point here is a driver that spends next to nothing per message, and says how much it spent.

How each figure is taken:
- upstream MB/s and msg/s: bytes that reached the sink in a window of SECONDS that starts
  after a warm-up (buffers full) and ends before the drivers stop;
- downstream MB/s: wire bytes the driver read (frame headers included, < 0.3%) after a
  warm-up that drains what the relays had buffered before "go";
- handshakes/s: upgrade, 101, reset, with 20 in flight (2 driver processes);
- memory: RSS of the system's process before any connection and once N idle connections
  (and, proxied, their N back-end connections) are open, divided by N. Lower is better.

Results: bench/out/relay.json, relay.md (the table and the machine), relay_*.png.
Run: python -m bench.relay [--quick] [--only SCENARIO]... [--systems a,b]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import select
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import IO, Any

from bench.common import OUT, machine
from bench.relay_driver import Spec
from tests.helpers import ROOT, Certs, GatewayProcess, free_port, gateway_xml, service_xml

BIN = os.path.dirname(sys.executable)
NOFILE = 20000  # this machine's hard limit; the memory scenarios need 2 x 10,000 + a few
KGW, KGW2, WSY, NAIVE, DIRECT = "kgateway", "kgateway-w2", "websockify", "naive", "direct"
LABELS = {KGW: "kgateway", KGW2: "kgateway --workers 2", WSY: "websockify 0.13",
          NAIVE: "naive relay", DIRECT: "direct TCP"}
PEERS3 = (KGW, WSY, NAIVE)


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    unit: str  # MB/s | msg/s | handshakes/s | KiB/conn
    mode: str  # up | down | handshakes | memory
    backend: str | None  # sink | source | None (echo)
    message: int = 64 * 1024
    connections: int = 1
    drivers: int = 1
    tls: bool = False
    echo: bool = False
    systems: tuple[str, ...] = (KGW, WSY, NAIVE, DIRECT)
    quick_connections: int = 0  # memory scenarios: how many with --quick

    @property
    def higher_is_better(self) -> bool:
        return self.mode != "memory"


SCENARIOS = [
    Scenario("up64k", "ws->tcp, 1 connection, 64 KiB messages, upstream", "MB/s", "up", "sink"),
    Scenario("down64k", "tcp->ws, 1 connection, 64 KiB back-end writes, downstream", "MB/s",
             "down", "source"),
    Scenario("up4k", "ws->tcp, 1 connection, 4 KiB messages, upstream", "MB/s", "up", "sink",
             message=4096),
    Scenario("down4k", "tcp->ws, 1 connection, 4 KiB back-end writes, downstream", "MB/s",
             "down", "source", message=4096),
    Scenario("msg256", "ws->tcp, 1 connection, 256 B messages, upstream", "msg/s", "up",
             "sink", message=256, systems=PEERS3),
    Scenario("msg256x100", "ws->tcp, 100 connections, 256 B messages, upstream", "msg/s",
             "up", "sink", message=256, connections=100, drivers=4,
             systems=(KGW, KGW2, WSY, NAIVE)),
    Scenario("handshakes", "WebSocket handshakes through the proxy, 20 concurrent",
             "handshakes/s", "handshakes", "sink", connections=20, drivers=2, systems=PEERS3),
    Scenario("wss64k", "wss->tcp, 1 connection, 64 KiB messages, upstream", "MB/s", "up",
             "sink", tls=True, systems=PEERS3),
    Scenario("mem_echo", "idle echo connections: memory per connection", "KiB/conn",
             "memory", None, connections=10000, echo=True, systems=(KGW, NAIVE),
             quick_connections=500),
    Scenario("mem_proxy", "idle proxied connections: memory per connection", "KiB/conn",
             "memory", "sink", connections=4000, systems=(KGW, NAIVE), quick_connections=200),
]
BY_KEY = {s.key: s for s in SCENARIOS}


def progress(text: str) -> None:
    print(f"[relay {time.strftime('%H:%M:%S')}] {text}", flush=True)


def _readline(stream: IO[str], timeout: float, what: str) -> str:
    if not select.select([stream], [], [], timeout)[0]:
        raise TimeoutError(f"{what}: no answer within {timeout:g} s")
    line = stream.readline()
    if not line:
        raise ConnectionError(f"{what}: exited without an answer")
    return line


# --- processes -----------------------------------------------------------------------------

class Command(GatewayProcess):
    """Any server process, awaited by a log line (GatewayProcess's reader, log and stop)."""

    def __init__(self, argv: Sequence[str], name: str) -> None:
        super().__init__("", name=name, cwd=ROOT)
        self.argv = list(argv)

    def command(self) -> list[str]:
        return self.argv


def tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return pids


def tree_cpu(pid: int) -> float:
    """CPU seconds of *pid*, its live descendants and the children they reaped."""
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total / os.sysconf("SC_CLK_TCK")


def tree_rss_kib(pid: int) -> int:
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return total


class Backend:
    """bench.relay_backend in its own process, asked by lines on its stdin."""

    def __init__(self, mode: str, chunk: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.relay_backend", mode, "--chunk", str(chunk)],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.port = int(json.loads(_readline(self.proc.stdout, 30, "back end"))["port"])

    def ask(self, command: str, timeout: float = 60) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return dict(json.loads(_readline(self.proc.stdout, timeout, f"back end {command!r}")))

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Drivers:
    """Load driver processes, started together, told "go" together."""

    def __init__(self, specs: Sequence[Spec]) -> None:
        self.procs = [subprocess.Popen(
            [sys.executable, "-m", "bench.relay_driver", json.dumps(asdict(spec))],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            for spec in specs]

    def read(self, timeout: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        answers = []
        for proc in self.procs:
            assert proc.stdout is not None
            answers.append(json.loads(_readline(proc.stdout, max(0.1, deadline -
                                                                 time.monotonic()), "driver")))
        return answers

    def tell(self, line: str) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(line + "\n")
            proc.stdin.flush()

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                assert proc.stdin is not None
                try:
                    proc.stdin.write("close\n")
                    proc.stdin.close()
                except BrokenPipeError:
                    pass
        for proc in self.procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@dataclass
class System:
    name: str
    port: int
    path: str = "/relay"
    ws: bool = True
    proc: GatewayProcess | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


def make_certs(folder: str) -> Certs:
    """A CA and a certificate for localhost and 127.0.0.1, from `kgateway certs`."""
    out = subprocess.run([os.path.join(BIN, "kgateway"), "certs", folder, "localhost",
                          "--alt", "127.0.0.1"], check=True, capture_output=True, text=True)
    cert, key, ca = out.stdout.split()
    return Certs(folder, ca, cert, key)


def start_system(name: str, scenario: Scenario, backend_port: int, certs: Certs) -> System:
    if name == DIRECT:
        return System(name, backend_port, ws=False)
    port = free_port()
    target = f"127.0.0.1:{backend_port}"
    if name in (KGW, KGW2):
        if scenario.echo:
            service = service_xml("echo", f"ws://127.0.0.1:{port}/relay", name="echo")
        else:
            accept = (f"wss://localhost:{port}/relay" if scenario.tls
                      else f"ws://127.0.0.1:{port}/relay")
            service = service_xml("proxy", accept, f"tcp://{target}", name="relay")
        workers = ["--workers", "2"] if name == KGW2 else []
        proc: GatewayProcess = GatewayProcess(
            gateway_xml([service], certs.security_xml() if scenario.tls else ""),
            args=workers, name=f"bench-{name}")
        proc.start(wait_for="kgateway ready: 2 workers" if name == KGW2 else "kgateway ready")
    elif name == WSY:
        tls = ["--cert", certs.cert, "--key", certs.key, "--ssl-only"] if scenario.tls else []
        proc = Command([os.path.join(BIN, "websockify"), *tls, f"127.0.0.1:{port}", target],
                       name="websockify").start(wait_for="proxying from")
    elif name == NAIVE:
        args = ["--echo"] if scenario.echo else [target]
        tls = ["--cert", certs.cert, "--key", certs.key] if scenario.tls else []
        proc = Command([sys.executable, "-m", "bench.naive_relay", str(port), *args, *tls],
                       name="naive").start(wait_for="naive relay listening")
    else:
        raise ValueError(name)
    return System(name, port, proc=proc)


# --- measurements ----------------------------------------------------------------------------

@dataclass
class Settings:
    rounds: int = 3
    seconds: float = 5.0
    quick: bool = False
    systems: tuple[str, ...] = ()  # empty: every system of each scenario
    out: str = OUT
    plots: bool = True
    command: str = ""


def _specs(scenario: Scenario, system: System, certs: Certs, seconds: float) -> list[Spec]:
    per, rest = divmod(scenario.connections, scenario.drivers)
    warmup = min(1.0, seconds / 4) if scenario.mode in ("up", "down") else 0.0
    return [Spec(mode=scenario.mode, port=system.port, path=system.path, ws=system.ws,
                 ca=certs.ca if scenario.tls else None, connections=per + (i < rest),
                 message=scenario.message, seconds=seconds, warmup=warmup,
                 tail=0.5 if scenario.mode == "up" else 0.0)
            for i in range(scenario.drivers)]


def measure_load(scenario: Scenario, system: System, backend: Backend, certs: Certs,
                 seconds: float) -> dict[str, Any]:
    specs = _specs(scenario, system, certs, seconds)
    drivers = Drivers(specs)
    try:
        drivers.read(120)  # ready: every connection is open
        backend0 = backend.ask("report")["cpu_s"]
        cpu0, t0 = (tree_cpu(system.pid) if system.pid else 0.0), time.monotonic()
        drivers.tell("go")
        if scenario.mode == "up":  # the sink's count over a window in the middle of the load
            time.sleep(specs[0].warmup)
            backend.ask("reset")
            time.sleep(seconds)
            sink = backend.ask("report")
        results = drivers.read(seconds + 120)
        wall = time.monotonic() - t0
        server = (tree_cpu(system.pid) - cpu0) / wall * 100 if system.pid else None
        backend_pct = (backend.ask("report")["cpu_s"] - backend0) / wall * 100
    finally:
        drivers.close()
    backend.ask("wait 0", timeout=120)  # every back-end connection closed before the next
    driver_pct = sum(r["cpu_s"] / (r["end"] - r["start"]) for r in results) * 100
    if scenario.mode == "up":
        rate = sink["bytes"] / (sink["now"] - sink["since"])
        value = rate / 1e6 if scenario.unit == "MB/s" else rate / scenario.message
    elif scenario.mode == "down":
        value = sum(r["bytes"] / (r["end"] - r["start"]) for r in results) / 1e6
    else:
        value = sum(r["count"] / (r["end"] - r["start"]) for r in results)
    return {"value": value, "driver_cpu_pct": driver_pct, "server_cpu_pct": server,
            "backend_cpu_pct": backend_pct}


def measure_memory(scenario: Scenario, name: str, backend: Backend | None, certs: Certs,
                   connections: int) -> dict[str, Any]:
    system = start_system(name, scenario, backend.port if backend else 0, certs)
    try:
        assert system.pid is not None
        before = tree_rss_kib(system.pid)
        drivers = Drivers([Spec(mode="hold", port=system.port, path=system.path,
                                connections=connections)])
        try:
            ready = drivers.read(900)[0]
            if backend is not None:
                backend.ask(f"wait {connections}", timeout=120)
            after = tree_rss_kib(system.pid)
        finally:
            drivers.close()
        if backend is not None:
            backend.ask("wait 0", timeout=120)
    finally:
        system.stop()
    return {"value": (after - before) / connections, "rss_before_kib": before,
            "rss_after_kib": after, "connections": connections, "open_s": ready["open_s"],
            "driver_cpu_pct": None, "server_cpu_pct": None, "backend_cpu_pct": None}


@dataclass
class Outcome:
    scenario: Scenario
    runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        systems: dict[str, Any] = {}
        for name, runs in self.runs.items():
            entry: dict[str, Any] = {"median": statistics.median(r["value"] for r in runs),
                                     "runs": [r["value"] for r in runs]}
            for key in ("driver_cpu_pct", "server_cpu_pct", "backend_cpu_pct"):
                values = [r[key] for r in runs if r.get(key) is not None]
                entry[key] = statistics.median(values) if values else None
            entry["details"] = runs
            systems[name] = entry
        s = self.scenario
        result: dict[str, Any] = {"title": s.title, "unit": s.unit,
                                  "higher_is_better": s.higher_is_better,
                                  "message_bytes": s.message, "connections": s.connections,
                                  "driver_processes": s.drivers, "systems": systems}
        for mine in (KGW, KGW2):
            for peer in (WSY, NAIVE):
                if mine in systems and peer in systems and systems[peer]["median"]:
                    result[f"{mine}_to_{peer}"] = (systems[mine]["median"]
                                                   / systems[peer]["median"])
        return result


def _describe(result: dict[str, Any], unit: str) -> str:
    text = f"{result['value']:,.1f} {unit}"
    if result.get("driver_cpu_pct") is not None:
        text += f" (driver {result['driver_cpu_pct']:.0f}% of a core"
        if result.get("server_cpu_pct") is not None:
            text += f", system {result['server_cpu_pct']:.0f}%"
        text += f", back end {result['backend_cpu_pct']:.0f}%)"
    return text


def run_scenario(scenario: Scenario, settings: Settings, certs: Certs) -> Outcome:
    systems = [s for s in scenario.systems if not settings.systems or s in settings.systems]
    outcome = Outcome(scenario, {s: [] for s in systems})
    if not systems:
        return outcome
    progress(f"{scenario.key}: {scenario.title} [{', '.join(systems)}]")
    backend = None
    if scenario.backend:
        backend = Backend(scenario.backend, scenario.message)
    try:
        if scenario.mode == "memory":
            n = scenario.quick_connections if settings.quick else scenario.connections
            for r in range(settings.rounds):
                for name in systems:
                    result = measure_memory(scenario, name, backend, certs, n)
                    outcome.runs[name].append(result)
                    progress(f"  round {r + 1}/{settings.rounds} {name:<12} "
                             f"{result['value']:.1f} KiB/conn ({n} connections, RSS "
                             f"{result['rss_before_kib']} -> {result['rss_after_kib']} KiB)")
            return outcome
        assert backend is not None
        running = {name: start_system(name, scenario, backend.port, certs) for name in systems}
        try:
            for r in range(settings.rounds):
                for name in systems:
                    result = measure_load(scenario, running[name], backend, certs,
                                          settings.seconds)
                    outcome.runs[name].append(result)
                    progress(f"  round {r + 1}/{settings.rounds} {name:<12} "
                             + _describe(result, scenario.unit))
        finally:
            for system in running.values():
                system.stop()
    finally:
        if backend is not None:
            backend.stop()
    return outcome


# --- report ------------------------------------------------------------------------------

def _cell(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "–"
    text = f"{entry['median']:,.0f}" if entry["median"] >= 100 else f"{entry['median']:.2f}"
    if entry.get("driver_cpu_pct") is not None:
        text += f" (drv {entry['driver_cpu_pct']:.0f}%)"
    return text


def _ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def markdown(report: dict[str, Any]) -> str:
    m, s = report["machine"], report["settings"]
    lines = [
        "# bench.relay: kgateway's data path against websockify, a naive relay, direct TCP",
        "",
        f"Measured {m['when']} on {m['cpu']} ({m['cores']} cores), Linux {m['kernel']}, "
        f"Python {m['python']}, Twisted {m['twisted']}, Autobahn {m['autobahn']}, "
        f"websockify {m['websockify']} (numpy {m['numpy']}). Load average "
        f"{m['load_average']:.1f} at the start, {report['load_average_end']:.1f} at the end.",
        "",
        f"Reproduce: `{report['command']}`. Median of {s['rounds']} round(s) of "
        f"{s['seconds']:g} s per figure, the systems alternating within each round. "
        "`drv N%`: the load driver processes' CPU during the measurement, in % of one core "
        "(over 100% means several driver processes): a driver far below 100% per process "
        "is not what limits the figure. MB = 10^6 bytes.",
        "",
        "| figure | kgateway | websockify | naive relay | direct TCP | kgateway / websockify "
        "| kgateway / naive |",
        "|---|---|---|---|---|---|---|",
    ]
    for sc in report["scenarios"].values():
        systems = sc["systems"]
        better = "" if sc["higher_is_better"] else ", lower is better"
        lines.append(f"| {sc['title']} ({sc['unit']}{better}) | {_cell(systems.get(KGW))} | "
                     f"{_cell(systems.get(WSY))} | {_cell(systems.get(NAIVE))} | "
                     f"{_cell(systems.get(DIRECT))} | {_ratio(sc.get('kgateway_to_websockify'))}"
                     f" | {_ratio(sc.get('kgateway_to_naive'))} |")
        if KGW2 in systems:
            lines.append(f"| same, kgateway --workers 2 | {_cell(systems[KGW2])} | ″ | ″ | – | "
                         f"{_ratio(sc.get('kgateway-w2_to_websockify'))} | "
                         f"{_ratio(sc.get('kgateway-w2_to_naive'))} |")
    lines += [
        "",
        "CPU during each figure, % of one core (medians; system = its process and children, "
        "back end = the sink or source process):",
        "",
        "| figure | " + " | ".join(f"{LABELS[n]}: system / back end" for n in
                                   (KGW, KGW2, WSY, NAIVE, DIRECT)) + " |",
        "|---|---|---|---|---|---|",
    ]
    for key, sc in report["scenarios"].items():
        if not sc["higher_is_better"]:
            continue
        cells = []
        for name in (KGW, KGW2, WSY, NAIVE, DIRECT):
            entry = sc["systems"].get(name)
            if entry is None:
                cells.append("–")
                continue
            system = entry.get("server_cpu_pct")
            backend = entry.get("backend_cpu_pct")
            cells.append(("–" if system is None else f"{system:.0f}%") + " / "
                         + ("–" if backend is None else f"{backend:.0f}%"))
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "A system well below 100% of a core while its driver and back end are too was "
        "limited by neither: on a shared machine, other processes had the cores (see the "
        "load average above).",
        "",
        "websockify forks a process per connection (its default); the naive relay is "
        "bench/naive_relay.py, Autobahn + Twisted with no gateway logic. Memory: RSS growth "
        "of the process divided by the number of idle connections (proxied: each with its "
        "back-end connection).",
    ]
    return "\n".join(lines) + "\n"


def plots(report: dict[str, Any], out: str) -> list[str]:
    """relay_<scenario>.png for each scenario and relay_summary.png with all of them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {KGW: "#1f77b4", KGW2: "#4a9fe0", WSY: "#ff7f0e", NAIVE: "#2ca02c",
               DIRECT: "#7f7f7f"}
    scenarios = report["scenarios"]
    written = []

    def draw(ax: Any, sc: dict[str, Any]) -> None:
        names = list(sc["systems"])
        medians = [sc["systems"][n]["median"] for n in names]
        lows = [m - min(sc["systems"][n]["runs"]) for n, m in zip(names, medians, strict=True)]
        highs = [max(sc["systems"][n]["runs"]) - m for n, m in zip(names, medians, strict=True)]
        bars = ax.bar([LABELS[n] for n in names], medians, yerr=[lows, highs], capsize=3,
                      color=[colours[n] for n in names])
        for bar, name in zip(bars, names, strict=True):
            drv = sc["systems"][name].get("driver_cpu_pct")
            label = f"{bar.get_height():,.0f}" if bar.get_height() >= 100 else \
                f"{bar.get_height():.1f}"
            if drv is not None:
                label += f"\ndrv {drv:.0f}%"
            top = max(sc["systems"][name]["runs"])  # above the error bar, not on it
            ax.annotate(label, (bar.get_x() + bar.get_width() / 2, top), xytext=(0, 3),
                        textcoords="offset points", ha="center", va="bottom", fontsize=7)
        better = "higher is better" if sc["higher_is_better"] else "lower is better"
        ax.set_title(f"{sc['title']}", fontsize=8)
        ax.set_ylabel(f"{sc['unit']} ({better})", fontsize=8)
        ax.tick_params(axis="x", labelsize=7, rotation=20)
        ax.margins(y=0.25)

    stamp = (f"{report['machine']['cpu']}, {report['machine']['cores']} cores, "
             f"{report['machine']['when']}; median of {report['settings']['rounds']}")
    for key, sc in scenarios.items():
        fig, ax = plt.subplots(figsize=(6, 4))
        draw(ax, sc)
        fig.text(0.01, 0.01, stamp, fontsize=6)
        fig.tight_layout(rect=(0, 0.03, 1, 1))
        path = os.path.join(out, f"relay_{key}.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    columns = 3 if len(scenarios) > 4 else max(1, len(scenarios))
    rows = (len(scenarios) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.6 * rows), squeeze=False)
    for ax, sc in zip(axes.flat, scenarios.values(), strict=False):
        draw(ax, sc)
    for ax in list(axes.flat)[len(scenarios):]:
        ax.set_visible(False)
    fig.suptitle(f"kgateway vs websockify vs naive relay ({stamp})", fontsize=9)
    fig.tight_layout()
    path = os.path.join(out, "relay_summary.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)
    return written


def raise_nofile(wanted: int = NOFILE) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return max(soft, target)


def run(scenarios: Sequence[Scenario], settings: Settings) -> dict[str, Any]:
    raise_nofile()  # inherited by the systems, the back end and the drivers
    os.makedirs(settings.out, exist_ok=True)
    report: dict[str, Any] = {"command": settings.command, "machine": machine(),
                              "settings": {"rounds": settings.rounds,
                                           "seconds": settings.seconds,
                                           "quick": settings.quick},
                              "scenarios": {}}
    progress(f"{len(scenarios)} scenario(s), {settings.rounds} round(s) of "
             f"{settings.seconds:g} s; load average {os.getloadavg()[0]:.1f}")
    certs = make_certs(tempfile.mkdtemp(prefix="bench-relay-certs-"))
    failed: dict[str, str] = {}
    for scenario in scenarios:
        try:
            outcome = run_scenario(scenario, settings, certs)
        except Exception as e:  # one broken scenario must not hide the others' figures
            progress(f"{scenario.key} failed: {e!r}")
            failed[scenario.key] = repr(e)
            continue
        if any(outcome.runs.values()):
            report["scenarios"][scenario.key] = outcome.summary()
    report["failed"] = failed
    report["load_average_end"] = os.getloadavg()[0]
    with open(os.path.join(settings.out, "relay.json"), "w") as f:
        json.dump(report, f, indent=2)
    table = markdown(report)
    with open(os.path.join(settings.out, "relay.md"), "w") as f:
        f.write(table)
    print(table, flush=True)
    if settings.plots and report["scenarios"]:
        try:
            written = plots(report, settings.out)
            progress("plots: " + ", ".join(os.path.relpath(p) for p in written))
        except ImportError:
            progress("matplotlib is not installed (pip install -e '.[bench]'): no plots")
    progress(f"written to {os.path.relpath(settings.out)}/relay.json and relay.md")
    if failed:
        progress(f"failed: {', '.join(failed)}")
    return report


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 round of 1 s, fewer idle connections")
    parser.add_argument("--only", action="append", choices=list(BY_KEY), metavar="SCENARIO",
                        help="run only this scenario (repeatable): " + ", ".join(BY_KEY))
    parser.add_argument("--systems", default="",
                        help=f"comma-separated subset of {KGW},{KGW2},{WSY},{NAIVE},{DIRECT}")
    parser.add_argument("--rounds", type=int, help="rounds (default 3, --quick 1)")
    parser.add_argument("--seconds", type=float, help="seconds per figure (default 5, --quick 1)")
    parser.add_argument("--out", default=OUT, help="folder for the results (default bench/out)")
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)
    settings = Settings(
        rounds=args.rounds or (1 if args.quick else 3),
        seconds=args.seconds or (1.0 if args.quick else 5.0),
        quick=args.quick, systems=tuple(s for s in args.systems.split(",") if s),
        out=args.out, plots=not args.no_plots,
        command=shlex.join(["python", "-m", "bench.relay",
                            *(argv if argv is not None else sys.argv[1:])]))
    unknown = set(settings.systems) - set(LABELS)
    if unknown:
        parser.error(f"unknown systems: {', '.join(sorted(unknown))}")
    if (not settings.systems or WSY in settings.systems) and \
            not os.path.exists(os.path.join(BIN, "websockify")):
        parser.error("websockify is not installed: pip install -e '.[bench]' (make bench "
                     "does), or leave it out with --systems")
    report = run([BY_KEY[k] for k in args.only] if args.only else SCENARIOS, settings)
    if report["failed"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
