"""`make bench-publish`: keep the run in bench/out/ on purpose, and show it in README.md.

Copies bench/out/*.{json,md,png} to the tracked bench/published/ and replaces the part of
README.md between the two `relay-table` markers with bench/published/relay.md (its table and
the machine it came from) and the summary plot. Nothing is committed: that stays a decision.
Every file in bench/out/ is copied, and replaces an older one of the same name: remove from
bench/out/ what you do not mean to publish (e.g. a benchmark run only to try something).
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import sys

from bench.common import OUT

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PUBLISHED = os.path.join(ROOT, "bench", "published")
README = os.path.join(ROOT, "README.md")
BEGIN, END = "<!-- relay-table: written by make bench-publish -->", "<!-- /relay-table -->"


def readme_block(relay_md: str, plots: list[str], note: str = "") -> str:
    body = relay_md.split("\n", 1)[1].strip()  # without its "# bench.relay ..." title
    images = "\n".join(f"![{os.path.basename(p)}](bench/published/{os.path.basename(p)})"
                       for p in plots if p.endswith("relay_summary.png"))
    others = ", ".join(f"[{os.path.basename(p)[6:-4]}](bench/published/{os.path.basename(p)})"
                       for p in plots if not p.endswith("relay_summary.png"))
    return "\n\n".join(part for part in (
        BEGIN, "Latest published run ([bench/published/relay.md](bench/published/relay.md)):"
        + (f" **{note}**" if note else ""),
        body, images, f"One plot per scenario: {others}." if others else "", END) if part)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--note", default="",
                        help="a word on the run, shown with the table, e.g. how busy the machine was")
    args = parser.parse_args(argv)
    if not os.path.exists(os.path.join(OUT, "relay.md")):
        print("nothing to publish: bench/out/relay.md is missing (run make bench)",
              file=sys.stderr)
        return 1
    os.makedirs(PUBLISHED, exist_ok=True)
    copied = []
    for pattern in ("*.json", "*.md", "*.png"):
        for path in sorted(glob.glob(os.path.join(OUT, pattern))):
            shutil.copy2(path, PUBLISHED)
            copied.append(os.path.basename(path))
    with open(os.path.join(PUBLISHED, "relay.md")) as f:
        relay_md = f.read()
    plots = sorted(glob.glob(os.path.join(PUBLISHED, "relay_*.png")))
    with open(README) as f:
        readme = f.read()
    if BEGIN not in readme or END not in readme:
        print(f"README.md has no {BEGIN} ... {END} block to fill", file=sys.stderr)
        return 1
    head, rest = readme.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    with open(README, "w") as f:
        f.write(head + readme_block(relay_md, plots, args.note) + tail)
    print(f"bench/published/: {', '.join(copied)}; README.md updated. Review, then commit.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
