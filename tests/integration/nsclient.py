"""A tiny client run inside a network namespace by test_topologies (``ip netns exec NS``).

    python -m tests.integration.nsclient ws URL [--ca CA] [--count N]   echo round trips
    python -m tests.integration.nsclient tcp HOST PORT [--timeout S]    connect, say, expect echo
    python -m tests.integration.nsclient probe HOST PORT [--timeout S]  exit 0 if connectable

Prints one JSON line with what happened; exits non-zero on failure.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["ws", "tcp", "probe"])
    parser.add_argument("target")
    parser.add_argument("port", nargs="?", type=int)
    parser.add_argument("--ca")
    parser.add_argument("--count", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=10)
    args = parser.parse_args()
    if args.kind == "ws":
        import websocket

        ws = websocket.create_connection(args.target, timeout=args.timeout,
                                         sslopt={"ca_certs": args.ca} if args.ca else None)
        replies = []
        for i in range(args.count):
            ws.send(f"message {i}")
            opcode, data = ws.recv_data()
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                print(json.dumps({"closed": int.from_bytes(data[:2], "big"),
                                  "reason": data[2:].decode(errors="replace")}))
                return 1
            replies.append(data.decode())
        ws.close()
        print(json.dumps({"replies": replies}))
        return 0
    try:
        sock = socket.create_connection((args.target, args.port), timeout=args.timeout)
    except OSError as e:
        print(json.dumps({"error": type(e).__name__, "message": str(e)}))
        return 1
    if args.kind == "probe":
        print(json.dumps({"connected": True}))
        return 0
    sock.sendall(b"ping through the chain")
    data = b""
    while len(data) < 22:
        chunk = sock.recv(64)
        if not chunk:
            break
        data += chunk
    print(json.dumps({"reply": data.decode()}))
    return 0 if data == b"ping through the chain" else 1


if __name__ == "__main__":
    sys.exit(main())
