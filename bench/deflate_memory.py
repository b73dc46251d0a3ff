"""What permessage-deflate costs per connection in the gateway's memory.

    python -m bench.deflate_memory [--connections N]

One echo gateway per setting (off; on with the default 15-bit window and context takeover;
on with a 10-bit window; on without context takeover). N clients (the websockets library,
which offers permessage-deflate with client_max_window_bits) connect, each sends one 4 KiB
JSON-like text message and reads the echo, and stay open; the gateway's RSS growth divided
by N is the figure. Autobahn keeps each connection's last zlib compressor and decompressor
even without context takeover (it only replaces them per message), so the window size is
what bounds the cost.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from websockets.sync.client import connect

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.common import write_results  # noqa: E402
from tests.helpers import GatewayProcess, free_port, gateway_xml, service_xml  # noqa: E402

SETTINGS = {
    "off": "",
    "deflate, window 15, context takeover": "<ws.permessage-deflate>true</ws.permessage-deflate>",
    "deflate, window 10, context takeover":
        "<ws.permessage-deflate>true</ws.permessage-deflate>"
        "<ws.permessage-deflate.window-bits>10</ws.permessage-deflate.window-bits>",
    "deflate, window 15, no context takeover":
        "<ws.permessage-deflate>true</ws.permessage-deflate>"
        "<ws.permessage-deflate.context-takeover>false</ws.permessage-deflate.context-takeover>",
}

MESSAGE = json.dumps([{"symbol": f"SYM{i}", "price": 100 + i / 7, "size": i * 13}
                      for i in range(80)])[:4096]


def measure(options: str, count: int) -> dict[str, Any]:
    url = f"ws://127.0.0.1:{free_port()}/echo"
    gw = GatewayProcess(gateway_xml([service_xml(
        "echo", url, name="echo", extra=f"<accept-options>{options}</accept-options>")]),
        name="deflate").start()
    clients = []
    try:
        # Warm up: the first connections allocate what every later one reuses.
        for _ in range(20):
            with connect(url, compression="deflate") as ws:
                ws.send(MESSAGE)
                ws.recv()
        before = gw.rss_kib()
        for _ in range(count):
            ws = connect(url, compression="deflate", max_size=None)
            ws.send(MESSAGE)
            assert ws.recv() == MESSAGE
            clients.append(ws)
        after = gw.rss_kib()
        response = clients[0].response
        extensions = response.headers.get("Sec-WebSocket-Extensions", "") if response else ""
        return {"rss_before_kib": before, "rss_after_kib": after,
                "per_connection_kib": round((after - before) / count, 1),
                "negotiated": extensions}
    finally:
        for ws in clients:
            ws.close()
        gw.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=300)
    args = parser.parse_args()
    figures = {name: measure(options, args.connections) for name, options in SETTINGS.items()}
    table = [f"{args.connections} open connections, one 4 KiB text message echoed on each.",
             "", "| setting | RSS growth per connection | negotiated |", "|---|---|---|"]
    for name, f in figures.items():
        table.append(f"| {name} | {f['per_connection_kib']} KiB | `{f['negotiated'] or '-'}` |")
    write_results("deflate_memory", f"python -m bench.deflate_memory --connections "
                                    f"{args.connections}", figures, table)


if __name__ == "__main__":
    main()
