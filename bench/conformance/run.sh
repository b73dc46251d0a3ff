#!/usr/bin/env bash
# Run wstest -m fuzzingclient against a real `twistd -n kgateway` echo service; see README.md.
#   bench/conformance/run.sh [SPEC]      SPEC: fuzzingclient.json (default) or limits.json
# PORT (default 9001) and MAX (ws.maximum.message.size, default 1MiB; limits.json needs 16MiB).
# TARGET=codec tests codec_echo.py (Autobahn handshake + kgateway.protocols.websocket) instead.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=../..
SPEC="${1:-fuzzingclient.json}"
PORT="${PORT:-9001}"
MAX="${MAX:-1MiB}"
test -x "$ROOT/.wstest-venv/bin/wstest" || { echo "run bench/conformance/install.sh first" >&2; exit 2; }
mkdir -p reports
if [ "${TARGET:-kgateway}" = codec ]; then
    BYTES=$("$ROOT/.venv/bin/python" -c "from kgateway.config import parse_size; print(parse_size('$MAX'))")
    PYTHONPATH="$ROOT" "$ROOT/.venv/bin/python" codec_echo.py --port "$PORT" \
        --max-message-size "$BYTES" > reports/gateway.log 2>&1 &
else
    # CONFIG=proxy.xml: through a ws -> tcp proxy hop (FAST=false: on Autobahn's data path)
    "$ROOT/.venv/bin/twistd" -n --pidfile= kgateway -c "${CONFIG:-echo.xml}" \
        -D "conformance.port=$PORT" -D "conformance.max.message.size=$MAX" \
        ${FAST:+-D "conformance.fast.path=$FAST"} > reports/gateway.log 2>&1 &
fi
GATEWAY=$!
trap 'kill "$GATEWAY" 2>/dev/null || true' EXIT
# Wait for the gateway's own "ready" line, at most 30 s; stop early if it dies.
for _ in $(seq 300); do
    grep -q "ready" reports/gateway.log && break
    kill -0 "$GATEWAY" 2>/dev/null || break
    sleep 0.1
done
grep -q "ready" reports/gateway.log ||
    { echo "gateway did not start:" >&2; cat reports/gateway.log >&2; exit 1; }
sed -e "s/127.0.0.1:9001/127.0.0.1:$PORT/" -e "s/kgateway-echo/${TARGET:-kgateway}-echo/" \
    "$SPEC" > reports/spec.json
"$ROOT/.wstest-venv/bin/wstest" -m fuzzingclient -s reports/spec.json > reports/wstest.log
"$ROOT/.venv/bin/python" summary.py reports/servers/index.json
