"""`python -m bench [NAME...]`: run the benchmarks in turn (bench.relay first); each writes
bench/out/NAME.{json,md} (git ignores bench/out/). `--quick` is passed to bench.relay only.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import bench

# Not benchmarks: support modules of bench.relay (naive_relay is a server: it would not end)
# and `make bench-publish`; the soak run has its own target (`make soak`: an hour by default).
SKIP = {"common", "__main__", "naive_relay", "relay_backend", "relay_driver", "publish", "soak"}
FIRST = "relay"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    quick = "--quick" in args
    names = [a for a in args if not a.startswith("-")]
    modules = sorted((m.name for m in pkgutil.iter_modules(bench.__path__)
                      if m.name not in SKIP), key=lambda m: (m != FIRST, m))
    if names:
        unknown = set(names) - set(modules)
        if unknown:
            print(f"no such benchmark: {', '.join(sorted(unknown))}; there are: "
                  f"{', '.join(modules)}", file=sys.stderr)
            return 2
        modules = [m for m in modules if m in names]
    failed = []
    for module in modules:
        print(f"== bench.{module}", flush=True)
        saved, sys.argv = sys.argv, [f"bench.{module}"] + (
            ["--quick"] if quick and module == FIRST else [])
        try:
            importlib.import_module(f"bench.{module}").main()
        except Exception as e:  # one broken benchmark must not hide the others' figures
            print(f"bench.{module} failed: {e!r}", flush=True)
            failed.append(module)
        finally:
            sys.argv = saved
    if failed:
        print(f"failed: {', '.join(failed)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
