# shellcheck shell=bash
# Shell helpers shared by the scripts in scripts/: sourced, never run.
#
#   ROOT=...; . "$ROOT/scripts/lib.sh"
#
# Set PROG before sourcing to name the script in messages (default: its file name).

PROG=${PROG:-$(basename "$0")}

say() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { say "$*"; exit 1; }
now() { date +%s.%N; }
# Seconds since a `now` value, one decimal.
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}'; }

# Close every inherited descriptor above 2 (a lock, a caller's pipes): a daemon
# holding its caller's pipe keeps `cmd | cat`, pytest or CI waiting.
close_fds() {
    local fd
    for fd in /proc/"$BASHPID"/fd/*; do
        fd=${fd##*/}
        if [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi
    done
}

# One invocation at a time on fd 9: lock FILE (its folder must exist).
lock() {
    exec 9>"$1"
    flock 9
}

# True if PID is a live process: a killed one may linger as a zombie until it
# is reaped, and that is dead.
pid_alive() {
    [ -n "$1" ] && [ -d "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

# The number in a pid file, or nothing.
read_pid() {
    [ -r "$1" ] && tr -dc 0-9 <"$1"
    return 0
}

# Wait until PID is no longer alive; returns 1 after TIMEOUT seconds.
wait_gone() {
    local pid=$1 deadline
    deadline=$(( $(date +%s) + $2 ))
    while pid_alive "$pid"; do
        [ "$(date +%s)" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

# wait_until TIMEOUT CMD [ARG...]: run CMD every 0.2 s until it succeeds;
# returns 1 if it still fails after TIMEOUT seconds.
wait_until() {
    local deadline
    deadline=$(( $(date +%s) + $1 ))
    shift
    until "$@"; do
        [ "$(date +%s)" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}

# True when PORT (on HOST, default 127.0.0.1) answers an AMQP 0-9-1 header
# with Connection.Start.
amqp_ready() {
    python3 - "${2:-127.0.0.1}" "$1" <<'PY'
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
    s.sendall(b"AMQP\x00\x00\x09\x01")
    buf = b""
    while len(buf) < 11:
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    s.close()
except OSError:
    sys.exit(1)
# method frame (type 1) on channel 0, class 10 (connection) method 10 (start)
sys.exit(0 if buf[:1] == b"\x01" and buf[7:11] == b"\x00\x0a\x00\x0a" else 1)
PY
}

# True when PORT (on HOST, default 127.0.0.1) answers a STOMP CONNECT with
# CONNECTED.
stomp_ready() {
    python3 - "${2:-127.0.0.1}" "$1" <<'PY'
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
    s.sendall(b"CONNECT\naccept-version:1.0,1.1,1.2\nhost:localhost\n\n\x00")
    buf = b""
    while b"\x00" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    if buf.lstrip(b"\r\n").startswith(b"CONNECTED"):
        s.sendall(b"DISCONNECT\n\n\x00")
        s.close()
        sys.exit(0)
    s.close()
except OSError:
    pass
sys.exit(1)
PY
}

# True when HOST:PORT is an HTTP proxy that asks for credentials: a CONNECT
# without Proxy-Authorization gets 407.
proxy_ready() {
    python3 - "$1" "$2" <<'PY'
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
    s.sendall(b"CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n")
    buf = b""
    while b"\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    s.close()
except OSError:
    sys.exit(1)
sys.exit(0 if buf.split(b" ")[1:2] == [b"407"] else 1)
PY
}
