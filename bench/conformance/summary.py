"""Summarise an Autobahn|Testsuite fuzzingclient report: verdicts per case group.

    .venv/bin/python bench/conformance/summary.py bench/conformance/reports/servers/index.json

Prints a Markdown table, one row per agent and top-level case group (1 framing, 2 pings,
3 reserved bits, 4 opcodes, 5 fragmentation, 6 UTF-8, 7 closing, 10 misc), counting each
verdict ("behavior": OK, NON-STRICT, INFORMATIONAL, UNIMPLEMENTED, FAILED), then every case
that is not OK or INFORMATIONAL with its close behaviour and the peer's close code.
"""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict

VERDICTS = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")


def case_key(case: str) -> tuple[int, ...]:
    return tuple(int(part) for part in case.split("."))


def summarise(index: dict[str, dict[str, dict[str, object]]]) -> list[str]:
    lines = []
    for agent, cases in index.items():
        groups: dict[int, Counter[str]] = defaultdict(Counter)
        for case, result in cases.items():
            groups[case_key(case)[0]][str(result["behavior"])] += 1
        lines += [f"## {agent}: {len(cases)} cases", "",
                  "| group | cases | " + " | ".join(VERDICTS) + " |",
                  "|---:|---:|" + "---:|" * len(VERDICTS)]
        for group in sorted(groups):
            counts = groups[group]
            lines.append(f"| {group} | {sum(counts.values())} | "
                         + " | ".join(str(counts.get(v, 0)) for v in VERDICTS) + " |")
        total: Counter[str] = sum(groups.values(), Counter())
        lines.append(f"| all | {len(cases)} | "
                     + " | ".join(str(total.get(v, 0)) for v in VERDICTS) + " |")
        odd = [(case, result) for case, result in sorted(cases.items(), key=lambda c: case_key(c[0]))
               if result["behavior"] not in ("OK", "INFORMATIONAL")]
        if odd:
            lines += ["", "| case | behavior | close behavior | peer close code |",
                      "|---|---|---|---:|"]
            lines += [f"| {case} | {r['behavior']} | {r['behaviorClose']} | "
                      f"{r.get('remoteCloseCode')} |" for case, r in odd]
        lines.append("")
    return lines


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else "bench/conformance/reports/servers/index.json"
    with open(path) as f:
        print("\n".join(summarise(json.load(f))))


if __name__ == "__main__":
    main()
