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

# say, die, now, since, close_fds, lock, pid_alive, read_pid, wait_until, amqp_ready
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

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
    pid=$(read_pid "$PIDFILE")
    # beam.smp is the Erlang VM; a recycled pid belongs to something else.
    if pid_alive "$pid" && [ -r "/proc/$pid/comm" ] && grep -q '^beam' "/proc/$pid/comm"; then
        echo "$pid"
    fi
}

do_status() {
    local pid
    pid=$(node_pid)
    if [ -n "$pid" ] && amqp_ready "$AMQP_PORT"; then
        say "running (pid $pid), AMQP on 127.0.0.1:$AMQP_PORT"
        return 0
    fi
    say "not running"
    return 1
}

do_start() {
    need_root
    ensure_installed
    local changed pid t0
    changed=$(install_config)
    pid=$(node_pid)
    if [ -n "$pid" ]; then
        if [ -n "$changed" ]; then
            say "config in $ETC changed but node $pid is running: run '$0 restart' to apply it"
        fi
        if amqp_ready "$AMQP_PORT" || { say "node $pid is up, waiting for AMQP"; wait_until 10 amqp_ready "$AMQP_PORT"; }; then
            say "already running (pid $pid)"
            return 0
        fi
        die "node $pid is running but 127.0.0.1:$AMQP_PORT does not answer AMQP; see $LOG"
    fi
    t0=$(now)
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
    if wait_until 10 amqp_ready "$AMQP_PORT"; then
        say "started (pid $pid) in $(since "$t0") s, AMQP on 127.0.0.1:$AMQP_PORT"
        return 0
    fi
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
    lock /run/kgateway/rabbitmq.lock
fi

case "${1:-}" in
    start) do_start ;;
    stop) do_stop ;;
    restart) do_stop; do_start ;;
    status) do_status ;;
    *) echo "usage: $0 start|stop|restart|status" >&2; exit 2 ;;
esac
