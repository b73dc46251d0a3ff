#!/usr/bin/env bash
# Run the project's RabbitMQ node (Debian's rabbitmq-server 3.10) on loopback.
#
#   scripts/rabbitmq.sh start     install config, start, wait for AMQP on 127.0.0.1:5672
#   scripts/rabbitmq.sh stop      shut down the node this script started
#   scripts/rabbitmq.sh restart   stop + start
#   scripts/rabbitmq.sh status    exit 0 if the node answers AMQP, 1 otherwise
#
# Config comes from etc/brokers/rabbitmq/ and is copied into /etc/rabbitmq/
# (rabbitmq.conf, rabbitmq-env.conf, enabled_plugins = rabbitmq_stomp +
# rabbitmq_web_stomp, the same file `rabbitmq-plugins enable --offline`
# writes). Ports: AMQP 5672, STOMP 61614, Web-STOMP 15674, epmd 4369 and
# distribution 25672, all on 127.0.0.1. See etc/brokers/README.md.
#
# Runs as root (Debian's wrappers then drop to the rabbitmq user). Installs the
# package through scripts/system-deps.sh when it is missing. Idempotent: start
# on a running node is a no-op.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SRC=$ROOT/etc/brokers/rabbitmq
ETC=/etc/rabbitmq
NODE=rabbit@localhost          # must match NODENAME in rabbitmq-env.conf
PIDFILE=/var/lib/rabbitmq/mnesia/$NODE.pid
LOG=/var/log/rabbitmq/$NODE.log
# The pid of the node this script started: stop leaves any other node alone.
OURS=/run/kgateway/rabbitmq.pid
AMQP_PORT=5672

say() { printf 'rabbitmq.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# Close every inherited descriptor above 2 (the lock below, a caller's pipes):
# a daemon holding its caller's pipe keeps `cmd | cat`, pytest or CI waiting.
close_fds() {
    local fd
    for fd in /proc/"$BASHPID"/fd/*; do
        fd=${fd##*/}
        if [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi
    done
}

need_root() {
    [ "$(id -u)" = 0 ] || die "must run as root (it writes /etc/rabbitmq and starts the node as user rabbitmq)"
}

ensure_installed() {
    command -v rabbitmq-server >/dev/null 2>&1 || "$ROOT/scripts/system-deps.sh"
}

# Copy our config files into /etc/rabbitmq; prints "changed" if any differed.
install_config() {
    local f changed=
    for f in rabbitmq.conf rabbitmq-env.conf enabled_plugins; do
        if ! cmp -s "$SRC/$f" "$ETC/$f"; then
            install -D -o rabbitmq -g rabbitmq -m 0644 "$SRC/$f" "$ETC/$f"
            changed=1
        fi
    done
    if [ -n "$changed" ]; then echo changed; fi
}

# The pid of the running node, from its pid file, or nothing.
node_pid() {
    local pid
    [ -r "$PIDFILE" ] || return 0
    pid=$(tr -dc 0-9 <"$PIDFILE")
    [ -n "$pid" ] || return 0
    # beam.smp is the Erlang VM; a recycled pid belongs to something else.
    # A killed VM can linger as a zombie until it is reaped: that is dead too.
    if [ -r "/proc/$pid/comm" ] && grep -q '^beam' "/proc/$pid/comm" &&
        ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null; then
        echo "$pid"
    fi
}

# True when 127.0.0.1:5672 answers an AMQP 0-9-1 header with Connection.Start.
amqp_ready() {
    python3 - "$AMQP_PORT" <<'EOF'
import socket, sys
try:
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
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
EOF
}

do_status() {
    local pid
    pid=$(node_pid)
    if [ -n "$pid" ] && amqp_ready; then
        say "running (pid $pid), AMQP on 127.0.0.1:$AMQP_PORT"
        return 0
    fi
    say "not running"
    return 1
}

do_start() {
    need_root
    ensure_installed
    local changed pid t0 i
    changed=$(install_config)
    pid=$(node_pid)
    if [ -n "$pid" ]; then
        if [ -n "$changed" ]; then
            say "config in $ETC changed but node $pid is running: run '$0 restart' to apply it"
        fi
        for i in $(seq 1 50); do
            if amqp_ready; then say "already running (pid $pid)"; return 0; fi
            [ "$i" = 1 ] && say "node $pid is up, waiting for AMQP"
            sleep 0.2
        done
        die "node $pid is running but 127.0.0.1:$AMQP_PORT does not answer AMQP; see $LOG"
    fi
    t0=$(date +%s.%N)
    # A pid file left by a killed node would make `rabbitmqctl wait` watch a
    # dead pid.
    rm -f "$PIDFILE"
    mkdir -p "$(dirname "$OURS")"
    # Debian's wrapper (run as root) starts it as user rabbitmq from /var/lib/rabbitmq.
    (close_fds; exec rabbitmq-server -detached </dev/null)
    # `rabbitmqctl await_startup` straight after -detached fails with "node
    # not running": `wait PIDFILE` waits for the pid file, then for the app.
    if ! rabbitmqctl wait --timeout 120 "$PIDFILE" >/dev/null; then
        tail -n 30 "$LOG" /var/log/rabbitmq/startup_err 2>/dev/null >&2 || true
        die "node did not start; see $LOG"
    fi
    pid=$(node_pid)
    [ -n "$pid" ] || die "node started but $PIDFILE names no running VM"
    echo "$pid" >"$OURS"
    for i in $(seq 1 50); do
        if amqp_ready; then
            say "started (pid $pid) in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s, AMQP on 127.0.0.1:$AMQP_PORT"
            return 0
        fi
        sleep 0.2
    done
    die "node $pid started but 127.0.0.1:$AMQP_PORT does not answer AMQP; see $LOG"
}

do_stop() {
    need_root
    local pid ours=
    pid=$(node_pid)
    if [ -z "$pid" ]; then
        rm -f "$OURS"
        say "not running"
        return 0
    fi
    [ -r "$OURS" ] && ours=$(tr -dc 0-9 <"$OURS")
    if [ "$ours" != "$pid" ]; then
        die "node $pid was not started by this script (no matching $OURS): leaving it alone"
    fi
    # Waits until the VM process has exited.
    rabbitmqctl shutdown >/dev/null
    rm -f "$OURS"
    say "stopped (pid $pid)"
}

# One invocation at a time: test sessions may start/stop the node concurrently.
mkdir -p /run/kgateway 2>/dev/null || true
if [ -w /run/kgateway ]; then
    exec 9>/run/kgateway/rabbitmq.lock
    flock 9
fi

case "${1:-}" in
    start) do_start ;;
    stop) do_stop ;;
    restart) do_stop; do_start ;;
    status) do_status ;;
    *) echo "usage: $0 start|stop|restart|status" >&2; exit 2 ;;
esac
