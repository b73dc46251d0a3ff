"""Shared benchmark support: run a gateway, record figures next to their command."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def median_of(runs: int, measure: Callable[[], float]) -> tuple[float, list[float]]:
    values = [measure() for _ in range(runs)]
    return statistics.median(values), values


def write_results(name: str, command: str, figures: dict[str, Any], table: Sequence[str]) -> None:
    """bench/results/NAME.json (machine-readable) and NAME.md (the table, the command)."""
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
