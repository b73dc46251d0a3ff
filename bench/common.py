"""Shared benchmark support: where figures go, the machine they came from, medians.

Every benchmark writes into bench/out/ (git ignores it), so a run leaves the tree clean. A run
worth keeping is published on purpose: `make bench-publish` copies bench/out/ to the tracked
bench/published/, and the commit says on what machine and how noisy it was.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out")
RESULTS = OUT  # the name older benchmarks use


def machine() -> dict[str, Any]:
    """What the figures came from: CPU model, cores, kernel, Python and library versions."""
    from importlib import metadata

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f
                          if line.startswith("model name")), model)
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for package in ("twisted", "autobahn", "websockify", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {"cpu": model, "cores": os.cpu_count(), "kernel": platform.release(),
            "machine": platform.machine(), "python": sys.version.split()[0], **versions,
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "load_average": os.getloadavg()[0]}


def median_of(runs: int, measure: Callable[[], float]) -> tuple[float, list[float]]:
    values = [measure() for _ in range(runs)]
    return statistics.median(values), values


def write_results(name: str, command: str, figures: dict[str, Any], table: Sequence[str]) -> None:
    """bench/out/NAME.json (machine-readable) and NAME.md (the table, the command)."""
    os.makedirs(RESULTS, exist_ok=True)
    meta = {"command": command, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "python": sys.version.split()[0], "machine": platform.machine(),
            "cpus": os.cpu_count()}
    with open(os.path.join(RESULTS, f"{name}.json"), "w") as f:
        json.dump({**meta, "figures": figures}, f, indent=2)
    with open(os.path.join(RESULTS, f"{name}.md"), "w") as f:
        f.write(f"# {name}\n\nReproduce: `{command}`  \nMeasured {meta['when']} on "
                f"{meta['cpus']} cores, Python {meta['python']}.\n\n")
        f.write("\n".join(table) + "\n")
    print("\n".join(table))
