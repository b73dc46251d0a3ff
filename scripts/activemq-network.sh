#!/usr/bin/env bash
# Two throwaway ActiveMQ Classic brokers in a network of brokers, for tests, BESIDE the
# project's broker (scripts/activemq.sh: 61613/61616, which others use).
#
#   scripts/activemq-network.sh start       start the brokers that are down, wait for STOMP and the bridge
#   scripts/activemq-network.sh stop        SIGTERM both (clean), delete their stores
#   scripts/activemq-network.sh status      exit 0 if both answer STOMP and the bridge is up both ways
#   scripts/activemq-network.sh kill A|B    SIGKILL one broker, for outage tests
#   scripts/activemq-network.sh restart A|B stop it if it runs, start it, wait for STOMP and the bridge
#
# Brokers (all on 127.0.0.1):
#
#   A  amqA  OpenWire 61711  STOMP 61713   networkConnector "toB" -> 61721
#   B  amqB  OpenWire 61721  STOMP 61723   networkConnector "toA" -> 61711
#
# Config: etc/brokers/activemq-network/{activemq-A.xml,activemq-B.xml,log4j.properties},
# copied at each start into $KGW_ACTIVEMQ_NETWORK_DIR (default /tmp/kgateway-activemq-network)
# /{A,B}/conf. Per broker there: data/ (KahaDB, activemq.log), tmp/, lib/ (XStream and
# Jettison, linked as for the project's broker), pid, console.log (the JVM's own output).
#
# Debian's /usr/bin/activemq cannot run an instance under /tmp (it sources activemq-options,
# which resets ACTIVEMQ_BASE), so the JVM is started with `java -jar activemq.jar` and the
# system properties and module options that launcher passes (/work/shared/ENV-CLUSTERS.md).
# "The bridge is up" is read from each broker's log: its last bridge event is "Network
# connection between ... has been established" (and not "... shutdown due to ..." or
# "bridge to ... stopped"). Needs no root (CI runs it as root). Installs nothing:
# scripts/system-deps.sh does.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

SRC=$ROOT/etc/brokers/activemq-network
D=${KGW_ACTIVEMQ_NETWORK_DIR:-/tmp/kgateway-activemq-network}
TIMEOUT=${KGW_ACTIVEMQ_NETWORK_TIMEOUT:-60}
HOME_DIR=/usr/share/activemq
JAR=$HOME_DIR/bin/activemq.jar
BRIDGE_EVENTS='Network connection between .* has been established|Network connection between .* shutdown|bridge to .* stopped'

usage() { echo "usage: $0 start | stop | status | kill A|B | restart A|B" >&2; exit 2; }

stomp_port() { case $1 in A) echo 61713 ;; B) echo 61723 ;; esac; }
openwire_port() { case $1 in A) echo 61711 ;; B) echo 61721 ;; esac; }
peer() { case $1 in A) echo B ;; B) echo A ;; esac; }
log_of() { echo "$D/$1/data/activemq.log"; }
log_size() { if [ -e "$(log_of "$1")" ]; then stat -c %s "$(log_of "$1")"; else echo 0; fi; }

# Broker X's pid, if its pid file names a live JVM of this instance.
broker_pid() {
    local pid
    pid=$(read_pid "$D/$1/pid")
    if pid_alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- " -Dactivemq.base=$D/$1 "; then
        echo "$pid"
    fi
}

# Copy broker X's config into place.
setup_broker() {
    local x=$1 b=$D/$1 f
    mkdir -p "$b/conf" "$b/data" "$b/tmp" "$b/lib"
    install -m 0644 "$SRC/activemq-$x.xml" "$b/conf/activemq.xml"
    install -m 0644 "$SRC/log4j.properties" "$b/conf/log4j.properties"
    # ActiveMQ turns MapMessages (statistics replies) and advisories into XML/JSON for
    # STOMP subscribers with XStream and Jettison, which Debian leaves off the broker's
    # class path; $b/lib is an extension directory of activemq.jar. Without them such a
    # delivery drops the subscriber's STOMP connection.
    for f in xstream.jar jettison.jar; do
        if [ -e "/usr/share/java/$f" ]; then
            ln -sfn "/usr/share/java/$f" "$b/lib/$f"
        else
            say "warning: /usr/share/java/$f missing (scripts/system-deps.sh installs it): no statistics or advisories over STOMP"
        fi
    done
}

# Start broker X's JVM in the background, in a session of its own.
launch_broker() {
    local b=$D/$1
    # A fresh log per run of this broker: "established" in it is about this run.
    if [ -e "$b/data/activemq.log" ]; then mv -f "$b/data/activemq.log" "$b/data/activemq.log.prev"; fi
    rm -f "$b/pid"
    (
        close_fds
        cd "$b"
        exec setsid java -Xms64M -Xmx256M -Dorg.apache.activemq.UseDedicatedTaskRunner=false \
            -Djava.awt.headless=true -Djava.io.tmpdir="$b/tmp" \
            --add-reads=java.xml=java.logging \
            --add-opens java.base/java.security=ALL-UNNAMED \
            --add-opens java.base/java.net=ALL-UNNAMED \
            --add-opens java.base/java.lang=ALL-UNNAMED \
            --add-opens java.base/java.util=ALL-UNNAMED \
            --add-opens java.naming/javax.naming.spi=ALL-UNNAMED \
            --add-opens java.base/java.util.concurrent=ALL-UNNAMED \
            --add-opens java.base/java.util.concurrent.atomic=ALL-UNNAMED \
            -Dactivemq.classpath="$b/conf" -Dactivemq.home="$HOME_DIR" -Dactivemq.base="$b" \
            -Dactivemq.conf="$b/conf" -Dactivemq.data="$b/data" \
            -jar "$JAR" start "xbean:file:$b/conf/activemq.xml"
    ) </dev/null >"$b/console.log" 2>&1 &
    echo $! >"$b/pid"
}

# True if the last bridge event in broker X's log after byte OFFSET is "established".
bridge_up() {
    local log off=${2:-0}
    log=$(log_of "$1")
    [ -e "$log" ] || return 1
    # A log rolled over since OFFSET was taken: read it all.
    [ "$(stat -c %s "$log")" -ge "$off" ] || off=0
    tail -c +"$((off + 1))" "$log" | grep -E "$BRIDGE_EVENTS" | tail -n 1 | grep -q 'has been established'
}

# Wait until X answers STOMP; fail at once if its JVM exits.
wait_stomp() {
    local x=$1 deadline
    deadline=$(( $(date +%s) + TIMEOUT ))
    until stomp_ready "$(stomp_port "$x")"; do
        if [ -z "$(broker_pid "$x")" ]; then
            tail -n 20 "$D/$x/console.log" "$(log_of "$x")" >&2 2>/dev/null || true
            die "broker $x exited during start-up; see $(log_of "$x")"
        fi
        [ "$(date +%s)" -lt "$deadline" ] ||
            die "broker $x: no STOMP CONNECTED on 127.0.0.1:$(stomp_port "$x") after ${TIMEOUT}s; see $(log_of "$x")"
        sleep 0.1
    done
}

# Wait until both logs show the bridge up after the given offsets (A's, B's).
wait_bridge() {
    local x off
    for x in A B; do
        if [ "$x" = A ]; then off=$1; else off=$2; fi
        wait_until "$TIMEOUT" bridge_up "$x" "$off" ||
            die "broker $x: no network bridge to $(peer "$x") after ${TIMEOUT}s; see $(log_of "$x")"
    done
}

# Start the brokers named in "$@" (those not running), then wait for STOMP and the bridge.
start_brokers() {
    local x t0 started='' down='' offA offB
    t0=$(now)
    # Offsets into the logs of brokers that keep running: the bridge to a (re)started
    # peer must be established again after them.
    offA=$(log_size A)
    offB=$(log_size B)
    for x in "$@"; do
        [ -z "$(broker_pid "$x")" ] || continue
        setup_broker "$x"
        launch_broker "$x"
        started="$started $x"
        if [ "$x" = A ]; then offA=0; else offB=0; fi
    done
    if [ -z "$started" ]; then
        # Both ran already: their bridges must be up now (last event in each whole log).
        offA=0
        offB=0
    fi
    for x in A B; do
        # A broker just launched must come up; the other one (restart) may be down.
        if [[ " $started " == *" $x "* ]] || [ -n "$(broker_pid "$x")" ]; then
            wait_stomp "$x"
        else
            down="$down $x"
        fi
    done
    if [ -n "$down" ]; then
        say "started$started in $(since "$t0") s; broker$down not running: no bridge"
        return 0
    fi
    wait_bridge "$offA" "$offB"
    if [ -n "$started" ]; then
        say "started$started in $(since "$t0") s; bridge up; STOMP A 127.0.0.1:61713, B 127.0.0.1:61723; OpenWire A 61711, B 61721"
    else
        say "already running; bridge up"
    fi
}

do_status() {
    local x pid ok=0
    for x in A B; do
        pid=$(broker_pid "$x")
        if [ -n "$pid" ] && stomp_ready "$(stomp_port "$x")"; then
            if bridge_up "$x"; then
                say "$x running (pid $pid), STOMP on 127.0.0.1:$(stomp_port "$x"), bridge to $(peer "$x") up"
            else
                say "$x running (pid $pid), STOMP on 127.0.0.1:$(stomp_port "$x"), bridge to $(peer "$x") DOWN"
                ok=1
            fi
        else
            say "$x not running"
            ok=1
        fi
    done
    return "$ok"
}

# SIGTERM broker X (a clean stop, KahaDB closed), SIGKILL if it hangs.
stop_broker() {
    local x=$1 pid
    pid=$(broker_pid "$x")
    if [ -z "$pid" ]; then rm -f "$D/$x/pid"; return 0; fi
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" 30; then
        say "broker $x (pid $pid) still alive after 30 s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$pid" 10 || die "pid $pid survives SIGKILL"
    fi
    rm -f "$D/$x/pid"
}

do_stop() {
    local x pid t0 stopped=''
    t0=$(now)
    # Both at once: neither then logs a long series of reconnect attempts.
    for x in A B; do
        pid=$(broker_pid "$x")
        if [ -n "$pid" ]; then
            kill -TERM "$pid" 2>/dev/null || true
            stopped="$stopped $x"
        fi
    done
    for x in A B; do stop_broker "$x"; done
    # Throwaway state: the next start has empty stores. Logs stay.
    rm -rf "$D/A/data/kahadb" "$D/B/data/kahadb" "$D/A/tmp" "$D/B/tmp"
    if [ -n "$stopped" ]; then say "stopped$stopped in $(since "$t0") s"; else say "not running"; fi
}

do_kill() {
    local x=$1 pid
    pid=$(broker_pid "$x")
    if [ -z "$pid" ]; then
        say "$x not running"
        return 0
    fi
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" 10 || die "pid $pid survives SIGKILL"
    rm -f "$D/$x/pid"
    say "killed $x (pid $pid)"
}

CMD=${1:-}
X=${2:-}
case "$CMD" in
    kill|restart) case "$X" in A|B) ;; a|b) X=$(echo "$X" | tr ab AB) ;; *) usage ;; esac
        [ $# = 2 ] || usage ;;
    start|stop|status) [ $# = 1 ] || usage ;;
    *) usage ;;
esac

[ -r "$JAR" ] || die "$JAR missing: run scripts/system-deps.sh (package activemq)"
mkdir -p "$D"
# One invocation at a time: test sessions may start/kill brokers concurrently.
lock "$D/lock"

case "$CMD" in
    start) start_brokers A B ;;
    stop) do_stop ;;
    status) do_status ;;
    kill) do_kill "$X" ;;
    restart) stop_broker "$X"; start_brokers "$X" ;;
esac
