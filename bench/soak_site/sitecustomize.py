"""tracemalloc snapshots on request, for a gateway started by ``bench.soak --tracemalloc``.

Python imports ``sitecustomize`` from sys.path at start-up, so a gateway started with this
folder on PYTHONPATH (and PYTHONTRACEMALLOC=N for N frames per trace) runs this without
any change to kgateway/. With KGATEWAY_SOAK_SNAPSHOTS set to the path of a FIFO, a daemon
thread blocks reading it; each line written to the FIFO is a file name, and the thread
dumps ``tracemalloc.take_snapshot()`` there (written to NAME.tmp, then renamed, so the
reader sees a whole file or none). No signal handler: the gateway's own handlers stay as
they are. Without the variable this module does nothing.
"""

from __future__ import annotations

import os
import threading
import tracemalloc


def _serve(fifo: str) -> None:
    while True:
        with open(fifo) as requests:  # blocks until the soak driver opens it to write
            for line in requests:
                target = line.strip()
                if not target or not tracemalloc.is_tracing():
                    continue
                snapshot = tracemalloc.take_snapshot()
                snapshot.dump(target + ".tmp")
                os.replace(target + ".tmp", target)


_FIFO = os.environ.get("KGATEWAY_SOAK_SNAPSHOTS")
if _FIFO:
    threading.Thread(target=_serve, args=(_FIFO,), name="soak-tracemalloc",
                     daemon=True).start()
