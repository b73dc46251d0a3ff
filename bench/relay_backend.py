"""The TCP back end of bench.relay: a sink that counts what arrives, or a source that writes.

    relays --tcp--> sink     counts bytes and the times of the first and last ones
    relays <--tcp-- source   writes CHUNK bytes per send() until the reader hangs up

One process: an asyncio loop accepts, reads and answers; each source connection writes
from a thread. Its own CPU is in every report, so that bench.relay can show that the back
end was not the limit. Controlled by lines on stdin, answers on stdout as JSON:

    reset        zero the counters, note the time       -> {"ok": true}
    report       the counters since the reset           -> {"bytes", "since", "now", "open",
                                                            "cpu_s", ...}
    wait N       once exactly N connections are open    -> the counters

Times are time.monotonic(), which is one clock for every process on Linux.
Run: python -m bench.relay_backend sink|source [--chunk BYTES]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import sys
import threading
import time
from typing import Any


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
    return usage.ru_utime + usage.ru_stime


class Counters:
    def __init__(self) -> None:
        self.reset()
        self.open = 0
        self.waiters: list[tuple[int, asyncio.Future[None]]] = []

    def reset(self) -> None:
        self.since = time.monotonic()
        self.bytes = 0
        self.first: float | None = None
        self.last: float | None = None
        self.accepted = 0

    def report(self) -> dict[str, Any]:
        return {"bytes": self.bytes, "first": self.first, "last": self.last,
                "since": self.since, "now": time.monotonic(), "open": self.open,
                "accepted": self.accepted, "cpu_s": cpu_seconds()}

    def changed(self) -> None:
        for n, future in list(self.waiters):
            if self.open == n and not future.done():
                future.set_result(None)


class Sink(asyncio.Protocol):
    def __init__(self, counters: Counters) -> None:
        self.counters = counters

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.counters.open += 1
        self.counters.accepted += 1
        self.counters.changed()

    def data_received(self, data: bytes) -> None:
        c = self.counters
        c.last = time.monotonic()
        if c.first is None:
            c.first = c.last
        c.bytes += len(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.counters.open -= 1
        self.counters.changed()


class Source(Sink):
    """Writes CHUNK bytes per send() from a thread of its own, on a blocking duplicate of the
    socket: asyncio's transport.write() costs several times the send() itself, which made
    the source, not the relay, the limit with 4 KiB writes. Ends when the reader hangs up."""

    def __init__(self, counters: Counters, chunk: int) -> None:
        super().__init__(counters)
        self.chunk = b"\x5a" * chunk

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()
        sock = socket.socket(fileno=os.dup(transport.get_extra_info("socket").fileno()))
        sock.setblocking(True)
        loop = asyncio.get_running_loop()
        threading.Thread(target=self.write, args=(sock, transport, loop), daemon=True).start()

    def write(self, sock: socket.socket, transport: asyncio.Transport,
              loop: asyncio.AbstractEventLoop) -> None:
        chunk = self.chunk
        try:
            while True:
                sock.sendall(chunk)
        except OSError:
            pass
        finally:
            sock.close()
            loop.call_soon_threadsafe(transport.abort)


async def serve(mode: str, chunk: int) -> None:
    loop = asyncio.get_running_loop()
    counters = Counters()
    if mode == "source":
        server = await loop.create_server(lambda: Source(counters, chunk), "127.0.0.1", 0,
                                          backlog=1024)
    else:
        server = await loop.create_server(lambda: Sink(counters), "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(json.dumps({"port": port}), flush=True)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().split():
        if line[0] == "reset":
            counters.reset()
            answer: dict[str, Any] = {"ok": True}
        elif line[0] == "wait":
            future: asyncio.Future[None] = loop.create_future()
            counters.waiters.append((int(line[1]), future))
            counters.changed()
            await future
            counters.waiters.remove((int(line[1]), future))
            answer = counters.report()
        else:
            answer = counters.report()
        print(json.dumps(answer), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["sink", "source"])
    parser.add_argument("--chunk", type=int, default=64 * 1024, help="bytes per send()")
    args = parser.parse_args()
    asyncio.run(serve(args.mode, args.chunk))


if __name__ == "__main__":
    main()
