"""WebSocket data-phase parsing: kgateway.protocols.websocket vs Autobahn, in memory.

    masked binary frames (as a browser sends them) --64 KiB reads--> parser --> messages

Both parsers get the same octets: ``--megabytes`` of masked binary messages of one size
(256 B, 4 KiB, 64 KiB; a fresh random masking key per frame, as RFC 6455 requires of a
client), concatenated and cut into 64 KiB reads regardless of frame boundaries, as a TCP
socket delivers them.  Time counts only the feeding of those reads; building the parser and
the handshake are outside it.  It is the process's CPU time (``time.process_time``), not
wall time: the work is single-threaded and CPU-bound, and on a shared 2-core machine wall
time mostly measures the other tenants.  Each figure is the median of ``--runs`` runs; the
runs of each parser are interleaved so that what noise is left hits both alike.

- ``autobahn``: a real ``autobahn.twisted.websocket.WebSocketServerProtocol`` subclass
  whose ``onMessage`` counts, configured like kgateway's (``links.configure_websocket``:
  the same message/frame size limit, ``failByDrop=False``, no auto-ping, no handshake
  timeout), on a ``StringTransport``, brought to the OPEN state by feeding it a real HTTP
  Upgrade request; then each read goes to ``dataReceived``, the path a kgateway server
  connection takes today.  Autobahn uses NVX when it has it (``USES_NVX`` is printed).
- ``codec``: ``WebSocketCodec(Role.SERVER, max_message_size=<same limit>)``, each read to
  ``receive_data``; the events are counted.  ``codec-pure`` is the same without Autobahn's
  C masker (``native=False``: big-integer XOR), ``codec-stream`` the stream mode.

Every run checks that the parser delivered every message with the right total length, and
the first run checks the payloads octet for octet.  Writes bench/out/ws_codec.{json,md}.

    .venv/bin/python -m bench.ws_codec [--megabytes 16] [--runs 7]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket import USES_NVX as AUTOBAHN_USES_NVX
from autobahn.websocket.protocol import WebSocketProtocol
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from bench.common import write_results
from kgateway.protocols.websocket import (
    USES_NVX,
    Chunk,
    Message,
    Role,
    WebSocketCodec,
    encode_frame,
)

SIZES = (256, 4096, 65536)
READ = 65536
LIMIT = 1024 * 1024  # kgateway's default ws.maximum.message.size

HANDSHAKE = (b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUpgrade: websocket\r\n"
             b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
             b"Sec-WebSocket-Version: 13\r\n\r\n")


def make_stream(size: int, total: int, seed: int,
                read: int = READ) -> tuple[list[bytes], list[bytes]]:
    """(the payloads, the wire octets cut into ``read``-sized reads)."""
    rng = random.Random(seed)
    count = max(1, total // size)
    payloads = [rng.randbytes(size) for _ in range(min(count, 64))]
    payloads = [payloads[i % len(payloads)] for i in range(count)]
    wire = b"".join(b"".join(encode_frame(2, p, True, rng.randbytes(4))) for p in payloads)
    return payloads, [wire[i:i + read] for i in range(0, len(wire), read)]


class _Counting(WebSocketServerProtocol):
    def __init__(self) -> None:
        super().__init__()
        self.received: list[bytes] = []
        self.keep = False
        self.count = 0
        self.octets = 0

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.count += 1
        self.octets += len(payload)
        if self.keep:
            self.received.append(payload)


def autobahn_parser(keep: bool) -> tuple[Callable[[bytes], object], Callable[[], Any]]:
    factory = WebSocketServerFactory("ws://127.0.0.1:8000", reactor=Clock())
    factory.protocol = _Counting
    factory.setProtocolOptions(maxMessagePayloadSize=LIMIT, maxFramePayloadSize=LIMIT,
                               failByDrop=False, autoPingInterval=0, openHandshakeTimeout=0,
                               closeHandshakeTimeout=5)
    proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
    assert isinstance(proto, _Counting)
    proto.keep = keep
    proto.makeConnection(StringTransport())
    proto.dataReceived(HANDSHAKE)
    assert proto.state == WebSocketProtocol.STATE_OPEN, proto.state
    return proto.dataReceived, lambda: (proto.count, proto.octets, proto.received)


def codec_parser(keep: bool, **options: Any) -> tuple[Callable[[bytes], object],
                                                       Callable[[], Any]]:
    codec = WebSocketCodec(Role.SERVER, max_message_size=LIMIT, **options)
    state: dict[str, Any] = {"count": 0, "octets": 0, "received": []}
    chunks: list[bytes] = []

    def feed(data: bytes) -> None:
        for event in codec.receive_data(data):
            if type(event) is Message:
                state["count"] += 1
                state["octets"] += len(event.data)
                if keep:
                    state["received"].append(event.data)
            elif type(event) is Chunk:
                state["octets"] += len(event.data)
                if keep:
                    chunks.append(event.data)
                if event.last:
                    state["count"] += 1
                    if keep:
                        state["received"].append(b"".join(chunks))
                        chunks.clear()

    return feed, lambda: (state["count"], state["octets"], state["received"])


PARSERS: dict[str, Callable[[bool], tuple[Callable[[bytes], object], Callable[[], Any]]]] = {
    "autobahn": autobahn_parser,
    "codec": lambda keep: codec_parser(keep),
    "codec-pure": lambda keep: codec_parser(keep, native=False),
    "codec-stream": lambda keep: codec_parser(keep, stream=True),
}


def run_once(name: str, payloads: list[bytes], reads: list[bytes], check: bool) -> float:
    feed, result = PARSERS[name](check)
    start = time.process_time()
    for data in reads:
        feed(data)
    elapsed = time.process_time() - start
    count, octets, received = result()
    if count != len(payloads) or octets != len(payloads) * len(payloads[0]):
        raise AssertionError(f"{name}: {count} messages, {octets} octets")
    if check and received != payloads:
        raise AssertionError(f"{name}: payloads differ")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--megabytes", type=float, default=16.0,
                        help="MiB of payload per size and run (default 16)")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--read", type=int, default=READ,
                        help="octets per read (default 65536, what Twisted's TCP reads at most)")
    args = parser.parse_args()
    total = int(args.megabytes * 1024 * 1024)
    print(f"Autobahn USES_NVX={AUTOBAHN_USES_NVX}; codec USES_NVX={USES_NVX}; "
          f"{args.megabytes:g} MiB of payload per size, {args.read} B reads, "
          f"median of {args.runs} runs", flush=True)
    figures: dict[str, Any] = {"autobahn_uses_nvx": AUTOBAHN_USES_NVX, "codec_uses_nvx": USES_NVX,
                               "megabytes": args.megabytes, "runs": args.runs, "sizes": {}}
    table = [f"Autobahn USES_NVX={AUTOBAHN_USES_NVX}, codec USES_NVX={USES_NVX}; "
             f"{args.megabytes:g} MiB of masked binary payload per size, {args.read} B "
             f"reads, median of {args.runs} runs.", "",
             "| frame | parser | MB/s | msgs/s | x autobahn |", "|---:|---|---:|---:|---:|"]
    for size in SIZES:
        payloads, reads = make_stream(size, total, seed=size, read=args.read)
        times: dict[str, list[float]] = {name: [] for name in PARSERS}
        for run in range(args.runs):
            for name in PARSERS:
                times[name].append(run_once(name, payloads, reads, check=run == 0))
        octets = len(payloads) * size
        base = statistics.median(times["autobahn"])
        entry: dict[str, Any] = {}
        for name, values in times.items():
            median = statistics.median(values)
            mbps = octets / median / 1e6
            msgs = len(payloads) / median
            entry[name] = {"seconds": values, "median_s": median, "mb_per_s": mbps,
                           "msgs_per_s": msgs, "ratio_vs_autobahn": base / median}
            table.append(f"| {size} B | {name} | {mbps:.0f} | {msgs:.0f} | "
                         f"{base / median:.2f} |")
            print(f"{size:>6} B  {name:13s} {mbps:9.1f} MB/s {msgs:11.0f} msgs/s "
                  f"x{base / median:.2f}", flush=True)
        figures["sizes"][str(size)] = entry
    figures["read"] = args.read
    name = "ws_codec" if args.read == READ else f"ws_codec_read{args.read}"
    write_results(name, f".venv/bin/python -m bench.ws_codec --megabytes {args.megabytes:g} "
                  f"--runs {args.runs} --read {args.read}", figures, table)


if __name__ == "__main__":
    main()
