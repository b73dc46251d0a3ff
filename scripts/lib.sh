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

# Readiness probes (scripts/probe.py says what each one checks):
# amqp_ready PORT [HOST], stomp_ready PORT [HOST], proxy_ready HOST PORT.
_PROBE=$(dirname "${BASH_SOURCE[0]}")/probe.py
amqp_ready() { python3 "$_PROBE" amqp "${2:-127.0.0.1}" "$1"; }
stomp_ready() { python3 "$_PROBE" stomp "${2:-127.0.0.1}" "$1"; }
proxy_ready() { python3 "$_PROBE" proxy "$1" "$2"; }
