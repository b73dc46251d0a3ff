#!/usr/bin/env bash
# A throwaway OpenLDAP slapd on loopback for the ldap login module's tests.
#
#   scripts/slapd.sh start     build a fresh directory, start slapd, wait until it answers
#   scripts/slapd.sh stop      stop the slapd this script started (by its pid file)
#   scripts/slapd.sh status    exit 0 if our slapd answers, 1 otherwise
#
# Listens on ldap://127.0.0.1:3389/ (plain and StartTLS) and ldaps://127.0.0.1:3636/.
# State lives in $KGATEWAY_SLAPD_DIR (default /tmp/kgateway-slapd): slapd.conf, the mdb
# database, the pid file and a test CA + server certificate (tls/ca.pem is the CA a client
# must trust; the server certificate names 127.0.0.1 and localhost). Every start builds
# the directory afresh:
#
#   dc=example,dc=com
#     ou=people   uid=alice, uid=bob          (inetOrgPerson, password "secret")
#     ou=groups   cn=devs (alice, bob), cn=ops (alice)   (groupOfNames)
#   cn=admin,dc=example,dc=com / secret       (rootdn)
#
# The groups are added ONLINE with ldapadd after slapd is up: slapadd does not run
# overlays, so groups loaded offline would give no memberOf on the users.
#
# Installs nothing: needs Debian's slapd, ldap-utils and openssl (scripts/system-deps.sh).
# Recipe and traps: /work/shared/ENV-CLUSTERS.md, section slapd. Idempotent: start on a
# running slapd is a no-op; stop leaves any other slapd (the system one) alone.
set -euo pipefail

DIR=${KGATEWAY_SLAPD_DIR:-/tmp/kgateway-slapd}
HOST=127.0.0.1
PORT=3389
TLS_PORT=3636
URL=ldap://$HOST:$PORT/
SUFFIX=dc=example,dc=com
ADMIN=cn=admin,$SUFFIX
PASSWORD=secret
PIDFILE=$DIR/slapd.pid

say() { printf 'slapd.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# Close every inherited descriptor above 2: a daemon holding its caller's pipe keeps
# `cmd | cat` or pytest waiting for an EOF that never comes.
close_fds() {
    local fd
    for fd in /proc/"$BASHPID"/fd/*; do
        fd=${fd##*/}
        if [ "$fd" -gt 2 ]; then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
}

answers() {
    ldapsearch -x -LLL -o nettimeout=2 -H "$URL" -b "$SUFFIX" -s base 1.1 >/dev/null 2>&1
}

our_pid() {
    [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null && cat "$PIDFILE"
}

need_tools() {
    local t
    for t in slapd slapadd slappasswd ldapadd ldapsearch openssl; do
        command -v "$t" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin command -v "$t" >/dev/null 2>&1 \
            || die "$t not found: install slapd ldap-utils openssl (scripts/system-deps.sh)"
    done
    export PATH=$PATH:/usr/sbin
}

make_certs() {
    local t=$DIR/tls
    mkdir -p "$t"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj /CN=kgateway-slapd-test-ca -keyout "$t/ca.key" -out "$t/ca.pem" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign \
        2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
        -keyout "$t/server.key" -out "$t/server.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' > "$t/ext"
    openssl x509 -req -in "$t/server.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" -CAcreateserial \
        -days 2 -extfile "$t/ext" -out "$t/server.pem" 2>/dev/null
}

write_config() {
    cat > "$DIR/slapd.conf" <<EOF
include   /etc/ldap/schema/core.schema
include   /etc/ldap/schema/cosine.schema
include   /etc/ldap/schema/inetorgperson.schema
pidfile   $PIDFILE
argsfile  $DIR/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
TLSCACertificateFile  $DIR/tls/ca.pem
TLSCertificateFile    $DIR/tls/server.pem
TLSCertificateKeyFile $DIR/tls/server.key
database  mdb
suffix    "$SUFFIX"
rootdn    "$ADMIN"
rootpw    $PASSWORD
directory $DIR/db
maxsize   104857600
overlay   memberof
access to attrs=userPassword by self write by anonymous auth by * none
access to * by * read
EOF
    local hash
    hash=$(slappasswd -s "$PASSWORD")
    {
        printf 'dn: %s\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n' "$SUFFIX"
        printf 'dn: ou=people,%s\nobjectClass: organizationalUnit\nou: people\n\n' "$SUFFIX"
        printf 'dn: ou=groups,%s\nobjectClass: organizationalUnit\nou: groups\n\n' "$SUFFIX"
        for u in alice bob; do
            printf 'dn: uid=%s,ou=people,%s\nobjectClass: inetOrgPerson\nuid: %s\ncn: %s\nsn: %s\nuserPassword: %s\n\n' \
                "$u" "$SUFFIX" "$u" "$u" "$u" "$hash"
        done
    } > "$DIR/data.ldif"
}

add_groups() {
    {
        printf 'dn: cn=devs,ou=groups,%s\nobjectClass: groupOfNames\ncn: devs\n' "$SUFFIX"
        printf 'member: uid=alice,ou=people,%s\nmember: uid=bob,ou=people,%s\n\n' "$SUFFIX" "$SUFFIX"
        printf 'dn: cn=ops,ou=groups,%s\nobjectClass: groupOfNames\ncn: ops\n' "$SUFFIX"
        printf 'member: uid=alice,ou=people,%s\n\n' "$SUFFIX"
    } | ldapadd -x -o nettimeout=5 -H "$URL" -D "$ADMIN" -w "$PASSWORD" >/dev/null
}

start() {
    need_tools
    if answers; then
        [ -n "$(our_pid)" ] || die "something else answers on $URL: not ours, not touching it"
        return 0
    fi
    rm -rf "$DIR/db" "$DIR/tls"
    mkdir -p "$DIR/db"
    make_certs
    write_config
    slaptest -Q -f "$DIR/slapd.conf" -u
    slapadd -q -f "$DIR/slapd.conf" -l "$DIR/data.ldif"
    local user=()
    if [ "$(id -u)" = 0 ]; then
        chown -R openldap:openldap "$DIR"
        user=(-u openldap -g openldap)
    fi
    # slapd daemonises itself and writes $PIDFILE; it is listening when it returns.
    ( close_fds; exec slapd "${user[@]}" -f "$DIR/slapd.conf" \
        -h "ldap://$HOST:$PORT/ ldaps://$HOST:$TLS_PORT/" )
    local i
    for i in $(seq 100); do
        answers && break
        [ "$i" = 100 ] && die "slapd did not answer on $URL"
        sleep 0.1   # polling a daemon that has no readiness notification
    done
    add_groups
    say "listening on $URL and ldaps://$HOST:$TLS_PORT/ (pid $(cat "$PIDFILE"), dir $DIR)"
}

stop() {
    local pid
    pid=$(our_pid) || { say "not running"; return 0; }
    kill -TERM "$pid"
    local i
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        [ "$i" = 100 ] && die "slapd (pid $pid) did not exit"
        sleep 0.1
    done
    rm -rf "$DIR/db"
}

status() {
    if answers && [ -n "$(our_pid)" ]; then return 0; fi
    return 1
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
