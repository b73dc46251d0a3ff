"""Heap introspection on request, for a gateway started by ``bench.soak``.

Python imports ``sitecustomize`` from sys.path at start-up, so a gateway started with this
folder on PYTHONPATH runs this without any change to kgateway/. With
KGATEWAY_SOAK_SNAPSHOTS set to the path of a FIFO, a daemon thread blocks reading it; each
line written to the FIFO is a request:

    start N       tracemalloc.start(N): trace from now on, N frames per allocation
    stats PATH    JSON to PATH: Python's allocated blocks, gc-tracked objects (garbage
                  cycles the collector has not reached yet included), collections per
                  generation, glibc mallinfo2 (in use, free, mmapped), tracemalloc's traced
                  and own memory
    stats! PATH   the same after a gc.collect(): what is really retained
    PATH          gc.collect(), then dump tracemalloc.take_snapshot() to PATH; the
                  collection first, so that garbage cycles awaiting the collector do not
                  pass for live objects

Every file is written to PATH.tmp, then renamed, so the reader sees a whole file or none.
Tracing starts on request rather than with PYTHONTRACEMALLOC: traced from the first
import, the gateway took some 30 s of CPU to start on a busy 2-core machine, and what
start-up allocates is not what a soak looks for. No signal handler: the gateway's own
handlers stay as they are. Without the variable this module does nothing. The thread
holds the GIL only while it answers (a few ms every sample).
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import sys
import threading
import tracemalloc
from typing import Any

_FIELDS = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
           "fordblks", "keepcost")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in _FIELDS]


def _mallinfo() -> dict[str, int] | None:
    """glibc's malloc statistics (every arena), None where mallinfo2 is missing."""
    try:
        mallinfo2 = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return {"in_use": info.uordblks, "free": info.fordblks, "mmapped": info.hblkhd,
            "heap": info.arena, "releasable": info.keepcost}


def _stats() -> dict[str, Any]:
    traced = tracemalloc.get_traced_memory() if tracemalloc.is_tracing() else (0, 0)
    return {"allocated_blocks": sys.getallocatedblocks(), "gc_objects": len(gc.get_objects()),
            "gc_collections": [g["collections"] for g in gc.get_stats()],
            "malloc": _mallinfo(), "traced": traced[0], "traced_peak": traced[1],
            "tracemalloc_own": tracemalloc.get_tracemalloc_memory()}


def _write(target: str, write: Any) -> None:
    write(target + ".tmp")
    os.replace(target + ".tmp", target)


def _dump_json(data: dict[str, Any]) -> Any:
    def write(path: str) -> None:
        with open(path, "w") as f:
            json.dump(data, f)
    return write


def _serve(fifo: str) -> None:
    while True:
        with open(fifo) as requests:  # blocks until the soak driver opens it to write
            for line in requests:
                request = line.strip()
                if request.startswith("start "):
                    tracemalloc.start(int(request.split()[1]))
                elif request.startswith(("stats ", "stats! ")):
                    if request.startswith("stats! "):
                        gc.collect()
                    _write(request.split(" ", 1)[1], _dump_json(_stats()))
                elif request and tracemalloc.is_tracing():
                    gc.collect()
                    _write(request, tracemalloc.take_snapshot().dump)


_FIFO = os.environ.get("KGATEWAY_SOAK_SNAPSHOTS")
if _FIFO:
    threading.Thread(target=_serve, args=(_FIFO,), name="soak-introspection",
                     daemon=True).start()
