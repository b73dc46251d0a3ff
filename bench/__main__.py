"""`python -m bench`: run every benchmark in turn; each writes bench/results/NAME.{json,md}."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import bench

SKIP = {"common", "__main__"}


def main() -> int:
    failed = []
    for module in sorted(m.name for m in pkgutil.iter_modules(bench.__path__)):
        if module in SKIP:
            continue
        print(f"== bench.{module}", flush=True)
        saved, sys.argv = sys.argv, [f"bench.{module}"]
        try:
            importlib.import_module(f"bench.{module}").main()
        except Exception as e:  # one broken benchmark must not hide the others' figures
            print(f"bench.{module} failed: {e!r}", flush=True)
            failed.append(module)
        finally:
            sys.argv = saved
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
