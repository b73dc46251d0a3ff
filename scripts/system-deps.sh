#!/usr/bin/env bash
# Install the Debian packages kgateway's tests run against, if any is missing.
#
#   scripts/system-deps.sh            install what is missing (root), else no-op
#   scripts/system-deps.sh --check    only report; exit 1 if something is missing
#
# rabbitmq-server   the AMQP 0-9-1 broker (scripts/rabbitmq.sh)
# activemq          the JMS broker, STOMP side (scripts/activemq.sh)
# libxstream-java   } on ActiveMQ's class path for STOMP replies that carry
# libjettison-java  } MapMessages/advisories (only "recommended" by Debian)
# haproxy           the load balancer in front of several gateways
# nginx-light       the other load balancer the pool tests put in front of gateways
# chromium          the browser for tests/browser/ (driven by playwright-core)
# iptables iproute2 network namespaces and packet drops for topology tests
# tinyproxy         the authenticating HTTP CONNECT proxy of the tests (scripts/tinyproxy.sh)
# slapd ldap-utils  the LDAP directory the ldap login module is tested against (scripts/slapd.sh)
#
# Fast when everything is there: one dpkg-query, no apt. Otherwise, as root,
# one `apt-get update` then one `apt-get install` of the missing packages.
set -euo pipefail

PACKAGES=(rabbitmq-server activemq libxstream-java libjettison-java haproxy nginx-light chromium
          iptables iproute2 tinyproxy slapd ldap-utils)

missing=()
while read -r pkg status; do
    [ "$status" = installed ] || missing+=("$pkg")
done < <(
    for p in "${PACKAGES[@]}"; do
        # ${db:Status-Status} is "installed" only for a fully configured package.
        printf '%s %s\n' "$p" "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || echo absent)"
    done
)

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

if [ "${1:-}" = --check ] || [ "$(id -u)" != 0 ]; then
    echo "system-deps.sh: missing Debian packages: ${missing[*]}" >&2
    echo "system-deps.sh: install them as root with:" >&2
    echo "    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y ${missing[*]}" >&2
    exit 1
fi

echo "system-deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Wait for another apt/dpkg run (e.g. one started by hand) instead of failing.
APT=(apt-get -q -o DPkg::Lock::Timeout=900 -o Dpkg::Use-Pty=0)
# Packages must not start their daemons (nginx would take port 80 on every interface):
# the project's scripts and tests start what they need, on loopback.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy"
    trap 'rm -f "$policy"' EXIT
fi
t0=$(date +%s)
"${APT[@]}" update >/dev/null
"${APT[@]}" install -y "${missing[@]}" >/dev/null
echo "system-deps.sh: installed in $(( $(date +%s) - t0 )) s" >&2
