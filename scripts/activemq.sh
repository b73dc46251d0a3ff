#!/usr/bin/env bash
# Run the project's ActiveMQ Classic broker (Debian's activemq 5.17) on loopback.
#
#   scripts/activemq.sh start     install the instance, start, wait for a STOMP CONNECTED
#   scripts/activemq.sh stop      SIGTERM (clean stop, ~1.5 s) and wait for exit
#   scripts/activemq.sh kill      SIGKILL, for outage tests (store left unclean)
#   scripts/activemq.sh restart   stop + start
#   scripts/activemq.sh status    exit 0 if STOMP on 127.0.0.1:61613 answers CONNECTED
#
# The instance "kgateway" is built from etc/brokers/activemq/ (activemq.xml,
# log4j.properties, options) in /etc/activemq/instances-available/kgateway,
# enabled by a symlink in /etc/activemq/instances-enabled/, with its data and
# log under /var/lib/activemq/kgateway/data (activemq.log; the JVM's own
# output in activemq.out). Ports: OpenWire 61616, STOMP 61613, both on
# 127.0.0.1. Broker-side statistics: etc/brokers/README.md.
#
# Runs as root (Debian's launcher drops to user activemq). Installs the
# package through scripts/system-deps.sh when it is missing. `activemq stop`
# is never used: it goes through JMX, is slow and leaves the store unclean.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SRC=$ROOT/etc/brokers/activemq
INSTANCE=kgateway
AVAIL=/etc/activemq/instances-available/$INSTANCE
ENABLED=/etc/activemq/instances-enabled/$INSTANCE
BASE=/var/lib/activemq/$INSTANCE
PIDFILE=/run/activemq/$INSTANCE.pid
LOG=$BASE/data/activemq.log
OUT=$BASE/data/activemq.out
STOMP_PORT=61613
START_TIMEOUT=${ACTIVEMQ_START_TIMEOUT:-60}
STOP_TIMEOUT=${ACTIVEMQ_STOP_TIMEOUT:-30}

# say, die, now, since, close_fds, lock, pid_alive, read_pid, wait_gone, stomp_ready
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

need_root() {
    [ "$(id -u)" = 0 ] || die "must run as root (it writes /etc/activemq and starts the broker as user activemq)"
}

ensure_installed() {
    if [ ! -x /usr/bin/activemq ] || [ ! -e /usr/share/java/xstream.jar ] || [ ! -e /usr/share/java/jettison.jar ]; then
        "$ROOT/scripts/system-deps.sh"
    fi
}

# Prints "changed" if a config file differed from the installed one.
install_instance() {
    local f
    for f in activemq.xml log4j.properties options; do
        if ! cmp -s "$SRC/$f" "$AVAIL/$f"; then
            install -D -m 0644 "$SRC/$f" "$AVAIL/$f"
            echo changed
        fi
    done
    [ "$(readlink "$ENABLED" 2>/dev/null)" = "../instances-available/$INSTANCE" ] ||
        ln -sfn "../instances-available/$INSTANCE" "$ENABLED"
    mkdir -p "$BASE/data" "$BASE/tmp" "$BASE/lib" /run/activemq
    # XStream + Jettison turn MapMessages (statistics replies) and advisories
    # into XML/JSON for STOMP subscribers; Debian installs them (recommended by
    # libactivemq-java) but not on the broker's class path. $BASE/lib is an
    # extension directory of the launcher. XStream's XML parser (xpp3) is
    # already in /usr/share/activemq/lib/optional.
    for f in xstream.jar jettison.jar; do
        [ -e "/usr/share/java/$f" ] || die "/usr/share/java/$f missing: run scripts/system-deps.sh"
        [ "$(readlink "$BASE/lib/$f")" = "/usr/share/java/$f" ] || ln -sfn "/usr/share/java/$f" "$BASE/lib/$f"
    done
    chown -R activemq:activemq "$BASE" /run/activemq
}

# The broker's pid, if the pid file names a live JVM of this instance.
broker_pid() {
    local pid
    pid=$(read_pid "$PIDFILE")
    pid_alive "$pid" && [ -r "/proc/$pid/cmdline" ] || return 0
    if tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "-Dactivemq.base=\"\?$BASE\"\? "; then
        echo "$pid"
    fi
}

do_status() {
    local pid
    pid=$(broker_pid)
    if [ -n "$pid" ] && stomp_ready "$STOMP_PORT"; then
        say "running (pid $pid), STOMP on 127.0.0.1:$STOMP_PORT"
        return 0
    fi
    say "not running"
    return 1
}

do_start() {
    need_root
    ensure_installed
    local pid t0 deadline changed
    changed=$(install_instance)
    t0=$(now)
    pid=$(broker_pid)
    if [ -z "$pid" ]; then
        rm -f "$PIDFILE"
        (
            export INSTANCE ACTIVEMQ_USER=activemq ACTIVEMQ_HOME=/usr/share/activemq \
                ACTIVEMQ_BASE=$BASE ACTIVEMQ_CONFIG_DIR=$ENABLED ACTIVEMQ_PIDFILE=$PIDFILE
            cd "$BASE"
            close_fds
            /usr/bin/activemq start xbean:activemq.xml </dev/null >/dev/null
        ) || die "/usr/bin/activemq start failed"
        pid=$(broker_pid)
        [ -n "$pid" ] || die "the launcher wrote no live pid to $PIDFILE; see $OUT"
    else
        say "already running (pid $pid)"
        if [ -n "$changed" ]; then
            say "config in $AVAIL changed but broker $pid is running: run '$0 restart' to apply it"
        fi
    fi
    deadline=$(( $(date +%s) + START_TIMEOUT ))
    until stomp_ready "$STOMP_PORT"; do
        if [ -z "$(broker_pid)" ]; then
            tail -n 20 "$OUT" "$LOG" >&2 2>/dev/null || true
            die "broker (pid $pid) exited during start-up; see $LOG"
        fi
        [ "$(date +%s)" -lt "$deadline" ] ||
            die "no STOMP CONNECTED on 127.0.0.1:$STOMP_PORT after ${START_TIMEOUT}s; see $LOG"
        sleep 0.1
    done
    say "ready (pid $pid) after $(since "$t0") s, STOMP on 127.0.0.1:$STOMP_PORT, OpenWire on 127.0.0.1:61616"
}

do_stop() {
    need_root
    local pid t0
    pid=$(broker_pid)
    if [ -z "$pid" ]; then
        rm -f "$PIDFILE"
        say "not running"
        return 0
    fi
    t0=$(now)
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" "$STOP_TIMEOUT"; then
        say "pid $pid still alive after ${STOP_TIMEOUT}s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$pid" 10 || die "pid $pid survives SIGKILL"
    fi
    rm -f "$PIDFILE"
    say "stopped (pid $pid) in $(since "$t0") s"
}

do_kill() {
    need_root
    local pid
    pid=$(broker_pid)
    if [ -z "$pid" ]; then
        rm -f "$PIDFILE"
        say "not running"
        return 0
    fi
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" 10 || die "pid $pid survives SIGKILL"
    rm -f "$PIDFILE"
    say "killed (pid $pid)"
}

# One invocation at a time: tests may start/kill the broker from several places.
mkdir -p /run/kgateway 2>/dev/null || true
if [ -w /run/kgateway ]; then
    lock /run/kgateway/activemq.lock
fi

case "${1:-}" in
    start) do_start ;;
    stop) do_stop ;;
    kill) do_kill ;;
    restart) do_stop; do_start ;;
    status) do_status ;;
    *) echo "usage: $0 start|stop|kill|restart|status" >&2; exit 2 ;;
esac
