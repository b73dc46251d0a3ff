"""tracemalloc on request, for a gateway started by ``bench.soak --tracemalloc``.

Python imports ``sitecustomize`` from sys.path at start-up, so a gateway started with this
folder on PYTHONPATH runs this without any change to kgateway/. With
KGATEWAY_SOAK_SNAPSHOTS set to the path of a FIFO, a daemon thread blocks reading it; each
line written to the FIFO is a request:

    start N    tracemalloc.start(N): trace from now on, N frames per allocation
    PATH       gc.collect(), then dump tracemalloc.take_snapshot() to PATH (written to
               PATH.tmp, then renamed, so the reader sees a whole file or none); the
               collection first, so that garbage cycles awaiting the collector do not pass
               for live objects

Tracing starts on request rather than with PYTHONTRACEMALLOC: traced from the first
import, the gateway took some 30 s of CPU to start on a busy 2-core machine, and what
start-up allocates is not what a soak looks for. No signal handler: the gateway's own
handlers stay as they are. Without the variable this module does nothing.
"""

from __future__ import annotations

import gc
import os
import threading
import tracemalloc


def _serve(fifo: str) -> None:
    while True:
        with open(fifo) as requests:  # blocks until the soak driver opens it to write
            for line in requests:
                target = line.strip()
                if target.startswith("start "):
                    tracemalloc.start(int(target.split()[1]))
                    continue
                if not target or not tracemalloc.is_tracing():
                    continue
                gc.collect()
                snapshot = tracemalloc.take_snapshot()
                snapshot.dump(target + ".tmp")
                os.replace(target + ".tmp", target)


_FIFO = os.environ.get("KGATEWAY_SOAK_SNAPSHOTS")
if _FIFO:
    threading.Thread(target=_serve, args=(_FIFO,), name="soak-tracemalloc",
                     daemon=True).start()
